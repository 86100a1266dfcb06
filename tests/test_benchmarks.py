"""The real-imagery benchmark's own tools (benchmarks/s2_osm.py): the validation cut of the
west half tiles it exactly, and the random-forest baseline scores like a confusion matrix
computed by hand."""

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


def _s2_osm() -> ModuleType:
    name = "geoidec_bench_s2_osm"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" /
                                                      "s2_osm.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


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
