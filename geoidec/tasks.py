"""Incremental task schedules: which dataset classes are learnt at which step.

Notation (docs/protocol.md, "Task notation"), over the dataset's ordered class list
(background excluded, ``K`` classes, dataset indices ``1..K``):

``"a-b-c"`` (three or more counts)
    Literal: step 0 learns the first ``a`` classes, step 1 the next ``b``, ...; the counts
    must sum to ``K``. ISPRS (K=5): ``"2-2-1"`` = [2, 2, 1], ``"2-1-1-1"`` = [2, 1, 1, 1].
``"N-k"`` (two counts)
    ``N`` classes first, then steps of ``k`` until the classes run out. VOC (K=20):
    ``"15-1"`` = [15, 1, 1, 1, 1, 1], ``"15-5"`` = [15, 5]; ISPRS: ``"2-3"`` = [2, 3].
    ``N`` must be smaller than ``K``. When ``k`` does not divide ``K - N`` the **last step
    is smaller** (``"2-2"`` on ISPRS = [2, 2, 1]); ``k`` larger than ``K - N`` is an error
    (it would describe a single partial step; write ``"N-(K-N)"`` instead).
``"K"`` (one count equal to the class count)
    A single step with every class: offline / joint training.
Explicit name lists, e.g. ``"forest,water|herbaceous,shrubland,developed"``
    Steps separated by ``|``, classes by ``,``. Names match case-insensitively, with spaces,
    underscores and hyphens equivalent (``"low vegetation"`` == ``"Low_Vegetation"``). Every
    class must appear exactly once. A name list defines its own learning order.

Numeric specs learn the classes in dataset order. The **model's output channels are in
learning order**: channel 0 is background, then step 0's classes, then step 1's, and so on.
:class:`TaskSchedule` holds the mapping between the two index spaces ("dataset index" as
stored in label rasters, "model index" as predicted by the network) and builds the lookup
tables used to remap labels for training and evaluation at each step.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import numpy as np
import torch

from geoidec.constants import BACKGROUND, IGNORE_INDEX
from geoidec.errors import UsageError

__all__ = ["TaskSchedule", "TaskSpecError", "normalise_name", "remap"]

#: Largest number of dataset classes: model indices 1..K must stay below IGNORE_INDEX (255).
MAX_CLASSES = IGNORE_INDEX - 1

_LUT_SIZE = 256
_NUMERIC_SPEC = re.compile(r"-?\d+(?:--?\d+)*")
_NUMERIC_TOKEN = re.compile(r"(?:^|-)(-?\d+)")
_NUMBER_LIKE = re.compile(r"[+-]?\d+(?:\.\d*)?")
_NAME_SEPARATORS = re.compile(r"[\s_\-]+")

LabelT = TypeVar("LabelT", np.ndarray, torch.Tensor)


class TaskSpecError(UsageError):
    """A task specification that cannot be parsed; the message is one user-facing line."""


def normalise_name(name: str) -> str:
    """Canonical form for class-name matching: lower case; runs of spaces/_/- become one
    ``_`` (``"Low vegetation"`` == ``"low_vegetation"``)."""
    return _NAME_SEPARATORS.sub("_", name.strip().lower()).strip("_")


_normalise = normalise_name


def _short_list(names: Sequence[str], limit: int = 12) -> str:
    """``"a, b, c"``, abbreviated to the first ``limit`` names for long lists."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def _counts_to_steps(counts: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Consecutive dataset indices: counts [2, 3] -> ((1, 2), (3, 4, 5))."""
    steps = []
    start = 1
    for count in counts:
        steps.append(tuple(range(start, start + count)))
        start += count
    return tuple(steps)


def remap(labels: LabelT, lut: np.ndarray | torch.Tensor) -> LabelT:
    """Apply a (256,) lookup table to an integer label array or tensor: ``out = lut[labels]``.

    Works on numpy arrays and torch tensors (any device) of any integer dtype and returns the
    same type, dtype, shape and device. Values outside ``0..255`` (possible in int64 labels)
    become ``IGNORE_INDEX``.
    """
    if isinstance(labels, torch.Tensor):
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise TypeError(f"remap needs integer labels, got a tensor of {labels.dtype}")
        table = torch.as_tensor(np.asarray(lut) if not isinstance(lut, torch.Tensor) else lut)
        if table.shape != (_LUT_SIZE,):
            raise ValueError(f"lookup table must have shape (256,), got {tuple(table.shape)}")
        table = table.to(device=labels.device, dtype=torch.int64)
        index = labels.long()
        if labels.dtype == torch.uint8:
            return table[index].to(labels.dtype)
        inside = (index >= 0) & (index < _LUT_SIZE)
        out = torch.where(inside, table[index.clamp(0, _LUT_SIZE - 1)], IGNORE_INDEX)
        return out.to(labels.dtype)
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"remap needs integer labels, got an array of {labels.dtype}")
        table_np = lut.detach().cpu().numpy() if isinstance(lut, torch.Tensor) else np.asarray(lut)
        if table_np.shape != (_LUT_SIZE,):
            raise ValueError(f"lookup table must have shape (256,), got {table_np.shape}")
        if labels.dtype == np.uint8:
            return table_np[labels].astype(labels.dtype, copy=False)
        inside = (labels >= 0) & (labels < _LUT_SIZE)
        out = np.where(inside, table_np[np.clip(labels, 0, _LUT_SIZE - 1)], IGNORE_INDEX)
        return out.astype(labels.dtype, copy=False)
    raise TypeError(f"remap needs a numpy array or torch tensor, got {type(labels).__name__}")


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
        _check_class_names(names)
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
        """Parse a task spec (see the module docstring) against the dataset's class list.

        Raises:
            TaskSpecError: with a one-line message naming what is wrong and what is valid.
        """
        if isinstance(class_names, str):
            raise TaskSpecError("class_names must be a list of class names, not one string")
        names = tuple(str(n) for n in class_names)
        _check_class_names(names)
        if not isinstance(spec, str):
            raise TaskSpecError(f"task spec must be text such as '4-1', got {spec!r}")
        text = spec.strip()
        if not text:
            raise TaskSpecError(
                f"empty task spec; use counts such as '{_example(len(names))}' or class-name "
                "lists such as 'a,b|c'"
            )
        compact = re.sub(r"\s+", "", text)
        if _NUMERIC_SPEC.fullmatch(compact):
            counts = [int(tok) for tok in _NUMERIC_TOKEN.findall(compact)]
            steps = _parse_counts(text, counts, names)
        elif "|" in text or "," in text:
            steps = _parse_names(text, names)
        else:
            parts = [p.strip() for p in text.split("-")]
            if any(_NUMBER_LIKE.fullmatch(p) for p in parts):
                raise TaskSpecError(
                    f"task spec {text!r} mixes numbers and non-numbers; use positive whole "
                    f"counts joined by '-' (e.g. '{_example(len(names))}') or class names "
                    "with ',' between classes and '|' between steps"
                )
            steps = _parse_names(text, names)
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
        lut = np.full(_LUT_SIZE, IGNORE_INDEX, dtype=np.uint8)
        lut[BACKGROUND] = BACKGROUND
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
        lut = np.full(_LUT_SIZE, IGNORE_INDEX, dtype=np.uint8)
        lut[BACKGROUND] = BACKGROUND
        for model_idx, dataset_idx in enumerate(self.learning_order, start=1):
            lut[model_idx] = dataset_idx
        lut.flags.writeable = False
        return lut

    def _lut(self, keep: Iterable[int], to_background: Iterable[int]) -> np.ndarray:
        """LUT over dataset indices: model classes in ``keep`` keep their model index, those
        in ``to_background`` become 0; background -> 0, 255 -> 255, anything else -> 255."""
        inverse = self.dataset_index
        lut = np.full(_LUT_SIZE, IGNORE_INDEX, dtype=np.uint8)
        lut[BACKGROUND] = BACKGROUND
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


# ------------------------------------------------------------------ helpers
def _example(num: int) -> str:
    """A valid example spec for ``num`` classes."""
    return f"{num - 1}-1" if num > 1 else "1"


def _check_class_names(names: Sequence[str]) -> None:
    if not names:
        raise TaskSpecError("the dataset has no classes; a task needs at least one class")
    if len(names) > MAX_CLASSES:
        raise TaskSpecError(
            f"the dataset has {len(names)} classes; at most {MAX_CLASSES} fit in 8-bit labels"
        )
    seen: dict[str, str] = {}
    for name in names:
        key = _normalise(name)
        if not key:
            raise TaskSpecError(f"class names must not be empty: {list(names)}")
        if key in seen:
            raise TaskSpecError(
                f"dataset class names {seen[key]!r} and {name!r} are the same once case, "
                "spaces, underscores and hyphens are ignored; rename one"
            )
        seen[key] = name


def _parse_counts(
    spec: str, counts: list[int], names: tuple[str, ...]
) -> tuple[tuple[int, ...], ...]:
    num = len(names)
    listing = f"{num} classes: {_short_list(names)}"
    bad = [c for c in counts if c <= 0]
    if bad:
        raise TaskSpecError(
            f"task spec {spec!r} has a count of {bad[0]}; every step needs a positive number "
            f"of classes (e.g. '{_example(num)}')"
        )
    if len(counts) == 1:
        if counts[0] != num:
            raise TaskSpecError(
                f"task spec {spec!r} is one number, which means joint training on all classes, "
                f"but the dataset has {listing}; use '{num}' or an incremental spec such as "
                f"'{_example(num)}'"
            )
        return _counts_to_steps(counts)
    if len(counts) == 2:
        first, step = counts
        if first >= num:
            raise TaskSpecError(
                f"task spec {spec!r} learns {first} classes first, leaving none for later steps, "
                f"but the dataset has {listing}; the first count must be 1..{num - 1}, or use "
                f"'{num}' for joint training"
            )
        rest = num - first
        if step > rest:
            remain = "1 class remains" if rest == 1 else f"{rest} classes remain"
            choices = f"'{first}-1'" if rest == 1 else f"'{first}-k' with k in 1..{rest}"
            raise TaskSpecError(
                f"task spec {spec!r} asks for steps of {step} but only {remain} after the first "
                f"{first} (dataset has {listing}); use {choices}"
            )
        full, last = divmod(rest, step)
        return _counts_to_steps([first] + [step] * full + ([last] if last else []))
    total = sum(counts)
    if total != num:
        raise TaskSpecError(
            f"task spec {spec!r} sums to {total} but the dataset has {listing}; the counts of "
            f"a spec with three or more steps must add up to {num}"
        )
    return _counts_to_steps(counts)


def _parse_names(spec: str, names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    lookup = {_normalise(n): i for i, n in enumerate(names, start=1)}
    valid = ", ".join(names)
    steps: list[tuple[int, ...]] = []
    unknown: list[str] = []
    first_step: dict[int, int] = {}
    for t, chunk in enumerate(spec.split("|")):
        items = [item.strip() for item in chunk.split(",")]
        if not chunk.strip():
            raise TaskSpecError(
                f"task spec {spec!r} has an empty step {t}; separate steps with '|' and "
                "classes with ',' (e.g. 'a,b|c')"
            )
        if any(not item for item in items):
            raise TaskSpecError(
                f"task spec {spec!r} has an empty class name in step {t}; separate classes "
                "with single commas"
            )
        step: list[int] = []
        for item in items:
            idx = lookup.get(_normalise(item))
            if idx is None:
                unknown.append(item)
                continue
            if idx in first_step:
                where = (
                    "twice in the same step"
                    if first_step[idx] == t
                    else f"in steps {first_step[idx]} and {t}"
                )
                raise TaskSpecError(
                    f"task spec {spec!r} names class {names[idx - 1]!r} {where}; each class "
                    "must be learnt at exactly one step"
                )
            first_step[idx] = t
            step.append(idx)
        steps.append(tuple(step))
    if unknown:
        hints = []
        for item in unknown:
            close = difflib.get_close_matches(_normalise(item), list(lookup), n=3, cutoff=0.6)
            hint = f"{item!r}"
            if close:
                hint += (
                    " (did you mean "
                    + " or ".join(repr(names[lookup[c] - 1]) for c in close)
                    + "?)"
                )
            hints.append(hint)
        label = "class" if len(unknown) == 1 else "classes"
        raise TaskSpecError(
            f"task spec {spec!r} names unknown {label} {', '.join(hints)}; valid class names "
            f"are: {valid}"
        )
    missing = [names[i - 1] for i in range(1, len(names) + 1) if i not in first_step]
    if missing:
        raise TaskSpecError(
            f"task spec {spec!r} leaves out {', '.join(repr(m) for m in missing)}; a name list "
            f"must assign every class to a step (dataset classes: {valid})"
        )
    return tuple(steps)
