"""``--preset auto``: the satellite preset for pixels of 2 m or coarser, the cpu preset for
aerial imagery and rasters without a CRS; the choice is printed and recorded in the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_main
from tiny_geotiffs import make_dataset

from geoidec.config import load_config
from geoidec.data.registry import auto_preset, load_dataset


@pytest.mark.parametrize(("res", "crs", "expected", "why"), [
    (10.0, "EPSG:32633", "satellite", "10 m pixels"),
    (2.0, "EPSG:32633", "satellite", "2 m pixels"),
    (0.5, "EPSG:32633", "cpu", "0.5 m pixels"),
    (0.0001, "EPSG:4326", "satellite", "11.132 m pixels"),  # 0.0001 degree
    (30.0, None, "cpu", "no CRS"),
])
def test_auto_preset_from_the_pixel_size(
    tmp_path: Path, res: float, crs: str | None, expected: str, why: str
) -> None:
    spec = load_dataset(str(make_dataset(tmp_path, train=1, test=1, res=res, crs=crs)))
    assert auto_preset(spec) == (expected, why)


def test_satellite_preset_values() -> None:
    cfg = load_config("satellite")
    assert (cfg.model.backbone, cfg.model.head, cfg.model.first_stride) == (
        "mobilenet_v3_large", "lraspp", 1)
    assert (cfg.train.optimizer, cfg.data.tile_size, cfg.data.min_valid_fraction) == (
        "adamw", 64, 0.05)
    assert (cfg.eval.tta, load_config("cpu").eval.tta) == ("flip", "none")


@pytest.mark.parametrize(("flags", "head", "printed"), [
    ([], "lraspp", "preset satellite (10 m pixels"),
    (["--preset", "cpu"], "aspp", None),
])
def test_train_picks_and_prints_the_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], head: str,
    printed: str | None,
) -> None:
    data = make_dataset(tmp_path / "data", train=1, test=1, size=32, res=10.0)
    out = tmp_path / "run"
    outcome = run_main(["train", data, "--steps", "2-1", "--out", out, "--iterations", "1",
                        "--batch-size", "2", "--tile-size", "32", "--set",
                        "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet",
                        *flags], monkeypatch)
    assert outcome.code == 0, outcome.stderr
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["head"] == head
    report = json.loads((out / "report.json").read_text())
    flip = head == "lraspp"  # the satellite preset scores with flip averaging
    assert report["steps"][-1]["eval"]["tta"] == ("flip" if flip else "none")
    # The card's predict command and both reports say how the scores were made.
    card = (out / "model_card.md").read_text()
    assert ("--out OUT.tif --tta flip" in card) == flip
    assert ("the mean of the probabilities over 4 flips (`eval.tta: flip`)" in card) == flip
    assert ("4 flips (`eval.tta: flip`)" in (out / "report.md").read_text()) == flip
    if printed:
        assert printed in outcome.stderr
    else:
        assert "preset" not in outcome.stderr
