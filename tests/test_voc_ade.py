"""Pascal VOC 2012 and ADE20K through the same scene engine: readers on fake releases
(tests/data/voc, tests/data/ade) and on the real VOC sample of ../shared/data, the
overlapped/disjoint step protocols checked image by image, reports, errors and presets.

Tiny on purpose (48 px images, 32 px tiles, 2 iterations): bookkeeping, never accuracy.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio
from conftest import assert_one_line_error, run_cli, run_main
from rasterio.windows import Window

from geoidec.config import load_config
from geoidec.data.ade import IndexDecoder, ade
from geoidec.data.decoders import ValueDecoder
from geoidec.data.registry import DATASETS, load_dataset
from geoidec.data.scene_reader import SceneReader
from geoidec.data.voc import DECODER as VOC_DECODER
from geoidec.data.voc import holdout, read_id_list, voc, voc_color
from geoidec.errors import DataError

DATA = Path(__file__).resolve().parent / "data"
VOC_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
TINY = ["--iterations", "2", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=0", "--quiet"]


def _load(kind: str) -> ModuleType:
    """``tests/data/KIND/data.py`` (not a package) loaded by file path."""
    name = f"geoidec_tests_fake_{kind}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DATA / kind / "data.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _full(reader: SceneReader) -> Window:
    return Window(0, 0, reader.width, reader.height)


@pytest.fixture(scope="module")
def vocfakes() -> ModuleType:
    return _load("voc")


@pytest.fixture(scope="module")
def adefakes() -> ModuleType:
    return _load("ade")


@pytest.fixture(scope="module")
def fake_voc(tmp_path_factory: pytest.TempPathFactory, vocfakes: ModuleType) -> Path:
    """Fake VOCdevkit: 6 train images (train_aug.txt), 3 val images; treat as read-only."""
    return vocfakes.make_fake_voc(tmp_path_factory.mktemp("fake_voc"))


@pytest.fixture(scope="module")
def fake_ade(tmp_path_factory: pytest.TempPathFactory, adefakes: ModuleType) -> Path:
    """Fake ADEChallengeData2016: 6 training, 3 validation images; treat as read-only."""
    return adefakes.make_fake_ade(tmp_path_factory.mktemp("fake_ade"))


# ------------------------------------------------------------------------------- VOC
def test_voc_spec(fake_voc: Path, vocfakes: ModuleType) -> None:
    spec = voc(fake_voc)
    assert spec.name == "voc"
    assert list(spec.class_names) == VOC_NAMES
    assert spec.background.name == "background" and spec.background.color == (0, 0, 0)
    assert spec.eval_background is True
    assert spec.rgb_bands == (0, 1, 2) and spec.band_names == ("red", "green", "blue")
    # the VOC devkit colormap
    colours = {c.name: c.color for c in spec.classes}
    assert colours["aeroplane"] == (128, 0, 0) and colours["bicycle"] == (0, 128, 0)
    assert colours["bottle"] == (128, 0, 128) and colours["person"] == (192, 128, 128)
    assert colours["tvmonitor"] == (0, 64, 128) and voc_color(255) == (224, 224, 192)
    assert [s.name for s in spec.scenes("train")] == vocfakes.train_ids(6)
    assert spec.splits["val"] == ()  # fewer than 20 train ids: nothing held out
    assert [s.name for s in spec.scenes("test")] == vocfakes.val_ids(3)
    assert all(s.label.parent.name == "SegmentationClassAug"
               for s in spec.scenes("train") + spec.scenes("test"))
    assert spec.meta["train_list"] == "train_aug.txt"


def test_voc_labels_are_class_indices(fake_voc: Path, vocfakes: ModuleType) -> None:
    spec = voc(fake_voc)
    for scene in spec.scenes("train") + spec.scenes("test"):
        with SceneReader(scene, spec.decoder) as reader:
            label = reader.read_label(_full(reader))
            image, valid = reader.read_image(_full(reader))
        expected = vocfakes.expected_label(scene.name)
        np.testing.assert_array_equal(label, expected)
        assert set(np.unique(label)) == {0, 255, *vocfakes.image_classes(scene.name)}
        assert image.shape == (3, 48, 48) and valid.all()
    # the hand-built table, spelled out
    assert vocfakes.image_classes("2008_000002") == (3, 16)
    assert vocfakes.image_classes("2008_000005") == (15, 20)


def test_voc_official_palette_labels(fake_voc: Path, vocfakes: ModuleType) -> None:
    """split_aug=False: SegmentationClass palette PNGs and train.txt (pixel values = indices)."""
    spec = voc(fake_voc, split_aug=False)
    assert [s.name for s in spec.scenes("train")] == vocfakes.train_ids(6)[:3]
    for scene in spec.scenes("train") + spec.scenes("test"):
        assert scene.label.parent.name == "SegmentationClass"
        with rasterio.open(scene.label) as src:
            assert src.colormap(1)[1][:3] == (128, 0, 0)  # a real palette PNG
        with SceneReader(scene, spec.decoder) as reader:
            np.testing.assert_array_equal(reader.read_label(_full(reader)),
                                          vocfakes.expected_label(scene.name))


def test_voc_root_forms(fake_voc: Path) -> None:
    names = [s.image for s in voc(fake_voc).scenes("train")]
    for root in (fake_voc / "VOC2012", fake_voc.parent):
        assert [s.image for s in voc(root).scenes("train")] == names
    assert [s.name for s in load_dataset("pascal_voc", fake_voc).scenes("test")] == [
        s.name for s in voc(fake_voc).scenes("test")]
    assert DATASETS["voc"][1] == "data/VOCdevkit"
    assert DATASETS["ade20k"][1] == DATASETS["ade"][1] == "data/ADEChallengeData2016"


def test_voc_decoder_values() -> None:
    raw = np.arange(256, dtype=np.uint8)[None, None, :]
    out = VOC_DECODER(raw)[0]
    assert out[:21].tolist() == list(range(21))
    assert (out[21:255] == 0).all() and out[255] == 255


def test_voc_lists_and_holdout(tmp_path: Path) -> None:
    listing = tmp_path / "train_aug.txt"
    listing.write_text("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n"
                       "2007_000039\n\n")
    assert read_id_list(listing) == ["2007_000032", "2007_000039"]
    ids = [f"id_{i:05d}" for i in range(10_582)]
    train, val = holdout(list(reversed(ids)))
    assert len(val) == 529 and len(train) == 10_053  # 5 %, the 20th, 40th, ... sorted ids
    assert val[:2] == ["id_00019", "id_00039"] and not set(train) & set(val)
    assert holdout(ids[:19]) == (ids[:19], [])


def test_voc_real_sample(shared_data: Path) -> None:
    root = shared_data / "voc_sample" / "VOC2012"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    spec = voc(root)
    assert [s.name for s in spec.scenes("test")] == ["sample_0001"]
    assert spec.splits["train"] == ()  # the sample has only val.txt
    assert [s.name for s in voc(root.parent).scenes("test")] == ["sample_0001"]
    scene = spec.scenes("test")[0]
    with SceneReader(scene, spec.decoder) as reader:
        assert (reader.height, reader.width) == (375, 500)
        image, valid = reader.read_image(_full(reader))
        label = reader.read_label(_full(reader))
    assert image.shape == (3, 375, 500) and valid.all() and image.max() > 200
    names = {0: "background", **{i: n for i, n in enumerate(VOC_NAMES, 1)}}
    assert {names[v] for v in np.unique(label)} == {
        "background", "bottle", "chair", "diningtable", "person"}
    assert set(np.unique(label)) == {0, 5, 9, 11, 15}
    # the palette of the real PNG is the VOC colormap geoidec uses
    with rasterio.open(scene.label) as src:
        colormap = src.colormap(1)
    assert [colormap[i][:3] for i in range(1, 21)] == [c.color for c in spec.classes]


# ------------------------------------------------------------------------------- ADE
def test_ade_spec_and_labels(fake_ade: Path, adefakes: ModuleType) -> None:
    spec = ade(fake_ade)
    assert spec.name == "ade20k" and len(spec.classes) == 150
    assert spec.class_names[:5] == ("wall", "building", "sky", "floor", "tree")
    assert spec.class_names[12] == "person" and spec.class_names[44] == "chest of drawers"
    assert spec.class_names[-3:] == ("glass", "clock", "flag")
    assert len({c.color for c in spec.classes}) == 150
    assert (0, 0, 0) not in {c.color for c in spec.classes}
    assert spec.eval_background is False
    assert [s.name for s in spec.scenes("train")] == adefakes.train_ids(6)
    assert [s.name for s in spec.scenes("test")] == adefakes.val_ids(3)
    assert spec.splits["val"] == ()
    assert [s.name for s in ade(fake_ade.parent).scenes("train")] == adefakes.train_ids(6)
    for scene in spec.scenes("train") + spec.scenes("test"):
        with SceneReader(scene, spec.decoder) as reader:
            label = reader.read_label(_full(reader))
        np.testing.assert_array_equal(label, adefakes.expected_label(scene.name))
        assert set(np.unique(label)) == {0, *adefakes.image_classes(scene.name)}
    assert load_dataset("ade", fake_ade).name == "ade20k"


def test_index_decoder_equals_value_decoder() -> None:
    fast = IndexDecoder(150)
    slow = ValueDecoder(values=tuple(float(v) for v in range(1, 151)), ignore_values=(255.0,))
    rng = np.random.default_rng(0)
    raw8 = rng.integers(0, 256, size=(1, 40, 40), dtype=np.uint8)
    np.testing.assert_array_equal(fast(raw8), slow(raw8))
    raw16 = rng.integers(-5, 400, size=(1, 40, 40)).astype(np.int16)
    np.testing.assert_array_equal(fast(raw16), slow(raw16))
    rawf = raw16.astype(np.float32)
    rawf[0, 0, :3] = (np.nan, 1.5, np.inf)
    np.testing.assert_array_equal(fast(rawf), slow(rawf))


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(("name", "needles"), [
    ("voc", ("VOCdevkit/VOC2012/{JPEGImages,SegmentationClass[Aug],ImageSets/Segmentation}",
             "host.robots.ox.ac.uk/pascal/VOC/voc2012", "SBD")),
    ("ade20k", ("ADEChallengeData2016/{images,annotations}/{training,validation}",
                "sceneparsing.csail.mit.edu")),
])
def test_missing_data_is_one_line(name: str, needles: tuple[str, ...],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_main(["train", name, "--root", "/nonexistent", "--steps", "15-5"],
                       monkeypatch)
    assert_one_line_error(outcome, "/nonexistent", *needles, code=1)


def test_voc_missing_label_names_the_file(fake_voc: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "VOCdevkit"
    shutil.copytree(fake_voc, copy)
    (copy / "VOC2012" / "SegmentationClassAug" / "2008_000004.png").unlink()
    with pytest.raises(DataError, match="2008_000004") as info:
        voc(copy)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- presets
def test_paper_preset_settings(fake_voc: Path, fake_ade: Path) -> None:
    for spec, epochs in ((voc(fake_voc), 30), (ade(fake_ade), 60)):
        cfg = load_config("paper", dataset_defaults=spec.preset_overrides["paper"])
        assert cfg.train.batch_size == 24 and cfg.train.epochs == epochs
        assert cfg.train.chips_per_scene == 1 and cfg.data.tile_size == 512
        assert cfg.eval.overlap == 0 and cfg.eval.tile_size is None
        assert cfg.train.lr == 0.01 and cfg.train.lr_incremental == 0.001
        assert cfg.model.backbone == "resnet101"  # the rest of the paper preset stays
        # the user's flags win over the dataset's preset settings
        mine = load_config("paper", {"train.batch_size": 8}, ["train.epochs=2"],
                           dataset_defaults=spec.preset_overrides["paper"])
        assert mine.train.batch_size == 8 and mine.train.epochs == 2
        cpu = load_config("cpu", dataset_defaults=spec.preset_overrides["cpu"])
        assert cpu.data.tile_size == 256 and cpu.train.epochs is None


# ------------------------------------------------------------------ engine, protocols
#: Fake VOC train images holding a class of each step of "15-5" (see tests/data/voc):
#: 2008_000002 (bird + pottedplant) and 2008_000005 (person + tvmonitor) hold a step-1
#: class, so the disjoint protocol drops them from step 0.
VOC_15_5 = {
    "overlapped": {0: ["2008_000001", "2008_000002", "2008_000003", "2008_000005",
                       "2008_000006"],
                   1: ["2008_000002", "2008_000004", "2008_000005"]},
    "disjoint": {0: ["2008_000001", "2008_000003", "2008_000006"],
                 1: ["2008_000002", "2008_000004", "2008_000005"]},
}


def _train(dataset: str, root: Path, steps: str, out: Path, *extra: str) -> Path:
    result = run_cli(["train", dataset, "--root", root, "--steps", steps, "--out", out,
                      *TINY, *extra])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def _step_scenes(run: Path, step: int) -> list[str]:
    return (run / "steps" / f"step_{step}_scenes.txt").read_text().split()


@pytest.fixture(scope="module")
def voc_runs(fake_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("voc_runs")
    return {
        "overlapped": _train("voc", fake_voc, "15-5", out / "overlapped"),
        "disjoint": _train("voc", fake_voc, "15-5", out / "disjoint",
                           "--set", "data.protocol=disjoint"),
    }


@pytest.mark.parametrize("protocol", ["overlapped", "disjoint"])
def test_voc_step_scenes(voc_runs: dict[str, Path], vocfakes: ModuleType,
                         protocol: str) -> None:
    run = voc_runs[protocol]
    assert _step_scenes(run, 0) == VOC_15_5[protocol][0]
    assert _step_scenes(run, 1) == VOC_15_5[protocol][1]
    # the same expectation derived from the builder's class table
    for step, classes in ((0, set(range(1, 16))), (1, set(range(16, 21)))):
        future = set(range(16, 21)) if step == 0 else set()
        expected = [i for i in vocfakes.train_ids(6)
                    if classes & set(vocfakes.image_classes(i))
                    and (protocol == "overlapped" or not future & set(vocfakes.image_classes(i)))]
        assert _step_scenes(run, step) == expected


def test_voc_report(voc_runs: dict[str, Path], vocfakes: ModuleType) -> None:
    run = voc_runs["overlapped"]
    report = json.loads((run / "report.json").read_text())
    assert report["dataset"] == "voc" and report["task"] == "15-5"
    assert [e["step"] for e in report["steps"]] == [0, 1]
    last = report["steps"][1]
    for key in ("step", "old_classes", "new_classes", "miou_old", "miou_new", "miou_all",
                "per_class_iou"):
        assert key in last, key
    assert last["old_classes"] == ["background", *VOC_NAMES[:15]]  # VOC evaluates background
    assert last["new_classes"] == VOC_NAMES[15:]
    assert list(last["per_class_iou"]) == ["background", *VOC_NAMES]
    for key in ("miou_old", "miou_new", "miou_all"):
        assert last[key] is None or 0.0 <= last[key] <= 1.0
    # the confusion matrix holds every non-void pixel of the 3 test images
    rows = (run / "metrics" / "step_1_confusion.csv").read_text().strip().splitlines()[1:]
    counts = [sum(int(v) for v in row.split(",")[1:]) for row in rows]
    labels = np.concatenate([vocfakes.expected_label(i).ravel() for i in vocfakes.val_ids(3)])
    assert counts == np.bincount(labels[labels != 255], minlength=21).tolist()
    task = json.loads((run / "task.json").read_text())
    assert task["eval_background"] is True and task["crs"] is None
    evaluated = run_cli(["evaluate", run, "--step", "1", "--device", "cpu"])
    assert evaluated.exit_code == 0, (evaluated.output, evaluated.exception)


def test_ade_run_excludes_unlabelled(fake_ade: Path, adefakes: ModuleType,
                                     tmp_path: Path) -> None:
    run = _train("ade", fake_ade, "100-50", tmp_path / "ade")
    ids = adefakes.train_ids(6)
    # overlapped: step 0 (classes 1..100) images 1, 2, 3, 5; step 1 (101..150) 2, 4, 6
    assert _step_scenes(run, 0) == [ids[0], ids[1], ids[2], ids[4]]
    assert _step_scenes(run, 1) == [ids[1], ids[3], ids[5]]
    last = json.loads((run / "report.json").read_text())["steps"][1]
    assert "background" not in last["old_classes"] and len(last["old_classes"]) == 100
    assert len(last["new_classes"]) == 50 and "background" not in last["per_class_iou"]
