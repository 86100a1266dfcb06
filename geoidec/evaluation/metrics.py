"""Segmentation metrics from one confusion matrix over the whole evaluation set.

Notation: ``M`` is a (K, K) confusion matrix, rows = ground truth, columns = prediction, so
``M[g, p]`` counts pixels of true class ``g`` predicted as ``p``. For class ``c``::

    TP_c = M[c, c]
    FP_c = sum_g M[g, c] - TP_c        (other classes' pixels predicted as c)
    FN_c = sum_p M[c, p] - TP_c        (c's pixels predicted as anything else)
    IoU_c = TP_c / (TP_c + FP_c + FN_c)
    F1_c  = 2 TP_c / (2 TP_c + FP_c + FN_c)

A class with ``TP + FP + FN == 0`` (absent from both ground truth and predictions) has an
undefined score: the functions return NaN for it and the means skip it.

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
import torch

from geoidec.constants import BACKGROUND, IGNORE_INDEX

__all__ = [
    "ConfusionMatrix",
    "drop_gt_rows",
    "forgetting",
    "per_class_f1",
    "per_class_iou",
    "pixel_accuracy",
    "summarize",
]


class ConfusionMatrix:
    """Accumulates a (K, K) int64 confusion matrix (rows = ground truth, columns = prediction).

    ``update`` accepts torch tensors on any device (counted with ``torch.bincount`` on that
    device and accumulated there, so no host transfer happens per batch) or numpy arrays.
    Pixels are skipped when the target equals ``ignore_index`` or when the target or the
    prediction falls outside ``[0, num_classes)``.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._host = np.zeros((num_classes, num_classes), dtype=np.int64)
        self._device: dict[torch.device, torch.Tensor] = {}

    # ----------------------------------------------------------- accumulation
    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray) -> None:
        """Count ``(target, pred)`` pairs. ``pred`` holds class indices (argmax), not logits,
        and must have the same shape as ``target``."""
        if isinstance(pred, torch.Tensor) or isinstance(target, torch.Tensor):
            device = pred.device if isinstance(pred, torch.Tensor) else target.device
            p = torch.as_tensor(pred, device=device)
            t = torch.as_tensor(target, device=device)
            self._check(p.shape, t.shape, p.dtype.is_floating_point, t.dtype.is_floating_point)
            self._update_torch(p, t)
        else:
            p_np, t_np = np.asarray(pred), np.asarray(target)
            self._check(
                p_np.shape,
                t_np.shape,
                not np.issubdtype(p_np.dtype, np.integer) and p_np.dtype != np.bool_,
                not np.issubdtype(t_np.dtype, np.integer) and t_np.dtype != np.bool_,
            )
            self._update_numpy(p_np, t_np)

    @staticmethod
    def _check(p_shape: Any, t_shape: Any, p_float: bool, t_float: bool) -> None:
        if tuple(p_shape) != tuple(t_shape):
            raise ValueError(
                f"pred shape {tuple(p_shape)} differs from target shape {tuple(t_shape)}; "
                "pass class indices (e.g. logits.argmax(1)), not logits"
            )
        if p_float or t_float:
            raise TypeError("pred and target must hold integer class indices, not floats")

    def _update_torch(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        k = self.num_classes
        p = pred.reshape(-1).long()
        t = target.reshape(-1).long()
        valid = (t != self.ignore_index) & (t >= 0) & (t < k) & (p >= 0) & (p < k)
        # invalid pixels go to an extra bin k*k that is dropped: no boolean-mask compaction
        index = torch.where(valid, t * k + p, k * k)
        counts = torch.bincount(index, minlength=k * k + 1)[: k * k].reshape(k, k)
        acc = self._device.get(counts.device)
        if acc is None:
            self._device[counts.device] = counts.to(torch.int64)
        else:
            acc += counts

    def _update_numpy(self, pred: np.ndarray, target: np.ndarray) -> None:
        k = self.num_classes
        p = pred.reshape(-1).astype(np.int64, copy=False)
        t = target.reshape(-1).astype(np.int64, copy=False)
        valid = (t != self.ignore_index) & (t >= 0) & (t < k) & (p >= 0) & (p < k)
        counts = np.bincount(t[valid] * k + p[valid], minlength=k * k)
        self._host += counts.reshape(k, k).astype(np.int64, copy=False)

    def _flush(self) -> None:
        for acc in self._device.values():
            self._host += acc.cpu().numpy()
        self._device.clear()

    # ---------------------------------------------------------------- access
    @property
    def matrix(self) -> np.ndarray:
        """The (K, K) int64 matrix accumulated so far (rows = ground truth, cols = prediction).

        Reading it copies any on-device counts to the host (one synchronisation).
        """
        self._flush()
        return self._host

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, ignore_index: int = IGNORE_INDEX) -> ConfusionMatrix:
        """A ConfusionMatrix holding a copy of an existing (K, K) count matrix."""
        m = np.asarray(matrix)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
        cm = cls(int(m.shape[0]), ignore_index=ignore_index)
        cm._host += m.astype(np.int64)
        return cm

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add the counts of ``other`` (e.g. another worker) to this one in place; returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"can only merge a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge confusion matrices of {self.num_classes} and "
                f"{other.num_classes} classes"
            )
        self._host += other.matrix
        return self

    def __add__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if not isinstance(other, ConfusionMatrix):
            return NotImplemented
        out = ConfusionMatrix.from_matrix(self.matrix, ignore_index=self.ignore_index)
        return out.merge(other)

    def __iadd__(self, other: ConfusionMatrix) -> ConfusionMatrix:
        return self.merge(other)

    def reset(self) -> None:
        """Zero all counts."""
        self._device.clear()
        self._host[...] = 0

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, "
            f"ignore_index={self.ignore_index}, pixels={int(self.matrix.sum())})"
        )


# ----------------------------------------------------------------- scores
def _as_matrix(cm: np.ndarray | ConfusionMatrix) -> np.ndarray:
    m = cm.matrix if isinstance(cm, ConfusionMatrix) else np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    return m.astype(np.float64)


def _check_classes(classes: Iterable[int], k: int) -> list[int]:
    out = [int(c) for c in classes]
    bad = [c for c in out if not 0 <= c < k]
    if bad:
        raise ValueError(f"class indices {bad} are outside the {k}x{k} confusion matrix")
    return out


def drop_gt_rows(cm: np.ndarray | ConfusionMatrix, rows: Iterable[int]) -> np.ndarray:
    """Copy of ``cm`` with the given ground-truth rows zeroed: those pixels are excluded from
    every score (they count as neither false positives nor false negatives)."""
    m = (cm.matrix if isinstance(cm, ConfusionMatrix) else np.asarray(cm)).copy()
    for r in _check_classes(rows, m.shape[0]):
        m[r, :] = 0
    return m


def _tp_fp_fn(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(m)
    return tp, m.sum(axis=0) - tp, m.sum(axis=1) - tp


def per_class_iou(cm: np.ndarray | ConfusionMatrix, classes: Sequence[int]) -> dict[int, float]:
    """IoU_c = TP / (TP + FP + FN) for each class index in ``classes``, on ``cm`` as given.

    NaN where ``TP + FP + FN == 0``. To exclude ground-truth background first, pass
    ``drop_gt_rows(cm, [0])``.
    """
    m = _as_matrix(cm)
    tp, fp, fn = _tp_fp_fn(m)
    out = {}
    for c in _check_classes(classes, m.shape[0]):
        denom = tp[c] + fp[c] + fn[c]
        out[c] = float(tp[c] / denom) if denom > 0 else math.nan
    return out


def per_class_f1(cm: np.ndarray | ConfusionMatrix, classes: Sequence[int]) -> dict[int, float]:
    """F1_c = 2 TP / (2 TP + FP + FN) (the Dice score) for each class in ``classes``.

    NaN where ``TP + FP + FN == 0``.
    """
    m = _as_matrix(cm)
    tp, fp, fn = _tp_fp_fn(m)
    out = {}
    for c in _check_classes(classes, m.shape[0]):
        denom = 2 * tp[c] + fp[c] + fn[c]
        out[c] = float(2 * tp[c] / denom) if denom > 0 else math.nan
    return out


def pixel_accuracy(cm: np.ndarray | ConfusionMatrix, classes: Sequence[int]) -> float:
    """Overall accuracy over the pixels whose ground truth is in ``classes``:
    ``sum_{c in classes} M[c, c] / sum_{c in classes} sum_p M[c, p]``. NaN if there are none.

    Predictions of any class (also ones outside ``classes``) count as errors.
    """
    m = _as_matrix(cm)
    idx = _check_classes(classes, m.shape[0])
    total = m[idx, :].sum()
    return float(m[idx, idx].sum() / total) if total > 0 else math.nan


def _nanmean(values: Iterable[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return float(sum(finite) / len(finite)) if finite else None


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


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
    m = _as_matrix(cm)
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
    old_idx = _check_classes(old, k)
    new_idx = _check_classes(new, k)
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
        "per_class_iou": {names[c]: _clean(iou[c]) for c in evaluated},
        "per_class_f1": {names[c]: _clean(f1[c]) for c in evaluated},
        "pixel_accuracy": _clean(pixel_accuracy(m, evaluated)) if evaluated else None,
        "mean_f1": _nanmean(f1[c] for c in evaluated),
    }


def _per_class(scores: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept either a ``{name: iou}`` dict or a :func:`summarize` result."""
    inner = scores.get("per_class_iou")
    return inner if isinstance(inner, Mapping) else scores


def _score(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


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
