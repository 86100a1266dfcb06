"""Task-spec parsing and label mappings, against hand-written expectations."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from geoidec.tasks import TaskSchedule, TaskSpecError, remap

ISPRS = ["impervious_surfaces", "building", "low_vegetation", "tree", "car"]
VOC = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip
ADE = [f"class{i:03d}" for i in range(1, 151)]


def _counts(ts: TaskSchedule) -> list[int]:
    return [len(s) for s in ts.steps]


# ---------------------------------------------------------------- numeric
@pytest.mark.parametrize(
    ("spec", "steps", "per_step"),
    [
        ("4-1", ((1, 2, 3, 4), (5,)), [5, 1]),
        ("2-3", ((1, 2), (3, 4, 5)), [3, 3]),
        ("2-2-1", ((1, 2), (3, 4), (5,)), [3, 2, 1]),
        ("2-1-1-1", ((1, 2), (3,), (4,), (5,)), [3, 1, 1, 1]),
        ("2-1", ((1, 2), (3,), (4,), (5,)), [3, 1, 1, 1]),
        ("5", ((1, 2, 3, 4, 5),), [6]),
        ("2-2", ((1, 2), (3, 4), (5,)), [3, 2, 1]),  # partial last step
        (" 4 - 1 ", ((1, 2, 3, 4), (5,)), [5, 1]),
    ],
)
def test_isprs_numeric(spec: str, steps: tuple, per_step: list[int]) -> None:
    ts = TaskSchedule.parse(spec, ISPRS)
    assert ts.steps == steps
    assert ts.classes_per_step() == per_step
    assert ts.num_steps == len(steps)
    assert ts.num_classes == 5
    assert ts.model_class_names() == ISPRS  # numeric specs keep dataset order
    assert ts.spec == spec.strip()


@pytest.mark.parametrize(
    ("spec", "counts"),
    [
        ("15-1", [15, 1, 1, 1, 1, 1]),
        ("10-1", [10] + [1] * 10),
        ("19-1", [19, 1]),
        ("15-5", [15, 5]),
        ("5-3", [5, 3, 3, 3, 3, 3]),
        ("15-2", [15, 2, 2, 1]),
        ("20", [20]),
    ],
)
def test_voc_numeric(spec: str, counts: list[int]) -> None:
    ts = TaskSchedule.parse(spec, VOC)
    assert _counts(ts) == counts
    assert ts.learning_order == tuple(range(1, 21))
    assert ts.classes_per_step() == [counts[0] + 1] + counts[1:]


def test_voc_15_1_steps() -> None:
    ts = TaskSchedule.parse("15-1", VOC)
    assert ts.steps == (tuple(range(1, 16)), (16,), (17,), (18,), (19,), (20,))
    assert ts.step_class_names(1) == ["pottedplant"]
    assert ts.step_class_names(5) == ["tvmonitor"]


@pytest.mark.parametrize(
    ("spec", "counts"),
    [
        ("100-50", [100, 50]),
        ("100-10", [100, 10, 10, 10, 10, 10]),
        ("100-5", [100] + [5] * 10),
        ("50-50", [50, 50, 50]),  # 50 then steps of 50 until the classes run out
        ("50-100", [50, 100]),
        ("50-50-50", [50, 50, 50]),
    ],
)
def test_ade_numeric(spec: str, counts: list[int]) -> None:
    ts = TaskSchedule.parse(spec, ADE)
    assert _counts(ts) == counts
    assert ts.steps[-1][-1] == 150


def test_step_sets_2_2_1() -> None:
    ts = TaskSchedule.parse("2-2-1", ISPRS)
    assert [ts.new_classes(t) for t in range(3)] == [(1, 2), (3, 4), (5,)]
    assert [ts.old_classes(t) for t in range(3)] == [(), (1, 2), (1, 2, 3, 4)]
    assert [ts.seen_classes(t) for t in range(3)] == [(1, 2), (1, 2, 3, 4), (1, 2, 3, 4, 5)]
    assert [ts.future_classes(t) for t in range(3)] == [(3, 4, 5), (5,), ()]
    with pytest.raises(IndexError, match="steps 0..2"):
        ts.new_classes(3)
    with pytest.raises(IndexError):
        ts.old_classes(-1)


def test_luts_numeric_2_2_1() -> None:
    ts = TaskSchedule.parse("2-2-1", ISPRS)
    labels = np.array([[0, 1, 2, 3], [4, 5, 255, 7]], dtype=np.uint8)
    assert remap(labels, ts.model_index).tolist() == [[0, 1, 2, 3], [4, 5, 255, 255]]
    assert remap(labels, ts.train_lut(0)).tolist() == [[0, 1, 2, 0], [0, 0, 255, 255]]
    assert remap(labels, ts.train_lut(1)).tolist() == [[0, 0, 0, 3], [4, 0, 255, 255]]
    assert remap(labels, ts.train_lut(2)).tolist() == [[0, 0, 0, 0], [0, 5, 255, 255]]
    assert remap(labels, ts.eval_lut(0)).tolist() == [[0, 1, 2, 0], [0, 0, 255, 255]]
    assert remap(labels, ts.eval_lut(1)).tolist() == [[0, 1, 2, 3], [4, 0, 255, 255]]
    assert remap(labels, ts.eval_lut(2)).tolist() == [[0, 1, 2, 3], [4, 5, 255, 255]]
    assert np.array_equal(ts.joint_lut(), ts.model_index)
    for lut in (ts.train_lut(1), ts.eval_lut(1), ts.joint_lut(), ts.model_index):
        assert lut.shape == (256,) and lut.dtype == np.uint8
        assert lut[0] == 0 and lut[255] == 255
        assert (lut[6:255] == 255).all()


# ------------------------------------------------------------- name lists
REORDER = "car,tree|building|impervious surfaces,Low-Vegetation"


def test_name_list_reorder() -> None:
    ts = TaskSchedule.parse(REORDER, ISPRS)
    # dataset indices: impervious 1, building 2, low_veg 3, tree 4, car 5
    assert ts.steps == ((5, 4), (2,), (1, 3))
    assert ts.classes_per_step() == [3, 1, 2]
    assert ts.model_class_names() == [
        "car", "tree", "building", "impervious_surfaces", "low_vegetation",
    ]  # fmt: skip
    assert ts.model_index[:7].tolist() == [0, 4, 3, 5, 2, 1, 255]
    assert ts.dataset_index[:7].tolist() == [0, 5, 4, 2, 1, 3, 255]
    assert ts.new_classes(0) == (1, 2) and ts.new_classes(2) == (4, 5)
    assert ts.old_classes(1) == (1, 2) and ts.future_classes(1) == (4, 5)


def test_name_list_luts_elementwise() -> None:
    ts = TaskSchedule.parse(REORDER, ISPRS)
    labels = np.array([[0, 1, 2], [3, 4, 5], [255, 7, 2]], dtype=np.uint8)
    expect = {
        "model": [[0, 4, 3], [5, 2, 1], [255, 255, 3]],
        "train0": [[0, 0, 0], [0, 2, 1], [255, 255, 0]],
        "train1": [[0, 0, 3], [0, 0, 0], [255, 255, 3]],
        "train2": [[0, 4, 0], [5, 0, 0], [255, 255, 0]],
        "eval0": [[0, 0, 0], [0, 2, 1], [255, 255, 0]],
        "eval1": [[0, 0, 3], [0, 2, 1], [255, 255, 3]],
        "eval2": [[0, 4, 3], [5, 2, 1], [255, 255, 3]],
    }
    got = {
        "model": ts.model_index,
        "train0": ts.train_lut(0),
        "train1": ts.train_lut(1),
        "train2": ts.train_lut(2),
        "eval0": ts.eval_lut(0),
        "eval1": ts.eval_lut(1),
        "eval2": ts.eval_lut(2),
    }
    for key, lut in got.items():
        out = remap(labels, lut)
        for i in range(3):
            for j in range(3):
                assert out[i, j] == expect[key][i][j], (key, i, j)
    back = remap(remap(labels, ts.model_index), ts.dataset_index)
    assert back.tolist() == [[0, 1, 2], [3, 4, 5], [255, 255, 2]]


@pytest.mark.parametrize(
    "spelling", ["low vegetation", "Low_Vegetation", "LOW-vegetation", " low  vegetation "]
)
def test_name_normalisation(spelling: str) -> None:
    spec = f"impervious_surfaces,building|{spelling}|tree,car"
    ts = TaskSchedule.parse(spec, ISPRS)
    assert ts.steps == ((1, 2), (3,), (4, 5))


def test_single_step_name_list_and_hyphenated_names() -> None:
    names = ["forest", "water", "herbaceous", "shrub-land", "developed"]
    ts = TaskSchedule.parse("forest,water|herbaceous,shrub_land,developed", names)
    assert ts.steps == ((1, 2), (3, 4, 5))
    joint = TaskSchedule.parse("developed,shrub land,herbaceous,water,forest", names)
    assert joint.steps == ((5, 4, 3, 2, 1),)
    assert TaskSchedule.parse("Only-Class", ["only_class"]).steps == ((1,),)
    with pytest.raises(TaskSpecError, match="did you mean 'shrub-land'"):
        TaskSchedule.parse("forest,water|herbaceous,shrubland,developed", names)


# ----------------------------------------------------------------- remap
def test_remap_types_and_dtypes() -> None:
    lut = TaskSchedule.parse("4-1", ISPRS).train_lut(1)
    arr64 = np.array([[0, 5, 3], [-1, 300, 255]], dtype=np.int64)
    out = remap(arr64, lut)
    assert out.dtype == np.int64 and out.tolist() == [[0, 5, 0], [255, 255, 255]]
    t8 = torch.tensor([[0, 5, 3], [4, 9, 255]], dtype=torch.uint8)
    out8 = remap(t8, lut)
    assert isinstance(out8, torch.Tensor) and out8.dtype == torch.uint8
    assert out8.tolist() == [[0, 5, 0], [0, 255, 255]]
    t64 = torch.from_numpy(arr64)
    out64 = remap(t64, torch.from_numpy(lut))
    assert out64.dtype == torch.int64 and out64.tolist() == [[0, 5, 0], [255, 255, 255]]
    assert TaskSchedule.remap is remap
    with pytest.raises(TypeError, match="integer"):
        remap(np.zeros(3, dtype=np.float32), lut)
    with pytest.raises(TypeError, match="integer"):
        remap(torch.zeros(3), lut)
    with pytest.raises(ValueError, match="256"):
        remap(np.zeros(3, dtype=np.uint8), lut[:10])


def test_luts_are_not_shared_mutable_state() -> None:
    ts = TaskSchedule.parse("4-1", ISPRS)
    with pytest.raises(ValueError):
        ts.model_index[1] = 9
    lut = ts.joint_lut()
    lut[1] = 9
    assert ts.model_index[1] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        ts.spec = "x"  # type: ignore[misc]


# ---------------------------------------------------------- serialisation
def test_dict_round_trip() -> None:
    ts = TaskSchedule.parse(REORDER, ISPRS)
    data = json.loads(json.dumps(ts.to_dict()))
    assert data == {
        "spec": REORDER,
        "class_names": ISPRS,
        "steps": [[5, 4], [2], [1, 3]],
    }
    again = TaskSchedule.from_dict(data)
    assert again == ts
    assert np.array_equal(again.train_lut(2), ts.train_lut(2))
    with pytest.raises(TaskSpecError, match="exactly once"):
        TaskSchedule.from_dict({"class_names": ISPRS, "steps": [[1, 2], [2, 3, 4, 5]]})
    with pytest.raises(TaskSpecError, match="outside 1..5"):
        TaskSchedule.from_dict({"class_names": ISPRS, "steps": [[0, 1, 2], [3, 4, 5]]})
    with pytest.raises(TaskSpecError, match="needs 'class_names'"):
        TaskSchedule.from_dict({"steps": [[1]]})


def test_describe() -> None:
    text = TaskSchedule.parse("2-2-1", ISPRS).describe()
    lines = text.splitlines()
    assert "5 classes in 3 steps" in lines[0]
    assert lines[2].split()[:3] == ["0", "2", "1-2"]
    assert lines[2].endswith("impervious_surfaces, building")
    assert lines[4].split()[:3] == ["2", "1", "5"] and lines[4].endswith("car")


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        ("", ["empty task spec", "'4-1'"]),
        ("   ", ["empty task spec"]),
        ("15-a", ["mixes numbers and non-numbers", "'4-1'"]),
        ("2-1-x", ["mixes numbers and non-numbers"]),
        ("1.5-1", ["mixes numbers"]),
        ("2-0", ["count of 0", "positive"]),
        ("0-5", ["count of 0"]),
        ("-1-4", ["count of -1"]),
        ("2--1", ["count of -1"]),
        ("2-2-2", ["sums to 6 but the dataset has 5 classes: impervious_surfaces, building"]),
        ("1-1-1", ["sums to 3 but the dataset has 5 classes"]),
        ("5-1", ["learns 5 classes first", "1..4", "'5' for joint"]),
        ("7-1", ["learns 7 classes first"]),
        ("4-3", ["steps of 3 but only 1 class remains", "'4-1'"]),
        ("2-4", ["steps of 4 but only 3 classes remain", "k in 1..3"]),
        ("3", ["one number", "joint", "'5'"]),
        (
            "car,tree|bulding,impervious_surfaces,low_vegetation",
            [
                "unknown class 'bulding'",
                "did you mean 'building'",
                "valid class names are: impervious_surfaces, building, low_vegetation, tree, car",
            ],
        ),
        ("car,tree|road|x", ["unknown classes 'road', 'x'"]),
        ("car,car|impervious_surfaces,building,low_vegetation,tree", ["'car' twice"]),
        ("car|tree,car|impervious_surfaces,building,low_vegetation", ["in steps 0 and 1"]),
        ("car|tree", ["leaves out 'impervious_surfaces', 'building', 'low_vegetation'"]),
        ("car||tree", ["empty step 1"]),
        ("car,tree|", ["empty step 1"]),
        ("car,,tree|building", ["empty class name"]),
    ],
)
def test_errors(spec: str, fragments: list[str]) -> None:
    with pytest.raises(TaskSpecError) as info:
        TaskSchedule.parse(spec, ISPRS)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_error_is_value_error_and_bad_class_lists() -> None:
    assert issubclass(TaskSpecError, ValueError)
    with pytest.raises(TaskSpecError, match="no classes"):
        TaskSchedule.parse("1", [])
    with pytest.raises(TaskSpecError, match="same once case"):
        TaskSchedule.parse("2", ["Low vegetation", "low_vegetation"])
    with pytest.raises(TaskSpecError, match="list of class names"):
        TaskSchedule.parse("1", "car")  # type: ignore[arg-type]
    with pytest.raises(TaskSpecError, match="sums to 150 but the dataset has 151"):
        TaskSchedule.parse("50-50-50", ADE + ["extra"])
