"""The sliding-window predictor's windows over a scene and the cosine weight of each window.

A scene of ``height`` x ``width`` pixels is covered by ``tile`` x ``tile`` windows from
:func:`geoidec.data.tiling.grid_windows` (stride ``tile - overlap``; edge windows are
shifted inside the scene, never padded, unless the scene is smaller than the tile). Each
window's class probabilities are multiplied by :func:`blend_weights` before they are summed,
so neighbouring windows fade into each other over their ``overlap``.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio.windows import Window

from geoidec.data.tiling import grid_windows

__all__ = ["WEIGHT_FLOOR", "blend_weights", "scene_windows"]

WEIGHT_FLOOR = 1e-3
"""Smallest blending weight, so pixels seen by one window only near its border still count."""


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """Return the ``(size, size)`` float32 blending window.

    Along each axis the weight rises over the first ``overlap`` pixels as
    ``w(i) = (1 - cos(pi * (i + 0.5) / overlap)) / 2``, is 1 in the interior and falls
    symmetrically over the last ``overlap`` pixels; the 2-D window is the outer product of
    the two axes, floored at :data:`WEIGHT_FLOOR` so it is strictly positive. Two windows
    offset by ``size - overlap`` have ramps summing to 1 (before the floor) in their
    overlap, so blending is a smooth partition of unity there.

    Args:
        size: window side in pixels (> 0).
        overlap: ramp length in pixels, ``0 <= overlap <= size`` (0 gives all ones; above
            ``size // 2`` the two ramps of an axis multiply where they meet).

    Returns:
        Array of shape ``(size, size)``, dtype float32, values in ``[WEIGHT_FLOOR, 1]``.
    """
    if size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    if not 0 <= overlap <= size:
        raise ValueError(f"overlap must satisfy 0 <= overlap <= size ({size}), got {overlap}")
    axis = np.ones(size, dtype=np.float64)
    if overlap > 0:
        i = np.arange(overlap, dtype=np.float64)
        ramp = 0.5 * (1.0 - np.cos(math.pi * (i + 0.5) / overlap))
        axis[:overlap] *= ramp
        axis[size - overlap :] *= ramp[::-1]
    weights = np.maximum(np.outer(axis, axis), WEIGHT_FLOOR)
    return weights.astype(np.float32)


def scene_windows(height: int, width: int, tile: int, overlap: int,
                  rows: tuple[int, int] | None = None) -> list[Window]:
    """Windows of a ``height`` x ``width`` scene in processing order (row-major); with
    ``rows=(y0, y1)`` only those that cover a row of ``[y0, y1)``."""
    windows = grid_windows(height, width, tile, tile - overlap)
    if rows is None:
        return windows
    y0, y1 = rows
    return [w for w in windows if int(w.row_off) < y1 and int(w.row_off) + tile > y0]
