"""Bounded-memory sliding-window prediction with cosine blending.

A scene of ``height`` x ``width`` pixels is covered by ``tile`` x ``tile`` windows from
:func:`geoidec.data.tiling.grid_windows` (stride ``tile - overlap``; edge windows are
shifted inside the scene, never padded, unless the scene is smaller than the tile).
Windows are processed row by row of windows; each window's class probabilities are
multiplied by :func:`blend_weights` and accumulated, together with the weights, into a
row-band accumulator of ``tile`` rows by the scene width. As soon as rows can no longer be
touched by a later window they are normalised by the summed weights and yielded, then the
band slides down. Memory is therefore ``O(K * tile * width)``, independent of the height.

Reading runs in a background thread that prefetches the next batch while the model works
on the current one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, cast

import numpy as np
import torch
from rasterio.windows import Window

from geoidec.data.tiling import grid_windows

__all__ = ["SlidingWindowPredictor", "blend_weights"]

WEIGHT_FLOOR = 1e-3
"""Smallest blending weight, so pixels seen by one window only near its border still count."""

ReadFn = Callable[[Window], tuple[np.ndarray, np.ndarray]]


class _BufferReader(Protocol):
    """A ``read`` that can also fill a batch buffer in place (see
    :class:`~geoidec.inference.reading.WindowReader`)."""

    channels: int

    def read_into(self, window: Window, out: np.ndarray, valid: np.ndarray) -> None: ...


BUFFERS = 3
"""Batch buffers in rotation: one being read, one being predicted, one spare."""
Batch = tuple[torch.Tensor, torch.Tensor]


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
        self._ring: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._next = 0
        self._slot_of: dict[int, int] = {}
        self._events: dict[int, Any] = {}

    def windows(self, height: int, width: int,
                rows: tuple[int, int] | None = None) -> list[Window]:
        """Windows used for a ``height`` x ``width`` scene, in processing order; with
        ``rows=(y0, y1)`` only those that cover a row of ``[y0, y1)``."""
        windows = grid_windows(height, width, self.tile, self.tile - self.overlap)
        if rows is None:
            return windows
        y0, y1 = rows
        return [w for w in windows if int(w.row_off) < y1 and int(w.row_off) + self.tile > y0]

    def _read_batch(self, read: ReadFn, windows: list[Window],
                    pool: ThreadPoolExecutor | None = None) -> Batch:
        """Read and stack ``windows`` (runs in the prefetch thread; the windows are read by
        ``pool``'s threads when given). A reader with ``read_into`` (see
        :class:`~geoidec.inference.reading.WindowReader`) fills a slot of a reused batch
        buffer, pinned for a GPU, instead."""
        into = getattr(read, "read_into", None)
        if into is not None:
            channels = cast(_BufferReader, read).channels
            return self._read_into(into, int(channels), windows, pool)
        images, valids = [], []
        t = self.tile
        results = pool.map(read, windows) if pool is not None else map(read, windows)
        for window, (image, valid) in zip(windows, results, strict=True):
            image = np.asarray(image, dtype=np.float32)
            valid = np.asarray(valid, dtype=bool)
            if image.ndim != 3 or image.shape[1:] != (t, t) or valid.shape != (t, t):
                raise ValueError(
                    f"read({window}) returned image {image.shape} and valid {valid.shape}; "
                    f"expected (C, {t}, {t}) and ({t}, {t})"
                )
            images.append(image)
            valids.append(valid)
        x = torch.from_numpy(np.stack(images))
        v = torch.from_numpy(np.stack(valids))
        if self.device.type == "cuda":
            x, v = x.pin_memory(), v.pin_memory()
        return x, v

    def _read_into(self, into: Callable[[Window, np.ndarray, np.ndarray], None],
                   channels: int, windows: list[Window],
                   pool: ThreadPoolExecutor | None) -> Batch:
        """The next slot of the batch-buffer ring, filled with ``windows``. A slot is
        reused :data:`BUFFERS` batches later, after the copy that read it has finished (a
        CUDA event; on a CPU the batch was used synchronously)."""
        slot = self._next % BUFFERS
        self._next += 1
        if len(self._ring) <= slot or tuple(self._ring[slot][0].shape[1:2]) != (channels,):
            pin = self.device.type == "cuda"
            shape = (self.batch_size, channels, self.tile, self.tile)
            buffers = (torch.empty(shape, dtype=torch.float32, pin_memory=pin),
                       torch.empty((self.batch_size, self.tile, self.tile), dtype=torch.bool,
                                   pin_memory=pin))
            if len(self._ring) <= slot:
                self._ring.append(buffers)
            else:
                self._ring[slot] = buffers
        event = self._events.pop(slot, None)
        if event is not None:
            event.synchronize()
        x, v = (b[: len(windows)] for b in self._ring[slot])
        xs, vs = x.numpy(), v.numpy()

        def one(i: int) -> None:
            into(windows[i], xs[i], vs[i])

        if pool is not None:
            list(pool.map(one, range(len(windows))))
        else:
            for i in range(len(windows)):
                one(i)
        self._slot_of[id(x)] = slot
        return x, v

    def _copied(self, x: torch.Tensor) -> None:
        """Record that the host batch ``x`` has been queued for copying to the GPU."""
        slot = self._slot_of.pop(id(x), None)
        if slot is not None and self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            self._events[slot] = event

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
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """:meth:`run` before the division: yields ``(row_start, acc (K, n, width),
        wsum (n, width), valid (n, width))`` on the predictor's device, the weighted sums
        of the windows' probabilities and the sums of their weights (``acc / wsum`` is
        :meth:`run`'s ``probs``). The tensors are views of the accumulator, valid until
        the next band is requested: use or copy them first. A consumer that needs only
        the class and its probability divides one value per pixel instead of ``K``."""
        y0, y1 = (0, height) if rows is None else (max(0, rows[0]), min(height, rows[1]))
        windows = self.windows(height, width, None if rows is None else (y0, y1))
        total = len(windows)
        t, k = self.tile, self.num_classes
        band_width = max(width, t)  # a scene narrower than the tile still gets full windows
        acc = torch.zeros((k, t, band_width), dtype=torch.float32, device=self.device)
        wsum = torch.zeros((t, band_width), dtype=torch.float32, device=self.device)
        vand = torch.ones((t, band_width), dtype=torch.bool, device=self.device)
        # scene row of the accumulator's first row (rows above y0 are run but not yielded)
        top = int(windows[0].row_off) if windows else y0
        batches = [windows[i : i + self.batch_size] for i in range(0, total, self.batch_size)]

        def finished(stop: int) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor] | None:
            """Views of the finished rows [top, stop) within [y0, y1)."""
            n = stop - top
            a, b = min(max(y0 - top, 0), n), min(max(y1 - top, 0), n)
            if a >= b:
                return None
            return top + a, acc[:, a:b, :width], wsum[a:b, :width], vand[a:b, :width]

        def slide(stop: int) -> None:
            """Slide the band down to ``stop``: rows [n, t) move up, freed rows reset."""
            nonlocal top
            n = stop - top
            if n < t - n:  # source and destination overlap
                acc[:, : t - n] = acc[:, n:].clone()
                wsum[: t - n] = wsum[n:].clone()
                vand[: t - n] = vand[n:].clone()
            elif n < t:
                acc[:, : t - n] = acc[:, n:]
                wsum[: t - n] = wsum[n:]
                vand[: t - n] = vand[n:]
            acc[:, t - n :] = 0.0
            wsum[t - n :] = 0.0
            vand[t - n :] = True
            top = stop

        done = 0
        windows_pool = (ThreadPoolExecutor(max_workers=self.readers,
                                           thread_name_prefix="geoidec-window")
                        if self.readers > 1 else None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoidec-read") as pool:
            pending: Future[Batch] | None = None
            try:
                if batches:
                    pending = pool.submit(self._read_batch, read, batches[0], windows_pool)
                for b, batch in enumerate(batches):
                    assert pending is not None
                    x, v = pending.result()
                    pending = None
                    if b + 1 < len(batches):
                        pending = pool.submit(self._read_batch, read, batches[b + 1],
                                              windows_pool)
                    host = x
                    x = x.to(self.device, non_blocking=True)
                    v = v.to(self.device, non_blocking=True)
                    self._copied(host)
                    with torch.no_grad():
                        probs = self.predict(x)
                    if tuple(probs.shape) != (len(batch), k, t, t):
                        raise ValueError(
                            f"predict returned shape {tuple(probs.shape)}, "
                            f"expected {(len(batch), k, t, t)}"
                        )
                    probs = probs.detach().to(self.device, torch.float32)
                    for i, window in enumerate(batch):
                        r0, c0 = int(window.row_off), int(window.col_off)
                        if r0 > top:
                            # Windows come row-major: nothing later touches rows above r0.
                            stop = min(r0, height)
                            band = finished(stop)
                            if band is not None:
                                yield band
                            slide(stop)
                        band_rows = slice(r0 - top, r0 - top + t)
                        cols = slice(c0, c0 + t)
                        acc[:, band_rows, cols].addcmul_(probs[i], self._weights)
                        wsum[band_rows, cols] += self._weights
                        vand[band_rows, cols] &= v[i]
                    done += len(batch)
                    if progress is not None:
                        progress(done, total)
                while top < min(y1, height):
                    stop = min(top + t, height)
                    band = finished(stop)
                    if band is not None:
                        yield band
                    slide(stop)
            finally:
                if pending is not None:
                    pending.cancel()
                    pool.shutdown(wait=True, cancel_futures=True)
                if windows_pool is not None:
                    windows_pool.shutdown(wait=True, cancel_futures=True)
