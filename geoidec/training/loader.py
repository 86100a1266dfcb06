"""The order in which one process reads the step's planned chips.

The chip plan is drawn once, deterministically under the seed, with ``world_size`` x the
chips one process trains on. Process ``rank`` reads every ``world_size``-th chip from
``rank`` on, so the processes of a DDP run share the plan without overlap, and a resumed step
skips the batches it already trained on and reads exactly the chips an uninterrupted run
would have read next.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DataLoader, Dataset, Sampler

from geoidec.devices import rank_and_world


class ChipSampler(Sampler[int]):
    """Chip indices for this process, after ``skip_batches`` batches already trained on.

    The rank and world size are read when iteration starts (inside ``Trainer.fit``, where a
    DDP worker knows them), so the same sampler serves every launch.
    """

    def __init__(self, count: int, batch_size: int) -> None:
        self.count = count
        self.batch_size = batch_size
        self.skip_batches = 0

    def _indices(self) -> range:
        rank, world = rank_and_world()
        return range(rank, self.count, world)

    def __len__(self) -> int:
        """Chips of this process for the whole step (skipped ones included: Lightning counts
        the batches of a resumed epoch from its checkpoint)."""
        return len(self._indices())

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.skip_batches * self.batch_size:])


def chip_loader(dataset: Dataset, batch_size: int, *, num_workers: int,
                pin_memory: bool) -> DataLoader:
    """A DataLoader over the chip plan in plan order (a :class:`ChipSampler`)."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=ChipSampler(len(dataset), batch_size),  # type: ignore[arg-type]
        drop_last=True, num_workers=num_workers, pin_memory=pin_memory,
        persistent_workers=False,
    )


__all__ = ["ChipSampler", "chip_loader"]
