"""Custom GeoTIFF datasets described by a YAML file, and normalisation statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from geoidec.data.base import Scene
from geoidec.data.geotiff import load_geotiff_dataset
from geoidec.data.normalization import compute_normalization
from geoidec.data.registry import load_dataset
from geoidec.data.scene_reader import SceneReader
from geoidec.errors import DataError

# The example of docs (geoidec/data/geotiff.py and the task brief), verbatim.
EXAMPLE_YAML = """\
name: my-landcover
images: {train: [west_image.tif], test: [east_image.tif]}
labels: {train: [west_labels.tif], test: [east_labels.tif]}
bands: [1, 2, 3, 4, 5, 6]        # optional; default all bands
ignore_values: [-99999]
classes:                          # ordered: step specs count in this order
  - {name: forest, value: 5, color: "#1b7837"}
  - {name: developed, value: 1, color: "#d73027"}
  - {name: water, value: 6, color: "#4575b4"}
  - {name: herbaceous, value: 3, color: "#fee090"}
  - {name: shrubland, value: 4, color: "#a6761d"}
"""

#: label value -> expected class index (listed order; 2 unlisted -> 0; -99999 -> 255)
EXPECTED_INDEX = {5: 1, 1: 2, 6: 3, 3: 4, 4: 5, 2: 0, -99999: 255}
CRS_ = CRS.from_epsg(32631)
WEST = (32, 48)  # (height, width)
EAST = (40, 40)


def _write(path: Path, data: np.ndarray, transform: Affine, **extra: object) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
        count=data.shape[0], dtype=data.dtype.name, crs=CRS_, transform=transform, **extra,
    ) as dst:
        dst.write(data)


def _label_values(shape: tuple[int, int], shift: int) -> np.ndarray:
    """Stripes of the six values {1, 3, 4, 5, 6, 2} and an ignore first row."""
    h, w = shape
    values = np.array([1, 3, 4, 5, 6, 2], dtype=np.int32)
    cols = (np.arange(w) * 6 // w + shift) % 6
    lab = np.broadcast_to(values[cols], (h, w)).copy()
    lab[0, :] = -99999
    lab[h // 2, : w // 4] = 2
    return lab


def _rasters(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    west_t = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5700000.0)
    east_t = Affine(10.0, 0.0, 500480.0, 0.0, -10.0, 5700000.0)
    west = rng.integers(0, 4000, size=(6, *WEST), dtype=np.uint16)
    east = rng.normal(0.1, 0.05, size=(6, *EAST)).astype(np.float32)
    east[:, 3, 4] = np.nan  # one invalid pixel
    west_lab, east_lab = _label_values(WEST, 0), _label_values(EAST, 2)
    _write(folder / "west_image.tif", west, west_t)
    _write(folder / "east_image.tif", east, east_t)
    _write(folder / "west_labels.tif", west_lab[None], west_t)
    _write(folder / "east_labels.tif", east_lab[None], east_t)
    return {"west": west, "east": east, "west_labels": west_lab, "east_labels": east_lab}


@pytest.fixture()
def example(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = _rasters(tmp_path)
    path = tmp_path / "landcover.yaml"
    path.write_text(EXAMPLE_YAML)
    return path, arrays


def _variant(path: Path, name: str, **changes: object) -> Path:
    doc = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    out = path.with_name(name)
    out.write_text(yaml.safe_dump(doc))
    return out


def _expected(values: np.ndarray) -> np.ndarray:
    out = np.full(values.shape, 77, dtype=np.uint8)
    for value, index in EXPECTED_INDEX.items():
        out[values == value] = index
    assert (out != 77).all()
    return out


# ------------------------------------------------------------------------- the YAML
def test_classes_in_listed_order(example: tuple[Path, dict]) -> None:
    path, _ = example
    spec = load_geotiff_dataset(path)
    assert spec.name == "my-landcover"
    assert spec.class_names == ("forest", "developed", "water", "herbaceous", "shrubland")
    assert [c.color for c in spec.classes] == [
        (0x1B, 0x78, 0x37), (0xD7, 0x30, 0x27), (0x45, 0x75, 0xB4), (0xFE, 0xE0, 0x90),
        (0xA6, 0x76, 0x1D)]
    assert [c.hex() for c in spec.classes] == [
        "#1b7837", "#d73027", "#4575b4", "#fee090", "#a6761d"]
    assert spec.background.name == "background" and spec.background.color == (0, 0, 0)
    assert spec.eval_background is False
    train, test = spec.scenes("train"), spec.scenes("test")
    assert [s.image.name for s in train] == ["west_image.tif"]
    assert [s.label.name for s in test] == ["east_labels.tif"]  # type: ignore[union-attr]
    assert train[0].image == (path.parent / "west_image.tif").resolve()
    assert train[0].bands == (1, 2, 3, 4, 5, 6)
    assert spec.splits["val"] == ()
    # The registry recognises a YAML path as a custom dataset.
    assert load_dataset(str(path)).class_names == spec.class_names


@pytest.mark.parametrize(("split", "key"), [("train", "west"), ("test", "east")])
def test_label_values_map_to_listed_order(
    example: tuple[Path, dict], split: str, key: str
) -> None:
    path, arrays = example
    spec = load_geotiff_dataset(path)
    scene = spec.scenes(split)[0]
    h, w = arrays[f"{key}_labels"].shape
    with SceneReader(scene, spec.decoder) as reader:
        label = reader.read_label(Window(0, 0, w, h))
    np.testing.assert_array_equal(label, _expected(arrays[f"{key}_labels"]))
    # By hand for a few values of the west stripes (8 columns each: 1, 3, 4, 5, 6, 2).
    if key == "west":
        assert label[5, 0] == 2  # value 1 developed
        assert label[5, 8] == 4  # value 3 herbaceous
        assert label[5, 16] == 5  # value 4 shrubland
        assert label[5, 24] == 1  # value 5 forest
        assert label[5, 32] == 3  # value 6 water
        assert label[5, 40] == 0  # value 2 unlisted -> background
        assert (label[0] == 255).all()  # -99999 ignore
        assert (label[16, :12] == 0).all()


def test_images_of_different_dtypes(example: tuple[Path, dict]) -> None:
    path, arrays = example
    spec = load_geotiff_dataset(path)
    with SceneReader(spec.scenes("train")[0], spec.decoder) as reader:
        assert reader.profile["dtype"] == "uint16"
        image, label, valid = reader.read(Window(0, 0, WEST[1], WEST[0]))
    assert image.dtype == np.float32 and image.shape == (6, *WEST)
    np.testing.assert_array_equal(image, arrays["west"].astype(np.float32))
    assert valid.all()
    with SceneReader(spec.scenes("test")[0], spec.decoder) as reader:
        assert reader.profile["dtype"] == "float32"
        image, label, valid = reader.read(Window(0, 0, EAST[1], EAST[0]))
    # The NaN pixel is invalid: image 0, label ignore; every other pixel is as written.
    assert not valid[3, 4] and valid.sum() == EAST[0] * EAST[1] - 1
    assert (image[:, 3, 4] == 0).all() and label[3, 4] == 255
    np.testing.assert_array_equal(image[:, valid], arrays["east"][:, valid])


def test_band_selection(example: tuple[Path, dict]) -> None:
    path, arrays = example
    spec = load_geotiff_dataset(_variant(path, "bands.yaml", bands=[5, 2, 6]))
    scene = spec.scenes("train")[0]
    assert scene.bands == (5, 2, 6)
    with SceneReader(scene, spec.decoder) as reader:
        image, _ = reader.read_image(Window(4, 2, 10, 6))
    expected = arrays["west"][[4, 1, 5], 2:8, 4:14].astype(np.float32)
    np.testing.assert_array_equal(image, expected)
    # No 'bands' key: every band.
    spec_all = load_geotiff_dataset(_variant(path, "all.yaml", bands=None))
    assert spec_all.scenes("train")[0].bands is None
    with SceneReader(spec_all.scenes("train")[0], spec_all.decoder) as reader:
        assert reader.bands == (1, 2, 3, 4, 5, 6)


def test_band_out_of_range(example: tuple[Path, dict]) -> None:
    path, _ = example
    spec = load_geotiff_dataset(_variant(path, "b7.yaml", bands=[1, 7]))
    with pytest.raises(DataError) as err:
        SceneReader(spec.scenes("train")[0], spec.decoder)
    assert "6 bands" in str(err.value) and "[7]" in str(err.value)


@pytest.mark.parametrize("bands", [[0, 1], ["red"], 3])
def test_bad_band_list(example: tuple[Path, dict], bands: object) -> None:
    path, _ = example
    with pytest.raises(DataError, match="'bands' must be a list of 1-based band numbers"):
        load_geotiff_dataset(_variant(path, "bad.yaml", bands=bands))


# ---------------------------------------------------------------------------- errors
def test_missing_file(example: tuple[Path, dict]) -> None:
    path, _ = example
    (path.parent / "east_labels.tif").unlink()
    with pytest.raises(DataError) as err:
        load_geotiff_dataset(path)
    msg = str(err.value)
    assert "landcover.yaml" in msg and "east_labels.tif" in msg and "not found" in msg


def test_missing_yaml(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(str(tmp_path / "absent.yaml"))


def test_unknown_key(example: tuple[Path, dict]) -> None:
    path, _ = example
    with pytest.raises(DataError) as err:
        load_geotiff_dataset(_variant(path, "key.yaml", nodata_value=0))
    msg = str(err.value)
    assert "nodata_value" in msg and "ignore_values" in msg and "classes" in msg


def test_unknown_class_key(example: tuple[Path, dict]) -> None:
    path, _ = example
    classes = yaml.safe_load(EXAMPLE_YAML)["classes"]
    classes[1]["colour"] = "#000000"
    with pytest.raises(DataError, match=r"classes\[1\].*colour"):
        load_geotiff_dataset(_variant(path, "ck.yaml", classes=classes))


def test_duplicate_class(example: tuple[Path, dict]) -> None:
    path, _ = example
    classes = yaml.safe_load(EXAMPLE_YAML)["classes"]
    twice = [*classes, {"name": "forest", "value": 9}]
    with pytest.raises(DataError, match=r"\['forest'\] listed twice"):
        load_geotiff_dataset(_variant(path, "dup.yaml", classes=twice))
    same_value = [*classes, {"name": "wetland", "value": 5}]
    with pytest.raises(DataError, match="same label value"):
        load_geotiff_dataset(_variant(path, "dupv.yaml", classes=same_value))


def test_bad_colour(example: tuple[Path, dict]) -> None:
    path, _ = example
    classes = yaml.safe_load(EXAMPLE_YAML)["classes"]
    classes[2]["color"] = "blue-ish"
    with pytest.raises(DataError, match=r"classes\[2\].*blue-ish"):
        load_geotiff_dataset(_variant(path, "col.yaml", classes=classes))


def test_size_mismatch(example: tuple[Path, dict]) -> None:
    path, _ = example
    # A label raster of another size for the west image.
    _write(path.parent / "west_labels.tif", np.ones((1, 30, 30), dtype=np.int32),
           Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5700000.0))
    spec = load_geotiff_dataset(path)
    with pytest.raises(DataError) as err:
        SceneReader(spec.scenes("train")[0], spec.decoder)
    msg = str(err.value)
    assert "30x30" in msg and f"{WEST[1]}x{WEST[0]}" in msg
    assert "west_labels.tif" in msg and "west_image.tif" in msg


def test_split_count_mismatch(example: tuple[Path, dict]) -> None:
    path, _ = example
    images = {"train": ["west_image.tif", "east_image.tif"], "test": ["east_image.tif"]}
    with pytest.raises(DataError) as err:
        load_geotiff_dataset(_variant(path, "count.yaml", images=images))
    assert "2 train image(s) but 1 label file(s)" in str(err.value)


def test_unknown_split(example: tuple[Path, dict]) -> None:
    path, _ = example
    images = {"training": ["west_image.tif"], "test": ["east_image.tif"]}
    with pytest.raises(DataError) as err:
        load_geotiff_dataset(_variant(path, "split.yaml", images=images))
    assert "training" in str(err.value) and "train, val, test" in str(err.value)


def test_missing_classes(example: tuple[Path, dict]) -> None:
    path, _ = example
    with pytest.raises(DataError, match="missing 'classes'"):
        load_geotiff_dataset(_variant(path, "nocls.yaml", classes=None))


# --------------------------------------------------------------------- normalisation
def test_normalization_uint8_uses_dtype_range(fake_potsdam: Path) -> None:
    image = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tif"
    norm = compute_normalization([Scene(name="t", image=image)])
    assert norm.low == (0.0, 0.0, 0.0)
    assert norm.high == (255.0, 255.0, 255.0)
    with rasterio.open(image) as src:
        unit = src.read().reshape(3, -1).astype(np.float64) / 255.0
    np.testing.assert_allclose(norm.mean, unit.mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(norm.std, unit.std(axis=1), rtol=1e-9)


def test_normalization_float_uses_percentiles(example: tuple[Path, dict]) -> None:
    path, arrays = example
    spec = load_geotiff_dataset(path)
    norm = compute_normalization(spec.scenes("test"))  # float32 east image (with a NaN)
    pixels = arrays["east"].reshape(6, -1).T.astype(np.float64)
    pixels = pixels[np.isfinite(pixels).all(axis=1)]
    assert len(pixels) == EAST[0] * EAST[1] - 1
    low, high = np.percentile(pixels, [1.0, 99.0], axis=0)
    np.testing.assert_allclose(norm.low, low, rtol=1e-12)
    np.testing.assert_allclose(norm.high, high, rtol=1e-12)
    unit = np.clip((pixels - low) / (high - low), 0.0, 1.0)
    np.testing.assert_allclose(norm.mean, unit.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(norm.std, unit.std(axis=0), rtol=1e-9)
    # to_unit maps low -> 0 and high -> 1, clipping outside.
    probe = np.stack([low, high, high + 1.0]).T.reshape(6, 3, 1).astype(np.float32)
    out = norm.to_unit(probe)
    np.testing.assert_allclose(out[:, :, 0], np.tile([0.0, 1.0, 1.0], (6, 1)), atol=1e-5)


def test_normalization_uint16_uses_percentiles(example: tuple[Path, dict]) -> None:
    path, arrays = example
    spec = load_geotiff_dataset(_variant(path, "b2.yaml", bands=[2, 4]))
    norm = compute_normalization(spec.scenes("train"))
    pixels = arrays["west"][[1, 3]].reshape(2, -1).T.astype(np.float64)
    low, high = np.percentile(pixels, [1.0, 99.0], axis=0)
    assert norm.bands == 2
    np.testing.assert_allclose(norm.low, low)
    np.testing.assert_allclose(norm.high, high)
    assert norm.high[0] < 4000 and norm.low[0] > 0  # not the uint16 range


def test_normalization_band_count_mismatch(example: tuple[Path, dict]) -> None:
    path, _ = example
    spec = load_geotiff_dataset(path)
    west = spec.scenes("train")[0]
    narrowed = Scene(name="e", image=spec.scenes("test")[0].image, bands=(1, 2))
    with pytest.raises(DataError, match="different band counts"):
        compute_normalization([west, narrowed])
