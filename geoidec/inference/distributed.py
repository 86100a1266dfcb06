"""Several processes predicting one scene: disjoint row bands, one output.

Started by a launcher (``torchrun --nproc_per_node N -m geoidec.cli.main predict ...``, or
SLURM's ``srun`` with torchrun's variables set), every process runs the same command. Rank
``r`` of ``N`` owns the scene rows ``[r * H // N, (r + 1) * H // N)``: it runs every window
that covers one of them (:meth:`~geoidec.inference.sliding.SlidingWindowPredictor.run` with
``rows``; the few window rows on a border are run by both neighbours) and writes its rows'
uint8 layers (class map, and confidence, probabilities, change when asked) to a hidden part
file beside the output. Once every rank has finished, rank 0 streams the parts, in row order,
into the usual writers (COG, colour table, sidecars, vectors, preview), so the result is one
set of files, identical to a single-process prediction: each pixel is blended from the same
windows in the same order.

Processes synchronise through a ``gloo`` process group (it runs beside NCCL and on CPUs);
a rank that fails reports its error to the others, which stop with it, and no final output
is written. Part files are removed after the merge and on failure.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

__all__ = ["PartFile", "PredictGroup", "read_part"]

TIMEOUT = timedelta(hours=6)
"""How long a rank waits for the others (a large scene on a slow rank takes hours)."""


@dataclass(frozen=True)
class PredictGroup:
    """This process's place among the processes predicting together."""

    rank: int
    world: int
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> PredictGroup | None:
        """The group of a launcher's processes (``WORLD_SIZE`` > 1), joined on first use;
        ``None`` for a single process."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return None
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=TIMEOUT)
            # A gloo group left to the interpreter's exit can abort the process ("terminate
            # called without an active exception", seen in CI): close it first.
            atexit.register(_destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", "0") or 0))

    def device(self, device: Any) -> Any:
        """One GPU per process on a node: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
        import torch

        if device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank % max(torch.cuda.device_count(), 1))
        return device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, height: int, rank: int | None = None) -> tuple[int, int]:
        """Scene rows ``[y0, y1)`` owned by ``rank`` (default: this one)."""
        r = self.rank if rank is None else rank
        return r * height // self.world, (r + 1) * height // self.world

    def part_path(self, out: Path, rank: int | None = None) -> Path:
        """Hidden part file of ``rank`` beside the output ``out``."""
        r = self.rank if rank is None else rank
        return out.with_name(f".{out.name}.rank{r}.part.tif")

    def gather_errors(self, error: str | None) -> list[str | None]:
        """Every rank's error (``None``: fine), in rank order, on every rank."""
        import torch.distributed as dist

        errors: list[Any] = [None] * self.world
        dist.all_gather_object(errors, error)
        return errors

    def gather_to_main(self, obj: object) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (``None`` elsewhere)."""
        import torch.distributed as dist

        found: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(obj, found, dst=0)
        return found

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class PartFile:
    """A rank's rows ``[y0, y1)`` of every uint8 output layer, as bands of a hidden tiled
    GeoTIFF (no georeferencing: rank 0 writes that)."""

    def __init__(self, path: Path, rows: tuple[int, int], width: int, bands: int) -> None:
        self.path = path
        self.y0 = rows[0]
        height = max(rows[1] - rows[0], 1)
        self.path.unlink(missing_ok=True)
        self._dst = rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=bands,
            dtype="uint8", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
            zlevel=1, BIGTIFF="IF_SAFER")

    def write(self, row: int, col: int, layers: np.ndarray) -> None:
        """``layers`` (bands, n, w) of scene rows ``[row, row + n)`` from column ``col``."""
        _, n, w = layers.shape
        self._dst.write(layers, window=Window(col, row - self.y0, w, n))

    def close(self) -> None:
        if not self._dst.closed:
            self._dst.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def read_part(path: Path, y0: int, rows: int = 256, cols: int = 2048
              ) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(scene_row, col, layers (bands, n, w))`` blocks of a part file, left to right in
    strips of ``cols`` columns, top to bottom within a strip (bounded memory)."""
    with rasterio.open(path) as src:
        for c in range(0, src.width, cols):
            w = min(cols, src.width - c)
            for r in range(0, src.height, rows):
                n = min(rows, src.height - r)
                yield y0 + r, c, src.read(window=Window(c, r, w, n))


def merge_preview_rows(main: Any, others: Sequence[tuple[int, int, np.ndarray, np.ndarray]],
                       step: int) -> None:
    """Copy other ranks' decimated input rows (``(y0, y1, image, valid)``) into the preview
    sampler ``main``: decimated row ``i`` is scene row ``i * step``."""
    for y0, y1, image, valid in others:
        a, b = -(-y0 // step), -(-y1 // step)
        main.image[:, a:b] = image[:, a:b]
        main.valid[a:b] = valid[a:b]
