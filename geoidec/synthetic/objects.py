"""Small objects painted into a scene: cars and parking, clutter, trees."""

from __future__ import annotations

import math

import numpy as np

from geoidec.synthetic.scene import (
    _ASPHALT,
    _CAR,
    _CAR_COLOUR_PROB,
    _CAR_COLOURS,
    _CLUTTER,
    _CLUTTER_COLOURS,
    _GLASS,
    _HEAP_COLOURS,
    _IMPERVIOUS,
    _M_ASPHALT,
    _M_CAR,
    _M_CLUTTER,
    _M_GLASS,
    _M_GRASS,
    _M_HEAP,
    _M_PAVING,
    _M_ROOF_FLAT,
    _M_ROOF_GABLE,
    _M_ROOF_UNIT,
    _M_SIDEWALK,
    _M_TREE,
    _TREE,
    _TREE_COLOUR,
    _Scene,
)


def _paint_car(sc: _Scene, cx: float, cy: float, along_x: bool, *, allowed: tuple[int, ...]) -> int:
    """One car (about 4.5 x 1.9 m, at least a few pixels) if it fits on ``allowed`` materials."""
    rng = sc.rng
    length = max(float(rng.uniform(4.1, 4.9)), 4 * sc.res)
    width = max(float(rng.uniform(1.75, 2.0)), 2 * sc.res)
    lx, ly = (length, width) if along_x else (width, length)
    box = (cx - lx / 2, cy - ly / 2, cx + lx / 2, cy + ly / 2)
    win = sc.window(*box)
    if win is None:
        return 0
    rows, cols, ys, xs = win
    under = sc.mat[rows, cols]
    if not np.isin(under, allowed).all():
        return 0
    shape = under.shape
    colour = _CAR_COLOURS[int(rng.choice(len(_CAR_COLOURS), p=_CAR_COLOUR_PROB))]
    mask = np.ones(shape, dtype=bool)
    u = (xs - box[0]) / lx if along_x else (ys - box[1]) / ly  # 0..1 along the car
    v = (ys - box[1]) / ly if along_x else (xs - box[0]) / lx  # 0..1 across
    u = np.broadcast_to(u, shape)
    v = np.broadcast_to(v, shape)
    # Round the corners a little and darken towards the sides (body curvature).
    corner = ((np.minimum(u, 1 - u) * length) < 0.35) & ((np.minimum(v, 1 - v) * width) < 0.3)
    if min(shape) >= 6:
        mask &= ~corner
    shade = (1.0 - 0.25 * np.abs(2 * v - 1) ** 3).astype(np.float32)
    gained = sc.paint(rows, cols, mask, _CAR, _M_CAR, colour, 1.5, shade)
    if sc.res <= 0.15:
        front = 0.72 if rng.random() < 0.5 else 0.18
        glass = mask & (
            ((u > front) & (u < front + 0.12)) | ((u > 1.03 - front - 0.12) & (u < 1.03 - front))
        )
        glass &= np.abs(2 * v - 1) < 0.8
        sc.paint(rows, cols, glass, _CAR, _M_GLASS, _GLASS, 1.4)
    return gained


def _paint_parking(sc: _Scene, parcel: tuple[float, float, float, float], want_cars: float) -> int:
    """A paved parking lot with stall lines and rows of parked cars; returns car pixels added."""
    rng = sc.rng
    x0, y0, x1, y1 = parcel
    e = float(rng.uniform(0.8, 1.8))
    box = (x0 + e, y0 + e, x1 - e, y1 - e)
    win = sc.window(*box)
    if win is None:
        return 0
    rows, cols, ys, xs = win
    mask = sc.mat[rows, cols] == _M_GRASS
    colour = _ASPHALT * np.float32(rng.uniform(1.05, 1.25))
    sc.paint(rows, cols, mask, _IMPERVIOUS, _M_ASPHALT, colour, 0.0)
    along_x = (box[2] - box[0]) >= (box[3] - box[1])
    gained = 0
    stall = 2.6
    lo, hi = (box[0], box[2]) if along_x else (box[1], box[3])
    across_lo, across_hi = (box[1], box[3]) if along_x else (box[0], box[2])
    lanes = [across_lo + 2.6, across_hi - 2.6] if across_hi - across_lo > 9 else [across_lo + 2.6]
    pos = lo + stall / 2
    while pos < hi - stall / 2:
        for lane in lanes:
            if sc.rng.random() < want_cars:
                cx, cy = (pos, lane) if along_x else (lane, pos)
                gained += _paint_car(sc, cx, cy, not along_x, allowed=(_M_ASPHALT,))
        pos += stall
    return gained


def _blob_mask(
    rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, cx: float, cy: float, r: float
) -> np.ndarray:
    """An irregular round blob of mean radius ``r`` metres around ``(cx, cy)``.

    The radius is modulated by a few angular harmonics, evaluated through powers of the unit
    complex direction (cheaper than ``arctan2`` followed by sines).
    """
    dy, dx = ys - np.float32(cy), xs - np.float32(cx)
    d2 = dx * dx + dy * dy
    z = (dx + 1j * dy).astype(np.complex64) / np.sqrt(np.maximum(d2, np.float32(1e-12)))
    z2 = z * z
    z3 = z2 * z
    z5 = z3 * z2
    p = rng.uniform(0, 2 * np.pi, size=3)
    a = rng.uniform(0.05, 0.16, size=3)
    wobble = np.zeros(d2.shape, dtype=np.float32)
    for amp, phase, zk in zip(a, p, (z2, z3, z5), strict=True):
        wobble += np.float32(amp) * (
            np.float32(math.sin(phase)) * zk.real + np.float32(math.cos(phase)) * zk.imag
        )
    radius = np.float32(r) * (1 + wobble)
    return d2 <= radius * radius


def _paint_clutter(sc: _Scene, cx: float, cy: float) -> int:
    """A clutter object: a bin/container (rectangle) or an irregular heap; returns pixels added."""
    rng = sc.rng
    minimum = 3 * sc.res
    if rng.random() < 0.55:
        w = max(float(rng.uniform(0.7, 2.6)), minimum)
        h = max(float(rng.uniform(0.7, 6.0)), minimum)
        if rng.random() < 0.5:
            w, h = h, w
        win = sc.window(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        if win is None:
            return 0
        rows, cols, ys, xs = win
        mask = np.ones((ys.shape[0], xs.shape[1]), dtype=bool)
        height: float | np.ndarray
        mat, colour, height = (
            _M_CLUTTER,
            _CLUTTER_COLOURS[int(rng.choice(len(_CLUTTER_COLOURS)))],
            float(rng.uniform(1.0, 2.6)),
        )
        shade: float | np.ndarray = 1.0
    else:
        r = max(float(rng.uniform(0.8, 2.8)), minimum)
        win = sc.window(cx - 1.4 * r, cy - 1.4 * r, cx + 1.4 * r, cy + 1.4 * r)
        if win is None:
            return 0
        rows, cols, ys, xs = win
        mask = _blob_mask(rng, ys, xs, cx, cy, r)
        mat, colour = _M_HEAP, _HEAP_COLOURS[int(rng.choice(len(_HEAP_COLOURS)))]
        d = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2) / r
        height = np.clip(1.0 - d, 0.0, 1.0) * float(rng.uniform(0.5, 1.8))
        # Lit on the south-west flank.
        shade = (1.0 + 0.18 * np.clip(((ys - cy) - (xs - cx)) / r, -1, 1)).astype(np.float32)
    under = sc.mat[rows, cols]
    ok = np.isin(under, (_M_GRASS, _M_SIDEWALK, _M_PAVING))
    if np.count_nonzero(mask & ~ok) > 0.05 * max(1, int(np.count_nonzero(mask))):
        return 0
    mask = mask & ok
    return sc.paint(
        rows, cols, mask, _CLUTTER, mat, colour * np.float32(rng.uniform(0.9, 1.1)), height, shade
    )


def _paint_tree(sc: _Scene, cx: float, cy: float, r: float) -> int:
    """A tree crown (irregular dome, brighter on the sun side); returns tree pixels added."""
    rng = sc.rng
    r = max(r, 2 * sc.res)
    if 0 <= cx < sc.extent and 0 <= cy < sc.extent:
        centre = sc.mat[int(cy / sc.res), int(cx / sc.res)]
        if centre not in (_M_GRASS, _M_SIDEWALK, _M_PAVING, _M_TREE):
            return 0
    win = sc.window(cx - 1.4 * r, cy - 1.4 * r, cx + 1.4 * r, cy + 1.4 * r)
    if win is None:
        return 0
    rows, cols, ys, xs = win
    mask = _blob_mask(rng, ys, xs, cx, cy, r)
    under = sc.mat[rows, cols]
    ok = np.isin(under, (_M_GRASS, _M_SIDEWALK, _M_PAVING, _M_TREE))
    blocked = np.isin(
        under, (_M_ROOF_FLAT, _M_ROOF_GABLE, _M_ROOF_UNIT, _M_ASPHALT, _M_CAR, _M_GLASS)
    )
    if np.count_nonzero(mask & blocked) > 0.04 * max(1, int(np.count_nonzero(mask))):
        return 0
    mask = mask & ok
    d2 = ((ys - cy) ** 2 + (xs - cx) ** 2) / (r * r)
    top = float(rng.uniform(4.0, 12.0))
    height = np.maximum(top * np.sqrt(np.clip(1.0 - d2, 0.0, 1.0)), np.float32(top * 0.35))
    lit = np.clip(((ys - cy) - (xs - cx) * 0.4) / r, -1.2, 1.2)  # south-south-west side lit
    shade = (1.0 + 0.22 * lit).astype(np.float32)
    # Never lower an existing taller crown where two trees overlap.
    old = sc.hgt[rows, cols]
    overlap = sc.mat[rows, cols] == _M_TREE
    height = np.where(overlap, np.maximum(old, height), height)
    colour = _TREE_COLOUR * np.float32(rng.uniform(0.85, 1.15))
    return sc.paint(rows, cols, mask, _TREE, _M_TREE, colour, height, shade)
