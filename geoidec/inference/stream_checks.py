"""Checks of what a :class:`~geoidec.inference.raster_stream.RasterStream` is given: its size,
format and resampling, and each chunk's labels (uint8, or integers within 0..255)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["as_uint8", "check_arguments"]


def as_uint8(labels: np.ndarray, row_start: int, width: int) -> np.ndarray:
    """``labels`` (n_rows > 0, ``width``) as uint8: any integer dtype with values in 0..255
    is cast; ``ValueError`` naming ``row_start`` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != width or labels.shape[0] == 0:
        raise ValueError(
            f"band at row {row_start} has shape {labels.shape}, expected (n_rows > 0, {width})"
        )
    if labels.dtype == np.uint8:
        return labels
    if labels.dtype.kind not in "iub":
        raise ValueError(f"band at row {row_start} has non-integer dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"band at row {row_start} has labels outside 0..255")
    return labels.astype(np.uint8)


def check_arguments(height: int, width: int, fmt: str, overview_resampling: str,
                    descriptions: Sequence[str] | None, count: int) -> None:
    """A :class:`RasterStream`'s size, format, resampling and band descriptions."""
    if height <= 0 or width <= 0:
        raise ValueError(f"raster size must be positive, got {height}x{width}")
    if fmt.upper() not in ("COG", "PNG"):
        raise ValueError(f"fmt must be COG or PNG, not {fmt}")
    if overview_resampling.lower() not in ("nearest", "mode", "average"):
        raise ValueError(
            f"overview_resampling must be nearest, mode or average, not {overview_resampling}"
        )
    if descriptions is not None and len(descriptions) != count:
        raise ValueError(f"{len(descriptions)} descriptions for {count} band(s)")
