"""The benchmarks' own tools: the real-imagery benchmark (benchmarks/s2_osm.py), whose
validation cut of the west half tiles it exactly and whose random-forest baseline scores
like a confusion matrix computed by hand, and the prediction benchmark's null model
(benchmarks/predict.py), which must keep running the real pipeline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio
import yaml
from conftest import REPO_ROOT
from tiny_geotiffs import make_dataset


def _bench(script: str) -> ModuleType:
    """``benchmarks/SCRIPT.py`` as a module (the benchmarks are scripts, not a package)."""
    name = f"geoidec_bench_{script}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" /
                                                      f"{script}.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _s2_osm() -> ModuleType:
    return _bench("s2_osm")


def test_validation_cut_tiles_the_training_half(shared_data: Path, tmp_path: Path) -> None:
    bench = _s2_osm()
    path = bench.split(shared_data / "s2_osm", tmp_path / "val")
    doc = yaml.safe_load(path.read_text())
    assert set(doc["images"]) == {"train", "val"}  # no test split: nothing tuned sees it
    for kind in ("image", "labels"):
        with rasterio.open(shared_data / "s2_osm" / f"west_{kind}.tif") as src:
            whole, transform = src.read(), src.transform
        with rasterio.open(tmp_path / "val" / f"west_train_{kind}.tif") as a, \
                rasterio.open(tmp_path / "val" / f"west_val_{kind}.tif") as b:
            assert a.transform == transform and a.crs == b.crs
            assert b.transform.c == transform.c + a.width * transform.a
            assert b.width == bench.VAL_COLUMNS
            np.testing.assert_array_equal(np.concatenate([a.read(), b.read()], axis=2), whole)


def test_validation_fold_in_the_middle(shared_data: Path, tmp_path: Path) -> None:
    """--fold 2: columns 384-575 validate, the columns on either side train (two scenes)."""
    bench = _s2_osm()
    doc = yaml.safe_load(bench.split(shared_data / "s2_osm", tmp_path / "f2", fold=2)
                         .read_text())
    assert doc["images"]["train"] == ["west_train_left_image.tif", "west_train_right_image.tif"]
    with rasterio.open(shared_data / "s2_osm" / "west_labels.tif") as src:
        whole, transform = src.read(), src.transform
    parts = []
    for name in ("train_left", "val", "train_right"):
        with rasterio.open(tmp_path / "f2" / f"west_{name}_labels.tif") as part:
            column = round((part.transform.c - transform.c) / transform.a)
            assert column == sum(p.shape[2] for p in parts)
            parts.append(part.read())
    assert [p.shape[2] for p in parts] == [384, 192, 192]
    np.testing.assert_array_equal(np.concatenate(parts, axis=2), whole)


def test_forest_scores_like_a_hand_confusion_matrix(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _s2_osm()
    data = make_dataset(tmp_path, train=1, test=1, size=32)
    predictions: list[np.ndarray] = []

    class Majority:  # predicts class 2 everywhere: IoU is computable by hand
        def __init__(self, **_: object) -> None: ...

        def fit(self, x: np.ndarray, y: np.ndarray) -> Majority:
            return self

        def predict(self, x: np.ndarray) -> np.ndarray:
            predictions.append(np.full(len(x), 2))
            return predictions[-1]

    import sklearn.ensemble

    monkeypatch.setattr(sklearn.ensemble, "RandomForestClassifier", Majority)
    result = bench.forest(data, "test", seed=0, samples=100)
    with rasterio.open(tmp_path / "labels" / "test_0.tif") as src:
        label = src.read(1)
    share = float((label == 2).mean())  # IoU of class 2: its pixels / all pixels
    assert result["per_class_iou"] == {"forest": 0.0, "water": pytest.approx(share),
                                       "field": 0.0}
    assert result["miou"] == pytest.approx(share / 3)


def test_comparison_shares_step0_only_between_tasks_that_learn_the_same_classes(
        tmp_path: Path) -> None:
    """4-3 and 4-1-1-1 reuse one step-0 model per seed; 2-2-1 (another step 0) trains its
    own, so its runs never point --step0-from at a model of other classes."""
    import argparse

    plan_jobs = _bench("compare_methods").plan_jobs
    args = argparse.Namespace(tasks=["4-3", "4-1-1-1", "2-2-1"], seeds=[0],
                              methods=["finetune", "idec"], joint=False, preset=None, sets=[],
                              eval_split=None, out=tmp_path, dataset="d.yaml")
    runs = plan_jobs(args, None)
    reused = {str(job.out.relative_to(tmp_path)): (job.args[job.args.index("--step0-from") + 1]
                                                  if "--step0-from" in job.args else None)
              for jobs in runs.values() for job in jobs}
    trainer_4 = str(tmp_path / "4-3-seed0" / "finetune")
    trainer_2 = str(tmp_path / "2-2-1-seed0" / "finetune")
    assert reused == {"4-3-seed0/finetune": None, "4-3-seed0/idec": trainer_4,
                      "4-1-1-1-seed0/finetune": trainer_4, "4-1-1-1-seed0/idec": trainer_4,
                      "2-2-1-seed0/finetune": None, "2-2-1-seed0/idec": trainer_2}


def test_predict_benchmark_null_model_runs_the_real_pipeline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/predict.py's null model (the forward replaced by a constant tensor) runs
    predict_scene end to end: a 600^2 scene gets the 2 x 2 windows of 512 px at stride 384
    (offsets 0 and 88 per axis), and where one window alone covers a pixel (rows and columns
    0..87) the class map and the confidence are that window's constant probabilities."""
    import torch

    import geoidec.inference.predictor_setup as setup_module

    bench = _bench("predict")
    # the null model patches the forward factory: restored after the test
    monkeypatch.setattr(setup_module, "probability_fn", setup_module.probability_fn)
    threads = torch.get_num_threads()
    ckpt = bench.make_checkpoint(tmp_path / "model.pt", aspp=16)
    scene = bench.make_scene(tmp_path / "scene.tif", 600)
    try:
        result = bench.null_child(scene, ckpt, tmp_path / "null.tif", batch_size=3, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert result["windows"] == 4 and result["threads"] == 1
    assert result["cpu_ms_per_window"] > 0
    probs = bench.null_probabilities(1, bench.CLASSES, bench.TILE, "cpu")[0].numpy()
    alone = probs[:, :88, :88]
    with rasterio.open(tmp_path / "null.tif") as src:
        assert (src.height, src.width) == (600, 600)
        classes = src.read(1)[:88, :88]
    with rasterio.open(tmp_path / "null_confidence.tif") as src:
        confidence = src.read(1)[:88, :88].astype(int)
    np.testing.assert_array_equal(classes, alone.argmax(axis=0))
    want = np.rint(alone.max(axis=0) * 100).astype(int)
    assert np.abs(confidence - want).max() <= 1
