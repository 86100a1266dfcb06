"""End to end through the CLI: train (finetune and joint) on fake Potsdam, evaluate, predict;
and a custom-YAML run on a real 4-band float64 raster from ../shared/data.

Tiny on purpose (MobileNetV3-small, ASPP 16, 32 px tiles, 3 iterations): these tests check
files, metadata, geometry and bookkeeping, never accuracy.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from conftest import assert_one_line_error, run_cli, run_main

from geoidec.checkpoint import FORMAT, load_checkpoint
from geoidec.config import Config
from geoidec.runs.reports import steps_table

TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]
ISPRS = ["impervious_surfaces", "building", "low_vegetation", "tree", "car"]
COLOURS = {
    "clutter": (255, 0, 0), "impervious_surfaces": (255, 255, 255), "building": (0, 0, 255),
    "low_vegetation": (0, 255, 255), "tree": (0, 255, 0), "car": (255, 255, 0),
}
#: Pixels per class of every fake 64 px Potsdam tile (clutter first; see tests/data/isprs).
TILE_COUNTS = {"clutter": 64, "impervious_surfaces": 960, "building": 1024,
               "low_vegetation": 960, "tree": 1024, "car": 64}


def _read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _confusion(path: Path) -> tuple[list[str], np.ndarray]:
    rows = _read_csv(path)
    names = rows[0][1:]
    assert [r[0] for r in rows[1:]] == names
    return names, np.array([[int(v) for v in r[1:]] for r in rows[1:]], dtype=np.int64)


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run_4_1(fake_potsdam: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "run"
    result = run_cli(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1", "--out", out,
                      "--method", "finetune", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "run folder:" in result.stdout and "| step |" in result.stdout
    return out


@pytest.fixture(scope="module")
def report(run_4_1: Path) -> dict:
    return json.loads((run_4_1 / "report.json").read_text())


@pytest.fixture(scope="module")
def prediction(run_4_1: Path, fake_potsdam: Path,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    scene = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    out = tmp_path_factory.mktemp("pred") / "classes.tif"
    result = run_cli(["predict", scene, "--model", run_4_1, "--out", out, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "clutter, impervious_surfaces" in result.stdout
    return scene, out


# ---------------------------------------------------------------------------- train
def test_run_folder_layout(run_4_1: Path) -> None:
    for name in ("config.yaml", "task.json", "checkpoints/step_0.pt", "checkpoints/step_1.pt",
                 "metrics/step_0.csv", "metrics/step_1.csv", "metrics/step_0_confusion.csv",
                 "metrics/step_1_confusion.csv", "report.json", "report.md"):
        assert (run_4_1 / name).is_file(), name
    assert not (run_4_1 / "checkpoints" / "step_2.pt").exists()
    # No temporary files of the atomic writes are left behind.
    assert not [p for p in run_4_1.rglob(".*") if p.is_file()]


def test_config_yaml_holds_the_flags(run_4_1: Path) -> None:
    cfg = Config.from_dict(yaml.safe_load((run_4_1 / "config.yaml").read_text()))
    assert cfg.train.iterations == 3 and cfg.train.iterations_incremental == 3
    assert cfg.train.batch_size == 2
    assert cfg.data.tile_size == 32
    assert cfg.model.aspp_channels == 16
    assert cfg.eval.overlap == 8
    assert cfg.train.progress is False
    assert cfg.method.name == "finetune"


def test_task_json(run_4_1: Path, fake_potsdam: Path) -> None:
    task = json.loads((run_4_1 / "task.json").read_text())
    assert task["dataset"]["name"] == "isprs_potsdam"
    assert task["task"]["steps"] == [[1, 2, 3, 4], [5]]
    assert task["task"]["class_names"] == ISPRS
    assert task["bands"] == 3 and task["band_names"] == ["red", "green", "blue"]
    assert task["crs"] == "EPSG:32633"
    assert task["resolution"] == pytest.approx([0.05, 0.05])
    assert task["tile_size"] == 32 and task["overlap"] == 8
    assert task["normalization"]["low"] == [0.0, 0.0, 0.0]  # uint8 imagery
    assert task["normalization"]["high"] == [255.0, 255.0, 255.0]


def test_report_json(report: dict) -> None:
    assert report["method"] == "finetune" and report["task"] == "4-1"
    steps = report["steps"]
    assert [e["step"] for e in steps] == [0, 1]
    for e in steps:
        for key in ("step", "old_classes", "new_classes", "miou_old", "miou_new", "miou_all",
                    "per_class_iou"):
            assert key in e, key
        for name, iou in e["per_class_iou"].items():
            assert iou is None or 0.0 <= iou <= 1.0, (name, iou)
        for key in ("miou_old", "miou_all"):
            assert 0.0 <= e[key] <= 1.0
        assert e["train"]["iterations"] == 3 and e["train"]["batch_size"] == 2
        assert e["eval"]["split"] == "test" and e["eval"]["tta"] == "none"
    first, second = steps
    assert first["old_classes"] == ISPRS[:4] and first["new_classes"] == []
    assert first["miou_new"] is None
    assert list(first["per_class_iou"]) == ISPRS[:4]
    assert second["old_classes"] == ISPRS[:4] and second["new_classes"] == ["car"]
    assert second["step_classes"] == ["car"]
    assert list(second["per_class_iou"]) == ISPRS
    assert 0.0 <= second["miou_new"] <= 1.0
    # mIoU values are the means of the per-class IoUs they summarise.
    ious = second["per_class_iou"]
    assert second["miou_new"] == pytest.approx(ious["car"])
    assert second["miou_old"] == pytest.approx(np.mean([ious[n] for n in ISPRS[:4]]))
    assert second["miou_all"] == pytest.approx(np.mean([ious[n] for n in ISPRS]))
    assert set(second["forgetting"]) <= set(ISPRS[:4])


@pytest.mark.parametrize("step", [0, 1])
def test_confusion_counts_every_test_pixel(run_4_1: Path, report: dict, step: int) -> None:
    names, matrix = _confusion(run_4_1 / "metrics" / f"step_{step}_confusion.csv")
    expected_names = ["clutter", *ISPRS[: 4 + step]]
    assert names == expected_names
    assert matrix.shape == (5 + step, 5 + step)
    rows = dict(zip(names, matrix.sum(axis=1).tolist(), strict=True))
    # One 64 x 64 test tile (2_13); rows are ground truth, so their sums are known by hand.
    # Clutter is the background row; at step 0 the future class (car) is background too.
    evaluated = {n: TILE_COUNTS[n] for n in ISPRS[: 4 + step]}
    assert {n: rows[n] for n in evaluated} == evaluated
    assert rows["clutter"] == 64 + (64 if step == 0 else 0)
    assert sum(evaluated.values()) == (4096 - 128 if step == 0 else 4096 - 64)
    assert matrix.sum() == 64 * 64
    # IoU of each evaluated class from the matrix, background ground truth dropped.
    m = matrix[1:]
    for k, name in enumerate(names[1:], start=1):
        tp = m[k - 1, k]
        union = m[k - 1].sum() + m[:, k].sum() - tp
        iou = report["steps"][step]["per_class_iou"][name]
        assert iou == pytest.approx(tp / union if union else 0.0)


def test_step_csv_matches_report(run_4_1: Path, report: dict) -> None:
    rows = _read_csv(run_4_1 / "metrics" / "step_1.csv")
    assert rows[0] == ["class", "iou", "f1", "forgetting", "group"]
    by_class = {r[0]: r for r in rows[1:]}
    entry = report["steps"][1]
    for name in ISPRS:
        assert float(by_class[name][1]) == pytest.approx(entry["per_class_iou"][name], abs=1e-6)
        assert by_class[name][4] == ("new" if name == "car" else "old")
    assert float(by_class["miou_all"][1]) == pytest.approx(entry["miou_all"], abs=1e-6)
    md = (run_4_1 / "report.md").read_text()
    assert steps_table(report) in md


def test_checkpoints(run_4_1: Path) -> None:
    for step, n in ((0, 5), (1, 6)):
        path = run_4_1 / "checkpoints" / f"step_{step}.pt"
        payload = torch.load(path, weights_only=True, map_location="cpu")
        assert payload["format"] == FORMAT
        assert payload["step"] == step
        assert payload["bands"] == 3 and payload["tile_size"] == 32
        assert [c["name"] for c in payload["classes"]] == ["clutter", *ISPRS[: n - 1]]
        ckpt = load_checkpoint(path)
        assert ckpt.num_classes == n and ckpt.bands == 3 and ckpt.tile_size == 32
        assert [c.name for c in ckpt.classes] == ["clutter", *ISPRS[: n - 1]]
        assert [c.color for c in ckpt.classes] == [COLOURS[c.name] for c in ckpt.classes]
        assert ckpt.normalization.low == (0.0, 0.0, 0.0)
        with torch.no_grad():
            logits = ckpt.model(torch.zeros(1, 3, 32, 32)).logits
        assert logits.shape == (1, n, 32, 32)
    # A run folder resolves to its last step.
    assert load_checkpoint(run_4_1).meta["step"] == 1
    assert load_checkpoint(run_4_1, step=0).num_classes == 5


def test_train_again_refuses_and_keeps_the_run(
    run_4_1: Path, fake_potsdam: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _snapshot(run_4_1)
    outcome = run_main(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                        "--out", run_4_1, *TINY], monkeypatch)
    assert_one_line_error(outcome, "--overwrite", str(run_4_1))
    assert _snapshot(run_4_1) == before


def test_evaluate_prints_the_table(run_4_1: Path, report: dict) -> None:
    result = run_cli(["evaluate", run_4_1, "--device", "cpu"])
    assert result.exit_code == 0, (result.output, result.exception)
    # Same sliding window, same checkpoints: the same scores as the training run.
    assert result.stdout.strip() == steps_table(report)
    one = run_cli(["evaluate", run_4_1, "--step", "0", "--device", "cpu"])
    assert one.exit_code == 0
    assert one.stdout.strip().splitlines()[-1] == steps_table(report).splitlines()[2]


def test_evaluate_with_test_time_augmentation(run_4_1: Path, report: dict,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """--tta none is the run's own scoring; d4 scores the same pixels (every class row, the
    same pixel counts) with other values; a typo stops in one line naming the choices."""
    same = run_cli(["evaluate", run_4_1, "--step", "1", "--tta", "none", "--device", "cpu"])
    assert same.exit_code == 0, (same.output, same.exception)
    assert same.stdout.strip().splitlines()[-1] == steps_table(report).splitlines()[3]
    d4 = run_cli(["evaluate", run_4_1, "--step", "1", "--tta", "d4", "--device", "cpu"])
    assert d4.exit_code == 0, (d4.output, d4.exception)
    header, _, row = d4.stdout.strip().splitlines()
    assert header == steps_table(report).splitlines()[0]
    assert row.split("|")[1:3] == steps_table(report).splitlines()[3].split("|")[1:3]
    outcome = run_main(["evaluate", run_4_1, "--tta", "d8", "--device", "cpu"], monkeypatch)
    assert_one_line_error(outcome, "eval.tta", "none, flip, d4")


def test_evaluate_writes_the_scores_as_json(run_4_1: Path, report: dict, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """--json holds report.json's scores for the same scoring, names the split and the test-
    time augmentation, and is never replaced without --overwrite (checked before scoring)."""
    out = tmp_path / "scores.json"
    result = run_cli(["evaluate", run_4_1, "--device", "cpu", "--json", out])
    assert result.exit_code == 0, (result.output, result.exception)
    scores = json.loads(out.read_text())
    assert scores["run"] == str(run_4_1)
    assert [s["step"] for s in scores["steps"]] == [s["step"] for s in report["steps"]]
    for got, want in zip(scores["steps"], report["steps"], strict=True):
        for key in ("step_classes", "miou_old", "miou_new", "miou_all", "per_class_iou",
                    "per_class_f1", "pixel_accuracy", "mean_f1"):
            assert got[key] == want[key], key
        assert got["eval"] == {"split": "test", "tta": "none", "datasets": [report["dataset"]]}
    assert result.stdout.strip() == steps_table(report)
    before = out.read_bytes()
    again = run_main(["evaluate", run_4_1, "--step", "1", "--tta", "flip", "--device", "cpu",
                      "--json", out], monkeypatch)
    assert_one_line_error(again, "--overwrite", str(out))
    assert out.read_bytes() == before
    flip = run_cli(["evaluate", run_4_1, "--step", "1", "--tta", "flip", "--device", "cpu",
                    "--json", out, "--overwrite"])
    assert flip.exit_code == 0, (flip.output, flip.exception)
    (step,) = json.loads(out.read_text())["steps"]
    assert step["step"] == 1 and step["eval"]["tta"] == "flip"
    assert list(step["per_class_iou"]) == list(report["steps"][1]["per_class_iou"])


# -------------------------------------------------------------------------- predict
def test_prediction_geometry(prediction: tuple[Path, Path]) -> None:
    scene, out = prediction
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        assert dst.count == 1
        assert dst.dtypes[0] == "uint8"
        assert dst.nodata == 255
        colormap = dst.colormap(1)
        values = dst.read(1)
    for index, name in enumerate(["clutter", *ISPRS]):
        assert colormap[index][:3] == COLOURS[name], name
    assert values.max() <= 5  # every input pixel is valid: no nodata
    qml = out.with_suffix(".qml")
    assert qml.is_file()
    text = qml.read_text()
    for name in ["clutter", *ISPRS]:
        assert name in text


def test_prediction_matches_evaluation(run_4_1: Path, prediction: tuple[Path, Path]) -> None:
    _, out = prediction
    with rasterio.open(out) as dst:
        values = dst.read(1)
    # Evaluation of step 1 ran the same windows over this tile: its predicted-class column
    # sums are the class counts of the predicted raster.
    _, matrix = _confusion(run_4_1 / "metrics" / "step_1_confusion.csv")
    np.testing.assert_array_equal(np.bincount(values.ravel(), minlength=6), matrix.sum(axis=0))


def test_predict_again_refuses(run_4_1: Path, prediction: tuple[Path, Path],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    scene, out = prediction
    before = out.stat().st_mtime_ns
    outcome = run_main(["predict", scene, "--model", run_4_1, "--out", out, "--quiet"],
                       monkeypatch)
    assert_one_line_error(outcome, "--overwrite")
    assert out.stat().st_mtime_ns == before


def test_predict_overwrite(run_4_1: Path, fake_potsdam: Path, tmp_path: Path) -> None:
    scene = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tif"
    out = tmp_path / "p.tif"
    out.write_bytes(b"old")
    result = run_cli(["predict", scene, "--model", run_4_1 / "checkpoints" / "step_0.pt",
                      "--out", out, "--overwrite", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    with rasterio.open(out) as dst:
        assert dst.read(1).max() <= 4  # the step-0 model knows background + 4 classes
        assert len([k for k in dst.tags(1) if k.startswith("CLASS_") and k[6:].isdigit()]) == 5


def test_predict_wrong_band_count(run_4_1: Path, fake_potsdam: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    scene = fake_potsdam / "4_Ortho_RGBIR" / "top_potsdam_2_13_RGBIR.tif"
    out = tmp_path / "x.tif"
    outcome = run_main(["predict", scene, "--model", run_4_1, "--out", out, "--quiet"],
                       monkeypatch)
    line = assert_one_line_error(outcome, "band", code=1)
    assert "4 band" in line and "3" in line
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir()]  # no partial files either


def test_predict_nodata_becomes_255(run_4_1: Path, fake_potsdam: Path, tmp_path: Path) -> None:
    source = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    with rasterio.open(source) as src:
        data, profile = src.read(), src.profile
    data[:, 0:16, 0:24] = 0
    profile.update(nodata=0)
    scene = tmp_path / "with_nodata.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    invalid = (data == 0).any(axis=0)  # GDAL per-band nodata masks: any band at 0
    out = tmp_path / "classes.tif"
    result = run_cli(["predict", scene, "--model", run_4_1, "--out", out, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    with rasterio.open(out) as dst:
        values = dst.read(1)
    np.testing.assert_array_equal(values == 255, invalid)
    assert values[~invalid].max() <= 5


def test_predict_other_crs_and_resolution(run_4_1: Path, shared_data: Path,
                                          tmp_path: Path) -> None:
    """A 3-band uint8 scene in another CRS (EPSG:32631, 4.5 m) than training (32633, 5 cm)."""
    scene = shared_data / "rotterdam_rgb_4.5m.tif"
    if not scene.is_file():
        pytest.skip(f"{scene} is absent")
    out = tmp_path / "rgb_classes.tif"
    result = run_cli(["predict", scene, "--model", run_4_1, "--out", out, "--quiet",
                      "--overlap", "0", "--batch-size", "16"])
    assert result.exit_code == 0, (result.output, result.exception)
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.crs.to_epsg() == 32631
        assert dst.transform.almost_equals(src.transform, 1e-9)
        assert (dst.width, dst.height) == (src.width, src.height) == (200, 200)
        assert dst.read(1).max() <= 5


def test_predict_into_a_new_folder(run_4_1: Path, fake_potsdam: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    scene = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    out = tmp_path / "new" / "folder" / "classes.tif"
    outcome = run_main(["predict", scene, "--model", run_4_1, "--out", out, "--quiet"],
                       monkeypatch)
    assert outcome.code == 0, outcome.stderr[-500:]
    assert out.is_file()


# -------------------------------------------------------------- Vaihingen (no CRS)
@pytest.fixture(scope="module")
def vaihingen_run(fake_vaihingen: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-2-1 run on fake Vaihingen, launched from the data's parent with relative paths."""
    cwd = os.getcwd()
    os.chdir(fake_vaihingen.parent)
    try:
        result = run_cli(["train", "vaihingen", "--root", fake_vaihingen.name, "--steps",
                          "2-2-1", "--out", "vrun", *TINY])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, (result.output, result.exception)
    return fake_vaihingen.parent / "vrun"


def test_vaihingen_run_and_pixel_space_prediction(
    vaihingen_run: Path, fake_vaihingen: Path, fakes: ModuleType, tmp_path: Path
) -> None:
    report = json.loads((vaihingen_run / "report.json").read_text())
    assert [e["step"] for e in report["steps"]] == [0, 1, 2]
    assert report["steps"][2]["old_classes"] == ISPRS[:2]
    assert report["steps"][2]["new_classes"] == ISPRS[2:]
    # Test area 2 (64 x 64, no ignore): the ground-truth rows of the last step.
    label = fakes.expected_label_indices("vaihingen", 2)
    names, matrix = _confusion(vaihingen_run / "metrics" / "step_2_confusion.csv")
    expected = np.bincount(label.ravel(), minlength=6).tolist()
    assert matrix.sum(axis=1).tolist() == expected
    assert json.loads((vaihingen_run / "task.json").read_text())["crs"] is None
    scene = fake_vaihingen / "top" / "top_mosaic_09cm_area1.tif"  # 64 x 80
    out = tmp_path / "area1.tif"
    result = run_cli(["predict", scene, "--model", vaihingen_run, "--out", out, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    with rasterio.open(out) as dst:
        assert dst.crs is None
        assert dst.transform.is_identity
        assert (dst.height, dst.width) == fakes.vaihingen_shape(1)
        assert dst.read(1).max() <= 5


def test_evaluate_from_another_folder(vaihingen_run: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    task = json.loads((vaihingen_run / "task.json").read_text())
    assert Path(task["dataset"]["root"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    result = run_cli(["evaluate", vaihingen_run, "--step", "2", "--device", "cpu"])
    assert result.exit_code == 0, (result.output, result.exception)


# ------------------------------------------------------------------------------ joint
def test_joint_run(fake_potsdam: Path, tmp_path: Path) -> None:
    out = tmp_path / "joint"
    result = run_cli(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                      "--method", "joint", "--out", out, *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "joint"
    assert len(report["steps"]) == 1
    entry = report["steps"][0]
    assert entry["step"] == 1
    assert entry["old_classes"] == ISPRS[:4] and entry["new_classes"] == ["car"]
    assert entry["step_classes"] == ISPRS
    # same total budget as the incremental run: 3 (step 0) + 3 (step 1) iterations
    assert entry["train"]["iterations"] == 6
    assert sorted(os.listdir(out / "checkpoints")) == ["step_1.pt"]
    ckpt = load_checkpoint(out)
    assert [c.name for c in ckpt.classes] == ["clutter", *ISPRS]
    names, matrix = _confusion(out / "metrics" / "step_1_confusion.csv")
    assert dict(zip(names, matrix.sum(axis=1).tolist(), strict=True)) == TILE_COUNTS


# ------------------------------------------------------------- custom YAML, real data
def test_custom_yaml_on_real_raster(shared_data: Path, tmp_path: Path) -> None:
    image = shared_data / "rotterdam_ms_1m.tif"
    if not image.is_file():
        pytest.skip(f"{image} is absent")
    with rasterio.open(image) as src:
        data = src.read()
        profile = {"crs": src.crs, "transform": src.transform}
        assert (src.count, src.dtypes[0], src.width, src.height) == (4, "float64", 300, 300)
    # Labels from thresholds: bright (value 10), high band 4 (value 20), the rest 0.
    bright = data[:3].mean(axis=0) > np.percentile(data[:3].mean(axis=0), 70)
    high4 = (data[3] > np.percentile(data[3], 60)) & ~bright
    labels = np.zeros((300, 300), dtype=np.int32)
    labels[bright] = 10
    labels[high4] = 20
    labels[:2, :] = -1  # an ignored strip
    assert 0.2 < (labels == 10).mean() < 0.4 and 0.1 < (labels == 20).mean() < 0.5
    label_path = tmp_path / "rotterdam_labels.tif"
    with rasterio.open(label_path, "w", driver="GTiff", width=300, height=300, count=1,
                       dtype="int32", **profile) as dst:
        dst.write(labels[None])
    doc = {
        "name": "rotterdam",
        "images": {"train": [str(image)], "test": [str(image)]},
        "labels": {"train": ["rotterdam_labels.tif"], "test": ["rotterdam_labels.tif"]},
        "ignore_values": [-1],
        "classes": [{"name": "bright", "value": 10, "color": "#d73027"},
                    {"name": "vegetation", "value": 20, "color": [27, 120, 55]}],
    }
    spec_path = tmp_path / "rotterdam.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    run = tmp_path / "run"
    result = run_cli(["train", spec_path, "--steps", "1-1", "--out", run,
                      "--iterations", "2", "--batch-size", "2", "--tile-size", "32",
                      "--set", "model.aspp_channels=16", "--set", "eval.overlap=0",
                      "--set", "eval.batch_size=16", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((run / "report.json").read_text())
    assert [e["step"] for e in report["steps"]] == [0, 1]
    assert report["steps"][1]["old_classes"] == ["bright"]
    assert report["steps"][1]["new_classes"] == ["vegetation"]
    _, matrix = _confusion(run / "metrics" / "step_1_confusion.csv")
    assert matrix.sum(axis=1).tolist() == [int((labels == v).sum()) for v in (0, 10, 20)]
    evaluated = run_cli(["evaluate", run, "--device", "cpu"])
    assert evaluated.exit_code == 0, (evaluated.output, evaluated.exception)
    assert evaluated.stdout.strip() == steps_table(report)
    ckpt = load_checkpoint(run)
    assert ckpt.bands == 4
    assert [c.name for c in ckpt.classes] == ["background", "bright", "vegetation"]
    assert [c.color for c in ckpt.classes] == [(0, 0, 0), (0xD7, 0x30, 0x27), (27, 120, 55)]
    assert ckpt.meta["crs"] == "EPSG:32631"
    assert ckpt.normalization.low[3] == pytest.approx(np.percentile(data[3], 1.0))
    out = tmp_path / "rotterdam_classes.tif"
    result = run_cli(["predict", image, "--model", run, "--out", out, "--quiet",
                      "--overlap", "8", "--batch-size", "16"])
    assert result.exit_code == 0, (result.output, result.exception)
    with rasterio.open(out) as dst:
        assert dst.crs == profile["crs"]
        assert dst.transform.almost_equals(profile["transform"], 1e-9)
        assert isinstance(dst.transform, Affine)
        assert (dst.width, dst.height) == (300, 300)
        assert dst.dtypes[0] == "uint8" and dst.nodata == 255
        # the map carries the dataset's own codes (10, 20), not output indices
        assert set(np.unique(dst.read(1)).tolist()) <= {0, 10, 20}
        assert dst.colormap(1)[20][:3] == (27, 120, 55)


def test_tensorboard_logger_writes_losses_lr_and_evaluation(tmp_path: Path) -> None:
    """``--set train.logger=tensorboard``: event files with every loss term and the learning
    rate per iteration (RUN/logs/step_T) and each step's mIoU and per-class IoU
    (RUN/logs/evaluation), read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tiny_geotiffs import make_dataset

    data = make_dataset(tmp_path / "data", train=2, test=1, size=48)
    run = tmp_path / "run"
    result = run_cli(["train", data, "--steps", "2-1", "--method", "mib", "--out", run,
                      "--iterations", "4", "--batch-size", "2", "--tile-size", "32",
                      "--preset", "cpu", "--set", "model.aspp_channels=16",
                      "--set", "eval.overlap=8", "--set", "train.logger=tensorboard",
                      "--set", "train.lr=0.01", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((run / "report.json").read_text())
    step1 = EventAccumulator(str(run / "logs" / "step_1")).Reload().Tags()["scalars"]
    assert {"loss", "loss_ce", "loss_logit_kd"} <= set(step1), step1
    assert any(tag.startswith("lr-") for tag in step1), step1
    evaluation = EventAccumulator(str(run / "logs" / "evaluation")).Reload()
    for key in ("miou_old", "miou_all"):
        events = evaluation.Scalars(f"eval/{key}")
        assert [e.step for e in events] == [0, 1]
        expected = [s[key] for s in report["steps"]]
        np.testing.assert_allclose([e.value for e in events], expected, rtol=1e-6)
    assert [e.step for e in evaluation.Scalars("eval/miou_new")] == [1]  # none at step 0
    assert evaluation.Scalars("iou/field")[-1].value == pytest.approx(
        report["steps"][1]["per_class_iou"]["field"], rel=1e-6)


def test_evaluation_progress_counts_the_windows_of_every_scene(tmp_path: Path) -> None:
    """The evaluation's progress bar sees one count over all scenes: two 48 px scenes in 32 px
    windows with 8 px overlap have 2 x 2 windows each (offsets 0 and 16), 8 in all."""
    from tiny_geotiffs import make_dataset

    from geoidec.data.normalization import Normalization
    from geoidec.data.registry import load_dataset
    from geoidec.evaluation.evaluate import evaluate_scenes
    from geoidec.models import build_model

    spec = load_dataset(str(make_dataset(tmp_path, train=1, test=2, size=48)))
    model = build_model("mobilenet_v3_small", [4], in_channels=3, aspp_channels=16)
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.5,) * 3, std=(0.25,) * 3)
    calls: list[tuple[int, int]] = []
    evaluate_scenes(model, spec.scenes("test"), spec.decoder, norm, np.arange(256, dtype=np.uint8),
                    tile=32, overlap=8, batch_size=3, device=torch.device("cpu"),
                    progress=lambda done, total: calls.append((done, total)))
    assert {total for _, total in calls} == {8}
    assert [done for done, _ in calls] == [3, 4, 7, 8]  # batches of 3 within each scene
