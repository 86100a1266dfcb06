"""Per-scene class content for the chip filter: :class:`ClassGrid`, cumulative class counts per
block of a scene's label, built once by streaming the label raster in row bands (memory bounded
by one band), so the pixels of any class in any window are a few lookups."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import Scene
from geoidec.data.decoders import LabelDecoder
from geoidec.data.scene_reader import SceneReader

BLOCK = 16
#: Scenes smaller than this many pixels get 32 px cells (VOC/ADE: thousands of small images).
SMALL_SCENE = 1024 * 1024


@dataclass
class ClassGrid:
    """Cumulative class counts per ``block`` x ``block`` cell of one scene's label.

    Only the classes present in the scene are stored (``present``, dataset indices; the
    last row counts ignored/invalid pixels, including the area outside the raster in the
    last partial cells). ``cum[k, i, j]`` counts pixels of ``present[k]`` in the cells above
    and left of cell (i, j), exclusive.
    """

    cum: np.ndarray
    present: np.ndarray
    num_classes: int
    block: int
    height: int
    width: int
    scene: Scene | None = None
    decoder: LabelDecoder | None = None

    def _expand(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.num_classes + 1, dtype=np.int64)
        out[self.present] = values
        return out

    def totals(self) -> np.ndarray:
        """Pixel counts per class over the whole scene (last entry: ignored)."""
        return self._expand(self.cum[:, -1, -1])

    def cell_counts(self, index: int) -> np.ndarray:
        """Pixels of class ``index`` (dataset index) in every cell, ``(rows, cols)`` int64."""
        rows, cols = self.cum.shape[1] - 1, self.cum.shape[2] - 1
        where = np.flatnonzero(self.present == index)
        if where.size == 0:
            return np.zeros((rows, cols), dtype=np.int64)
        c = self.cum[where[0]].astype(np.int64)
        return c[1:, 1:] - c[:-1, 1:] - c[1:, :-1] + c[:-1, :-1]

    def counts(self, window: Window, inner: bool = True) -> np.ndarray:
        """Pixel counts per class (dataset index; last entry: ignored) in the cells fully
        inside the window (``inner``) or in every cell the window touches."""
        b = self.block
        rows, cols = self.cum.shape[1] - 1, self.cum.shape[2] - 1
        start_r, stop_r = window.row_off / b, (window.row_off + window.height) / b
        start_c, stop_c = window.col_off / b, (window.col_off + window.width) / b
        if inner:
            r0, r1 = math.ceil(start_r), math.floor(stop_r)
            c0, c1 = math.ceil(start_c), math.floor(stop_c)
        else:
            r0, r1 = math.floor(start_r), math.ceil(stop_r)
            c0, c1 = math.floor(start_c), math.ceil(stop_c)
        r0, r1 = min(max(r0, 0), rows), min(max(r1, 0), rows)
        c0, c1 = min(max(c0, 0), cols), min(max(c1, 0), cols)
        c = self.cum
        if r1 <= r0 or c1 <= c0:
            return np.zeros(self.num_classes + 1, dtype=np.int64)
        return self._expand(c[:, r1, c1] - c[:, r0, c1] - c[:, r1, c0] + c[:, r0, c0])


def build_class_grid(
    scene: Scene, decoder: LabelDecoder, num_classes: int, block: int | None = None,
    band_rows: int = 1024,
) -> ClassGrid:
    """Stream a scene's label in row bands into a :class:`ClassGrid` (``num_classes``
    counts background; the extra last bin counts ignored pixels)."""
    bins = num_classes + 1
    with SceneReader(scene, decoder) as reader:
        h, w = reader.height, reader.width
        block = block or (32 if h * w < SMALL_SCENE else BLOCK)
        band_rows = max(block, band_rows - band_rows % block)
        gh, gw = -(-h // block), -(-w // block)
        grid = np.zeros((gh, gw, bins), dtype=np.int64)
        for row in range(0, h, band_rows):
            n = -(-min(band_rows, h - row) // block) * block
            _, label, _ = reader.read(Window(0, row, gw * block, n))
            flat = np.minimum(np.where(label == IGNORE_INDEX, num_classes, label), num_classes)
            cell = (np.arange(n)[:, None] // block) * gw + np.arange(gw * block)[None] // block
            counts = np.bincount((cell * bins + flat).ravel(), minlength=(n // block) * gw * bins)
            grid[row // block: row // block + n // block] = counts.reshape(-1, gw, bins)
    present = np.flatnonzero(grid.sum(axis=(0, 1)))
    if present.size == 0 or present[-1] != num_classes:
        present = np.append(present, num_classes)
    cum = np.zeros((present.size, gh + 1, gw + 1), dtype=np.int32)
    cum[:, 1:, 1:] = grid[:, :, present].transpose(2, 0, 1).cumsum(axis=1).cumsum(axis=2)
    return ClassGrid(cum=cum, present=present, num_classes=num_classes, block=block, height=h,
                     width=w, scene=scene, decoder=decoder)
