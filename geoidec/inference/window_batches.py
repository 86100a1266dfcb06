"""Batches of windows for the sliding-window predictor, read on the host.

A plain ``read(window) -> (image, valid)`` gives arrays that are checked and stacked into a
new batch (pinned for a GPU). A reader that can also fill a buffer in place (``read_into``,
see :class:`~geoidec.inference.reading.WindowReader`) writes into a slot of a ring of
:data:`BUFFERS` reused batch buffers instead, so no batch is allocated per window row; a slot
is reused only after the copy to the GPU that read it has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

import numpy as np
import torch
from rasterio.windows import Window

__all__ = ["BUFFERS", "Batch", "ReadFn", "WindowBatches"]

ReadFn = Callable[[Window], tuple[np.ndarray, np.ndarray]]

BUFFERS = 3
"""Batch buffers in rotation: one being read, one being predicted, one spare."""
Batch = tuple[torch.Tensor, torch.Tensor]


class _BufferReader(Protocol):
    """A ``read`` that can also fill a batch buffer in place (see
    :class:`~geoidec.inference.reading.WindowReader`)."""

    channels: int

    def read_into(self, window: Window, out: np.ndarray, valid: np.ndarray) -> None: ...


class WindowBatches:
    """Reads batches of ``tile`` x ``tile`` windows for a predictor on ``device``.

    Args:
        tile: window side in pixels.
        batch_size: most windows per batch (the size of a ring buffer).
        device: where the batches go (pinned host memory for a GPU).
    """

    def __init__(self, tile: int, batch_size: int, device: torch.device) -> None:
        self.tile = tile
        self.batch_size = batch_size
        self.device = device
        self._ring: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._next = 0
        self._slot_of: dict[int, int] = {}
        self._events: dict[int, Any] = {}

    def read(self, read: ReadFn, windows: list[Window],
             pool: ThreadPoolExecutor | None = None) -> Batch:
        """Read and stack ``windows`` (runs in the prefetch thread; the windows are read by
        ``pool``'s threads when given). A reader with ``read_into`` fills a slot of a reused
        batch buffer, pinned for a GPU, instead."""
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

    def _slot(self, channels: int) -> int:
        """The next slot of the ring, (re)allocated for ``channels`` bands if needed, once
        the copy that last read it has finished (a CUDA event; on a CPU the batch was used
        synchronously)."""
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
        return slot

    def _read_into(self, into: Callable[[Window, np.ndarray, np.ndarray], None],
                   channels: int, windows: list[Window],
                   pool: ThreadPoolExecutor | None) -> Batch:
        """The next slot of the batch-buffer ring, filled with ``windows``. A slot is
        reused :data:`BUFFERS` batches later."""
        slot = self._slot(channels)
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

    def copied(self, x: torch.Tensor) -> None:
        """Record that the host batch ``x`` has been queued for copying to the GPU."""
        slot = self._slot_of.pop(id(x), None)
        if slot is not None and self.device.type == "cuda":
            event = torch.cuda.Event()
            event.record()
            self._events[slot] = event
