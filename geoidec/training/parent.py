"""The parent of a ``--from`` step: the model it starts from (a run folder's last checkpoint,
or a ``step_T.pt`` file), the SHA-256 of that checkpoint file, and the lineage of steps (with
their datasets and runs) behind the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoidec.checkpoint import Checkpoint, load_checkpoint
from geoidec.files import file_digest
from geoidec.run_folder import RunFolder
from geoidec.tasks import TaskSchedule


@dataclass(frozen=True)
class Parent:
    """The model a ``--from`` step starts from."""

    #: What the user passed (run folder or checkpoint file).
    source: Path
    checkpoint: Checkpoint
    #: SHA-256 of the checkpoint file.
    digest: str
    #: One entry per step of the model's history: step, classes, dataset, run, checkpoint.
    lineage: list[dict[str, Any]]

    @property
    def step(self) -> int:
        return int(self.checkpoint.meta["step"])

    @property
    def names(self) -> list[str]:
        """Class names by model index, background first."""
        return [c.name for c in self.checkpoint.classes]


def lineage_of(meta: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The steps behind a checkpoint: its own ``lineage`` (``--from`` runs), or, for a run of
    one dataset, the steps of its schedule up to the checkpoint's step."""
    if meta.get("lineage"):
        return [dict(e) for e in meta["lineage"]]
    schedule = TaskSchedule.from_dict(meta["task"])
    dataset = meta.get("dataset") or {}
    name = dataset.get("name") if isinstance(dataset, dict) else str(dataset)
    run = RunFolder.of_checkpoint(path).path
    return [{"step": t, "classes": schedule.step_class_names(t), "dataset": name,
             "run": str(run.resolve()), "method": meta.get("method")}
            for t in range(min(int(meta["step"]), schedule.num_steps - 1) + 1)]


def load_parent(source: Path) -> Parent:
    """The parent model of a ``--from`` step (a run folder's last checkpoint, or a file)."""
    ckpt = load_checkpoint(source)
    return Parent(Path(source), ckpt, file_digest(ckpt.path), lineage_of(ckpt.meta, ckpt.path))


__all__ = ["Parent", "lineage_of", "load_parent"]
