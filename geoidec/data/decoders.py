"""Label decoders: turn the raw bands of a label raster into class indices (0 background,
255 ignore), for value rasters (:class:`ValueDecoder`) and RGB colour labels
(:class:`ColorDecoder`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from geoidec.constants import BACKGROUND, IGNORE_INDEX


class LabelDecoder(Protocol):
    """Turns the raw label bands of a window into class indices (0 background, 255 ignore)."""

    @property
    def bands(self) -> int:
        """Number of label bands read (1 for value rasters, 3 for RGB colour labels)."""
        ...

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` (bands, h, w) -> uint8 (h, w)."""
        ...


@dataclass(frozen=True)
class ValueDecoder:
    """Label rasters holding class values: listed values map to 1..K, ignore values to 255,
    and every other value to background (0)."""

    values: tuple[float, ...]
    ignore_values: tuple[float, ...] = ()
    bands: int = 1

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        band = raw[0]
        out = np.full(band.shape, BACKGROUND, dtype=np.uint8)
        for index, value in enumerate(self.values, start=1):
            out[band == value] = index
        for value in self.ignore_values:
            out[band == value] = IGNORE_INDEX
        if np.issubdtype(band.dtype, np.floating):
            out[~np.isfinite(band)] = IGNORE_INDEX
        return out


@dataclass(frozen=True)
class ColorDecoder:
    """RGB colour labels (ISPRS): each listed colour is a class index; any other colour
    (the black boundary of the "noBoundary" labels, stray colours) becomes 255 (ignore)."""

    colors: Mapping[tuple[int, int, int], int]
    bands: int = 3

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        rgb = raw[:3].astype(np.uint32)
        packed = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
        out = np.full(packed.shape, IGNORE_INDEX, dtype=np.uint8)
        for (r, g, b), index in self.colors.items():
            out[packed == ((r << 16) | (g << 8) | b)] = index
        return out
