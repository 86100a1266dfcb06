"""The headline commands just work: `geoidec train DATASET` trains IDEC on every class when
no steps are given, and `geoidec predict scene.tif` without --model uses the most recently
finished run under ./runs (saying which), or says in one line how to pass one."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_main
from tiny_geotiffs import make_dataset

TINY = ["--iterations", "2", "--batch-size", "2", "--tile-size", "32", "--preset", "cpu",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("headline"), train=1, test=1, size=32)


def test_train_defaults_to_idec_and_every_class(data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    outcome = run_main(["train", data, *TINY], monkeypatch)
    assert outcome.code == 0, outcome.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["tiny-3-idec"]
    report = json.loads((runs[0] / "report.json").read_text())
    assert report["method"] == "idec" and report["task"] == "3"
    assert report["steps"][0]["step_classes"] == ["forest", "water", "field"]


def test_predict_without_model_uses_the_latest_finished_run(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    scene = data.parent / "images" / "test_0.tif"
    none = run_main(["predict", scene, "--out", tmp_path / "a.tif", "--quiet"], monkeypatch)
    assert_one_line_error(none, "no --model given", "pass --model")
    for name in ("older", "newer"):
        assert run_main(["train", data, "--out", Path("runs") / name, *TINY],
                        monkeypatch).code == 0
        time.sleep(0.05)
    shutil.copytree(tmp_path / "runs" / "newer", tmp_path / "runs" / "unfinished")
    shutil.rmtree(tmp_path / "runs" / "unfinished" / "checkpoints")
    past = time.time() - 3600
    os.utime(tmp_path / "runs" / "older" / "report.json", (past, past))
    outcome = run_main(["predict", scene, "--out", tmp_path / "b.tif", "--quiet"], monkeypatch)
    assert outcome.code == 0, outcome.stderr
    assert "model: runs/newer (the most recently finished run under ./runs" in outcome.stdout
    assert (tmp_path / "b.tif").is_file()
