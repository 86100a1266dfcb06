"""The incremental task schedule, :class:`TaskSchedule`: the classes learnt at each step, the
model's output channels in learning order, and the label lookup tables of each step.

The **model's output channels are in learning order**: channel 0 is background, then step 0's
classes, then step 1's, and so on. :class:`TaskSchedule` holds the mapping between the two
index spaces ("dataset index" as stored in label rasters, "model index" as predicted by the
network) and builds the lookup tables used to remap labels for training and evaluation at each
step. The notation of a spec (``"4-1"``, ``"a,b|c"``) is in :mod:`geoidec.tasks.spec`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from geoidec.constants import BACKGROUND
from geoidec.tasks.labels import blank_lut, remap
from geoidec.tasks.spec import TaskSpecError, check_class_names, parse_spec

__all__ = ["TaskSchedule"]


@dataclass(frozen=True)
class TaskSchedule:
    """The classes learnt at each incremental step, and the index mappings that follow.

    Attributes:
        class_names: the dataset's classes (no background), in dataset order; dataset index
            ``i`` (1-based) is ``class_names[i - 1]``.
        steps: dataset class indices learnt at each step, in learning order.
        spec: the text the schedule was parsed from.

    Index spaces: *dataset index* (label rasters: 0 background, 1..K classes, 255 ignore) and
    *model index* (network channels: 0 background, then classes in learning order). For a
    numeric spec the two coincide; for a reordering name list they differ.
    """

    class_names: tuple[str, ...]
    steps: tuple[tuple[int, ...], ...]
    spec: str

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        steps = tuple(tuple(int(c) for c in step) for step in self.steps)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "steps", steps)
        check_class_names(names)
        num = len(names)
        if not steps:
            raise TaskSpecError(f"task schedule {self.spec!r} has no steps")
        if any(not step for step in steps):
            raise TaskSpecError(f"task schedule {self.spec!r} has an empty step")
        flat = [c for step in steps for c in step]
        bad = sorted({c for c in flat if not 1 <= c <= num})
        if bad:
            raise TaskSpecError(
                f"task schedule {self.spec!r} uses class indices {bad} outside 1..{num}"
            )
        if len(flat) != len(set(flat)) or len(flat) != num:
            missing = sorted(set(range(1, num + 1)) - set(flat))
            raise TaskSpecError(
                f"task schedule {self.spec!r} must use each of the {num} classes exactly once"
                + (f" (missing {missing})" if missing else " (some appear twice)")
            )

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse(cls, spec: str, class_names: Sequence[str]) -> TaskSchedule:
        """Parse a task spec (see :mod:`geoidec.tasks.spec`) against the dataset's class list.

        Raises:
            TaskSpecError: with a one-line message naming what is wrong and what is valid.
        """
        text, names, steps = parse_spec(spec, class_names)
        return cls(class_names=names, steps=steps, spec=text)

    # ------------------------------------------------------------ basic views
    @property
    def num_classes(self) -> int:
        """Number of dataset classes K (background excluded)."""
        return len(self.class_names)

    @property
    def num_steps(self) -> int:
        """Number of learning steps (1 for joint/offline training)."""
        return len(self.steps)

    @property
    def learning_order(self) -> tuple[int, ...]:
        """Dataset indices in learning order: model index ``m`` is ``learning_order[m - 1]``."""
        return tuple(c for step in self.steps for c in step)

    def classes_per_step(self) -> list[int]:
        """Output channels the model adds at each step: ``[1 + len(steps[0]), len(steps[1]), ...]``.

        Step 0 includes the background channel.
        """
        return [len(step) + (1 if t == 0 else 0) for t, step in enumerate(self.steps)]

    def model_class_names(self) -> list[str]:
        """Class names in model index order 1..K (background not included)."""
        return [self.class_names[c - 1] for c in self.learning_order]

    def step_class_names(self, t: int) -> list[str]:
        """Names of the classes learnt at step ``t``, in learning order."""
        self._check_step(t)
        return [self.class_names[c - 1] for c in self.steps[t]]

    # -------------------------------------------------------- model index sets
    def _offset(self, t: int) -> int:
        """Number of classes learnt before step ``t``."""
        return sum(len(step) for step in self.steps[:t])

    def _check_step(self, t: int) -> None:
        if isinstance(t, bool) or not isinstance(t, int | np.integer):
            raise TypeError(f"step must be an int, got {t!r}")
        if not 0 <= t < self.num_steps:
            raise IndexError(
                f"step {t} out of range: this schedule has steps 0..{self.num_steps - 1}"
            )

    def new_classes(self, t: int) -> tuple[int, ...]:
        """Model indices of the classes learnt at step ``t``."""
        self._check_step(t)
        start = self._offset(t) + 1
        return tuple(range(start, start + len(self.steps[t])))

    def old_classes(self, t: int) -> tuple[int, ...]:
        """Model indices of the classes learnt at steps ``< t`` (empty at step 0)."""
        self._check_step(t)
        return tuple(range(1, self._offset(t) + 1))

    def seen_classes(self, t: int) -> tuple[int, ...]:
        """Model indices of the classes learnt at steps ``<= t``."""
        self._check_step(t)
        return tuple(range(1, self._offset(t + 1) + 1))

    def future_classes(self, t: int) -> tuple[int, ...]:
        """Model indices of the classes learnt at steps ``> t``."""
        self._check_step(t)
        return tuple(range(self._offset(t + 1) + 1, self.num_classes + 1))

    # ------------------------------------------------------------------ LUTs
    @cached_property
    def model_index(self) -> np.ndarray:
        """(256,) uint8 read-only LUT: dataset index -> model index.

        0 -> 0 (background), 255 -> 255 (ignore), class ``c`` -> its learning position; any
        other value (not a dataset class) -> 255.
        """
        lut = blank_lut()
        for model_idx, dataset_idx in enumerate(self.learning_order, start=1):
            lut[dataset_idx] = model_idx
        lut.flags.writeable = False
        return lut

    @cached_property
    def dataset_index(self) -> np.ndarray:
        """(256,) uint8 read-only LUT: model index -> dataset index (inverse of ``model_index``).

        Used to write predictions back in the dataset's label values. 0 -> 0, 255 -> 255, other
        values that are not model classes -> 255.
        """
        lut = blank_lut()
        for model_idx, dataset_idx in enumerate(self.learning_order, start=1):
            lut[model_idx] = dataset_idx
        lut.flags.writeable = False
        return lut

    def _lut(self, keep: Iterable[int], to_background: Iterable[int]) -> np.ndarray:
        """LUT over dataset indices: model classes in ``keep`` keep their model index, those
        in ``to_background`` become 0; background -> 0, 255 -> 255, anything else -> 255."""
        inverse = self.dataset_index
        lut = blank_lut()
        for m in keep:
            lut[inverse[m]] = m
        for m in to_background:
            lut[inverse[m]] = BACKGROUND
        return lut

    def train_lut(self, t: int) -> np.ndarray:
        """(256,) uint8 LUT: dataset-index label -> training target at step ``t``.

        Classes new at ``t`` -> their model index; old and future classes -> 0 (background,
        as in the overlapped/disjoint protocols); background -> 0; 255 -> 255; other values ->
        255.
        """
        return self._lut(self.new_classes(t), self.old_classes(t) + self.future_classes(t))

    def eval_lut(self, t: int) -> np.ndarray:
        """(256,) uint8 LUT: dataset-index label -> evaluation target at step ``t``.

        Seen classes (steps ``<= t``) -> their model index; future classes -> 0; background ->
        0; 255 -> 255; other values -> 255.
        """
        return self._lut(self.seen_classes(t), self.future_classes(t))

    def joint_lut(self) -> np.ndarray:
        """(256,) uint8 LUT: every class -> its model index (offline/joint training)."""
        return self.model_index.copy()

    remap = staticmethod(remap)

    # --------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe plain form: ``{"spec": str, "class_names": [str], "steps": [[int]]}``."""
        return {
            "spec": self.spec,
            "class_names": list(self.class_names),
            "steps": [list(step) for step in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSchedule:
        """Inverse of :meth:`to_dict` (validates the schedule again)."""
        try:
            return cls(
                class_names=tuple(data["class_names"]),
                steps=tuple(tuple(step) for step in data["steps"]),
                spec=str(data.get("spec", "")),
            )
        except (KeyError, TypeError) as err:
            raise TaskSpecError(
                f"not a task schedule dict (needs 'class_names' and 'steps'): {err}"
            ) from None

    def describe(self) -> str:
        """Human-readable table of steps, model indices and class names."""
        head = (
            f"task {self.spec!r}: {self.num_classes} classes in {self.num_steps} "
            f"step{'s' if self.num_steps != 1 else ''} (model index 0 = background)"
        )
        rows = [("step", "new", "model idx", "classes")]
        for t in range(self.num_steps):
            new = self.new_classes(t)
            span = str(new[0]) if len(new) == 1 else f"{new[0]}-{new[-1]}"
            rows.append((str(t), str(len(new)), span, ", ".join(self.step_class_names(t))))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [head]
        for r in rows:
            lines.append("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
        return "\n".join(line.rstrip() for line in lines)

