"""Scores of one evaluation step (old / new / all classes) and forgetting across steps.

:func:`summarize` turns the whole-set confusion matrix (:mod:`geoidec.evaluation.metrics`) into
the JSON-safe mIoU of the old, new and all evaluated classes, per-class IoU and F1, and pixel
accuracy; :func:`forgetting` compares a step's per-class IoU with the best of the earlier steps.
Undefined (NaN) scores become None; means skip them.

Background handling (docs/protocol.md, "Metrics"): when background is not an evaluated class
(ISPRS, ADE20K) the pixels whose *ground truth* is background (row 0) are removed before any
score is computed, so predicting a class on a background pixel is not a false positive;
predicting background on a real class's pixel still is a false negative of that class (column
0 stays). When background is evaluated (Pascal VOC) it is an ordinary class and belongs to the
"old" group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from geoidec.constants import BACKGROUND
from geoidec.evaluation.metrics import (
    ConfusionMatrix,
    as_matrix,
    check_classes,
    drop_gt_rows,
    per_class_f1,
    per_class_iou,
    pixel_accuracy,
)

__all__ = ["forgetting", "summarize"]


def _nanmean(values: Iterable[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else None


def _score(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def summarize(
    cm: np.ndarray | ConfusionMatrix,
    *,
    class_names: Sequence[str],
    old: Sequence[int],
    new: Sequence[int],
    include_background: bool,
    background_name: str = "background",
) -> dict[str, Any]:
    """JSON-safe scores for one evaluation (one step), from the whole-set confusion matrix.

    Args:
        cm: (K, K) matrix in model index space (index 0 = background).
        class_names: names by model index. Either K names (``class_names[0]`` names the
            background) or K - 1 names for indices 1..K-1 (e.g.
            ``TaskSchedule.model_class_names()``), in which case ``background_name`` names 0.
        old: evaluated classes learnt before this step; includes 0 when background is
            evaluated (VOC). At step 0 pass the step's classes here and ``new=[]``.
        new: evaluated classes learnt at this step.
        include_background: if False, ground-truth background pixels (row 0) are dropped
            before scoring and 0 must not be in ``old``/``new``; if True, 0 must be in one.

    Returns:
        ``{"miou_old", "miou_new", "miou_all", "per_class_iou", "per_class_f1",
        "pixel_accuracy", "mean_f1"}``: fractions in [0, 1]. The means skip undefined (NaN)
        classes and are None when nothing is left (e.g. ``miou_new`` at step 0); undefined
        per-class scores are None. The per-class dicts map ``name -> score`` over old + new.
        ``pixel_accuracy`` is over pixels of the evaluated classes.
    """
    m = as_matrix(cm)
    k = m.shape[0]
    if len(class_names) == k:
        names = [str(n) for n in class_names]
    elif len(class_names) == k - 1:
        names = [background_name] + [str(n) for n in class_names]
    else:
        raise ValueError(
            f"class_names has {len(class_names)} names but the confusion matrix has {k} "
            f"classes; give {k} names (background first) or {k - 1} (background excluded)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique: {names}")
    old_idx = check_classes(old, k)
    new_idx = check_classes(new, k)
    if set(old_idx) & set(new_idx):
        raise ValueError(f"classes {sorted(set(old_idx) & set(new_idx))} are both old and new")
    evaluated = old_idx + new_idx
    if len(set(evaluated)) != len(evaluated):
        raise ValueError(f"a class appears twice in old/new: old={old_idx}, new={new_idx}")
    if include_background and BACKGROUND not in evaluated:
        raise ValueError("include_background=True but background (0) is not in old or new")
    if not include_background:
        if BACKGROUND in evaluated:
            raise ValueError("include_background=False but background (0) was passed in old/new")
        m = drop_gt_rows(m, [BACKGROUND])

    iou = per_class_iou(m, evaluated)
    f1 = per_class_f1(m, evaluated)
    miou_old = _nanmean(iou[c] for c in old_idx)
    miou_new = _nanmean(iou[c] for c in new_idx)
    return {
        "miou_old": miou_old,
        "miou_new": miou_new,
        "miou_all": _nanmean(iou[c] for c in evaluated),
        "per_class_iou": {names[c]: _score(iou[c]) for c in evaluated},
        "per_class_f1": {names[c]: _score(f1[c]) for c in evaluated},
        "pixel_accuracy": _score(pixel_accuracy(m, evaluated)) if evaluated else None,
        "mean_f1": _nanmean(f1[c] for c in evaluated),
    }


def _per_class(scores: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept either a ``{name: iou}`` dict or a :func:`summarize` result."""
    inner = scores.get("per_class_iou")
    return inner if isinstance(inner, Mapping) else scores


def forgetting(
    history: Sequence[Mapping[str, float | None]], current: Mapping[str, float | None]
) -> dict[str, float]:
    """Forgetting per class: ``max_{s < now} IoU_c(s) - IoU_c(now)``.

    ``history`` holds the per-class IoU dicts (``{name: iou}``, or whole :func:`summarize`
    results) of the earlier steps, ``current`` the one of this step. Only classes with a
    defined IoU both in some earlier step and now are reported (new classes are not), in
    ``current``'s order. Positive = forgotten, negative = improved.
    """
    now = _per_class(current)
    past = [_per_class(h) for h in history]
    out: dict[str, float] = {}
    for name, value in now.items():
        cur = _score(value)
        if cur is None:
            continue
        before = [s for h in past if (s := _score(h.get(name))) is not None]
        if before:
            out[name] = max(before) - cur
    return out
