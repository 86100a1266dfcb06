"""Confusion-matrix metrics checked against matrices worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from geoidec.evaluation.metrics import (
    ConfusionMatrix,
    drop_gt_rows,
    per_class_f1,
    per_class_iou,
    pixel_accuracy,
)
from geoidec.evaluation.summary import forgetting, summarize

# 0 = background, 1..3 = classes, 255 = ignore
TARGET = np.array([[0, 1, 1, 2], [2, 2, 3, 255], [0, 3, 1, 1]], dtype=np.uint8)
PRED = np.array([[1, 1, 0, 2], [2, 3, 3, 1], [0, 3, 2, 1]], dtype=np.uint8)
# (t, p) pairs: (0,1) (1,1) (1,0) (2,2) | (2,2) (2,3) (3,3) ignored | (0,0) (3,3) (1,2) (1,1)
HAND = np.array(
    [
        [1, 1, 0, 0],
        [1, 2, 1, 0],
        [0, 0, 2, 1],
        [0, 0, 0, 2],
    ]
)
NAMES = ["background", "a", "b", "c"]


def _cm() -> ConfusionMatrix:
    cm = ConfusionMatrix(4)
    cm.update(PRED, TARGET)
    return cm


def test_matrix_numpy() -> None:
    cm = _cm()
    assert cm.matrix.dtype == np.int64 and cm.matrix.shape == (4, 4)
    assert cm.matrix.tolist() == HAND.tolist()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_matrix_torch_matches_numpy(dtype: torch.dtype) -> None:
    cm = ConfusionMatrix(4)
    cm.update(torch.from_numpy(PRED).to(dtype), torch.from_numpy(TARGET).to(dtype))
    assert cm.matrix.tolist() == HAND.tolist()
    cm.update(torch.from_numpy(PRED), TARGET)  # mixed torch / numpy
    assert cm.matrix.tolist() == (2 * HAND).tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_matrix_cuda() -> None:
    cm = ConfusionMatrix(4)
    for _ in range(3):
        cm.update(torch.from_numpy(PRED).cuda(), torch.from_numpy(TARGET).cuda())
    cm.update(PRED, TARGET)
    assert cm.matrix.tolist() == (4 * HAND).tolist()


def test_out_of_range_values_are_skipped() -> None:
    cm = ConfusionMatrix(4)
    target = np.array([1, 2, -1, 7, 3, 255], dtype=np.int64)
    pred = np.array([1, 9, 2, 1, -3, 1], dtype=np.int64)
    cm.update(pred, target)
    expect = np.zeros((4, 4), dtype=np.int64)
    expect[1, 1] = 1
    assert cm.matrix.tolist() == expect.tolist()
    tcm = ConfusionMatrix(4)
    tcm.update(torch.from_numpy(pred), torch.from_numpy(target))
    assert tcm.matrix.tolist() == expect.tolist()


def test_custom_ignore_index_and_shape_errors() -> None:
    cm = ConfusionMatrix(3, ignore_index=2)
    cm.update(np.array([0, 1, 1]), np.array([0, 2, 1]))
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="argmax"):
        cm.update(np.zeros((2, 3, 4, 4)), np.zeros((2, 4, 4), dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        cm.update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        ConfusionMatrix(0)


def test_merge_add_reset() -> None:
    a, b = _cm(), _cm()
    c = a + b
    assert c.matrix.tolist() == (2 * HAND).tolist()
    assert a.matrix.tolist() == HAND.tolist()  # operands untouched
    a.merge(b)
    assert a.matrix.tolist() == (2 * HAND).tolist()
    a += b
    assert a.matrix.tolist() == (3 * HAND).tolist()
    a.reset()
    assert a.matrix.sum() == 0
    with pytest.raises(ValueError, match="4 and 5"):
        a.merge(ConfusionMatrix(5))
    assert ConfusionMatrix.from_matrix(HAND).matrix.tolist() == HAND.tolist()


def test_scores_full_matrix() -> None:
    # TP [1,2,2,2]; column sums [2,3,3,3] -> FP [1,1,1,1]; row sums [2,4,3,2] -> FN [1,2,1,0]
    iou = per_class_iou(HAND, [0, 1, 2, 3])
    assert iou == pytest.approx({0: 1 / 3, 1: 2 / 5, 2: 2 / 4, 3: 2 / 3})
    f1 = per_class_f1(HAND, [0, 1, 2, 3])
    assert f1 == pytest.approx({0: 2 / 4, 1: 4 / 7, 2: 4 / 6, 3: 4 / 5})
    assert pixel_accuracy(HAND, [0, 1, 2, 3]) == pytest.approx(7 / 11)
    assert pixel_accuracy(HAND, [1, 2, 3]) == pytest.approx(6 / 9)
    assert per_class_iou(_cm(), [3]) == pytest.approx({3: 2 / 3})  # ConfusionMatrix accepted


def test_drop_gt_rows() -> None:
    m = drop_gt_rows(HAND, [0])
    assert m[0].tolist() == [0, 0, 0, 0] and HAND[0].tolist() == [1, 1, 0, 0]
    # row 1's background prediction stays a false negative of class 1
    assert per_class_iou(m, [1, 2, 3]) == pytest.approx({1: 2 / 4, 2: 2 / 4, 3: 2 / 3})


def test_summarize_with_background() -> None:
    s = summarize(HAND, class_names=NAMES, old=[0, 1], new=[2, 3], include_background=True)
    assert list(s) == [
        "miou_old", "miou_new", "miou_all", "per_class_iou", "per_class_f1",
        "pixel_accuracy", "mean_f1",
    ]  # fmt: skip
    assert s["miou_old"] == pytest.approx((1 / 3 + 2 / 5) / 2)
    assert s["miou_new"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert s["miou_all"] == pytest.approx((1 / 3 + 2 / 5 + 1 / 2 + 2 / 3) / 4)
    assert s["per_class_iou"] == pytest.approx(
        {"background": 1 / 3, "a": 2 / 5, "b": 1 / 2, "c": 2 / 3}
    )
    assert s["per_class_f1"] == pytest.approx(
        {"background": 1 / 2, "a": 4 / 7, "b": 2 / 3, "c": 4 / 5}
    )
    assert s["pixel_accuracy"] == pytest.approx(7 / 11)
    assert s["mean_f1"] == pytest.approx((1 / 2 + 4 / 7 + 2 / 3 + 4 / 5) / 4)
    json.dumps(s, allow_nan=False)


def test_summarize_without_background() -> None:
    # row 0 dropped: column sums [1,2,3,3]; TP [.,2,2,2]; FP [.,0,1,1]; FN [.,2,1,0]
    s = summarize(_cm(), class_names=NAMES[1:], old=[1, 2], new=[3], include_background=False)
    assert s["per_class_iou"] == pytest.approx({"a": 1 / 2, "b": 1 / 2, "c": 2 / 3})
    assert s["per_class_f1"] == pytest.approx({"a": 2 / 3, "b": 2 / 3, "c": 4 / 5})
    assert s["miou_old"] == pytest.approx(1 / 2)
    assert s["miou_new"] == pytest.approx(2 / 3)
    assert s["miou_all"] == pytest.approx(5 / 9)
    assert s["pixel_accuracy"] == pytest.approx(6 / 9)
    assert s["mean_f1"] == pytest.approx((2 / 3 + 2 / 3 + 4 / 5) / 3)
    assert "background" not in s["per_class_iou"]


def test_summarize_nan_class_and_step0() -> None:
    cm = ConfusionMatrix(5)  # class 4 never appears in target or prediction
    cm.update(PRED, TARGET)
    names = ["clutter", "a", "b", "c", "d"]
    s = summarize(cm, class_names=names, old=[1, 2], new=[3, 4], include_background=False)
    assert s["per_class_iou"]["d"] is None and s["per_class_f1"]["d"] is None
    assert s["miou_new"] == pytest.approx(2 / 3)  # NaN class skipped
    assert s["miou_all"] == pytest.approx(5 / 9)
    assert s["mean_f1"] == pytest.approx((2 / 3 + 2 / 3 + 4 / 5) / 3)
    json.dumps(s, allow_nan=False)

    s0 = summarize(cm, class_names=names, old=[1, 2, 3], new=[], include_background=False)
    assert s0["miou_new"] is None
    assert s0["miou_old"] == s0["miou_all"] == pytest.approx(5 / 9)

    empty = summarize(
        ConfusionMatrix(3), class_names=["bg", "x", "y"], old=[1], new=[2],
        include_background=False,
    )  # fmt: skip
    assert empty["miou_all"] is None and empty["pixel_accuracy"] is None
    assert empty["per_class_iou"] == {"x": None, "y": None}


def test_summarize_argument_errors() -> None:
    with pytest.raises(ValueError, match="background \\(0\\) was passed"):
        summarize(HAND, class_names=NAMES, old=[0, 1], new=[2], include_background=False)
    with pytest.raises(ValueError, match="not in old or new"):
        summarize(HAND, class_names=NAMES, old=[1], new=[2], include_background=True)
    with pytest.raises(ValueError, match="give 4 names"):
        summarize(HAND, class_names=["a", "b"], old=[1], new=[2], include_background=False)
    with pytest.raises(ValueError, match="both old and new"):
        summarize(HAND, class_names=NAMES, old=[1, 2], new=[2], include_background=False)
    with pytest.raises(ValueError, match="outside"):
        summarize(HAND, class_names=NAMES, old=[1], new=[4], include_background=False)


def test_forgetting() -> None:
    history = [{"a": 0.8, "b": None}, {"a": 0.6, "b": 0.5, "c": 0.7}]
    current = {"a": 0.4, "b": 0.6, "c": None, "d": 0.3}
    out = forgetting(history, current)
    assert list(out) == ["a", "b"]  # c undefined now, d is new
    assert out["a"] == pytest.approx(0.4)
    assert out["b"] == pytest.approx(-0.1)
    assert forgetting([], current) == {}
    # whole summarize() results are accepted too
    s_then = {"per_class_iou": {"a": 0.9, "b": math.nan}}
    s_now = {"per_class_iou": {"a": 0.5, "b": 0.2}, "miou_all": 0.35}
    assert forgetting([s_then], s_now) == pytest.approx({"a": 0.4})


def test_matrix_and_scores_agree_with_torchmetrics() -> None:
    """Cross-check on random predictions with ignored pixels: the confusion matrix, per-class
    IoU and F1 and the pixel accuracy equal torchmetrics' (a reference implementation that
    Lightning already installs)."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_jaccard_index,
    )

    g = torch.Generator().manual_seed(0)
    k = 5
    target = torch.randint(0, k, (4, 37, 29), generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target,
                       torch.randint(0, k, target.shape, generator=g))
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    cm = ConfusionMatrix(k)
    cm.update(pred, target)
    reference = multiclass_confusion_matrix(pred, target, k, ignore_index=255)
    np.testing.assert_array_equal(cm.matrix, reference.numpy())
    classes = list(range(k))
    for ours, theirs in (
        (per_class_iou(cm, classes), multiclass_jaccard_index(pred, target, k, average="none",
                                                              ignore_index=255)),
        (per_class_f1(cm, classes), multiclass_f1_score(pred, target, k, average="none",
                                                        ignore_index=255)),
    ):
        np.testing.assert_allclose([ours[c] for c in classes], theirs.numpy(), rtol=1e-6)
    accuracy = multiclass_accuracy(pred, target, k, average="micro", ignore_index=255)
    assert pixel_accuracy(cm, classes) == pytest.approx(float(accuracy), rel=1e-6)
