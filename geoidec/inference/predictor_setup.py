"""How the sliding-window predictor is set up for a scene: the window size and overlap, the
threads that read windows, the CPU threads of the forward, and the forward function itself
(one model, or two side by side for a change map). Shared by :func:`predict_scene
<geoidec.inference.predict.predict_scene>` and the in-memory API (:mod:`geoidec.api`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from geoidec.checkpoint import Checkpoint
from geoidec.config.choices import Tta
from geoidec.data.normalization import Normalization
from geoidec.errors import UsageError
from geoidec.inference.forward import probability_fn

__all__ = ["READERS_MAX", "TILE_MULTIPLE", "PredictFn", "model_forward", "reading_threads",
           "resolve_tiling", "threads_for_forward_only"]

TILE_MULTIPLE = 32
"""A single window for a small scene is rounded up to this multiple (the output stride)."""
READERS_MAX = 6
"""Most threads reading windows for a GPU."""
PredictFn = Callable[[torch.Tensor], torch.Tensor]


def resolve_tiling(
    checkpoint: Checkpoint, tile: int | None, overlap: int | None, height: int, width: int
) -> tuple[int, int]:
    """Window size and overlap: the checkpoint's unless given; one window just large enough
    (multiple of :data:`TILE_MULTIPLE`) for a scene that fits in a tile."""
    if tile is not None and tile <= 0:
        raise UsageError(f"--tile-size must be positive, got {tile}")
    if tile is None or tile == checkpoint.tile_size:
        tile = checkpoint.tile_size
        overlap = int(checkpoint.meta.get("overlap", tile // 4)) if overlap is None else overlap
    elif overlap is None:
        overlap = min(int(checkpoint.meta.get("overlap", tile // 4)), tile // 4)
    if not 0 <= overlap < tile:
        raise UsageError(f"--overlap must be in [0, {tile}) for tile {tile}, got {overlap}")
    if height <= tile and width <= tile:
        small = TILE_MULTIPLE * math.ceil(max(height, width) / TILE_MULTIPLE)
        if small < tile:
            return small, min(overlap, small // 4)
    return tile, overlap


def reading_threads(device: torch.device, threads: int | None = None) -> int:
    """Threads reading windows: several when a GPU does the forward (the CPU is free and
    decoding would otherwise starve it); on CPU, where the forward uses every core, one per
    two of ``threads`` (null-model benchmark, 8,000^2 on 2 cores: one reader 212 windows/s
    and 7.6 ms of CPU per window, two readers 194 and 8.6)."""
    if device.type == "cpu":
        return 1 if threads is None else max(1, min(READERS_MAX, threads // 2))
    return max(1, min(READERS_MAX, threads or (os.cpu_count() or 2) - 1))


@contextmanager
def threads_for_forward_only(device: torch.device) -> Iterator[Callable[[PredictFn],
                                                                         PredictFn]]:
    """On CPU, give the forward all torch threads and everything else one.

    Yields a wrapper for the forward function. The blending, normalisation and slicing
    between forwards are small tensor operations; with several OpenMP threads each pays a
    thread synchronisation that, on a busy CPU, costs more than the operation itself
    (measured on 2 shared cores: 8 ms instead of 0.04 ms of CPU for one window's weight sum).
    The thread count is restored on exit.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1:
        yield lambda fn: fn
        return

    def wrap(fn: PredictFn) -> PredictFn:
        def call(x: torch.Tensor) -> torch.Tensor:
            torch.set_num_threads(threads)
            try:
                return fn(x)
            finally:
                torch.set_num_threads(1)

        return call

    torch.set_num_threads(1)
    try:
        yield wrap
    finally:
        torch.set_num_threads(threads)


def model_forward(checkpoint: Checkpoint, change_from: Checkpoint | None, device: torch.device,
                  tta: Tta = "none") -> tuple[PredictFn, list[Normalization], np.ndarray | None]:
    """The probabilities of the model (and of ``change_from`` after its classes, on the same
    windows; both with the test-time augmentation ``tta``), the normalisations the window
    reader applies (one, or one per model when they differ), and the lookup table of the
    other model's classes into this one's (254: a class this model lacks)."""
    amp = device.type == "cuda"
    new_fn = probability_fn(checkpoint.model.to(device).eval(), device, amp=amp, tta=tta)
    normalizations = [checkpoint.normalization]
    if change_from is None:
        return new_fn, normalizations, None
    old_fn = probability_fn(change_from.model.to(device).eval(), device, amp=amp, tta=tta)
    if change_from.normalization != checkpoint.normalization:
        normalizations.append(change_from.normalization)
    c, split = checkpoint.bands, len(normalizations) == 2

    def both(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([new_fn(x[:, :c]), old_fn(x[:, c:] if split else x)], dim=1)

    index = {cl.name: i for i, cl in enumerate(checkpoint.classes)}
    lut = np.array([index.get(cl.name, 254) for cl in change_from.classes], dtype=np.uint8)
    return both, normalizations, lut
