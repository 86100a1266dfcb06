"""``--step0-from RUN``: take step 0 (model, report entry, confusion matrix) from another run
of the same data, first-step classes and architecture instead of training it again; methods
differ only from step 1 on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from geoidec.checkpoint import load_checkpoint
from geoidec.data.normalization import Normalization
from geoidec.errors import DataError
from geoidec.methods import StepPlan
from geoidec.models import SegmentationModel
from geoidec.run_folder import RunFolder
from geoidec.tasks import TaskSchedule
from geoidec.training.step_saving import StepSaving


class Step0Reuse(StepSaving):
    """Saves another run's step 0 as this run's."""

    def _reuse_step0(self, plan: StepPlan, normalization: Normalization, meta: dict[str, Any],
                     history: list[dict[str, Any]]) -> SegmentationModel:
        """Take step 0 (model and report entry) from another run of the same set-up."""
        source = Path(self.step0_from)  # type: ignore[arg-type]
        ckpt = load_checkpoint(source, 0)
        theirs = TaskSchedule.from_dict(ckpt.meta["task"])
        mine_arch = {k: v for k, v in ckpt.model.config.items() if k != "classes_per_step"}
        wanted = dataclasses.asdict(self.config.model)
        problems = []
        if theirs.steps[0] != self.schedule.steps[0]:
            problems.append("its step 0 learnt other classes")
        if ckpt.normalization != normalization:
            problems.append("its normalisation statistics differ (other training data?)")
        defaults = {"first_stride": 2, "head": "aspp"}  # checkpoints older than these keys
        if any(mine_arch.get(k, defaults.get(k)) != wanted[k] for k in (
                "backbone", "aspp_channels", "output_stride", "first_stride", "head")):
            problems.append("its model architecture differs")
        if problems:
            raise DataError(f"cannot reuse step 0 of {source}: " + "; ".join(problems))
        run = RunFolder(source)
        entry = dict(run.read_report()["steps"][0])
        entry["reused_from"] = str(source)
        self.echo(f"step 0: reusing the model of {source}")
        names = [c.name for c in ckpt.classes]
        history.append(entry["per_class_iou"])
        self._last_cm = run.read_confusion(0)[1].astype(np.int64)
        self._save_step(plan, ckpt.model, meta, names, entry)
        return ckpt.model.eval()


__all__ = ["Step0Reuse"]
