"""ISPRS Potsdam / Vaihingen readers on the fake release layouts (tests/data/isprs/data.py)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoidec.data.isprs import potsdam, vaihingen
from geoidec.data.registry import load_dataset
from geoidec.data.scene_reader import SceneReader
from geoidec.errors import DataError
from geoidec.synthetic import generate_isprs_sample

SIZE = 64
CLASS_NAMES = ("impervious_surfaces", "building", "low_vegetation", "tree", "car")


def _full(reader: SceneReader) -> Window:
    return Window(0, 0, reader.width, reader.height)


# ---------------------------------------------------------------------------- Potsdam
def test_potsdam_splits(fake_potsdam: Path) -> None:
    spec = potsdam(fake_potsdam)
    assert [s.name for s in spec.scenes("train")] == ["top_potsdam_2_10", "top_potsdam_2_11"]
    assert [s.name for s in spec.scenes("test")] == ["top_potsdam_2_13"]
    assert spec.splits["val"] == ()  # 2_12 and 7_10 are absent from the fake data
    assert spec.class_names == CLASS_NAMES
    assert spec.background.name == "clutter" and spec.background.color == (255, 0, 0)
    assert spec.eval_background is False
    assert spec.band_names == ("red", "green", "blue")
    for scene in spec.scenes("train") + spec.scenes("test"):
        assert scene.image.parent.name == "2_Ortho_RGB"
        assert scene.image.name.endswith("_RGB.tif")
        assert scene.label is not None and scene.label.parent.name == "5_Labels_all"


def test_potsdam_via_registry(fake_potsdam: Path) -> None:
    for name in ("isprs", "potsdam", "ISPRS-Potsdam"):
        spec = load_dataset(name, fake_potsdam)
        assert spec.name == "isprs_potsdam"
        assert len(spec.scenes("train")) == 2


def test_unknown_dataset_name() -> None:
    from geoidec.errors import UsageError

    with pytest.raises(UsageError) as err:  # a typo in the command: exit status 2
        load_dataset("potsdamm")
    msg = str(err.value)
    assert "potsdamm" in msg and "did you mean" in msg and "vaihingen" in msg


@pytest.mark.parametrize("tile", ["2_10", "2_11", "2_13"])
def test_potsdam_colour_labels(fake_potsdam: Path, fakes: ModuleType, tile: str) -> None:
    spec = potsdam(fake_potsdam)
    scene = next(s for s in spec.splits["train"] + spec.splits["test"]
                 if s.name == f"top_potsdam_{tile}")
    with SceneReader(scene, spec.decoder) as reader:
        assert (reader.height, reader.width) == (SIZE, SIZE)
        label = reader.read_label(_full(reader))
    expected = fakes.expected_label_indices("potsdam", tile, size=SIZE)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, expected)
    # Hand count (module docstring of the fakes): every tile has the same class counts.
    assert np.bincount(label.ravel(), minlength=6).tolist() == [64, 960, 1024, 960, 1024, 64]


def test_black_and_unknown_colours_are_ignored(fake_potsdam: Path, tmp_path: Path) -> None:
    spec = potsdam(fake_potsdam)
    scene = spec.scenes("test")[0]
    label_path = tmp_path / "label.tif"
    shutil.copy(scene.label, label_path)
    with rasterio.open(label_path, "r+") as dst:
        rgb = dst.read()
        rgb[:, 0, :] = 0  # black boundary row
        rgb[:, 1, :5] = np.array([10, 20, 30], dtype=np.uint8)[:, None]  # stray colour
        dst.write(rgb)
    with SceneReader(replace(scene, label=label_path), spec.decoder) as reader:
        label = reader.read_label(Window(0, 0, SIZE, 4))
    assert (label[0] == 255).all()
    assert (label[1, :5] == 255).all()
    assert (label[1, 5:] != 255).all() and (label[2:] != 255).all()


@pytest.mark.parametrize(
    ("col", "row", "size"),
    [(48, 40, 32), (-8, -16, 32), (60, 0, 16), (100, 100, 8)],
)
def test_window_overhanging_the_edge(
    fake_potsdam: Path, fakes: ModuleType, col: int, row: int, size: int
) -> None:
    spec = potsdam(fake_potsdam)
    scene = spec.scenes("train")[0]
    expected_full = fakes.expected_label_indices("potsdam", "2_10", size=SIZE)
    with rasterio.open(scene.image) as src:
        raw = src.read().astype(np.float32)
    with SceneReader(scene, spec.decoder) as reader:
        image, label, valid = reader.read(Window(col, row, size, size))
        label_only = reader.read_label(Window(col, row, size, size))
    assert image.shape == (3, size, size) and image.dtype == np.float32
    assert label.shape == valid.shape == (size, size)
    # The part of the window inside the raster, by hand.
    r0, r1 = max(row, 0), min(row + size, SIZE)
    c0, c1 = max(col, 0), min(col + size, SIZE)
    inside = np.zeros((size, size), dtype=bool)
    if r1 > r0 and c1 > c0:
        rs, cs = slice(r0 - row, r1 - row), slice(c0 - col, c1 - col)
        inside[rs, cs] = True
        np.testing.assert_array_equal(label[rs, cs], expected_full[r0:r1, c0:c1])
        np.testing.assert_array_equal(image[:, rs, cs], raw[:, r0:r1, c0:c1])
    np.testing.assert_array_equal(valid, inside)
    assert (label[~inside] == 255).all()  # padding is ignore, never a class
    assert (image[:, ~inside] == 0).all()
    np.testing.assert_array_equal(label_only, label)


def test_potsdam_modalities(fake_potsdam: Path) -> None:
    rgb = potsdam(fake_potsdam, "rgb")
    irrg = potsdam(fake_potsdam, "irrg")
    rgbir = potsdam(fake_potsdam, "rgbir")
    assert irrg.scenes("train")[0].image.parent.name == "3_Ortho_IRRG"
    assert irrg.scenes("train")[0].image.name == "top_potsdam_2_10_IRRG.tif"
    assert rgbir.scenes("test")[0].image.name == "top_potsdam_2_13_RGBIR.tif"
    assert irrg.band_names == ("nir", "red", "green") and irrg.rgb_bands is None
    assert rgbir.band_names == ("red", "green", "blue", "nir") and rgbir.rgb_bands == (0, 1, 2)
    window = Window(0, 0, SIZE, SIZE)
    images = {}
    for name, spec in (("rgb", rgb), ("irrg", irrg), ("rgbir", rgbir)):
        with SceneReader(spec.scenes("train")[1], spec.decoder) as reader:
            images[name], label, _ = reader.read(window)
        # Labels are the same whatever the imagery.
        assert spec.scenes("train")[1].label == rgb.scenes("train")[1].label
    assert images["rgb"].shape[0] == 3 and images["irrg"].shape[0] == 3
    assert images["rgbir"].shape[0] == 4
    np.testing.assert_array_equal(images["rgbir"][:3], images["rgb"])
    np.testing.assert_array_equal(images["irrg"][0], images["rgbir"][3])  # nir first
    np.testing.assert_array_equal(images["irrg"][1], images["rgb"][0])  # then red


def test_unknown_modality(fake_potsdam: Path) -> None:
    with pytest.raises(DataError) as err:
        potsdam(fake_potsdam, "rgbd")
    assert "rgbd" in str(err.value) and "irrg" in str(err.value)


def test_potsdam_missing_data(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        potsdam(tmp_path / "nowhere")
    msg = str(err.value)
    assert "2_Ortho_RGB/" in msg and "5_Labels_all/" in msg
    assert "geoidec samples isprs" in msg
    assert str(tmp_path / "nowhere") in msg
    assert "\n" not in msg


def test_potsdam_missing_modality_folder(fake_potsdam: Path, tmp_path: Path) -> None:
    root = tmp_path / "potsdam"
    shutil.copytree(fake_potsdam / "2_Ortho_RGB", root / "2_Ortho_RGB")
    shutil.copytree(fake_potsdam / "5_Labels_all", root / "5_Labels_all")
    assert len(potsdam(root).scenes("train")) == 2
    with pytest.raises(DataError) as err:
        potsdam(root, "irrg")
    assert "3_Ortho_IRRG/" in str(err.value) and "geoidec samples isprs" in str(err.value)


def test_potsdam_folders_without_tiles(tmp_path: Path) -> None:
    (tmp_path / "2_Ortho_RGB").mkdir()
    (tmp_path / "5_Labels_all").mkdir()
    with pytest.raises(DataError) as err:
        potsdam(tmp_path)
    msg = str(err.value)
    assert "top_potsdam_R_C_RGB.tif" in msg and "geoidec samples isprs" in msg


# -------------------------------------------------------------------------- Vaihingen
def test_vaihingen_reads_without_crs(fake_vaihingen: Path, fakes: ModuleType) -> None:
    spec = vaihingen(fake_vaihingen)
    assert [s.name for s in spec.scenes("train")] == [
        "top_mosaic_09cm_area1", "top_mosaic_09cm_area3"]
    assert [s.name for s in spec.scenes("test")] == ["top_mosaic_09cm_area2"]
    assert spec.band_names == ("nir", "red", "green") and spec.rgb_bands is None
    assert spec.class_names == CLASS_NAMES
    for area, scene in zip((1, 3, 2), spec.scenes("train") + spec.scenes("test"), strict=True):
        with SceneReader(scene, spec.decoder) as reader:
            assert reader.profile["crs"] is None
            assert (reader.height, reader.width) == fakes.vaihingen_shape(area, SIZE)
            image, label, valid = reader.read(_full(reader))
        assert image.shape == (3, *fakes.vaihingen_shape(area, SIZE))
        assert valid.all()
        np.testing.assert_array_equal(label, fakes.expected_label_indices("vaihingen", area))


def test_vaihingen_black_row_is_ignore(fake_vaihingen: Path) -> None:
    spec = vaihingen(fake_vaihingen)
    scene = spec.scenes("train")[0]  # area 1: 64 x 80 with its middle row black
    with SceneReader(scene, spec.decoder) as reader:
        label = reader.read_label(_full(reader))
    assert label.shape == (64, 80)
    assert (label[32] == 255).all()
    assert not (np.delete(label, 32, axis=0) == 255).any()
    # Four vertical stripes of 20 columns below the car/clutter squares (rows >= 16).
    for k, cls in enumerate((1, 2, 3, 4)):
        assert (label[16:32, 20 * k: 20 * (k + 1)] == cls).all()


def test_vaihingen_missing_data(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        vaihingen(tmp_path)
    msg = str(err.value)
    assert "top/" in msg and "gts_for_participants/" in msg
    assert "geoidec samples isprs" in msg


# -------------------------------------------------------------------------- synthetic
def test_synthetic_sample_loads_with_the_reader(tmp_path: Path) -> None:
    root = generate_isprs_sample(tmp_path / "sample", size=128, resolution=0.2,
                                 train_tiles=("2_10",), test_tiles=("2_13",))
    spec = load_dataset("isprs", root)
    assert [s.name for s in spec.scenes("train")] == ["top_potsdam_2_10"]
    assert [s.name for s in spec.scenes("test")] == ["top_potsdam_2_13"]
    for scene in spec.scenes("train") + spec.scenes("test"):
        with SceneReader(scene, spec.decoder) as reader:
            assert (reader.height, reader.width) == (128, 128)
            assert reader.profile["crs"].to_epsg() == 32633
            assert reader.profile["res"] == pytest.approx((0.2, 0.2))
            image, label, valid = reader.read(_full(reader))
        assert image.shape == (3, 128, 128) and valid.all()
        # The generator paints only palette colours, so nothing is ignored, and the
        # decoded indices count exactly the pixels of each colour in the file.
        with rasterio.open(scene.label) as src:
            rgb = src.read()
        for index, colour in enumerate(
            [(255, 0, 0), (255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0),
             (255, 255, 0)]
        ):
            count = int(np.all(rgb == np.array(colour)[:, None, None], axis=0).sum())
            assert int((label == index).sum()) == count, index
        assert not (label == 255).any()
