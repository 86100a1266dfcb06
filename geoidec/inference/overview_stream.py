"""Overviews computed while a raster is written, not in a second pass over the scene.

:func:`~geoidec.inference.overviews.overview_chain` reads a finished temporary raster back
to compute its overview levels: after the last window, on the critical path of every
prediction (0.6 of 2.1 s of an 8,000^2 ResNet-101 prediction on an H200). An
:class:`OverviewStream` instead downsamples each chunk as it is written and writes the result
into the same chain of ``.ovr`` files, level after level, so the work runs beside the
prediction and the finished raster is never read again for its overviews.

A chunk feeds level ``L`` exactly when its 2 x 2 cells at that level are whole inside it: its
row and column are even at level ``L - 1`` and its height and width are even or end on the
level's last row or column (whose odd remainder the chain leaves out as well). Row bands of
the sliding-window predictor (``tile - overlap`` rows) and strips starting on window
columns qualify for several levels. The first level a chunk cannot feed, and every level
after it, are computed at the end by the chain from the last complete level: the result is
the same as the chain's from the start, pixel for pixel (each level is the same 2 x 2
reduction of the level before).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from geoidec.inference.block_rows import BlockRows
from geoidec.inference.overviews import QUICK, downsample, overview_sizes

__all__ = ["OverviewStream"]


class OverviewStream:
    """Overview levels of the raster ``path`` (``height`` x ``width``, ``count`` uint8 bands)
    fed chunk by chunk with :meth:`add`; :meth:`close` returns how many levels are complete
    (written as ``path.ovr``, ``path.ovr.ovr``, ...; the chain computes the rest).

    Args:
        path: the temporary raster the levels belong to.
        height, width, count: its size and band count.
        resampling: ``mode`` or ``average`` (see :mod:`geoidec.inference.overviews`).
        nodata: the value left out of the reductions.
        block: tile size of the level files, and the size under which no level is made.
        codec: creation options of the level files (compression; default
            :data:`~geoidec.inference.overviews.QUICK`).
    """

    def __init__(self, path: Path, height: int, width: int, count: int, resampling: str,
                 nodata: int, block: int, codec: dict[str, Any] | None = None) -> None:
        self.resampling, self.nodata = resampling.lower(), nodata
        self.sizes = [(height, width), *overview_sizes(height, width, block)]
        # a level 1 px tall or wide pads its cells with nodata: left to the chain
        self.streamable = next((i for i, (h, w) in enumerate(self.sizes) if min(h, w) < 2),
                               len(self.sizes) - 1)
        self._files: list[rasterio.io.DatasetWriter] = []
        self._rows: list[BlockRows] = []  # each level's writes cut at its block rows
        target = Path(path)
        for level in range(1, self.streamable + 1):
            target = target.with_name(target.name + ".ovr")
            h, w = self.sizes[level]
            with warnings.catch_warnings():  # GDAL georeferences .ovr levels by their base
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._files.append(rasterio.open(
                    target, "w", driver="GTiff", height=h, width=w, count=count,
                    dtype="uint8", nodata=nodata, tiled=True, blockxsize=block,
                    blockysize=block, bigtiff="if_safer", **(codec or QUICK)))
            self._rows.append(BlockRows(self._files[-1], block, h))

    def add(self, row: int, col: int, data: np.ndarray) -> None:
        """Feed the chunk ``data`` (count, n, w) written at ``row``, ``col`` of the raster."""
        for level in range(1, self.streamable + 1):
            height, width = self.sizes[level - 1]
            n, w = data.shape[1:]
            whole = (row % 2 == 0 and col % 2 == 0 and (n % 2 == 0 or row + n == height)
                     and (w % 2 == 0 or col + w == width))
            if not whole:
                self._stop(level)
                return
            data = data[:, : n - n % 2, : w - w % 2]
            row, col = row // 2, col // 2
            if data.shape[1] == 0 or data.shape[2] == 0:
                return
            data = downsample(data, self.resampling, self.nodata)
            self._rows[level - 1].write(row, col, data)

    def _stop(self, level: int) -> None:
        """Levels from ``level`` on are left to the chain: close and forget their files."""
        for dst in self._files[level - 1:]:
            dst.close()
        del self._files[level - 1:], self._rows[level - 1:]
        self.streamable = level - 1

    def close(self) -> int:
        """Close the level files; the number of complete levels (written from every chunk;
        the files of the others are closed and left for the chain to overwrite)."""
        for rows, dst in zip(self._rows, self._files, strict=True):
            rows.flush()
            dst.close()
        self._files, self._rows = [], []
        return self.streamable
