"""Joint (offline) training: every class at once, all labels visible (the upper bound).

One training step learns all classes of the schedule, for as many iterations as the
incremental run trains in total (step 0's plus every later step's). Its report entry is
numbered as the schedule's last step, with old = step-0 classes and new = the rest, so it
sits beside the incremental methods' final step.
"""

from __future__ import annotations

from geoidec.methods.base import StepPlan, _dataset_indices
from geoidec.methods.finetune import Finetune
from geoidec.tasks import TaskSchedule


class Joint(Finetune):
    name = "joint"

    def plan(self, schedule: TaskSchedule) -> list[StepPlan]:
        last = schedule.num_steps - 1
        old = schedule.new_classes(0)
        seen = schedule.seen_classes(last)
        return [
            StepPlan(
                step=last,
                classes_per_step=(sum(schedule.classes_per_step()),),
                lut=schedule.joint_lut(),
                chip_classes=_dataset_indices(schedule, seen),
                old_classes=old,
                new_classes=tuple(c for c in seen if c not in old),
                step_classes=seen,
                incremental=False,
                extra_budget_steps=last,
            )
        ]
