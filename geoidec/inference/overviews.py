"""Overviews of a streamed raster computed in numpy, band by band, for the COG conversion.

GDAL's COG driver computes a raster's overviews itself when the source has none: a second
full read of the scene, MODE resampling at about 14 ns per pixel, and a temporary overview
file compressed at the final DEFLATE level, then compressed again. That was the largest
CPU cost of a prediction outside the model (8,000^2 class map + confidence: 1.6 of 6.5 s).
Here each level is computed from the previous one, 2 x 2 cells at a time, in row bands of
:data:`BAND_ROWS` output rows (memory: one band), and written as a chain of external
overview files ``X.ovr``, ``X.ovr.ovr``, ... beside the temporary raster ``X``: GDAL opens
the first as ``X``'s first overview and each next as the overview of the one before. The
COG takes their tiles as they are (:mod:`geoidec.inference.cog_layout`: the levels are
compressed like the COG), or GDAL's COG driver (``OVERVIEWS=AUTO``) copies them instead of
computing its own.

The levels are GDAL's ``AUTO`` levels (halve, rounding down, until the raster fits in one
block: a 701 x 1,101 raster gets 350 x 550, 175 x 275 and 87 x 137); the resampling follows
GDAL's definitions with nodata left out:

- ``mode``: the most frequent valid value of each 2 x 2 cell (ties: the first of the tied
  values in row-major order within the cell); nodata when the cell has no valid pixel;
- ``average``: the mean of the valid values, rounded half up; nodata when none is valid.

The last row (column) of a level with an odd number of rows (columns) is left out of the
next level, where GDAL folds it into the last cell: overviews are for display, and this
changes at most their last row and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

__all__ = ["BAND_ROWS", "QUICK", "downsample", "overview_chain", "overview_sizes", "remove_chain"]

BAND_ROWS = 256
"""Output rows of one level computed at a time."""
QUICK: dict[str, Any] = {"compress": "zstd", "zstd_level": 1}
"""Creation options of level files read once by GDAL's COG driver: the fastest codec that
keeps them small."""


def overview_sizes(height: int, width: int, block: int) -> list[tuple[int, int]]:
    """``(height, width)`` of each overview level GDAL's COG driver makes with
    ``OVERVIEWS=AUTO``: halve (rounding down, at least 1) while the previous level exceeds
    ``block``."""
    sizes = []
    while max(height, width) > block:
        height, width = max(1, height // 2), max(1, width // 2)
        sizes.append((height, width))
    return sizes


def _cells(data: np.ndarray, nodata: int) -> tuple[np.ndarray, ...]:
    """The four pixels of each 2 x 2 cell of ``data`` (n, w), as contiguous arrays in the
    cell's row-major order: an odd last row or column is left out, a single row or column
    is paired with ``nodata``."""
    n, w = data.shape
    if n == 1 or w == 1:
        padded = np.full((max(n, 2), max(w, 2)), nodata, dtype=data.dtype)
        padded[:n, :w] = data
        data, n, w = padded, max(n, 2), max(w, 2)
    data = data[: n - n % 2, : w - w % 2]
    return tuple(np.ascontiguousarray(data[r::2, c::2]) for r in (0, 1) for c in (0, 1))


def _select(out: np.ndarray, value: np.ndarray, where: np.ndarray, tmp: np.ndarray) -> None:
    """``out[where] = value[where]`` without branching on each pixel (uint8 arrays, ``where``
    bool): ``out ^= (out ^ value) * where``. ``np.copyto(..., where=)`` took 8x longer."""
    np.bitwise_xor(out, value, out=tmp)
    np.multiply(tmp, where.view(np.uint8), out=tmp)
    np.bitwise_xor(out, tmp, out=out)


def _mode(data: np.ndarray, nodata: int) -> np.ndarray:
    a, b, c, d = cells = _cells(data, nodata)
    out, tmp = a.copy(), np.empty_like(a)
    if not any((cell == nodata).any() for cell in cells):
        # Every pixel valid (the usual band). A value seen twice wins unless an earlier
        # value of the cell is seen twice too, so: a if a repeats, else b if b repeats,
        # else c if c == d, else (all four differ) a.
        _select(out, c, c == d, tmp)
        _select(out, b, (b == c) | (b == d), tmp)
        _select(out, a, (a == b) | (a == c) | (a == d), tmp)
        return out
    counts = []
    for i, ci in enumerate(cells):
        valid = ci != nodata
        count = valid.astype(np.uint8)
        for j, cj in enumerate(cells):
            if j != i:
                count += (ci == cj) & valid
        counts.append(count)
    best = counts[0]
    for ci, count in zip(cells[1:], counts[1:], strict=True):
        _select(out, ci, count > best, tmp)
        best = np.maximum(best, count)
    return out  # no valid pixel: every count is 0 and out keeps cell 0, which is nodata


def _average(data: np.ndarray, nodata: int) -> np.ndarray:
    cells = _cells(data, nodata)
    if not any((c == nodata).any() for c in cells):
        # every pixel valid (the usual band): floor(sum / 4 + 0.5) == (sum + 2) >> 2
        total = cells[0].astype(np.uint16)
        for c in cells[1:]:
            total += c
        total += 2
        total >>= 2
        return total.astype(np.uint8)
    total = np.zeros(cells[0].shape, dtype=np.uint16)
    n = np.zeros(cells[0].shape, dtype=np.uint8)
    for c in cells:
        valid = c != nodata
        total += np.where(valid, c, 0).astype(np.uint16)
        n += valid
    mean = np.floor(total / np.maximum(n, 1) + 0.5).astype(np.uint8)
    mean[n == 0] = nodata
    return mean


def downsample(data: np.ndarray, resampling: str, nodata: int) -> np.ndarray:
    """One overview level of uint8 ``data`` (bands, n, w) or (n, w): 2 x 2 cells by
    ``resampling`` (``mode`` or ``average``, see the module docstring), nodata left out."""
    fn = {"mode": _mode, "average": _average}[resampling.lower()]
    if data.ndim == 2:
        return fn(data, nodata)
    return np.stack([fn(band, nodata) for band in data])


def overview_chain(path: Path, resampling: str, nodata: int, block: int,
                   start: int = 0, codec: dict[str, Any] | None = None) -> list[Path]:
    """Write the overview files of the GeoTIFF ``path`` (``path.ovr``, ``path.ovr.ovr``,
    ...; tiled ``block`` px, compressed with the creation options ``codec``, by default
    ZSTD level 1) and return them in order. Each level is read from the previous file in
    bands of :data:`BAND_ROWS` output rows; the first ``start`` levels exist already
    (written while the raster was,
    :class:`~geoidec.inference.overview_stream.OverviewStream`) and are kept."""
    path = Path(path)
    with rasterio.open(path) as src:
        sizes = overview_sizes(src.height, src.width, block)
        count = src.count
    written: list[Path] = []
    source = path
    for _ in range(start):
        source = source.with_name(source.name + ".ovr")
        written.append(source)
    try:
        for height, width in sizes[start:]:
            target = source.with_name(source.name + ".ovr")
            written.append(target)
            profile = {"driver": "GTiff", "height": height, "width": width, "count": count,
                       "dtype": "uint8", "nodata": nodata, "tiled": True, "blockxsize": block,
                       "blockysize": block, "bigtiff": "if_safer", **(codec or QUICK)}
            with rasterio.open(source) as src, rasterio.open(target, "w", **profile) as dst:
                for row in range(0, height, BAND_ROWS):
                    n = min(BAND_ROWS, height - row)
                    window = Window(0, 2 * row, src.width, min(2 * n, src.height - 2 * row))
                    dst.write(downsample(src.read(window=window), resampling, nodata),
                              window=Window(0, row, width, n))
            source = target
    except BaseException:
        remove_chain(path)
        raise
    return written


def remove_chain(path: Path) -> None:
    """Remove the overview files of ``path`` written by :func:`overview_chain`."""
    target = Path(path).with_name(Path(path).name + ".ovr")
    while target.exists():
        target.unlink()
        target.with_name(target.name + ".aux.xml").unlink(missing_ok=True)
        target = target.with_name(target.name + ".ovr")
