"""Procedural ISPRS-Potsdam-like sample scenes, written in the exact layout of the real release.

The generator paints a plausible small urban scene per tile (roads with sidewalks and lane
markings, gabled and flat-roofed buildings with cast shadows, lawns, tree crowns, parked cars
and clutter such as bins, containers and heaps), renders it to R, G, B and near-infrared
bands, and writes the five Potsdam folders::

    out/1_DSM/dsm_potsdam_{rr}_{cc}.tif              float32 surface heights (m)
    out/2_Ortho_RGB/top_potsdam_{r}_{c}_RGB.tif      uint8 R,G,B
    out/3_Ortho_IRRG/top_potsdam_{r}_{c}_IRRG.tif    uint8 IR,R,G
    out/4_Ortho_RGBIR/top_potsdam_{r}_{c}_RGBIR.tif  uint8 R,G,B,IR
    out/5_Labels_all/top_potsdam_{r}_{c}_label.tif   uint8 RGB colour labels

All rasters are north-up in EPSG:32633 on a grid where neighbouring tile names are
neighbours on the ground. Object sizes are in metres (a car is about 4.5 x 2 m) and are
converted to pixels with a floor of a few pixels, so the same code serves 5 cm and 1 m
samples. Generation uses only numpy and rasterio and is deterministic for a given seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

__all__ = ["generate_isprs_sample"]

# Private copy of the ISPRS colour palette (the ISPRS reader owns the canonical one; keep the
# two identical). Ordered as in the benchmark: five evaluated classes, then clutter.
_PALETTE: dict[str, tuple[int, int, int]] = {
    "impervious_surfaces": (255, 255, 255),
    "building": (0, 0, 255),
    "low_vegetation": (0, 255, 255),
    "tree": (0, 255, 0),
    "car": (255, 255, 0),
    "clutter": (255, 0, 0),
}

# Internal class indices (geoidec convention: 0 = clutter/background, then evaluation order).
_CLUTTER, _IMPERVIOUS, _BUILDING, _LOW_VEG, _TREE, _CAR = 0, 1, 2, 3, 4, 5
_INDEX_COLORS = np.array(
    [
        _PALETTE["clutter"],
        _PALETTE["impervious_surfaces"],
        _PALETTE["building"],
        _PALETTE["low_vegetation"],
        _PALETTE["tree"],
        _PALETTE["car"],
    ],
    dtype=np.uint8,
)

# Surface materials (finer than classes; they select the texture used when rendering).
_M_GRASS, _M_ASPHALT, _M_SIDEWALK, _M_PAVING, _M_MARKING = 0, 1, 2, 3, 4
_M_ROOF_GABLE, _M_ROOF_FLAT, _M_ROOF_UNIT, _M_TREE = 5, 6, 7, 8
_M_CAR, _M_GLASS, _M_CLUTTER, _M_HEAP = 9, 10, 11, 12

_CRS = CRS.from_epsg(32633)
_ORIGIN_X = 366000.0  # easting of the west edge of column 10
_ORIGIN_Y = 5808000.0  # northing of the north edge of row 2

# Sun: south-south-west, fairly high (summer acquisition); shadows fall north-north-east.
_SUN_TAN_ELEVATION = math.tan(math.radians(62.0))
_SHADOW_COL_PER_ROW = 0.35  # eastward drift of a shadow per pixel it travels north
_SHADOW_FACTOR = np.array([0.42, 0.45, 0.55, 0.47], dtype=np.float32)  # R, G, B, IR

# Base colours as (R, G, B, IR) on the 0..255 scale.
_ROOF_COLOURS = np.array(
    [
        [168, 78, 58, 165],  # red clay tiles
        [150, 92, 70, 150],  # faded terracotta
        [118, 84, 66, 118],  # brown tiles
        [84, 86, 92, 72],  # dark grey slate
        [62, 62, 68, 54],  # anthracite
        [172, 170, 164, 150],  # light concrete
        [140, 138, 132, 122],  # grey bitumen
    ],
    dtype=np.float32,
)
_FLAT_ROOF_PROB = np.array([0.05, 0.05, 0.1, 0.3, 0.3, 0.9, 0.9])
_CAR_COLOURS = np.array(
    [
        [222, 222, 220, 190],  # white
        [168, 170, 174, 150],  # silver
        [112, 112, 116, 98],  # grey
        [34, 34, 38, 30],  # black
        [38, 48, 98, 40],  # dark blue
        [52, 84, 162, 70],  # blue
        [172, 30, 30, 96],  # red
        [196, 170, 60, 140],  # yellow
        [40, 80, 52, 60],  # dark green
    ],
    dtype=np.float32,
)
_CAR_COLOUR_PROB = np.array([0.22, 0.2, 0.14, 0.16, 0.08, 0.06, 0.07, 0.03, 0.04])
_CLUTTER_COLOURS = np.array(
    [
        [214, 122, 40, 140],  # orange barrier / skip
        [42, 92, 150, 58],  # blue container
        [64, 72, 62, 52],  # dark tarpaulin
        [200, 198, 188, 172],  # white boxes
        [176, 48, 120, 96],  # magenta bins
        [120, 132, 40, 92],  # olive crates
    ],
    dtype=np.float32,
)
_HEAP_COLOURS = np.array(
    [
        [134, 104, 74, 122],  # bare soil
        [188, 168, 122, 160],  # sand
        [150, 146, 140, 132],  # gravel / rubble
    ],
    dtype=np.float32,
)
_ASPHALT = np.array([98, 98, 102, 92], dtype=np.float32)
_SIDEWALK = np.array([158, 154, 148, 142], dtype=np.float32)
_PAVING = np.array([142, 136, 128, 128], dtype=np.float32)
_MARKING = np.array([214, 214, 208, 196], dtype=np.float32)
_GRASS = np.array([88, 132, 62, 212], dtype=np.float32)
_DRY_GRASS = np.array([142, 140, 92, 160], dtype=np.float32)
_TREE_COLOUR = np.array([50, 84, 42, 184], dtype=np.float32)
_GLASS = np.array([36, 42, 52, 30], dtype=np.float32)
_ROOF_UNIT = np.array([196, 196, 192, 176], dtype=np.float32)


@dataclass
class _Scene:
    """Per-tile painting state: classes, materials, colours, heights and shading."""

    size: int
    res: float
    rng: np.random.Generator
    lab: np.ndarray = field(init=False)
    mat: np.ndarray = field(init=False)
    col: np.ndarray = field(init=False)
    hgt: np.ndarray = field(init=False)
    shade: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = self.size
        self.lab = np.full((n, n), _LOW_VEG, dtype=np.uint8)
        self.mat = np.full((n, n), _M_GRASS, dtype=np.uint8)
        self.col = np.empty((n, n, 4), dtype=np.float32)
        self.col[:] = _GRASS
        self.hgt = np.zeros((n, n), dtype=np.float32)
        self.shade = np.ones((n, n), dtype=np.float32)

    @property
    def extent(self) -> float:
        """Tile side length in metres."""
        return self.size * self.res

    def span(self, lo: float, hi: float) -> tuple[int, int]:
        """Pixel index range whose centres fall in ``[lo, hi)`` metres, clipped to the tile."""
        a = max(0, math.ceil(lo / self.res - 0.5))
        b = min(self.size, math.ceil(hi / self.res - 0.5))
        return a, max(a, b)

    def window(
        self, x0: float, y0: float, x1: float, y1: float
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Row/column slices and pixel-centre coordinates (m) of a box, or None if empty."""
        r0, r1 = self.span(y0, y1)
        c0, c1 = self.span(x0, x1)
        if r0 >= r1 or c0 >= c1:
            return None
        ys = ((np.arange(r0, r1, dtype=np.float32) + 0.5) * self.res)[:, None]
        xs = ((np.arange(c0, c1, dtype=np.float32) + 0.5) * self.res)[None, :]
        return slice(r0, r1), slice(c0, c1), ys, xs

    def paint(
        self,
        rows: slice,
        cols: slice,
        mask: np.ndarray,
        cls: int,
        mat: int,
        colour: np.ndarray,
        height: float | np.ndarray,
        shade: float | np.ndarray = 1.0,
    ) -> int:
        """Write one object into the masked pixels of a window; returns pixels newly of ``cls``."""
        lab = self.lab[rows, cols]
        gained = int(np.count_nonzero(mask & (lab != cls)))
        lab[mask] = cls
        self.mat[rows, cols][mask] = mat
        self.col[rows, cols][mask] = colour
        h = np.broadcast_to(np.asarray(height, dtype=np.float32), mask.shape)
        self.hgt[rows, cols][mask] = h[mask]
        s = np.broadcast_to(np.asarray(shade, dtype=np.float32), mask.shape)
        self.shade[rows, cols][mask] = s[mask]
        return gained


# --------------------------------------------------------------------------------------------
# Noise


def _value_noise(rng: np.random.Generator, n: int, cell: float) -> np.ndarray:
    """Smooth value noise (roughly unit variance) on an ``n x n`` grid with ``cell`` px cells."""
    cell = max(float(cell), 1.0)
    g = int(n / cell) + 3
    grid = rng.standard_normal((g, g)).astype(np.float32)
    t = np.arange(n, dtype=np.float32) / np.float32(cell) + np.float32(rng.random())
    i0 = t.astype(np.int64)
    f = t - i0
    f = f * f * (3.0 - 2.0 * f)
    rows = grid[i0] * (1.0 - f)[:, None] + grid[i0 + 1] * f[:, None]
    t2 = np.arange(n, dtype=np.float32) / np.float32(cell) + np.float32(rng.random())
    j0 = t2.astype(np.int64)
    f2 = t2 - j0
    f2 = f2 * f2 * (3.0 - 2.0 * f2)
    out = rows[:, j0] * (1.0 - f2)[None, :] + rows[:, j0 + 1] * f2[None, :]
    return out * np.float32(1.3)


def _fractal_noise(
    rng: np.random.Generator, n: int, res: float, scales_m: Sequence[float]
) -> np.ndarray:
    """Sum of value-noise octaves whose cell sizes are given in metres (normalised to ~unit std)."""
    total = np.zeros((n, n), dtype=np.float32)
    weight = 0.0
    for k, s in enumerate(scales_m):
        w = 0.6**k
        total += np.float32(w) * _value_noise(rng, n, s / res)
        weight += w * w
    return total / np.float32(math.sqrt(weight))


# --------------------------------------------------------------------------------------------
# Layout


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


def _count_in(sc: _Scene, box: tuple[float, float, float, float]) -> np.ndarray:
    """Pixel count per class inside a box (m), clipped to the tile."""
    r0, r1 = sc.span(box[1], box[3])
    c0, c1 = sc.span(box[0], box[2])
    return np.bincount(sc.lab[r0:r1, c0:c1].ravel(), minlength=6)


def _layout(sc: _Scene) -> None:
    """Paint roads, parcels, cars, clutter and trees until the class targets are roughly met."""
    rng, w, n_pix = sc.rng, sc.extent, sc.size * sc.size
    margin = 12.0
    roads = _choose_roads(sc, margin)
    _paint_roads(sc, roads, margin)

    # Blocks between roads, extended past the tile edge so parcels are not tile-aligned.
    lo, hi = -margin, w + margin
    xs = _intervals([(r.centre - r.half, r.centre + r.half) for r in roads if r.vertical], lo, hi)
    ys = _intervals(
        [(r.centre - r.half, r.centre + r.half) for r in roads if not r.vertical], lo, hi
    )
    parcels: list[tuple[float, float, float, float]] = []
    for ax0, ax1 in xs:
        for ay0, ay1 in ys:
            if ax1 - ax0 > 3.0 and ay1 - ay0 > 3.0:
                _split_parcels(rng, (ax0, ay0, ax1, ay1), float(rng.uniform(15.0, 26.0)), parcels)

    car_target = float(rng.uniform(0.012, 0.022)) * n_pix
    clutter_target = float(rng.uniform(0.035, 0.055)) * n_pix
    tree_target = float(rng.uniform(0.12, 0.16)) * n_pix
    building_target = float(rng.uniform(0.23, 0.29)) * n_pix
    building_px = 0
    impervious_px = int(np.count_nonzero(sc.lab == _IMPERVIOUS))
    for k in rng.permutation(len(parcels)):
        parcel = parcels[int(k)]
        before = _count_in(sc, parcel)
        if building_px < building_target and rng.random() < 0.88:
            _paint_building(sc, parcel)
        elif impervious_px < 0.27 * n_pix and rng.random() < 0.4:
            _paint_parking(sc, parcel, float(rng.uniform(0.35, 0.7)))
        # else: lawn / park, trees come later
        after = _count_in(sc, parcel)
        building_px += int(after[_BUILDING] - before[_BUILDING])
        impervious_px += int(after[_IMPERVIOUS] - before[_IMPERVIOUS])

    # Cars parked along the kerbs and a few driving in the lanes.
    car_px = int(np.count_nonzero(sc.lab == _CAR))
    local_roads = [r for r in roads if -r.half < r.centre < w + r.half]
    attempts = 0
    while (
        car_px < car_target
        and local_roads
        and attempts < 50 + int(20 * car_target * sc.res**2 / 9.0)
    ):
        attempts += 1
        road = local_roads[int(rng.integers(len(local_roads)))]
        side = float(rng.choice([-1.0, 1.0]))
        offset = road.carriage / 2 - (1.1 if rng.random() < 0.8 else float(rng.uniform(1.4, 2.0)))
        across = road.centre + side * max(0.0, offset)
        along = float(rng.uniform(-2.0, w + 2.0))
        cx, cy = (across, along) if road.vertical else (along, across)
        car_px += _paint_car(sc, cx, cy, not road.vertical, allowed=(_M_ASPHALT, _M_MARKING))

    # Clutter on lawns, sidewalks and paving.
    clutter_px = 0
    attempts = 0
    while clutter_px < clutter_target and attempts < 300 + int(
        30 * clutter_target * sc.res**2 / 3.0
    ):
        attempts += 1
        cx, cy = rng.uniform(-1.0, w + 1.0, size=2)
        clutter_px += _paint_clutter(sc, float(cx), float(cy))

    # Trees: some along the sidewalks, the rest on lawns.
    tree_px = 0
    attempts = 0
    while tree_px < tree_target and attempts < 200 + int(20 * tree_target * sc.res**2 / 28.0):
        attempts += 1
        r = float(rng.uniform(1.6, 4.6))
        if rng.random() < 0.3 and local_roads:
            road = local_roads[int(rng.integers(len(local_roads)))]
            across = road.centre + float(rng.choice([-1.0, 1.0])) * (road.half - 0.3)
            along = float(rng.uniform(-2.0, w + 2.0))
            cx, cy = (across, along) if road.vertical else (along, across)
            r = min(r, 3.2)
        else:
            cx, cy = (float(v) for v in rng.uniform(-2.0, w + 2.0, size=2))
        tree_px += _paint_tree(sc, cx, cy, r)

    _ensure_all_classes(sc)


def _random_pixel_of(sc: _Scene, mask: np.ndarray) -> tuple[float, float] | None:
    """Centre (m) of a random pixel where ``mask`` holds, preferring pixels away from the edge."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    k = int(idx[int(sc.rng.integers(idx.size))])
    r, c = divmod(k, sc.size)
    return (c + 0.5) * sc.res, (r + 0.5) * sc.res


def _stamp(sc: _Scene, cls: int) -> None:
    """Last resort: a small square of ``cls`` on pixels of the currently most common class.

    Only pixels of the dominant class are overwritten, so no other class can disappear.
    """
    counts = np.bincount(sc.lab.ravel(), minlength=6)
    dominant = int(np.argmax(counts))
    where = _random_pixel_of(sc, sc.lab == dominant)
    if where is None:
        return
    half = max(1.5 * sc.res, min(1.0, sc.extent / 16))
    win = sc.window(where[0] - half, where[1] - half, where[0] + half, where[1] + half)
    if win is None:
        return
    rows, cols, _, _ = win
    mask = sc.lab[rows, cols] == dominant
    rng = sc.rng
    look = {
        _CLUTTER: (_M_CLUTTER, _CLUTTER_COLOURS[int(rng.integers(len(_CLUTTER_COLOURS)))], 1.5),
        _IMPERVIOUS: (_M_PAVING, _PAVING, 0.0),
        _BUILDING: (_M_ROOF_FLAT, _ROOF_COLOURS[int(rng.integers(len(_ROOF_COLOURS)))], 8.0),
        _LOW_VEG: (_M_GRASS, _GRASS, 0.0),
        _TREE: (_M_TREE, _TREE_COLOUR, 6.0),
        _CAR: (_M_CAR, _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], 1.5),
    }
    mat, colour, height = look[cls]
    sc.paint(rows, cols, mask, cls, mat, colour, height)


def _ensure_all_classes(sc: _Scene) -> None:
    """Guarantee every class appears (small tiles can miss the rare ones).

    First tries to place a natural object where it belongs (a car on asphalt, a tree or
    clutter on a lawn, a small building on free ground); if that keeps failing, stamps a
    small patch of the class over the most common class.
    """
    rng = sc.rng
    inner = np.zeros_like(sc.lab, dtype=bool)
    b = max(1, sc.size // 10)
    inner[b:-b, b:-b] = True
    for cls in (_BUILDING, _CAR, _CLUTTER, _TREE, _LOW_VEG, _IMPERVIOUS):
        for _ in range(30):
            if np.count_nonzero(sc.lab == cls):
                break
            if cls == _CAR:
                where = _random_pixel_of(sc, inner & (sc.mat == _M_ASPHALT))
                if where:
                    _paint_car(
                        sc, *where, bool(rng.random() < 0.5), allowed=(_M_ASPHALT, _M_MARKING)
                    )
            elif cls == _CLUTTER:
                where = _random_pixel_of(
                    sc, inner & np.isin(sc.mat, (_M_GRASS, _M_SIDEWALK, _M_PAVING))
                )
                if where:
                    _paint_clutter(sc, *where)
            elif cls == _TREE:
                where = _random_pixel_of(sc, inner & (sc.mat == _M_GRASS))
                if where:
                    _paint_tree(sc, *where, float(rng.uniform(1.5, 2.5)))
            elif cls == _BUILDING:
                where = _random_pixel_of(sc, inner & (sc.mat == _M_GRASS))
                if where:
                    half = float(rng.uniform(2.5, 4.0))
                    box = (where[0] - half, where[1] - half, where[0] + half, where[1] + half)
                    win = sc.window(*box)
                    if win is not None and (sc.mat[win[0], win[1]] == _M_GRASS).all():
                        k = int(rng.integers(len(_ROOF_COLOURS)))
                        _paint_flat(sc, box, _ROOF_COLOURS[k], float(rng.uniform(6.0, 12.0)))
            else:
                break
    for cls in (_BUILDING, _CAR, _CLUTTER, _TREE, _LOW_VEG, _IMPERVIOUS):
        if not np.count_nonzero(sc.lab == cls):
            _stamp(sc, cls)


# --------------------------------------------------------------------------------------------
# Rendering


def _cast_shadows(hgt: np.ndarray, res: float) -> np.ndarray:
    """Boolean shadow mask from heights above ground, for a sun in the south-south-west.

    Propagates a "shadow surface" row by row from south to north: each row takes the row to its
    south (shifted east by the accumulated drift), lowered by the sun's slope over one step.
    """
    n_rows, n_cols = hgt.shape
    surf = np.empty_like(hgt)
    surf[-1] = hgt[-1]
    acc = 0.0
    for i in range(n_rows - 2, -1, -1):
        prev_acc = acc
        acc += _SHADOW_COL_PER_ROW
        shift = int(acc) - int(prev_acc)
        drop = np.float32(res * math.hypot(1.0, shift) * _SUN_TAN_ELEVATION)
        src = surf[i + 1]
        if shift:
            row = np.empty_like(src)
            row[shift:] = src[:-shift]
            row[:shift] = 0.0
        else:
            row = src
        surf[i] = np.maximum(hgt[i], row - drop)
    return surf > hgt + np.float32(0.25)


def _blur3(img: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur over the first two axes, edges replicated."""
    p = np.pad(img, [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2), mode="edge")
    v = (p[:-2] + 2 * p[1:-1] + p[2:]) * np.float32(0.25)
    return (v[:, :-2] + 2 * v[:, 1:-1] + v[:, 2:]) * np.float32(0.25)


def _render(sc: _Scene) -> np.ndarray:
    """Turn the painted scene into a ``(4, H, W)`` uint8 R, G, B, IR image."""
    rng, n, res = sc.rng, sc.size, sc.res
    col = sc.col
    mat = sc.mat
    fine = _fractal_noise(rng, n, res, (0.25, 0.1))
    mid = _fractal_noise(rng, n, res, (1.5, 0.6))
    low = _fractal_noise(rng, n, res, (8.0, 3.0))
    grain = rng.standard_normal((n, n), dtype=np.float32)

    tex = np.ones((n, n), dtype=np.float32)
    grass = mat == _M_GRASS
    # Lawns: patchy, some dry areas drifting to yellow-brown (less near-infrared).
    dry = np.clip(0.5 * low + 0.2 * mid - 0.35, 0.0, 1.0)[..., None] * grass[..., None]
    col = col * (1 - dry) + _DRY_GRASS * dry
    tex = np.where(grass, 1 + 0.09 * low + 0.06 * mid + 0.05 * fine, tex)
    tree = mat == _M_TREE
    clumps = _fractal_noise(rng, n, res, (0.7, 0.3))
    tex = np.where(tree, 0.95 + 0.2 * clumps + 0.08 * fine, tex)
    paved = np.isin(mat, (_M_ASPHALT, _M_MARKING))
    tex = np.where(paved, 1 + 0.035 * mid + 0.045 * fine + 0.03 * low, tex)
    walk = np.isin(mat, (_M_SIDEWALK, _M_PAVING))
    if res <= 0.1:  # joints between paving stones
        ii, jj = np.indices((n, n), dtype=np.float32) * np.float32(res)
        joints = ((ii % 0.5) < res * 0.99) | ((jj % 0.3) < res * 0.99)
        tex = np.where(walk & joints, tex * 0.88, tex)
    tex = np.where(walk, tex * (1 + 0.04 * mid + 0.04 * fine), tex)
    roofs = np.isin(mat, (_M_ROOF_GABLE, _M_ROOF_FLAT, _M_ROOF_UNIT))
    tex = np.where(roofs, tex * (1 + 0.05 * fine + 0.04 * mid), tex)
    odd = np.isin(mat, (_M_CLUTTER, _M_HEAP))
    tex = np.where(odd, 1 + 0.12 * mid + 0.1 * fine, tex)
    tex = np.where(np.isin(mat, (_M_CAR, _M_GLASS)), 1 + 0.03 * fine, tex)

    img = col * (tex * sc.shade)[..., None]
    # Vegetation near-infrared follows its own texture (leaf density) more than its colour.
    veg = grass | tree
    img[..., 3] = np.where(veg, img[..., 3] * (1 + 0.06 * clumps), img[..., 3])

    shadow = _blur3(_cast_shadows(sc.hgt, res).astype(np.float32))
    factor = 1.0 - shadow[..., None] * (1.0 - _SHADOW_FACTOR)
    img = img * factor
    tint = rng.uniform(0.95, 1.05, size=4).astype(np.float32) * np.float32(rng.uniform(0.93, 1.07))
    img = _blur3(img * tint)
    img += grain[..., None] * np.float32(2.5) + rng.standard_normal(
        (n, n, 4), dtype=np.float32
    ) * np.float32(2.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(2, 0, 1).copy()


def _dsm(sc: _Scene, x0: float, y0: float, seed: int) -> np.ndarray:
    """Surface model: ~35 m ground with a gentle seed-wide slope, plus object heights."""
    g = np.random.default_rng([seed, 7919])
    gx, gy = g.uniform(-0.004, 0.004, size=2)
    n, res = sc.size, sc.res
    east = x0 + (np.arange(n, dtype=np.float64) + 0.5) * res - _ORIGIN_X
    north = y0 - (np.arange(n, dtype=np.float64) + 0.5) * res - _ORIGIN_Y
    ground = 35.0 + gx * east[None, :] + gy * north[:, None]
    ground = ground + 0.15 * _value_noise(sc.rng, n, 6.0 / res)
    grass_height = np.where(
        sc.mat == _M_GRASS, 0.08 * np.abs(_value_noise(sc.rng, n, 0.5 / res)), 0.0
    )
    noise = 0.03 * sc.rng.standard_normal((n, n))
    return (ground + sc.hgt + grass_height + noise).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Writing


def _write(
    path: Path,
    data: np.ndarray,
    *,
    transform: Affine,
    photometric: str | None,
    descriptions: Sequence[str],
) -> None:
    """Write a tiled DEFLATE GeoTIFF atomically (temporary name in the same folder, replaced)."""
    count, height, width = data.shape
    profile: dict = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": data.dtype.name,
        "crs": _CRS,
        "transform": transform,
        "compress": "deflate",
        "predictor": 2 if data.dtype == np.uint8 else 3,
        "interleave": "pixel",
    }
    if min(width, height) >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if photometric:
        profile["photometric"] = photometric
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _parse_tile(name: str) -> tuple[int, int]:
    """``"2_10"`` -> ``(2, 10)``."""
    try:
        r, c = (int(p) for p in name.split("_"))
    except ValueError as err:
        raise ValueError(f"tile names look like '2_10' (row_col), got {name!r}") from err
    return r, c


def _colour_labels(lab: np.ndarray) -> np.ndarray:
    """Class indices -> ``(3, H, W)`` ISPRS colour label."""
    return _INDEX_COLORS[lab].transpose(2, 0, 1).copy()


def _make_tile(
    seed: int, row: int, col: int, size: int, res: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (class indices HxW, RGBIR 4xHxW uint8, DSM HxW float32) for one tile."""
    rng = np.random.default_rng([seed, row, col])
    sc = _Scene(size, res, rng)
    _layout(sc)
    img = _render(sc)
    x0 = _ORIGIN_X + (col - 10) * size * res
    y0 = _ORIGIN_Y - (row - 2) * size * res
    dsm = _dsm(sc, x0, y0, seed)
    return sc.lab, img, dsm


def generate_isprs_sample(
    out: Path,
    *,
    seed: int = 0,
    size: int = 512,
    resolution: float = 0.05,
    train_tiles: Sequence[str] = ("2_10", "2_11", "2_12", "3_10", "3_11", "3_12"),
    test_tiles: Sequence[str] = ("2_13", "2_14"),
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a synthetic ISPRS-Potsdam-like sample in the real release's folder layout.

    Args:
        out: Root folder to create (``2_Ortho_RGB``, ``3_Ortho_IRRG``, ``4_Ortho_RGBIR``,
            ``1_DSM``, ``5_Labels_all`` and a ``README.txt`` are written under it).
        seed: Scene seed; the same seed and arguments give identical rasters.
        size: Tile side in pixels (square tiles).
        resolution: Ground sampling distance in metres per pixel.
        train_tiles: Tile names ``"row_col"`` meant for training (only recorded in README).
        test_tiles: Tile names meant for testing (only recorded in README).
        progress: Optional callback receiving a short message per tile written.

    Returns:
        ``out``.
    """
    out = Path(out)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    tiles = list(dict.fromkeys([*train_tiles, *test_tiles]))
    parsed = [_parse_tile(t) for t in tiles]
    folders = {
        k: out / k
        for k in ("1_DSM", "2_Ortho_RGB", "3_Ortho_IRRG", "4_Ortho_RGBIR", "5_Labels_all")
    }
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)

    for i, (name, (r, c)) in enumerate(zip(tiles, parsed, strict=True), start=1):
        lab, rgbir, dsm = _make_tile(seed, r, c, size, resolution)
        transform = Affine(
            resolution,
            0.0,
            _ORIGIN_X + (c - 10) * size * resolution,
            0.0,
            -resolution,
            _ORIGIN_Y - (r - 2) * size * resolution,
        )
        stem = f"top_potsdam_{r}_{c}"
        red, green, blue, nir = rgbir
        _write(
            folders["2_Ortho_RGB"] / f"{stem}_RGB.tif",
            rgbir[:3],
            transform=transform,
            photometric="RGB",
            descriptions=("red", "green", "blue"),
        )
        _write(
            folders["3_Ortho_IRRG"] / f"{stem}_IRRG.tif",
            np.stack([nir, red, green]),
            transform=transform,
            photometric="MINISBLACK",
            descriptions=("nir", "red", "green"),
        )
        _write(
            folders["4_Ortho_RGBIR"] / f"{stem}_RGBIR.tif",
            rgbir,
            transform=transform,
            photometric="MINISBLACK",
            descriptions=("red", "green", "blue", "nir"),
        )
        _write(
            folders["1_DSM"] / f"dsm_potsdam_{r:02d}_{c:02d}.tif",
            dsm[None],
            transform=transform,
            photometric=None,
            descriptions=("height",),
        )
        _write(
            folders["5_Labels_all"] / f"{stem}_label.tif",
            _colour_labels(lab),
            transform=transform,
            photometric="RGB",
            descriptions=("red", "green", "blue"),
        )
        if progress is not None:
            progress(f"synthetic Potsdam tile {name} written ({i}/{len(tiles)})")

    readme = (
        "Synthetic ISPRS Potsdam-like sample, written by\n"
        "geoidec.data.synthetic.generate_isprs_sample. It is NOT real data: the scenes are\n"
        "procedural (roads, buildings, lawns, trees, cars, clutter), but the files follow the\n"
        "layout, naming, band order and label colours of the real Potsdam release.\n\n"
        f"seed: {seed}\n"
        f"tile size: {size} x {size} px\n"
        f"resolution: {resolution} m/px (EPSG:32633, north-up)\n"
        f"train tiles: {', '.join(train_tiles)}\n"
        f"test tiles: {', '.join(test_tiles)}\n\n"
        "Folders: 1_DSM (float32 heights, m), 2_Ortho_RGB (R,G,B), 3_Ortho_IRRG (IR,R,G),\n"
        "4_Ortho_RGBIR (R,G,B,IR), 5_Labels_all (RGB colour labels).\n"
        "Label colours: impervious surfaces (255,255,255), building (0,0,255), low vegetation\n"
        "(0,255,255), tree (0,255,0), car (255,255,0), clutter/background (255,0,0).\n"
    )
    tmp = out / f".README.{os.getpid()}.tmp"
    tmp.write_text(readme, encoding="utf-8")
    os.replace(tmp, out / "README.txt")
    return out
