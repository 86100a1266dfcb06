"""The painted scene: its grids, the class indices, materials and base colours, and value noise."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rasterio.crs import CRS

# Internal class indices (geoidec convention: 0 = clutter/background, then the evaluation order
# of the ISPRS reader, whose colours the labels are written in: synthetic/isprs.py).
_CLUTTER, _IMPERVIOUS, _BUILDING, _LOW_VEG, _TREE, _CAR = 0, 1, 2, 3, 4, 5

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
