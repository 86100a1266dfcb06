"""Roads with sidewalks and markings, parcels between them, and the buildings on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geoidec.synthetic.scene import (
    _ASPHALT,
    _BUILDING,
    _FLAT_ROOF_PROB,
    _IMPERVIOUS,
    _M_ASPHALT,
    _M_GRASS,
    _M_MARKING,
    _M_PAVING,
    _M_ROOF_FLAT,
    _M_ROOF_GABLE,
    _M_ROOF_UNIT,
    _M_SIDEWALK,
    _MARKING,
    _PAVING,
    _ROOF_COLOURS,
    _ROOF_UNIT,
    _SIDEWALK,
    _Scene,
)


@dataclass
class _Road:
    vertical: bool
    centre: float
    carriage: float  # carriageway width (m)
    sidewalk: float  # sidewalk width on each side (m)

    @property
    def half(self) -> float:
        return self.carriage / 2 + self.sidewalk


def _choose_roads(sc: _Scene, margin: float) -> list[_Road]:
    """Pick an axis-aligned road grid covering roughly a quarter of the tile."""
    rng, w = sc.rng, sc.extent

    def new_road(vertical: bool, centre: float) -> _Road:
        return _Road(vertical, centre, float(rng.uniform(4.2, 6.0)), float(rng.uniform(0.9, 1.5)))

    roads: list[_Road] = []
    if w < 45.0:
        # A tile smaller than a city block: one street through it.
        roads.append(new_road(bool(rng.random() < 0.5), float(rng.uniform(0.22, 0.78)) * w))
        return roads
    for vertical in (True, False):
        spacing = float(rng.uniform(52.0, 80.0))
        pos = -margin + float(rng.uniform(0.0, spacing))
        while pos < w + margin:
            roads.append(new_road(vertical, pos))
            pos += spacing * float(rng.uniform(0.85, 1.15))
    if not any(-r.half < r.centre < w + r.half for r in roads):
        roads.append(new_road(bool(rng.random() < 0.5), float(rng.uniform(0.3, 0.7)) * w))
    return roads


def _paint_roads(sc: _Scene, roads: list[_Road], margin: float) -> None:
    """Sidewalks first, then carriageways over them (so crossings are clean), then markings."""
    lo, hi = -margin, sc.extent + margin
    for kind in ("sidewalk", "carriage", "marking"):
        for road in roads:
            if kind == "sidewalk":
                half, mat, colour = road.half, _M_SIDEWALK, _SIDEWALK
            elif kind == "carriage":
                half, mat, colour = road.carriage / 2, _M_ASPHALT, _ASPHALT
            else:
                half, mat, colour = 0.06, _M_MARKING, _MARKING
                half = max(half, 0.5 * sc.res)
                if sc.res > 0.15:
                    continue
            a, b = road.centre - half, road.centre + half
            box = (a, lo, b, hi) if road.vertical else (lo, a, hi, b)
            win = sc.window(*box)
            if win is None:
                continue
            rows, cols, ys, xs = win
            mask = np.ones((ys.shape[0], xs.shape[1]), dtype=bool)
            if kind == "marking":
                along = ys if road.vertical else xs
                mask = np.broadcast_to((along % 6.0) < 3.0, mask.shape).copy()
                mask &= sc.mat[rows, cols] == _M_ASPHALT
            sc.paint(rows, cols, mask, _IMPERVIOUS, mat, colour, 0.0)


def _intervals(cuts: list[tuple[float, float]], lo: float, hi: float) -> list[tuple[float, float]]:
    """Free intervals of ``[lo, hi]`` between the (possibly overlapping) occupied ``cuts``."""
    out: list[tuple[float, float]] = []
    pos = lo
    for a, b in sorted(cuts):
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < hi:
        out.append((pos, hi))
    return out


def _split_parcels(
    rng: np.random.Generator, box: tuple[float, float, float, float], max_side: float, out: list
) -> None:
    """Recursively cut a block into parcels no longer than ``max_side`` metres."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if max(w, h) <= max_side or max(w, h) < 12.0:
        out.append(box)
        return
    t = float(rng.uniform(0.38, 0.62))
    if w >= h:
        xm = x0 + t * w
        _split_parcels(rng, (x0, y0, xm, y1), max_side, out)
        _split_parcels(rng, (xm, y0, x1, y1), max_side, out)
    else:
        ym = y0 + t * h
        _split_parcels(rng, (x0, y0, x1, ym), max_side, out)
        _split_parcels(rng, (x0, ym, x1, y1), max_side, out)


def _paint_gable(
    sc: _Scene, box: tuple[float, float, float, float], colour: np.ndarray, eave: float
) -> None:
    """A gabled roof part: ridge along the long side, sun-facing slope brighter, tile stripes."""
    win = sc.window(*box)
    if win is None:
        return
    rows, cols, ys, xs = win
    x0, y0, x1, y1 = box
    ridge_along_x = (x1 - x0) >= (y1 - y0)
    if ridge_along_x:
        d = (ys - 0.5 * (y0 + y1)) / (0.5 * (y1 - y0))  # +1 at the south eave
        across = np.broadcast_to(d, (ys.shape[0], xs.shape[1]))
        slope_light = np.where(across > 0, 1.13, 0.8)
        stripes_coord = np.broadcast_to(xs, across.shape)
        rise = 0.5 * (y1 - y0) * 0.7
    else:
        d = (xs - 0.5 * (x0 + x1)) / (0.5 * (x1 - x0))  # +1 at the east eave
        across = np.broadcast_to(d, (ys.shape[0], xs.shape[1]))
        slope_light = np.where(across < 0, 1.06, 0.86)
        stripes_coord = np.broadcast_to(ys, across.shape)
        rise = 0.5 * (x1 - x0) * 0.7
    height = eave + rise * (1.0 - np.abs(across))
    shade = slope_light.astype(np.float32)
    if sc.res <= 0.1:  # rows of tiles are resolvable
        shade = shade * (1.0 - 0.07 * ((stripes_coord / 0.32) % 1.0 < 0.3)).astype(np.float32)
    ridge = np.abs(across) < max(0.04, 0.9 * sc.res / max(1e-6, 0.5 * min(x1 - x0, y1 - y0)))
    shade = np.where(ridge, shade * 0.9, shade).astype(np.float32)
    mask = np.ones(across.shape, dtype=bool)
    sc.paint(rows, cols, mask, _BUILDING, _M_ROOF_GABLE, colour, height, shade)


def _paint_flat(
    sc: _Scene, box: tuple[float, float, float, float], colour: np.ndarray, height: float
) -> None:
    """A flat roof with a dark parapet edge and a few light rooftop units."""
    win = sc.window(*box)
    if win is None:
        return
    rows, cols, ys, xs = win
    x0, y0, x1, y1 = box
    edge = max(0.35, 1.5 * sc.res)
    inner = (xs > x0 + edge) & (xs < x1 - edge) & (ys > y0 + edge) & (ys < y1 - edge)
    shade = np.where(inner, 1.0, 0.78).astype(np.float32)
    mask = np.ones(inner.shape, dtype=bool)
    sc.paint(rows, cols, mask, _BUILDING, _M_ROOF_FLAT, colour, height, shade)
    rng = sc.rng
    for _ in range(int(rng.integers(0, 4))):
        uw, uh = rng.uniform(0.8, 2.6, size=2)
        ux = float(rng.uniform(x0 + edge, max(x0 + edge, x1 - edge - uw)))
        uy = float(rng.uniform(y0 + edge, max(y0 + edge, y1 - edge - uh)))
        w2 = sc.window(ux, uy, ux + max(uw, 2 * sc.res), uy + max(uh, 2 * sc.res))
        if w2 is None:
            continue
        r2, c2, ys2, xs2 = w2
        m2 = np.ones((ys2.shape[0], xs2.shape[1]), dtype=bool) & (sc.mat[r2, c2] == _M_ROOF_FLAT)
        sc.paint(r2, c2, m2, _BUILDING, _M_ROOF_UNIT, _ROOF_UNIT, height + 1.2)


def _paint_building(sc: _Scene, parcel: tuple[float, float, float, float]) -> None:
    """A rectangular or L-shaped building inset in its parcel, with an optional driveway."""
    rng = sc.rng
    x0, y0, x1, y1 = parcel
    inset = rng.uniform(0.7, 2.8, size=4)
    bx0, by0, bx1, by1 = x0 + inset[0], y0 + inset[1], x1 - inset[2], y1 - inset[3]
    min_side = max(4.0, 4 * sc.res)
    if bx1 - bx0 < min_side or by1 - by0 < min_side:
        return
    k = int(rng.choice(len(_ROOF_COLOURS)))
    colour = _ROOF_COLOURS[k] * np.float32(rng.uniform(0.9, 1.1))
    flat = bool(rng.random() < _FLAT_ROOF_PROB[k])
    eave = float(rng.uniform(6.0, 14.0)) if not flat else float(rng.uniform(6.0, 20.0))
    parts = [(bx0, by0, bx1, by1)]
    if rng.random() < 0.4 and min(bx1 - bx0, by1 - by0) > 2.5 * min_side:
        # L-shape: remove one corner, leaving two overlapping wings.
        fx, fy = rng.uniform(0.35, 0.6, size=2)
        cx, cy = bx0 + fx * (bx1 - bx0), by0 + fy * (by1 - by0)
        if rng.random() < 0.5:  # keep west wing full height, east wing partial
            parts = [
                (bx0, by0, cx, by1),
                (cx, by0, bx1, cy) if rng.random() < 0.5 else (cx, cy, bx1, by1),
            ]
        else:
            parts = [
                (bx0, by0, bx1, cy),
                (bx0, cy, cx, by1) if rng.random() < 0.5 else (cx, cy, bx1, by1),
            ]
    for part in parts:
        if flat:
            _paint_flat(sc, part, colour, eave)
        else:
            _paint_gable(sc, part, colour, eave)
    if rng.random() < 0.45:
        # Paved driveway / patio between the building and a parcel edge.
        dw = float(rng.uniform(2.5, 3.5))
        side = int(rng.integers(4))
        cx = float(rng.uniform(bx0, max(bx0, bx1 - dw)))
        cy = float(rng.uniform(by0, max(by0, by1 - dw)))
        box = [
            (cx, y0, cx + dw, by0),
            (cx, by1, cx + dw, y1),
            (x0, cy, bx0, cy + dw),
            (bx1, cy, x1, cy + dw),
        ][side]
        win = sc.window(*box)
        if win is not None:
            rows, cols, ys, xs = win
            mask = sc.mat[rows, cols] == _M_GRASS
            sc.paint(rows, cols, mask, _IMPERVIOUS, _M_PAVING, _PAVING, 0.0)
