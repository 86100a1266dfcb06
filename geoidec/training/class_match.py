"""The classes of a ``--from`` dataset against the parent model's, matched by name (case,
spaces, ``_`` and ``-`` ignored): a known name keeps its output index, a new name becomes a
new output (in the dataset's order), with its map code checked against the model's; and the
one incremental step (step T + 1 of the lineage) that learns the new ones."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from geoidec.constants import BACKGROUND, IGNORE_INDEX
from geoidec.data.base import DatasetSpec
from geoidec.data.classes import ClassInfo
from geoidec.errors import DataError
from geoidec.methods import StepPlan
from geoidec.tasks import TaskSchedule, normalise_name
from geoidec.training.parent import Parent


@dataclass(frozen=True)
class ClassMatch:
    """The new dataset's classes against the parent model's."""

    #: Dataset classes new to the model (dataset order) and their dataset indices.
    new: tuple[ClassInfo, ...]
    new_indices: tuple[int, ...]
    #: Dataset classes the model knows: name -> model index.
    known: dict[str, int]
    #: Dataset index -> model index (background 0, ignore 255).
    lut: np.ndarray
    #: The lineage schedule: the model's classes in model order, one step per lineage step.
    schedule: TaskSchedule
    #: Every class in model order, background first (parent's, then the new ones).
    classes: tuple[ClassInfo, ...] = field(default=())


def match_classes(parent: Parent, dataset: DatasetSpec) -> ClassMatch:
    """Match ``dataset``'s classes to the parent model's by name."""
    model = {normalise_name(n): i for i, n in enumerate(parent.names) if i > 0}
    new, new_indices, known = [], [], {}
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[BACKGROUND] = BACKGROUND
    for index, info in enumerate(dataset.classes, start=1):
        hit = model.get(normalise_name(info.name))
        if hit is None:
            new.append(info)
            new_indices.append(index)
            lut[index] = len(parent.names) + len(new) - 1
        else:
            known[info.name] = hit
            lut[index] = hit
    if not new:
        raise DataError(f"{dataset.name} lists no class the model does not know (the model "
                        f"has {', '.join(parent.names[1:])}); list the new classes in the "
                        "dataset YAML")
    new = _with_codes(parent, dataset, new)
    counts = list(parent.checkpoint.model.classes_per_step)
    counts[0] -= 1  # background
    counts.append(len(new))
    names = [*parent.names[1:], *(c.name for c in new)]
    steps, start = [], 1
    for count in counts:
        steps.append(tuple(range(start, start + count)))
        start += count
    schedule = TaskSchedule(class_names=tuple(names), steps=tuple(steps),
                            spec="-".join(str(c) for c in counts))
    classes = (*parent.checkpoint.classes, *new)
    return ClassMatch(tuple(new), tuple(new_indices), known, lut, schedule, classes)


def _with_codes(parent: Parent, dataset: DatasetSpec, new: list[ClassInfo]) -> list[ClassInfo]:
    """The new classes' map codes: the dataset's, when the model writes codes (they must not
    be the code of a class it knows, its background or its nodata); none when the model
    writes output indices (ISPRS, VOC, ADE)."""
    ckpt = parent.checkpoint
    if ckpt.codes is None:
        return [replace(c, code=None) for c in new]
    taken = {code: c.name for code, c in zip(ckpt.codes, ckpt.classes, strict=True)}
    taken.setdefault(ckpt.nodata_code, "nodata")
    for info in new:
        if info.code is None:
            raise DataError(f"{dataset.name}: class '{info.name}' has no code but the model "
                            "writes codes; give it a value (or code:) between 1 and 254")
        if info.code in taken:
            raise DataError(f"{dataset.name}: class '{info.name}' has code {info.code}, which "
                            f"the model uses for '{taken[info.code]}'; give it another code "
                            "(code: N in the dataset YAML)")
    return new


def step_plan(parent: Parent, match: ClassMatch) -> StepPlan:
    """The one incremental step of a ``--from`` run (step T + 1 of the lineage)."""
    schedule = match.schedule
    last = schedule.num_steps - 1
    old = schedule.new_classes(0)
    seen = schedule.seen_classes(last)
    return StepPlan(
        step=parent.step + 1,
        classes_per_step=tuple(schedule.classes_per_step()),
        lut=match.lut,
        chip_classes=match.new_indices,
        old_classes=old,
        new_classes=tuple(c for c in seen if c not in old),
        step_classes=schedule.new_classes(last),
        incremental=True,
    )


__all__ = ["ClassMatch", "match_classes", "step_plan"]
