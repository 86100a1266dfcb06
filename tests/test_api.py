"""The Python API: docs/api.md's example runs as written, and ``model.predict`` gives the
class map ``geoidec predict`` writes, pixel for pixel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import run_cli
from tiny_geotiffs import make_dataset

import geoidec
from geoidec.data.base import DataError
from geoidec.errors import UsageError

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32", "--preset", "cpu",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with runs/landcover (a tiny model of a YAML dataset, codes 4, 7, 9) and
    east_image.tif (a 70 x 90 test scene, wider and taller than two windows)."""
    root = tmp_path_factory.mktemp("api")
    data = make_dataset(root / "data", train=2, test=1, size=48, values=(4, 7, 9))
    result = run_cli(["train", data, "--out", root / "runs" / "landcover", *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    with rasterio.open(root / "data" / "images" / "test_0.tif") as src:
        profile, image = src.profile, src.read()
    big = np.concatenate([image, image[:, :22]], axis=1)
    big = np.concatenate([big, big[:, :, :42]], axis=2)
    profile.update(height=big.shape[1], width=big.shape[2])
    with rasterio.open(root / "east_image.tif", "w", **profile) as dst:
        dst.write(big)
    return root


def test_the_documented_example_runs_and_equals_geoidec_predict(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(code) == 2  # numpy, then xarray
    monkeypatch.chdir(workdir)
    namespace: dict = {}
    for block in code:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    result = run_cli(["predict", "east_image.tif", "--model", "runs/landcover",
                      "--out", "east_cli.tif", "--overwrite", "--quiet"])
    assert result.exit_code == 0, result.output
    with rasterio.open("east_cli.tif") as a, rasterio.open("east_codes.tif") as b:
        cli, api = a.read(1), b.read(1)
        assert (b.crs, b.transform, b.nodata) == (a.crs, a.transform, a.nodata)
    np.testing.assert_array_equal(api, cli)
    with rasterio.open("east_codes_xarray.tif") as c:
        np.testing.assert_array_equal(c.read(1), cli)
        assert (c.crs, c.transform, c.nodata) == (a.crs, a.transform, a.nodata)
    forest = namespace["forest"]
    np.testing.assert_array_equal(forest.values, namespace["probs"][1])
    assert set(np.unique(api)) <= {0, 4, 7, 9}
    model = namespace["model"]
    assert [(c.name, c.code) for c in model.classes] == [
        ("background", 0), ("forest", 4), ("water", 7), ("field", 9)]
    probs = namespace["probs"]
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    index = probs.argmax(axis=0)  # the class map is the codes of the most probable class
    np.testing.assert_array_equal(np.array([c.code for c in model.classes])[index], api)


def test_invalid_pixels_tensors_and_band_errors(workdir: Path) -> None:
    model = geoidec.load(workdir / "runs" / "landcover", device="cpu")
    with rasterio.open(workdir / "east_image.tif") as src:
        image = src.read().astype(np.float32)
    image[:, :5, :7] = np.nan           # not finite
    image[1, 10:12, 10:13] = -9999.0     # the nodata value in one band
    codes = model.predict(image, nodata=-9999.0)
    invalid = np.zeros(codes.shape, dtype=bool)
    invalid[:5, :7] = invalid[10:12, 10:13] = True
    assert (codes[invalid] == model.nodata_code).all() and (codes[~invalid] != 255).all()
    assert (model.predict_proba(image, nodata=-9999.0)[:, invalid] == 0).all()
    clean = np.nan_to_num(image, nan=50.0)
    clean[1, 10:12, 10:13] = 50.0
    np.testing.assert_array_equal(model.predict(torch.from_numpy(clean)), model.predict(clean))
    with pytest.raises(DataError, match=r"3 band\(s\).*got shape \(2, 70, 90\)"):
        model.predict(clean[:2])


def test_train_and_predict_file_mirror_the_command_line(tmp_path: Path) -> None:
    """``geoidec.train`` (what ``geoidec train`` calls) returns the run, and
    ``geoidec.predict_file`` writes the map ``Model.predict`` computes."""
    data = make_dataset(tmp_path / "data", train=2, test=1, size=48, values=(4, 7, 9))
    result = geoidec.train(data, steps="2-1", method="mib", out=tmp_path / "run",
                           preset="cpu", iterations=3, batch_size=2, tile_size=32,
                           settings={"model.aspp_channels": 16, "eval.overlap": 8},
                           quiet=True, echo=lambda message: None)
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert result.run_dir == tmp_path / "run" and result.report == saved
    assert [e["step"] for e in saved["steps"]] == [0, 1] and saved["method"] == "mib"
    scene = tmp_path / "data" / "images" / "test_0.tif"
    prediction = geoidec.predict_file(scene, tmp_path / "run", confidence=True, device="cpu")
    assert prediction.classes == tmp_path / "data" / "images" / "test_0_classes.tif"
    assert prediction.paths.confidence is not None and prediction.paths.confidence.is_file()
    with rasterio.open(scene) as src, rasterio.open(prediction.classes) as written:
        np.testing.assert_array_equal(
            written.read(1), geoidec.load(tmp_path / "run", device="cpu").predict(src.read()))
    d4 = geoidec.predict_file(scene, tmp_path / "run", tmp_path / "d4.tif", tta="d4",
                              device="cpu")
    with rasterio.open(scene) as src, rasterio.open(d4.classes) as written:
        np.testing.assert_array_equal(written.read(1), geoidec.load(
            tmp_path / "run", device="cpu").predict(src.read(), tta="d4"))
    with pytest.raises(UsageError, match="tta must be one of none, flip, d4"):
        geoidec.load(tmp_path / "run", device="cpu").predict(np.zeros((3, 8, 8)), tta="d8")
    # geoidec.evaluate (what `geoidec evaluate` calls): the run's own scores again, and
    # another test-time augmentation on request, named in the result.
    again = geoidec.evaluate(tmp_path / "run", device="cpu")
    for got, want in zip(again["steps"], saved["steps"], strict=True):
        assert (got["step"], got["miou_all"], got["per_class_iou"]) == (
            want["step"], want["miou_all"], want["per_class_iou"])
        assert got["eval"]["tta"] == "none"
    (flip,) = geoidec.evaluate(tmp_path / "run", step=1, tta="flip", device="cpu")["steps"]
    assert flip["step"] == 1 and flip["eval"]["tta"] == "flip"
    with pytest.raises(UsageError, match="tta must be one of none, flip, d4"):
        geoidec.evaluate(tmp_path / "run", tta="d8", device="cpu")
    with pytest.raises(UsageError, match="leave --steps out"):
        geoidec.train(data, steps="2-1", from_run=tmp_path / "run", out=tmp_path / "v2")
