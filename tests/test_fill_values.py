"""Undeclared per-band fill values (detected, warned about, treated as nodata) and the
``fill_values`` key of dataset YAML files declaring them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import run_cli, run_main
from rasterio.windows import Window
from tiny_geotiffs import FILL_BLOCK, make_fill_dataset, write_tif

from geoidec.checkpoint import load_checkpoint
from geoidec.data.base import Scene
from geoidec.data.geotiff import load_geotiff_dataset
from geoidec.data.normalization import (
    FILL_MIN_SHARE,
    Normalization,
    compute_normalization,
    detect_fill_values,
    with_fill,
)
from geoidec.data.scene_reader import SceneReader
from geoidec.errors import DataError
from geoidec.runs.reports import steps_table

H, W = 40, 50
#: Band 2 of :func:`_uint16` is 0 here: 10 x 30 = 300 of the 2000 pixels, 15 %.
BLOCK = (slice(5, 15), slice(10, 40))


def _uint16() -> np.ndarray:
    """(3, 40, 50) uint16 values 300..3999, band 2 filled with 0 over BLOCK."""
    data = np.random.default_rng(7).integers(300, 4000, size=(3, H, W)).astype(np.uint16)
    data[1][BLOCK] = 0
    return data


def _hand_stats(data: np.ndarray) -> tuple[np.ndarray, ...]:
    """low/high (1st/99th percentiles), mean/std of the scaled pixels, over (N, C)."""
    low, high = np.percentile(data, [1.0, 99.0], axis=0)
    unit = np.clip((data - low) / (high - low), 0.0, 1.0)
    return low, high, unit.mean(axis=0), unit.std(axis=0)


@pytest.fixture()
def filled(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = _uint16()
    return write_tif(tmp_path / "filled.tif", data), data


def _yaml(tmp_path: Path, image: Path, **extra: object) -> Path:
    lab = np.ones((1, H, W), dtype=np.uint8)
    write_tif(tmp_path / "labels.tif", lab)
    doc = {"images": {"train": [image.name]}, "labels": {"train": ["labels.tif"]},
           "classes": [{"name": "a", "value": 1}], **extra}
    path = tmp_path / "fill.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# ------------------------------------------------------------------------- detection
def test_detects_band_2_value_0_with_its_share(filled: tuple[Path, np.ndarray]) -> None:
    image, data = filled
    pixels = data.reshape(3, -1).T.astype(np.float64)
    assert detect_fill_values(pixels, {"uint16"}) == [(1, 0.0, 300 / 2000)]
    # FILL_MIN_SHARE = 0.5 %: 10 of 2000 pixels are a fill value, 9 are not.
    few = data.reshape(3, -1).T.astype(np.float64)
    few[:, 1] = np.where(few[:, 1] == 0, 1000, few[:, 1])
    few[:10, 1] = 0
    assert detect_fill_values(few, {"uint16"}) == [(1, 0.0, 0.005)]
    few[9, 1] = 1000
    assert detect_fill_values(few, {"uint16"}) == []
    messages: list[str] = []
    norm = compute_normalization([Scene("f", image)], messages=messages)
    assert norm.fill == (None, 0.0, None)
    assert messages == [
        "warning: band 2: value 0 fills 15.0% of the sampled pixels and looks like an "
        "undeclared fill value; treated as nodata (declare it with fill_values: {2: 0} in the "
        "dataset YAML)"]


def test_statistics_leave_the_fill_pixels_out(filled: tuple[Path, np.ndarray]) -> None:
    image, data = filled
    norm = compute_normalization([Scene("f", image)], messages=[])
    keep = data[1] != 0
    assert keep.sum() == 1700  # 2000 pixels, 300 of them in the fill block
    low, high, mean, std = _hand_stats(data[:, keep].T.astype(np.float64))
    np.testing.assert_allclose(norm.low, low)
    np.testing.assert_allclose(norm.high, high)
    np.testing.assert_allclose(norm.mean, mean)
    np.testing.assert_allclose(norm.std, std)
    # With the fill pixels, band 2's 1st percentile would be the fill value itself.
    naive_low, *_ = _hand_stats(data.reshape(3, -1).T.astype(np.float64))
    assert naive_low[1] == 0.0 and norm.low[1] >= 300


def test_logged_once_without_a_message_list(filled: tuple[Path, np.ndarray],
                                            caplog: pytest.LogCaptureFixture) -> None:
    image, _ = filled
    with caplog.at_level(logging.WARNING, logger="geoidec"):
        compute_normalization([Scene("f", image)], band_names=("blue", "swir", "red"))
    lines = [r.getMessage() for r in caplog.records if r.name == "geoidec"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("warning: band 2 (swir): value 0 fills 15.0% ")
    assert "fill_values: {swir: 0}" in lines[0]


def test_8bit_shadows_and_saturated_whites_are_not_fill(tmp_path: Path) -> None:
    """Clipped normal histograms run gradually into 0 and 255: band 1 has about 2.4 % of its
    pixels at 0 and 1.4 % at 1..4; band 2 about 4 % at 255; band 3 both ends."""
    rng = np.random.default_rng(3)
    shape = (100, 100)
    bands = [rng.normal(40, 20, shape), rng.normal(220, 20, shape),
             np.where(rng.random(shape) < 0.5, rng.normal(30, 15, shape),
                      rng.normal(230, 15, shape))]
    data = np.clip(np.rint(np.stack(bands)), 0, 255).astype(np.uint8)
    share0 = (data[0] == 0).mean()
    share255 = (data[1] == 255).mean()
    assert share0 > 4 * FILL_MIN_SHARE and share255 > 4 * FILL_MIN_SHARE  # big spikes
    image = write_tif(tmp_path / "rgb.tif", data)
    messages: list[str] = []
    norm = compute_normalization([Scene("rgb", image)], messages=messages)
    assert messages == [] and norm.fill == ()
    # The same band with a block of 0 where the imagery is bright is flagged.
    data[1][:20, :30] = 0
    pixels = data.reshape(3, -1).T.astype(np.float64)
    assert detect_fill_values(pixels, {"uint8"}) == [(1, 0.0, 600 / 10000)]


def test_8bit_sharp_saturation_is_not_fill() -> None:
    """Saturated whites as in real 8-bit imagery: 150 of 10000 pixels at 255 but only 5 at
    254 (a 30x spike over that one value), 8, 10 and 12 at 253..251, the rest 60..230.
    The span is about 170, so 1 % of it is 1.7 values; the neighbourhood is widened to the
    4 values 251..254 (35 pixels, a 4.3x spike) and 255 is not flagged."""
    values = np.concatenate([np.full(150, 255), np.full(5, 254), np.full(8, 253),
                             np.full(10, 252), np.full(12, 251),
                             np.rint(np.linspace(60, 230, 10000 - 185))])
    assert len(values) == 10000
    pixels = np.random.default_rng(0).permutation(values)[:, None]
    assert detect_fill_values(pixels, {"uint8"}) == []
    # Once the tail is gone (a fill value next to a gap), the same 150 pixels are flagged.
    gap = np.where(values >= 251, np.where(values == 255, 255, 200), values)[:, None]
    assert detect_fill_values(gap, {"uint8"}) == [(0, 255.0, 0.015)]


def test_real_8bit_rgb_is_not_fill(shared_data: Path) -> None:
    """A real 8-bit RGB crop with 1.1-1.3 % of each band saturated at 255."""
    image = shared_data / "rotterdam_rgb_4.5m.tif"
    if not image.is_file():
        pytest.skip(f"{image} is absent")
    with rasterio.open(image) as src:
        data = src.read()
    assert ((data == 255).mean(axis=(1, 2)) > 2 * FILL_MIN_SHARE).all()
    messages: list[str] = []
    assert compute_normalization([Scene("r", image)], messages=messages).fill == ()
    assert messages == []


def test_float_fill_value(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(0.2, 0.05, (2, H, W)).astype(np.float32)
    data[0][BLOCK] = np.finfo(np.float32).min
    data[1][:4] = -9999.0  # 200 pixels, 10 %
    image = write_tif(tmp_path / "float.tif", data)
    messages: list[str] = []
    norm = compute_normalization([Scene("f", image)], messages=messages)
    assert norm.fill == (float(np.finfo(np.float32).min), -9999.0)
    assert "band 1: value -3.4028235e+38 fills 15.0%" in messages[0]
    assert "band 2: value -9999 fills 10.0%" in messages[1]
    # The value as written in the message, declared in YAML, matches the float32 pixels.
    spec = load_geotiff_dataset(_yaml(tmp_path, image, fill_values={1: -3.4028235e+38}))
    with SceneReader(spec.scenes("train")[0]) as reader:
        _, valid = reader.read_image(Window(0, 0, W, H))
    assert (~valid).sum() == 300


# ------------------------------------------------------------------------ the YAML key
@pytest.mark.parametrize("key", [2, "swir"])
def test_yaml_declares_a_fill_value(filled: tuple[Path, np.ndarray], tmp_path: Path,
                                    key: object) -> None:
    image, data = filled
    path = _yaml(tmp_path, image, band_names=["blue", "swir", "red"], fill_values={key: 0})
    spec = load_geotiff_dataset(path)
    scenes = spec.scenes("train")
    assert scenes[0].fill == (None, 0.0, None)
    messages: list[str] = []
    norm = compute_normalization(scenes, band_names=spec.band_names, messages=messages)
    assert messages == []  # declared: not reported as detected
    assert norm.fill == (None, 0.0, None)
    detected = compute_normalization([Scene("f", image)], messages=[])
    assert norm == detected


def test_yaml_fill_values_with_band_selection(filled: tuple[Path, np.ndarray],
                                              tmp_path: Path) -> None:
    image, _ = filled
    spec = load_geotiff_dataset(_yaml(tmp_path, image, bands=[2, 3],
                                      fill_values={3: 65535}))
    assert spec.scenes("train")[0].fill == (None, 65535.0)
    messages: list[str] = []
    norm = compute_normalization(spec.scenes("train"), messages=messages)
    # band 2 of the file is the first band read: reported by its file band number
    assert norm.fill == (0.0, 65535.0)
    assert len(messages) == 1 and messages[0].startswith("warning: band 2: value 0 ")


@pytest.mark.parametrize(("fill_values", "needles"), [
    ({7: 0}, ["fill_values: band 7", "3 band(s)"]),
    ({"nir": 0}, ["fill_values: band 'nir'", "band_names"]),
    ({0: 0}, ["fill_values: band 0"]),
    ({2: "zero"}, ["fill_values.2", "'zero' is not a number"]),
    ({2: True}, ["fill_values.2"]),
    ({2: 0, "swir": 1}, ["band 2 is given twice"]),
    ([0, 0, 0], ["'fill_values' must map bands"]),
])
def test_bad_fill_values_give_one_line(filled: tuple[Path, np.ndarray], tmp_path: Path,
                                       fill_values: object, needles: list[str]) -> None:
    image, _ = filled
    path = _yaml(tmp_path, image, band_names=["blue", "swir", "red"], fill_values=fill_values)
    with pytest.raises(DataError) as err:
        load_geotiff_dataset(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message, (needle, message)


def test_fill_value_of_an_unselected_band(filled: tuple[Path, np.ndarray],
                                          tmp_path: Path) -> None:
    image, _ = filled
    with pytest.raises(DataError, match=r"fill_values: band 1 is not read \('bands' reads "
                                        r"\[2, 3\]\)"):
        load_geotiff_dataset(_yaml(tmp_path, image, bands=[2, 3], fill_values={1: 0}))


# ----------------------------------------------------------------------- the reader
def test_reader_marks_exactly_the_fill_pixels_invalid(filled: tuple[Path, np.ndarray]) -> None:
    image, data = filled
    scene = Scene("f", image, fill=(None, 0.0, None))
    with SceneReader(scene) as reader:
        values, valid = reader.read_image(Window(0, 0, W, H))
        part, part_valid = reader.read_image(Window(-5, 10, 20, 20))  # partly outside
    expected = np.ones((H, W), dtype=bool)
    expected[BLOCK] = False
    np.testing.assert_array_equal(valid, expected)
    assert (values[:, ~expected] == 0).all()
    np.testing.assert_array_equal(values[:, expected], data[:, expected].astype(np.float32))
    np.testing.assert_array_equal(part_valid[:, 5:], expected[10:30, 0:15])
    assert not part_valid[:, :5].any()
    # Without the fill value the block reads as data.
    with SceneReader(Scene("f", image)) as reader:
        assert reader.read_image(Window(0, 0, W, H))[1].all()


def test_reader_refuses_a_fill_tuple_of_another_length(filled: tuple[Path, np.ndarray]) -> None:
    image, _ = filled
    with pytest.raises(DataError, match="2 fill value"):
        SceneReader(Scene("f", image, fill=(None, 0.0)))


def test_normalization_dict_round_trip_and_old_checkpoints() -> None:
    norm = Normalization((0.0,) * 2, (1.0,) * 2, (0.5,) * 2, (0.2,) * 2, fill=(None, 0.0))
    data = json.loads(json.dumps(norm.to_dict()))
    assert data["fill"] == [None, 0.0]
    assert Normalization.from_dict(data) == norm
    del data["fill"]  # a checkpoint written before fill values
    assert Normalization.from_dict(data).fill == ()
    scenes = (Scene("a", Path("a.tif")),)
    assert with_fill(scenes, Normalization.from_dict(data)) == scenes
    assert with_fill(scenes, norm)[0].fill == (None, 0.0)


# ------------------------------------------------------------------------ end to end
TINY = ["--iterations", "2", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet",
        "--device", "cpu"]


def test_train_warns_stores_and_predict_writes_nodata(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = make_fill_dataset(tmp_path / "data", train=2, test=1,
                                band_names=("blue", "nir", "swir"))
    run = tmp_path / "run"
    outcome = run_main(["train", dataset, "--steps", "2-1", "--out", run, *TINY], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-3000:]
    lines = [line for line in outcome.stderr.splitlines() if "undeclared fill value" in line]
    # 2 training scenes of 48 x 48 px, each with a 16 x 24 px block: 768 / 4608 = 16.7 %
    assert lines == [
        "geoidec: warning: band 2 (nir): value 0 fills 16.7% of the sampled pixels and looks "
        "like an undeclared fill value; treated as nodata (declare it with fill_values: "
        "{nir: 0} in the dataset YAML)"]
    ckpt = load_checkpoint(run)
    assert ckpt.normalization.fill == (None, 0.0, None)
    assert json.loads((run / "task.json").read_text())["normalization"]["fill"] == [
        None, 0.0, None]
    # Evaluation left the test scene's fill block out: 48 * 48 - 16 * 24 pixels counted.
    rows = (run / "metrics" / "step_1_confusion.csv").read_text().splitlines()[1:]
    assert sum(int(v) for row in rows for v in row.split(",")[1:]) == 48 * 48 - 384
    # Prediction reads the fill value from the checkpoint: nodata (255) exactly there.
    scene = dataset.parent / "images" / "test_0.tif"
    out = tmp_path / "classes.tif"
    result = run_cli(["predict", scene, "--model", run, "--out", out, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    with rasterio.open(out) as dst:
        values = dst.read(1)
    expected = np.zeros((48, 48), dtype=bool)
    expected[FILL_BLOCK] = True
    np.testing.assert_array_equal(values == 255, expected)
    assert values[~expected].max() <= 3
    # `geoidec evaluate` reads the dataset again with the checkpoint's fill values.
    report = json.loads((run / "report.json").read_text())
    evaluated = run_cli(["evaluate", run, "--device", "cpu"])
    assert evaluated.exit_code == 0, (evaluated.output, evaluated.exception)
    assert evaluated.stdout.strip() == steps_table(report)


def test_declared_fill_value_is_not_reported(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = make_fill_dataset(tmp_path / "data", train=2, test=1)
    doc = yaml.safe_load(dataset.read_text())
    doc["fill_values"] = {2: 0}
    dataset.write_text(yaml.safe_dump(doc))
    run = tmp_path / "run"
    outcome = run_main(["train", dataset, "--steps", "2-1", "--out", run, *TINY], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-3000:]
    assert "undeclared fill value" not in outcome.stderr
    assert load_checkpoint(run).normalization.fill == (None, 0.0, None)


def test_prediction_range_check_leaves_fill_values_out(tmp_path: Path) -> None:
    from geoidec.data.normalization import Normalization
    from geoidec.inference.checks import check_input

    rng = np.random.default_rng(0)
    data = rng.integers(1000, 1101, size=(1, 64, 64)).astype(np.uint16)
    data[0, :16] = 0  # a quarter of the scene at the fill value
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="uint16", crs="EPSG:32633",
                       transform=rasterio.Affine(10, 0, 500000, 0, -10, 5800000)) as dst:
        dst.write(data)
    meta = {"crs": "EPSG:32633", "resolution": [10.0, 10.0], "dtype": "uint16"}

    def warnings_with(fill: tuple) -> list[str]:
        norm = Normalization(low=(1000.0,), high=(1100.0,), mean=(0.5,), std=(0.3,),
                             fill=fill)
        with rasterio.open(path) as src:
            return check_input(src, [1], meta, norm, "scene")

    assert any("values far outside" in m for m in warnings_with(()))
    assert warnings_with((0.0,)) == []
