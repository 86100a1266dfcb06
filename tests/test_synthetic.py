"""Tests for geoidec.synthetic (procedural Potsdam-like samples) and the fake ISPRS data."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from geoidec.synthetic import generate_isprs_sample

PALETTE = {
    (255, 255, 255): "impervious_surfaces",
    (0, 0, 255): "building",
    (0, 255, 255): "low_vegetation",
    (0, 255, 0): "tree",
    (255, 255, 0): "car",
    (255, 0, 0): "clutter",
}
SIZE, RES = 256, 0.1
TRAIN, TEST = ("2_10", "2_11", "3_10"), ("2_13",)
FOLDERS = {
    "rgb": ("2_Ortho_RGB", "top_potsdam_{r}_{c}_RGB.tif"),
    "irrg": ("3_Ortho_IRRG", "top_potsdam_{r}_{c}_IRRG.tif"),
    "rgbir": ("4_Ortho_RGBIR", "top_potsdam_{r}_{c}_RGBIR.tif"),
    "dsm": ("1_DSM", "dsm_potsdam_{r:02d}_{c:02d}.tif"),
    "label": ("5_Labels_all", "top_potsdam_{r}_{c}_label.tif"),
}


def _path(root: Path, kind: str, tile: str) -> Path:
    folder, pattern = FOLDERS[kind]
    r, c = (int(v) for v in tile.split("_"))
    return root / folder / pattern.format(r=r, c=c)


def _read(root: Path, kind: str, tile: str) -> np.ndarray:
    with rasterio.open(_path(root, kind, tile)) as src:
        return src.read()


def _colours(label: np.ndarray) -> set[tuple[int, int, int]]:
    flat = label.reshape(3, -1).T
    return {(int(r), int(g), int(b)) for r, g, b in np.unique(flat, axis=0)}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "potsdam"
    messages: list[str] = []
    result = generate_isprs_sample(
        out, seed=3, size=SIZE, resolution=RES, train_tiles=TRAIN, test_tiles=TEST,
        progress=messages.append,
    )  # fmt: skip
    assert result == out
    assert len(messages) == len(TRAIN) + len(TEST)
    return out


def test_layout_and_readme(sample: Path) -> None:
    for tile in TRAIN + TEST:
        for kind in FOLDERS:
            assert _path(sample, kind, tile).is_file(), (kind, tile)
    readme = (sample / "README.txt").read_text()
    assert "synthetic" in readme.lower()
    assert "seed: 3" in readme and "0.1" in readme and "256" in readme
    assert "2_13" in readme
    # Files were moved into place from temporary names; none are left behind.
    leftovers = [p for p in sample.rglob("*") if p.name.startswith(".") or "tmp" in p.name]
    assert leftovers == []


def test_georeferencing(sample: Path) -> None:
    for kind, (count, dtype) in {
        "rgb": (3, "uint8"),
        "irrg": (3, "uint8"),
        "rgbir": (4, "uint8"),
        "dsm": (1, "float32"),
        "label": (3, "uint8"),
    }.items():
        with rasterio.open(_path(sample, kind, "2_11")) as src:
            assert src.crs.to_epsg() == 32633
            assert (src.width, src.height, src.count) == (SIZE, SIZE, count)
            assert src.dtypes[0] == dtype
            assert src.res == pytest.approx((RES, RES))
            t = src.transform
            assert t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0  # north-up
            assert t.c == pytest.approx(366000 + 1 * SIZE * RES)
            assert t.f == pytest.approx(5808000)
            assert src.block_shapes[0] == (256, 256)
            assert src.compression is not None and src.compression.value == "DEFLATE"


def test_labels_use_only_the_palette_and_every_class(sample: Path) -> None:
    for tile in TRAIN + TEST:
        colours = _colours(_read(sample, "label", tile))
        assert colours == set(PALETTE), (tile, colours ^ set(PALETTE))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_class_at_coarse_resolution(tmp_path: Path, seed: int) -> None:
    out = generate_isprs_sample(
        tmp_path, seed=seed, size=256, resolution=0.2, train_tiles=("4_12",), test_tiles=()
    )
    assert _colours(_read(out, "label", "4_12")) == set(PALETTE)


def test_class_fractions_are_potsdam_like(sample: Path) -> None:
    counts = dict.fromkeys(PALETTE.values(), 0)
    for tile in TRAIN + TEST:
        flat = _read(sample, "label", tile).reshape(3, -1).T
        values, n = np.unique(flat, axis=0, return_counts=True)
        for v, k in zip(values, n, strict=True):
            counts[PALETTE[(int(v[0]), int(v[1]), int(v[2]))]] += int(k)
    total = sum(counts.values())
    frac = {k: v / total for k, v in counts.items()}
    bounds = {
        "impervious_surfaces": (0.15, 0.45),
        "building": (0.12, 0.40),
        "low_vegetation": (0.12, 0.40),
        "tree": (0.05, 0.25),
        "car": (0.005, 0.06),
        "clutter": (0.01, 0.10),
    }
    for name, (lo, hi) in bounds.items():
        assert lo <= frac[name] <= hi, (name, frac)


def test_deterministic(tmp_path: Path) -> None:
    def make(name: str, seed: int) -> dict[str, np.ndarray]:
        out = generate_isprs_sample(
            tmp_path / name, seed=seed, size=SIZE, resolution=RES, train_tiles=("2_12",),
            test_tiles=(),
        )  # fmt: skip
        return {kind: _read(out, kind, "2_12") for kind in FOLDERS}

    a, b, c = make("a", 11), make("b", 11), make("c", 12)
    for kind in FOLDERS:
        np.testing.assert_array_equal(a[kind], b[kind], err_msg=kind)
    assert not np.array_equal(a["label"], c["label"])
    assert not np.array_equal(a["rgb"], c["rgb"])


def test_bands_are_consistent(sample: Path) -> None:
    rgb = _read(sample, "rgb", "2_10")
    irrg = _read(sample, "irrg", "2_10")
    rgbir = _read(sample, "rgbir", "2_10")
    np.testing.assert_array_equal(rgbir[:3], rgb)
    np.testing.assert_array_equal(irrg[1], rgb[0])  # red
    np.testing.assert_array_equal(irrg[2], rgb[1])  # green
    np.testing.assert_array_equal(irrg[0], rgbir[3])  # near-infrared


def test_vegetation_is_bright_in_infrared_and_buildings_are_tall(sample: Path) -> None:
    label = _read(sample, "label", "2_10")
    rgbir = _read(sample, "rgbir", "2_10").astype(np.float64)
    dsm = _read(sample, "dsm", "2_10")[0]
    ndvi = (rgbir[3] - rgbir[0]) / (rgbir[3] + rgbir[0] + 1e-6)

    def where(rgb: tuple[int, int, int]) -> np.ndarray:
        return np.all(label == np.array(rgb, dtype=np.uint8)[:, None, None], axis=0)

    veg = where((0, 255, 0)) | where((0, 255, 255))
    built = where((0, 0, 255)) | where((255, 255, 255))
    assert ndvi[veg].mean() > ndvi[built].mean() + 0.2
    ground = np.median(dsm[where((255, 255, 255))])
    assert 30.0 < ground < 40.0
    assert np.median(dsm[where((0, 0, 255))]) > ground + 4.0
    # Appearance is not a lookup table of the label: each class has spread, and classes overlap.
    assert rgbir[0][where((255, 255, 255))].std() > 8.0


def test_neighbouring_tiles_are_adjacent(sample: Path) -> None:
    def bounds(tile: str) -> rasterio.coords.BoundingBox:
        with rasterio.open(_path(sample, "rgb", tile)) as src:
            return src.bounds

    west, east, south = bounds("2_10"), bounds("2_11"), bounds("3_10")
    assert east.left == pytest.approx(west.right)
    assert east.top == pytest.approx(west.top)
    assert south.top == pytest.approx(west.bottom)
    assert south.left == pytest.approx(west.left)
    with rasterio.open(_path(sample, "dsm", "2_10")) as src:
        assert tuple(src.bounds) == pytest.approx(tuple(west))


# ---------------------------------------------------------------------------------------------
# Fake ISPRS releases used by the dataset tests (tests/data/isprs/data.py)


def _fakes() -> ModuleType:
    path = Path(__file__).parent / "data" / "isprs" / "data.py"
    spec = importlib.util.spec_from_file_location("geoidec_tests_fake_isprs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _indices(label: np.ndarray, colours: dict[int, tuple[int, int, int]]) -> np.ndarray:
    out = np.full(label.shape[1:], 254, dtype=np.uint8)
    for cls, rgb in colours.items():
        out[np.all(label == np.array(rgb, dtype=np.uint8)[:, None, None], axis=0)] = cls
    return out


def test_fake_potsdam(tmp_path: Path) -> None:
    fakes = _fakes()
    root = fakes.make_fake_potsdam(tmp_path, size=32)
    for tile in ("2_10", "2_11", "2_13"):
        for kind in FOLDERS:
            assert _path(root, kind, tile).is_file()
        with rasterio.open(_path(root, "label", tile)) as src:
            assert src.crs.to_epsg() == 32633
            label = src.read()
        expected = fakes.expected_label_indices("potsdam", tile, size=32)
        np.testing.assert_array_equal(_indices(label, fakes.CLASS_COLOURS), expected)
    counts = np.bincount(fakes.expected_label_indices("potsdam", "2_10").ravel(), minlength=6)
    assert counts.tolist() == [64, 960, 1024, 960, 1024, 64]
    np.testing.assert_array_equal(_read(root, "irrg", "2_11")[1], _read(root, "rgb", "2_11")[0])


def test_fake_vaihingen(tmp_path: Path) -> None:
    fakes = _fakes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotGeoreferencedWarning)
        root = fakes.make_fake_vaihingen(tmp_path)  # writing must not warn
    for area in (1, 2, 3):
        name = f"top_mosaic_09cm_area{area}.tif"
        assert (root / "dsm" / f"dsm_09cm_matching_area{area}.tif").is_file()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(root / "top" / name) as src:
                assert src.crs is None and src.transform.is_identity
                assert (src.count, src.dtypes[0]) == (3, "uint8")
                assert src.shape == fakes.vaihingen_shape(area)
            with rasterio.open(root / "gts_for_participants" / name) as src:
                label = src.read()
        expected = fakes.expected_label_indices("vaihingen", area)
        np.testing.assert_array_equal(_indices(label, fakes.CLASS_COLOURS), expected)
        assert (expected == 255).any() == (area == 1)
