"""Segmentation metrics from one confusion matrix over the whole evaluation set.

Notation: ``M`` is a (K, K) confusion matrix, rows = ground truth, columns = prediction, so
``M[g, p]`` counts pixels of true class ``g`` predicted as ``p``. For class ``c``::

    TP_c = M[c, c]
    FP_c = sum_g M[g, c] - TP_c        (other classes' pixels predicted as c)
    FN_c = sum_p M[c, p] - TP_c        (c's pixels predicted as anything else)
    IoU_c = TP_c / (TP_c + FP_c + FN_c)
    F1_c  = 2 TP_c / (2 TP_c + FP_c + FN_c)

A class with ``TP + FP + FN == 0`` (absent from both ground truth and predictions) has an
undefined score: the functions return NaN for it (and the summary's means skip it).

The old / new / all summary of one evaluation and forgetting are in
:mod:`geoidec.evaluation.summary`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from geoidec.constants import IGNORE_INDEX

__all__ = [
    "ConfusionMatrix",
    "as_matrix",
    "check_classes",
    "drop_gt_rows",
    "per_class_f1",
    "per_class_iou",
    "pixel_accuracy",
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
def as_matrix(cm: np.ndarray | ConfusionMatrix) -> np.ndarray:
    """``cm``'s counts as a float64 (K, K) array; ValueError unless square."""
    m = cm.matrix if isinstance(cm, ConfusionMatrix) else np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    return m.astype(np.float64)


def check_classes(classes: Iterable[int], k: int) -> list[int]:
    """``classes`` as a list of ints; ValueError for any outside ``[0, k)``."""
    out = [int(c) for c in classes]
    bad = [c for c in out if not 0 <= c < k]
    if bad:
        raise ValueError(f"class indices {bad} are outside the {k}x{k} confusion matrix")
    return out


def drop_gt_rows(cm: np.ndarray | ConfusionMatrix, rows: Iterable[int]) -> np.ndarray:
    """Copy of ``cm`` with the given ground-truth rows zeroed: those pixels are excluded from
    every score (they count as neither false positives nor false negatives)."""
    m = (cm.matrix if isinstance(cm, ConfusionMatrix) else np.asarray(cm)).copy()
    for r in check_classes(rows, m.shape[0]):
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
    m = as_matrix(cm)
    tp, fp, fn = _tp_fp_fn(m)
    out = {}
    for c in check_classes(classes, m.shape[0]):
        denom = tp[c] + fp[c] + fn[c]
        out[c] = float(tp[c] / denom) if denom > 0 else math.nan
    return out


def per_class_f1(cm: np.ndarray | ConfusionMatrix, classes: Sequence[int]) -> dict[int, float]:
    """F1_c = 2 TP / (2 TP + FP + FN) (the Dice score) for each class in ``classes``.

    NaN where ``TP + FP + FN == 0``.
    """
    m = as_matrix(cm)
    tp, fp, fn = _tp_fp_fn(m)
    out = {}
    for c in check_classes(classes, m.shape[0]):
        denom = 2 * tp[c] + fp[c] + fn[c]
        out[c] = float(2 * tp[c] / denom) if denom > 0 else math.nan
    return out


def pixel_accuracy(cm: np.ndarray | ConfusionMatrix, classes: Sequence[int]) -> float:
    """Overall accuracy over the pixels whose ground truth is in ``classes``:
    ``sum_{c in classes} M[c, c] / sum_{c in classes} sum_p M[c, p]``. NaN if there are none.

    Predictions of any class (also ones outside ``classes``) count as errors.
    """
    m = as_matrix(cm)
    idx = check_classes(classes, m.shape[0])
    total = m[idx, :].sum()
    return float(m[idx, idx].sum() / total) if total > 0 else math.nan
