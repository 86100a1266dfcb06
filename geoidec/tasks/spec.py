"""The task notation, which says which dataset classes are learnt at which step, and its parsing.

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
learning order**: channel 0 is background, then step 0's classes, then step 1's, and so on
(:class:`geoidec.tasks.schedule.TaskSchedule` holds the two index spaces).
:func:`parse_spec` turns a spec into the dataset indices learnt at each step.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from geoidec.constants import IGNORE_INDEX
from geoidec.errors import UsageError

__all__ = ["MAX_CLASSES", "TaskSpecError", "check_class_names", "normalise_name", "parse_spec"]

#: Largest number of dataset classes: model indices 1..K must stay below IGNORE_INDEX (255).
MAX_CLASSES = IGNORE_INDEX - 1

_NUMERIC_SPEC = re.compile(r"-?\d+(?:--?\d+)*")
_NUMERIC_TOKEN = re.compile(r"(?:^|-)(-?\d+)")
_NUMBER_LIKE = re.compile(r"[+-]?\d+(?:\.\d*)?")
_NAME_SEPARATORS = re.compile(r"[\s_\-]+")


class TaskSpecError(UsageError):
    """A task specification that cannot be parsed; the message is one user-facing line."""


def normalise_name(name: str) -> str:
    """Canonical form for class-name matching: lower case; runs of spaces/_/- become one
    ``_`` (``"Low vegetation"`` == ``"low_vegetation"``)."""
    return _NAME_SEPARATORS.sub("_", name.strip().lower()).strip("_")


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


def _example(num: int) -> str:
    """A valid example spec for ``num`` classes."""
    return f"{num - 1}-1" if num > 1 else "1"


def check_class_names(names: Sequence[str]) -> None:
    """Raise :class:`TaskSpecError` unless ``names`` holds 1..MAX_CLASSES names that stay
    distinct after :func:`normalise_name`."""
    if not names:
        raise TaskSpecError("the dataset has no classes; a task needs at least one class")
    if len(names) > MAX_CLASSES:
        raise TaskSpecError(
            f"the dataset has {len(names)} classes; at most {MAX_CLASSES} fit in 8-bit labels"
        )
    seen: dict[str, str] = {}
    for name in names:
        key = normalise_name(name)
        if not key:
            raise TaskSpecError(f"class names must not be empty: {list(names)}")
        if key in seen:
            raise TaskSpecError(
                f"dataset class names {seen[key]!r} and {name!r} are the same once case, "
                "spaces, underscores and hyphens are ignored; rename one"
            )
        seen[key] = name


def parse_spec(spec: str, class_names: Sequence[str]
               ) -> tuple[str, tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Parse a task spec (see the module docstring) against the dataset's class list: the
    spec's text (stripped), the class names and the dataset indices learnt at each step.

    Raises:
        TaskSpecError: with a one-line message naming what is wrong and what is valid.
    """
    if isinstance(class_names, str):
        raise TaskSpecError("class_names must be a list of class names, not one string")
    names = tuple(str(n) for n in class_names)
    check_class_names(names)
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
    return text, names, steps


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


def _step_items(spec: str, t: int, chunk: str) -> list[str]:
    """The class names of step ``t`` of a name list (``chunk``, between ``|``)."""
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
    return items


def _unknown_classes(spec: str, unknown: list[str], lookup: dict[str, int],
                     names: tuple[str, ...]) -> TaskSpecError:
    """The error for the names of a name list that are not dataset classes, with the closest
    class names as hints."""
    hints = []
    for item in unknown:
        close = difflib.get_close_matches(normalise_name(item), list(lookup), n=3, cutoff=0.6)
        hint = f"{item!r}"
        if close:
            hint += (
                " (did you mean "
                + " or ".join(repr(names[lookup[c] - 1]) for c in close)
                + "?)"
            )
        hints.append(hint)
    label = "class" if len(unknown) == 1 else "classes"
    return TaskSpecError(
        f"task spec {spec!r} names unknown {label} {', '.join(hints)}; valid class names "
        f"are: {', '.join(names)}"
    )


def _parse_names(spec: str, names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    lookup = {normalise_name(n): i for i, n in enumerate(names, start=1)}
    steps: list[tuple[int, ...]] = []
    unknown: list[str] = []
    first_step: dict[int, int] = {}
    for t, chunk in enumerate(spec.split("|")):
        step: list[int] = []
        for item in _step_items(spec, t, chunk):
            idx = lookup.get(normalise_name(item))
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
        raise _unknown_classes(spec, unknown, lookup, names)
    missing = [names[i - 1] for i in range(1, len(names) + 1) if i not in first_step]
    if missing:
        raise TaskSpecError(
            f"task spec {spec!r} leaves out {', '.join(repr(m) for m in missing)}; a name list "
            f"must assign every class to a step (dataset classes: {', '.join(names)})"
        )
    return tuple(steps)
