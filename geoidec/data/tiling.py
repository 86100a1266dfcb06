"""Window layouts over a raster in pixel space, built on torchgeo's samplers.

This is the one module of geoidec that uses torchgeo samplers. Scenes are read with
rasterio windows in *pixel* coordinates, so rasters without a CRS (ISPRS Vaihingen tiles)
work, and co-registered image/label pairs are read window-for-window. To reuse torchgeo's
samplers we give them a :class:`PixelGeoDataset`: a GeoDataset whose spatial index is a
single box ``(0, 0, width, height)`` in pixel units (resolution 1, no CRS). A sampled
query ``[x0:x1, y0:y1, t0:t1]`` then maps directly to the rasterio window
``Window(col_off=x0, row_off=y0, width=x1 - x0, height=y1 - y0)`` (x is the column, y
the row; rows grow downwards, which the samplers do not care about).

Rasters smaller than the window size in a dimension get windows at offset 0 that overhang
that dimension: the reader pads them (images with zeros and ``valid=False``, labels with
``IGNORE_INDEX``), never with a class index.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import shapely
import torch
from geopandas import GeoDataFrame
from rasterio.windows import Window
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

__all__ = ["PixelGeoDataset", "grid_windows", "random_windows"]


class PixelGeoDataset(GeoDataset):
    """A GeoDataset covering one raster in pixel space, used only to drive samplers.

    The spatial index holds one box ``(0, 0, width, height)`` with resolution ``(1, 1)``,
    no CRS and an unbounded datetime interval. Indexing returns the query itself; reading
    pixels is done elsewhere with rasterio windows.
    """

    def __init__(self, height: int, width: int) -> None:
        """Create the index for a ``height`` x ``width`` pixel raster.

        Args:
            height: number of rows (> 0).
            width: number of columns (> 0).
        """
        if height <= 0 or width <= 0:
            raise ValueError(f"raster size must be positive, got {height}x{width}")
        interval = pd.Interval(pd.Timestamp.min, pd.Timestamp.max, closed="both")
        index = pd.IntervalIndex([interval], name="datetime")
        self.index = GeoDataFrame(
            {"height": [height], "width": [width]},
            index=index,
            geometry=[shapely.box(0, 0, width, height)],
            crs=None,
        )
        self._res = (1.0, 1.0)

    def __getitem__(self, query: GeoSlice) -> dict[str, Any]:
        """Return ``{'bounds': query}``; the caller turns it into a rasterio window."""
        return {"bounds": query}


def _query_offsets(query: tuple[slice, ...]) -> tuple[int, int]:
    """Return ``(row_off, col_off)`` of a sampler query ``[x, y, t]`` in pixel units."""
    xs, ys = query[0], query[1]
    return int(round(ys.start)), int(round(xs.start))


def _check_size(height: int, width: int, size: int) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"raster size must be positive, got {height}x{width}")
    if size <= 0:
        raise ValueError(f"window size must be > 0, got {size}")


def grid_windows(height: int, width: int, size: int, stride: int) -> list[Window]:
    """Cover a raster with ``size`` x ``size`` windows on a regular grid.

    Uses torchgeo's ``GridGeoSampler``. Its last chip in a row or column may overhang the
    raster edge; such windows are shifted back so they end exactly at the edge (so no
    padding and no padding artefacts), then duplicates are dropped. If the raster is
    smaller than ``size`` in a dimension, that dimension gets a single window at offset 0
    of the full ``size``, overhanging the raster: the reader must pad it.

    Args:
        height: raster rows.
        width: raster columns.
        size: window side in pixels.
        stride: step between window origins, ``0 < stride <= size``.

    Returns:
        Windows sorted row-major (by ``row_off``, then ``col_off``), all of size ``size``.
    """
    _check_size(height, width, size)
    if not 0 < stride <= size:
        raise ValueError(f"stride must satisfy 0 < stride <= size ({size}), got {stride}")
    # A box at least one window wide in each dimension, so the sampler never skips it.
    dataset = PixelGeoDataset(max(height, size), max(width, size))
    sampler = GridGeoSampler(dataset, size=size, stride=stride)
    offsets: set[tuple[int, int]] = set()
    for query in sampler:
        row, col = _query_offsets(query)
        row = max(0, min(row, height - size))
        col = max(0, min(col, width - size))
        offsets.add((row, col))
    return [Window(col, row, size, size) for row, col in sorted(offsets)]


def random_windows(
    height: int, width: int, size: int, count: int, generator: torch.Generator
) -> list[Window]:
    """Draw ``count`` random ``size`` x ``size`` windows inside a raster.

    Uses torchgeo's ``RandomGeoSampler`` with ``generator`` for the offsets, so the result
    is a deterministic function of the generator state. Every offset from 0 to
    ``dim - size`` inclusive is equally likely. The sampler's scene choice draws from the
    global torch RNG (``torch.multinomial`` without a generator); with a single box the
    choice is fixed, and the global RNG state is saved and restored around it so callers'
    random streams are not disturbed. In a dimension where the raster is smaller than
    ``size`` the window is at offset 0 and overhangs: the reader pads labels with ignore.

    Args:
        height: raster rows.
        width: raster columns.
        size: window side in pixels.
        count: number of windows (>= 0).
        generator: torch generator driving the offsets.

    Returns:
        ``count`` windows (possibly overlapping or repeated), in sampling order.
    """
    _check_size(height, width, size)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return []
    # torchgeo draws offset = int(u * (box - size)) with u in [0, 1): a box one pixel
    # larger than the raster makes every offset 0..dim-size reachable, uniformly.
    dataset = PixelGeoDataset(max(height, size) + 1, max(width, size) + 1)
    sampler = RandomGeoSampler(dataset, size=size, length=count, generator=generator)
    windows = []
    with torch.random.fork_rng(devices=[]):
        for query in sampler:
            row, col = _query_offsets(query)
            row = max(0, min(row, height - size))
            col = max(0, min(col, width - size))
            windows.append(Window(col, row, size, size))
    return windows
