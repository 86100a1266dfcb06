"""``geoidec train ... --resume RUN``: continue an interrupted run.

A step is finished when both its checkpoint (``checkpoints/step_T.pt``) and its entry in
``report.json`` exist; finished steps are not trained again (the last one's checkpoint is the
next step's old model). The first unfinished step continues from
``checkpoints/step_T.partial.ckpt`` when there is one: a Lightning checkpoint (weights,
optimiser and scheduler state, loop counters) that :class:`PartialCheckpoint` writes
atomically every ``train.checkpoint_every`` iterations, with the random generators and the
method's running statistics, so the step goes on with the chips, augmentations and pseudo-label
thresholds of an uninterrupted run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from geoidec.config import Config, ConfigError, read_yaml
from geoidec.data.base import DataError, DatasetSpec
from geoidec.data.normalization import Normalization
from geoidec.files import fsync_file, write_error
from geoidec.methods import Method, StepPlan
from geoidec.run_folder import RunFolder
from geoidec.tasks import TaskSchedule
from geoidec.training.loader import ChipSampler
from geoidec.training.step_state import method_snapshot, restore_method, restore_rng, rng_state

#: Settings that may differ when resuming: they change where and how fast, not what is learnt.
RUNTIME_KEYS = frozenset({
    "train.progress", "train.device", "train.devices", "train.strategy", "train.num_nodes",
    "train.checkpoint_every", "data.num_workers", "eval.batch_size",
})
PARTIAL_FORMAT = "geoidec.partial/1"


def _flatten(tree: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in tree.items()
            for key, value in (values or {}).items()}


@dataclass
class ResumeState:
    """What an interrupted run folder holds."""

    run_dir: Path
    task: dict[str, Any]
    config: dict[str, Any]
    report: dict[str, Any] | None
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> ResumeState:
        """Read ``task.json``, ``config.yaml`` and ``report.json`` (if any) of ``run_dir``."""
        run = RunFolder(run_dir)
        task = run.read_task("cannot resume")
        try:
            config = read_yaml(run.config)
        except ConfigError as exc:
            raise DataError(f"cannot resume {run_dir}: {exc}") from None
        report = run.read_report_if_any()
        entries = {int(e["step"]): e for e in (report or {}).get("steps", [])}
        return cls(run.path, task, config or {}, report, entries)

    @property
    def normalization(self) -> Normalization:
        """The statistics the run trained with (identical to recomputing them)."""
        return Normalization.from_dict(self.task["normalization"])

    def check(self, dataset: DatasetSpec, schedule: TaskSchedule, config: Config) -> None:
        """Refuse to continue a run with another dataset, schedule, method or setting."""
        problems = []
        theirs = self.task.get("dataset", {}).get("name")
        if theirs != dataset.name:
            problems.append(f"dataset {theirs} (this command: {dataset.name})")
        task = self.task.get("task", {})
        if (list(task.get("class_names", [])) != list(schedule.class_names)
                or [list(s) for s in task.get("steps", [])] != [list(s) for s in schedule.steps]):
            problems.append(f"steps {task.get('spec')!r} (this command: {schedule.spec!r})")
        if self.task.get("method") != config.method.name:
            problems.append(f"method {self.task.get('method')} (this command: "
                            f"{config.method.name})")
        stored, mine = _flatten(self.config), _flatten(config.to_dict())
        for key in sorted(set(stored) | set(mine)):
            if key in RUNTIME_KEYS or key == "method.name":
                continue
            if stored.get(key) != mine.get(key):
                problems.append(f"{key}={stored.get(key)!r} (this command: {mine.get(key)!r})")
        if problems:
            raise DataError(f"cannot resume {self.run_dir}: it was trained with "
                            + "; ".join(problems[:4])
                            + ("; ..." if len(problems) > 4 else "")
                            + "; repeat the run's own command with --resume")

    def finished(self, plans: list[StepPlan]) -> list[StepPlan]:
        """The leading steps whose checkpoint and report entry both exist."""
        done = []
        for plan in plans:
            ckpt = RunFolder(self.run_dir).checkpoint(plan.step)
            if not (ckpt.is_file() and plan.step in self.entries):
                break
            done.append(plan)
        return done


class PartialCheckpoint(Callback):
    """Saves the step in progress every ``every`` optimiser steps, and when Lightning stops on
    SIGTERM (a cluster's pre-emption notice), atomically: a temporary file renamed over
    ``path``. When Lightning restores one, it makes the sampler skip the batches already
    trained on and puts back the random generators and the method's statistics at the first
    batch; ``resumed_at`` (also in ``callback_metrics``) is the iteration it continued from."""

    KEY = "geoidec_resumed_at"

    def __init__(self, path: Path, every: int, step: int, sampler: ChipSampler,
                 method: Method) -> None:
        self.path = Path(path)
        self.every = every
        self.step = step
        self.sampler = sampler
        self.method = method
        self.resumed_at: int | None = None
        self._last_saved = -1
        self._at_boundary = False
        self._pending: dict[str, Any] | None = None

    # ------------------------------------------------------------------------ saving
    def _save(self, trainer: L.Trainer) -> None:
        self._last_saved = trainer.global_step
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            trainer.save_checkpoint(tmp)  # every rank takes part, rank 0 writes
            if trainer.is_global_zero:
                fsync_file(tmp)
                os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise write_error(self.path, exc) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _worth_saving(self, trainer: L.Trainer) -> bool:
        done = trainer.global_step
        return (self._at_boundary and 0 < done < trainer.max_steps
                and done != self._last_saved)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._at_boundary = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if self.every > 0 and trainer.global_step % self.every == 0 and self._worth_saving(
                trainer):
            self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        # Lightning raises this between batches, so the state is consistent
        if isinstance(exception, SIGTERMException) and self._worth_saving(trainer):
            self._save(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["geoidec"] = {
            "format": PARTIAL_FORMAT,
            "step": self.step,
            "rng": rng_state(),
            "method": method_snapshot(self.method),
        }

    # ----------------------------------------------------------------------- restoring
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("geoidec") or {}
        if extra.get("format") != PARTIAL_FORMAT or extra.get("step") != self.step:
            raise DataError(f"{self.path} is not a partial checkpoint of step {self.step}; "
                            "delete it to restart the step from its beginning")
        self.resumed_at = int(checkpoint["global_step"])
        self.sampler.skip_batches = self.resumed_at * trainer.accumulate_grad_batches
        self._pending = extra

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self._pending is not None:
            restore_rng(self._pending["rng"])
            restore_method(self.method, self._pending["method"])
            self._pending = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.resumed_at is not None:
            trainer.callback_metrics[self.KEY] = torch.tensor(self.resumed_at)


__all__ = ["PartialCheckpoint", "ResumeState", "RUNTIME_KEYS"]
