"""What a continual-learning method is: a small object over the one shared engine.

A method decides (1) which training steps to run for a task schedule and with which targets,
and (2) the named loss terms of a batch. Everything else (data, augmentation, optimisation,
devices, evaluation, checkpoints, reports) is the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from geoidec.config import MethodConfig
from geoidec.models import SegmentationModel, SegOutput
from geoidec.tasks import TaskSchedule


@dataclass(frozen=True)
class StepPlan:
    """One training step as the engine runs it."""

    #: Step number written in reports (the schedule step whose classes are now all known).
    step: int
    #: Output channels per classifier head of the model trained in this step.
    classes_per_step: tuple[int, ...]
    #: Dataset-index label -> training target (model index) for this step.
    lut: np.ndarray
    #: Dataset class indices a training chip must contain.
    chip_classes: tuple[int, ...]
    #: Model indices evaluated after the step, split as the protocol reports them.
    old_classes: tuple[int, ...]
    new_classes: tuple[int, ...]
    #: Model indices learnt in this step (reported as ``step_classes``).
    step_classes: tuple[int, ...]
    #: Incremental (t > 0) steps use the incremental learning rate and iterations.
    incremental: bool
    #: Dataset class indices learnt after this step (excluded by the disjoint protocol).
    future_classes: tuple[int, ...] = ()
    #: Incremental steps this plan stands for in the iteration budget (joint: all of them,
    #: so the upper bound trains as many iterations as the incremental run in total).
    extra_budget_steps: int = 0


@dataclass
class Batch:
    """What a method sees of one training batch (targets already remapped for the step)."""

    image: torch.Tensor
    target: torch.Tensor
    out: SegOutput
    old_out: SegOutput | None
    step: StepPlan
    model: SegmentationModel | None = None
    old_model: SegmentationModel | None = None
    #: Optimiser steps done so far in this step (micro-batches of one step share it).
    global_step: int = 0


class Method:
    """Base class: cross-entropy on the step's targets, one plan entry per schedule step."""

    name: ClassVar[str] = "base"
    #: Whether the engine must run the frozen previous-step model on every batch.
    needs_old_model: ClassVar[bool] = False

    def __init__(self, config: MethodConfig) -> None:
        self.config = config
        #: The step being trained (set by :meth:`start_step`).
        self.step_plan: StepPlan | None = None
        #: Outputs of the old model, background included (0 at step 0).
        self.num_old = 0

    def plan(self, schedule: TaskSchedule) -> list[StepPlan]:
        """Incremental plan: step t learns the schedule's step t classes."""
        plans = []
        old = schedule.new_classes(0)
        for t in range(schedule.num_steps):
            seen = schedule.seen_classes(t)
            plans.append(
                StepPlan(
                    step=t,
                    classes_per_step=tuple(schedule.classes_per_step()[: t + 1]),
                    lut=schedule.train_lut(t),
                    chip_classes=_dataset_indices(schedule, schedule.new_classes(t)),
                    old_classes=old,
                    new_classes=tuple(c for c in seen if c not in old),
                    step_classes=schedule.new_classes(t),
                    incremental=t > 0,
                    future_classes=_dataset_indices(schedule, schedule.future_classes(t)),
                )
            )
        return plans

    def start_step(self, plan: StepPlan, num_old: int) -> None:
        """Called before a step's first iteration; ``num_old`` = old model's outputs (0 at
        step 0). Methods reset per-step state here."""
        self.step_plan = plan
        self.num_old = num_old

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Named loss terms; the engine sums them and logs each one."""
        raise NotImplementedError

    def step_stats(self) -> dict[str, Any]:
        """Diagnostics of the finished step (e.g. pseudo-label counts), kept in the report."""
        return {}


class RunningThresholds:
    """For methods whose pseudo-labels follow running per-class histograms of the old model
    (IDEC's confidences, PLOP's entropies): the histograms count every micro-batch, the
    thresholds in use are refreshed every ``method.pseudo_update_every`` optimiser steps (the
    micro-batches of one optimiser step share its ``global_step``)."""

    config: MethodConfig
    #: Thresholds in use, per old class (index 0: background).
    current: torch.Tensor | None = None
    #: Optimiser step at which ``current`` was last refreshed.
    refreshed_at: int = -1

    def _refreshed(self, histograms: Any, old_logits: torch.Tensor, background: torch.Tensor,
                   global_step: int) -> torch.Tensor:
        histograms.update(old_logits, mask=background)
        every = max(self.config.pseudo_update_every, 1)
        due = global_step % every == 0 and global_step != self.refreshed_at
        if self.current is None or due:
            self.current = histograms.thresholds()
            self.refreshed_at = global_step
        assert self.current is not None
        return self.current


def _dataset_indices(schedule: TaskSchedule, model_classes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(schedule.dataset_index[c]) for c in model_classes)
