"""Bounded-memory sliding-window prediction with cosine blending: the predictor loop.

A scene is covered by the windows of :func:`~geoidec.inference.window_grid.scene_windows`,
processed row by row of windows in batches. Each window's class probabilities are multiplied
by :func:`~geoidec.inference.window_grid.blend_weights` and accumulated, together with the
weights, into a :class:`~geoidec.inference.row_band.RowBand` of ``tile`` rows by the scene
width. As soon as rows can no longer be touched by a later window they are normalised by the
summed weights and yielded, then the band slides down. Memory is therefore
``O(K * tile * width)``, independent of the height.

Reading runs in a background thread that prefetches the next batch
(:class:`~geoidec.inference.window_batches.WindowBatches`) while the model works on the
current one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing

import numpy as np
import torch
from rasterio.windows import Window

from geoidec.inference.row_band import RowBand, SumBand
from geoidec.inference.window_batches import Batch, ReadFn, WindowBatches
from geoidec.inference.window_grid import blend_weights, scene_windows

__all__ = ["SlidingWindowPredictor"]


class SlidingWindowPredictor:
    """Predict a large scene window by window, yielding blended probability row bands.

    Args:
        predict: maps a float32 batch ``(B, C, tile, tile)`` on ``device`` to per-class
            probabilities ``(B, K, tile, tile)`` (the caller applies softmax). It is called
            under ``torch.no_grad()``.
        num_classes: ``K``.
        tile: window side in pixels.
        overlap: pixels shared by neighbouring windows (``0 <= overlap < tile``); also the
            length of the cosine ramp.
        batch_size: windows per ``predict`` call.
        device: where batches and the accumulator live.
        readers: threads reading the windows of a batch in parallel (``read`` must then be
            thread-safe); the next batch is read while the model works on this one.
    """

    def __init__(
        self,
        predict: Callable[[torch.Tensor], torch.Tensor],
        *,
        num_classes: int,
        tile: int,
        overlap: int,
        batch_size: int = 4,
        device: str | torch.device = "cpu",
        readers: int = 1,
    ) -> None:
        if num_classes <= 0:
            raise ValueError(f"num_classes must be > 0, got {num_classes}")
        if tile <= 0:
            raise ValueError(f"tile must be > 0, got {tile}")
        if not 0 <= overlap < tile:
            raise ValueError(f"overlap must satisfy 0 <= overlap < tile ({tile}), got {overlap}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.predict = predict
        self.num_classes = num_classes
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.readers = max(1, int(readers))
        self._weights = torch.from_numpy(blend_weights(tile, overlap)).to(self.device)
        self._batches = WindowBatches(tile, batch_size, self.device)

    def windows(self, height: int, width: int,
                rows: tuple[int, int] | None = None) -> list[Window]:
        """Windows used for a ``height`` x ``width`` scene, in processing order; with
        ``rows=(y0, y1)`` only those that cover a row of ``[y0, y1)``."""
        return scene_windows(height, width, self.tile, self.overlap, rows)

    def run(
        self,
        read: ReadFn,
        height: int,
        width: int,
        progress: Callable[[int, int], None] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Predict a scene and yield finished row bands top to bottom.

        Args:
            read: ``read(window) -> (image (C, tile, tile) float32 normalised,
                valid (tile, tile) bool)``. Windows are always ``tile`` x ``tile``; for a
                scene smaller than the tile they overhang it and the reader pads them
                (``valid`` False on the padding).
            height: scene rows.
            width: scene columns.
            progress: called as ``progress(done_windows, total_windows)`` after each batch.
            rows: only the scene rows ``[y0, y1)`` (one rank's share of a scene): the
                windows covering any of them are run, and only those rows are yielded.
                Every window that covers a yielded row is run, in the scene's order, so the
                rows are the same, bit for bit, as those of a run over the whole scene.

        Yields:
            ``(row_start, probs, valid)``: ``probs`` ``(K, n, width)`` float32, the
            weighted average of the overlapping windows' probabilities; ``valid``
            ``(n, width)`` bool. ``valid`` is the AND of the masks of every window covering
            the pixel: inside the scene a reader's mask does not depend on the window, so
            this equals any other choice there, and padding never leaks in. The bands
            cover ``[0, height)`` exactly once, in order, each at most ``tile`` rows high.
        """
        for row, acc, wsum, valid in self.run_sums(read, height, width, progress, rows):
            yield row, (acc / wsum).cpu().numpy(), valid.cpu().numpy().copy()

    def run_sums(
        self,
        read: ReadFn,
        height: int,
        width: int,
        progress: Callable[[int, int], None] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> Iterator[SumBand]:
        """:meth:`run` before the division: yields ``(row_start, acc (K, n, width),
        wsum (n, width), valid (n, width))`` on the predictor's device, the weighted sums
        of the windows' probabilities and the sums of their weights (``acc / wsum`` is
        :meth:`run`'s ``probs``). The tensors are views of the accumulator, valid until
        the next band is requested: use or copy them first. A consumer that needs only
        the class and its probability divides one value per pixel instead of ``K``."""
        y0, y1 = (0, height) if rows is None else (max(0, rows[0]), min(height, rows[1]))
        windows = self.windows(height, width, None if rows is None else (y0, y1))
        total = len(windows)
        # scene row of the band's first row (rows above y0 are run but not yielded)
        top = int(windows[0].row_off) if windows else y0
        band = RowBand(self._weights, self.num_classes, width, self.device, top, (y0, y1))
        done = 0
        with closing(self._predicted(read, windows)) as predicted:
            for batch, probs, v in predicted:
                for i, window in enumerate(batch):
                    r0, c0 = int(window.row_off), int(window.col_off)
                    if r0 > band.top:
                        # Windows come row-major: nothing later touches rows above r0.
                        yield from band.release(min(r0, height))
                    band.add(probs[i], v[i], r0, c0)
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        while band.top < min(y1, height):
            yield from band.release(min(band.top + self.tile, height))

    def _predicted(self, read: ReadFn, windows: list[Window]
                   ) -> Generator[tuple[list[Window], torch.Tensor, torch.Tensor], None, None]:
        """Yield ``(windows, probs (B, K, tile, tile), valid (B, tile, tile))`` per batch, on
        the device; the next batch is read in a background thread meanwhile."""
        t, k = self.tile, self.num_classes
        batches = [windows[i : i + self.batch_size]
                   for i in range(0, len(windows), self.batch_size)]
        windows_pool = (ThreadPoolExecutor(max_workers=self.readers,
                                           thread_name_prefix="geoidec-window")
                        if self.readers > 1 else None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoidec-read") as pool:
            pending: Future[Batch] | None = None
            try:
                if batches:
                    pending = pool.submit(self._batches.read, read, batches[0], windows_pool)
                for b, batch in enumerate(batches):
                    assert pending is not None
                    x, v = pending.result()
                    pending = None
                    if b + 1 < len(batches):
                        pending = pool.submit(self._batches.read, read, batches[b + 1],
                                              windows_pool)
                    host = x
                    x = x.to(self.device, non_blocking=True)
                    v = v.to(self.device, non_blocking=True)
                    self._batches.copied(host)
                    with torch.no_grad():
                        probs = self.predict(x)
                    if tuple(probs.shape) != (len(batch), k, t, t):
                        raise ValueError(
                            f"predict returned shape {tuple(probs.shape)}, "
                            f"expected {(len(batch), k, t, t)}"
                        )
                    yield batch, probs.detach().to(self.device, torch.float32), v
            finally:
                if pending is not None:
                    pending.cancel()
                    pool.shutdown(wait=True, cancel_futures=True)
                if windows_pool is not None:
                    windows_pool.shutdown(wait=True, cancel_futures=True)
