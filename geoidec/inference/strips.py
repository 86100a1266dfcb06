"""Bounded memory for wide scenes: the sliding-window predictor run over vertical strips.

:class:`~geoidec.inference.sliding.SlidingWindowPredictor` keeps a row band of ``tile`` rows
by the *scene width* (``K * tile * width`` floats plus temporaries), so its memory grows with
the width of the scene. :class:`StripPredictor` cuts the scene's window grid into vertical
strips of whole window columns, at most ``strip_width`` px wide, and runs the predictor on
each strip top to bottom; its memory is that of a ``strip_width``-wide scene whatever the
scene size.

The result is the same as one run over the whole scene (up to float rounding): the strips
use exactly the windows of the scene's own grid (:func:`~geoidec.data.tiling.grid_windows`
of a strip starting on a window column of the scene gives that strip's windows of the scene
grid), so only the columns covered by the windows of two neighbouring strips (the
``overlap``-wide zone between them) need both strips. There the left strip's weighted
probability sums and weight sums (:meth:`SlidingWindowPredictor.run_sums`) are written to an
anonymous temporary file while the left strip runs, and added to the right strip's when it
reaches the same rows::

    acc = acc_left + acc_right        wsum = wsum_left + wsum_right        p = acc / wsum

which is exactly the weighted average over all the windows covering the pixel. The carry
file holds ``(K + 1) * overlap * height`` float32 values per strip border, on disk, not in
memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window

from geoidec.data.tiling import grid_windows
from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.inference.window_batches import ReadFn

__all__ = ["StripPredictor", "axis_offsets"]


Chunk = tuple[int, int, np.ndarray, np.ndarray]
SumChunk = tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]


def axis_offsets(length: int, tile: int, stride: int) -> list[int]:
    """Window offsets along one axis of ``length`` px, as the predictor's grid has them."""
    return sorted({int(w.col_off) for w in grid_windows(min(length, tile), length, tile,
                                                        stride)})


class _Carry:
    """Row-addressable float32 store of ``(channels, width)`` per scene row, on disk."""

    def __init__(self, channels: int, width: int, folder: Path | None) -> None:
        self.shape = (channels, width)
        self.row_bytes = channels * width * 4
        self._file = tempfile.TemporaryFile(prefix=".geoidec-carry-", dir=folder)

    def write(self, row: int, data: np.ndarray) -> None:
        """Store rows ``[row, row + n)``: ``data`` (n, channels, width)."""
        buf = np.ascontiguousarray(data, dtype=np.float32)
        os.pwrite(self._file.fileno(), buf.tobytes(), row * self.row_bytes)

    def read(self, row: int, n: int) -> np.ndarray:
        """Rows ``[row, row + n)`` as (n, channels, width)."""
        raw = os.pread(self._file.fileno(), n * self.row_bytes, row * self.row_bytes)
        if len(raw) != n * self.row_bytes:
            raise RuntimeError(f"strip carry is missing rows {row}..{row + n}")
        return np.frombuffer(raw, dtype=np.float32).reshape(n, *self.shape)

    def close(self) -> None:
        self._file.close()


class _Shifted:
    """``read`` with window columns offset by ``x0`` (a strip's windows in scene
    coordinates), keeping the reader's ``read_into`` and ``channels`` when it has them."""

    def __init__(self, read: ReadFn, x0: int) -> None:
        self.read, self.x0 = read, x0
        if hasattr(read, "read_into"):
            self.read_into = self._read_into
            self.channels = read.channels  # type: ignore[attr-defined]

    def _scene(self, window: Window) -> Window:
        return Window(int(window.col_off) + self.x0, int(window.row_off), int(window.width),
                      int(window.height))

    def __call__(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        return self.read(self._scene(window))

    def _read_into(self, window: Window, out: np.ndarray, valid: np.ndarray) -> None:
        self.read.read_into(self._scene(window), out, valid)  # type: ignore[attr-defined]


class StripPredictor:
    """Run a :class:`SlidingWindowPredictor` strip by strip (see the module docstring).

    Args:
        predictor: the window predictor (tile, overlap, model, device).
        strip_width: widest strip in pixels (at least enough window columns that no pixel
            is covered by three strips).
        carry_dir: folder of the anonymous carry files (default: the system's temp dir).
    """

    def __init__(self, predictor: SlidingWindowPredictor, strip_width: int = 2048,
                 carry_dir: Path | None = None) -> None:
        self.predictor = predictor
        self.strip_width = strip_width
        self.carry_dir = carry_dir

    def strips(self, width: int) -> list[list[int]]:
        """The scene's window column offsets grouped into strips."""
        t = self.predictor.tile
        stride = t - self.predictor.overlap
        offsets = axis_offsets(width, t, stride)
        # Enough windows per strip that x0 of strip j+2 >= x1 of strip j (zones disjoint).
        least = -(-t // stride) + 1
        groups: list[list[int]] = [[]]
        for off in offsets:
            group = groups[-1]
            if group and off + t - group[0] > self.strip_width and len(group) >= least:
                groups.append([off])
            else:
                group.append(off)
        if len(groups) > 1 and len(groups[-1]) < least:
            tail = groups.pop()
            groups[-1].extend(tail)
        return groups

    def run(self, read: ReadFn, height: int, width: int,
            progress: Callable[[int, int], None] | None = None,
            rows: tuple[int, int] | None = None) -> Iterator[Chunk]:
        """Predict a scene; yield ``(row, col, probs (K, n, w), valid (n, w))`` chunks that
        cover the scene (or its rows ``rows=(y0, y1)``, see
        :meth:`SlidingWindowPredictor.run`) exactly once: rows top to bottom within a strip,
        strips left to right."""
        for row, col, acc, wsum, valid in self.run_sums(read, height, width, progress, rows):
            yield row, col, (acc / wsum).cpu().numpy(), valid.cpu().numpy().copy()

    def run_sums(self, read: ReadFn, height: int, width: int,
                 progress: Callable[[int, int], None] | None = None,
                 rows: tuple[int, int] | None = None) -> Iterator[SumChunk]:
        """:meth:`run` before the division: ``(row, col, acc, wsum, valid)`` chunks as
        :meth:`SlidingWindowPredictor.run_sums` yields them (views on the predictor's
        device, valid until the next chunk is requested)."""
        groups = self.strips(width)
        pred = self.predictor
        if len(groups) == 1:
            for row, acc, wsum, valid in pred.run_sums(read, height, width, progress,
                                                       rows=rows):
                yield row, 0, acc, wsum, valid
            return
        t, k = pred.tile, pred.num_classes
        row_offsets = axis_offsets(height, t, t - pred.overlap)
        if rows is not None:  # the window rows this share runs (progress totals)
            row_offsets = [r for r in row_offsets if r < rows[1] and r + t > rows[0]]
        bounds = [(g[0], g[-1] + t) for g in groups]
        totals = [len(row_offsets) * len(g) for g in groups]
        grand = sum(totals)
        carry: _Carry | None = None
        try:
            for j, (x0, x1) in enumerate(bounds):
                last = j == len(groups) - 1
                left = (x0, bounds[j - 1][1]) if j > 0 else None  # zone with strip j-1
                right = None if last else (bounds[j + 1][0], x1)  # zone with strip j+1
                emit = (x1 if last else bounds[j + 1][0]) - x0
                nxt = None if right is None else _Carry(k + 1, right[1] - right[0],
                                                         self.carry_dir)
                done_before = sum(totals[:j])

                def sub_progress(done: int, total: int, base: int = done_before) -> None:
                    if progress is not None:
                        progress(base + done, grand)

                try:
                    for row, acc, wsum, valid in pred.run_sums(
                            _Shifted(read, x0), height, x1 - x0, sub_progress, rows=rows):
                        if right is not None and nxt is not None:
                            a, b = right[0] - x0, right[1] - x0
                            block = torch.cat([acc[:, :, a:b], wsum[None, :, a:b]])
                            nxt.write(row, np.moveaxis(block.cpu().numpy(), 0, 1))
                        if left is not None and carry is not None:
                            zw = left[1] - left[0]
                            prev = np.moveaxis(carry.read(row, acc.shape[1]), 1, 0)
                            # carried sums come back read-only (np.frombuffer); torch needs
                            # a writable array, copied only when it is not one already
                            prev_t = torch.from_numpy(np.require(prev, requirements=["C", "W"]))
                            prev_t = prev_t.to(acc.device)
                            acc[:, :, :zw] += prev_t[:k]  # the band is discarded after use
                            wsum[:, :zw] += prev_t[k]
                        yield row, x0, acc[:, :, :emit], wsum[:, :emit], valid[:, :emit]
                finally:
                    if carry is not None:
                        carry.close()
                    carry = nxt
        finally:
            if carry is not None:
                carry.close()
