"""`geoidec predict` end to end: every output, blending, nodata, vectors, batches, guard-rails.

Two kinds of models: tiny fake models built in Python (pointwise, constant, 3x3-local) whose
class maps are known exactly, called through the library; and one tiny model trained on fake
Potsdam (module fixture, a few seconds) called through the CLI like a user would.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
import warnings
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from conftest import assert_one_line_error, run_cli, run_main, varied_checkpoint
from tiny_geotiffs import write_raster as write_shared_raster
from torch import nn

from geoidec.checkpoint import Checkpoint, load_checkpoint
from geoidec.data.classes import ClassInfo
from geoidec.data.normalization import Normalization
from geoidec.errors import DataError
from geoidec.inference.mosaic import write_mosaic_vrt
from geoidec.inference.predict import predict_scene
from geoidec.inference.rat import read_rat_sidecar

TINY = ["--iterations", "3", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet"]
ISPRS = ["clutter", "impervious_surfaces", "building", "low_vegetation", "tree", "car"]
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0)
RGB = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200]], np.uint8)  # class -> colour


# ---------------------------------------------------------------------------- helpers
class PixelModel(nn.Module):
    """Logits = 10 x the standardised bands: the class is the brightest band (pointwise)."""

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=10.0 * x[:, :3])


class ConstantModel(nn.Module):
    """The same logits everywhere."""

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        logits = torch.tensor([0.3, 1.0, -0.5]).view(1, 3, 1, 1)
        return SimpleNamespace(logits=logits.expand(x.shape[0], 3, *x.shape[2:]).clone())


class LocalModel(nn.Module):
    """A 3x3 mean (edge-replicated at the window border) of the bands: a receptive field."""

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        padded = F.pad(x[:, :3], (1, 1, 1, 1), mode="replicate")
        return SimpleNamespace(logits=10.0 * F.avg_pool2d(padded, 3, stride=1))


def fake_checkpoint(model: nn.Module, **meta: object) -> Checkpoint:
    """A checkpoint object around a Python model: 3 bands (uint8 range), classes r/g/b."""
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.0,) * 3, std=(1.0,) * 3)
    base = {"bands": 3, "band_names": ["r", "g", "b"], "rgb_bands": [0, 1, 2],
            "tile_size": 32, "overlap": 8, "crs": "EPSG:32633", "resolution": [0.5, 0.5],
            "step": 0}
    classes = [ClassInfo(n, tuple(int(v) for v in c)) for n, c in
               zip(["red", "green", "blue"], [(255, 0, 0), (0, 255, 0), (0, 0, 255)],
                   strict=True)]
    return Checkpoint(path=Path("fake.pt"), model=model.eval(), classes=classes,
                      normalization=norm, meta={**base, **meta})


def write_raster(path: Path, data: np.ndarray, **kwargs: object) -> Path:
    """:func:`tiny_geotiffs.write_raster` with this module's transform by default."""
    return write_shared_raster(path, data, **{"transform": TRANSFORM, **kwargs})


def colour_scene(labels: np.ndarray) -> np.ndarray:
    """RGB uint8 (3, H, W) whose brightest band is the class of each pixel."""
    return np.moveaxis(RGB[labels], -1, 0).copy()


def blocks(h: int, w: int, seed: int = 0, size: int = 5) -> np.ndarray:
    """Random class blocks of ``size`` px (3 classes)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 3, (h // size + 1, w // size + 1))
    return coarse.repeat(size, 0).repeat(size, 1)[:h, :w].astype(np.uint8)


def read(path: Path, band: int | None = 1) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as src:
            return src.read(band) if band else src.read()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run_dir(fake_potsdam: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 4-1 run on fake Potsdam: checkpoints step_0 (5 classes) and step_1 (6)."""
    out = tmp_path_factory.mktemp("predict_run") / "run"
    result = run_cli(["train", "isprs", "--root", fake_potsdam, "--steps", "4-1",
                      "--out", out, *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    return out


@pytest.fixture(scope="module")
def big_scene(fake_potsdam: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300 x 280 px scene (the test tile repeated) in the training CRS, > one COG block."""
    with rasterio.open(fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif") as src:
        tile, crs, transform = src.read(), src.crs, src.transform
    data = np.tile(tile, (1, 5, 5))[:, :300, :280]
    data[:, :20, :30] = 0  # a nodata corner
    return write_raster(tmp_path_factory.mktemp("big") / "big.tif", data, crs=crs.to_string(),
                        transform=transform, nodata=0, tiled=True, blockxsize=64,
                        blockysize=64)


@pytest.fixture(scope="module")
def full(run_dir: Path, big_scene: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> SimpleNamespace:
    """One CLI prediction with every option: change from the same checkpoint."""
    folder = tmp_path_factory.mktemp("full")
    out = folder / "big_classes.tif"
    result = run_cli(["predict", big_scene, "--model", run_dir, "--out", out, "--confidence",
                      "--probabilities", "--vectors", folder / "big.gpkg", "--simplify", "0.1",
                      "--preview", "--change-from", run_dir / "checkpoints" / "step_1.pt",
                      "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    return SimpleNamespace(folder=folder, out=out, scene=big_scene, stdout=result.stdout,
                           run=run_dir)


# ------------------------------------------------------------- blending and geometry
@pytest.mark.parametrize("model", [PixelModel, ConstantModel])
def test_output_independent_of_tiling(model: type[nn.Module], tmp_path: Path) -> None:
    """Pointwise and constant models: identical maps for any tile/overlap (odd 37 x 53)."""
    truth = blocks(37, 53)
    invalid = np.zeros_like(truth, bool)
    invalid[30:, 40:] = True
    scene = write_raster(tmp_path / "odd.tif", colour_scene(truth), mask=~invalid)
    ckpt = fake_checkpoint(model())
    results = []
    layouts = [(None, None, 2048), (16, 0, 2048), (16, 4, 2048), (24, 11, 2048),
               (64, 16, 2048), (16, 4, 30), (16, 7, 1)]  # last two: in vertical strips
    for i, (tile, overlap, strip) in enumerate(layouts):
        out = tmp_path / f"o{i}.tif"
        predict_scene(ckpt, scene, out, tile=tile, overlap=overlap, batch_size=3,
                      confidence=True, probabilities=True, strip_width=strip)
        results.append((read(out), read(tmp_path / f"o{i}_confidence.tif"),
                        read(tmp_path / f"o{i}_probabilities.tif", None)))
    labels = results[0][0]
    assert labels.shape == (37, 53)
    if model is PixelModel:
        np.testing.assert_array_equal(labels, np.where(invalid, 255, truth))
    else:
        np.testing.assert_array_equal(labels, np.where(invalid, 255, 1))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_no_border_artefact_with_a_receptive_field(tmp_path: Path) -> None:
    """A 3x3-local model: tiled prediction equals one window over the whole scene, and a
    class constant across window borders stays constant."""
    truth = np.zeros((90, 100), np.uint8)
    truth[:, 61:] = 2
    truth[40:70, 10:35] = 1
    scene = write_raster(tmp_path / "s.tif", colour_scene(truth))
    ckpt = fake_checkpoint(LocalModel())
    tiled = predict_scene(ckpt, scene, tmp_path / "tiled.tif", tile=32, overlap=8).classes
    whole = predict_scene(ckpt, scene, tmp_path / "whole.tif", tile=128, overlap=0).classes
    strips = predict_scene(ckpt, scene, tmp_path / "strips.tif", tile=16, overlap=5,
                           strip_width=40).classes
    np.testing.assert_array_equal(read(tiled), read(whole))
    np.testing.assert_array_equal(read(strips), read(whole))
    # Reference: the 3x3 mean over the edge-replicated scene, computed in numpy.
    rgb = np.pad(colour_scene(truth).astype(np.float64), ((0, 0), (1, 1), (1, 1)), mode="edge")
    mean = sum(rgb[:, i : i + 90, j : j + 100] for i in range(3) for j in range(3)) / 9
    np.testing.assert_array_equal(read(tiled), mean.argmax(axis=0))
    # Away from colour edges (every window border included) the map is the true class.
    edge = np.zeros_like(truth, bool)
    edge[1:] |= truth[1:] != truth[:-1]
    edge[:-1] |= truth[1:] != truth[:-1]
    edge[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    edge[:, :-1] |= truth[:, 1:] != truth[:, :-1]
    np.testing.assert_array_equal(read(tiled)[~edge], truth[~edge])


def test_scenes_smaller_than_a_tile(tmp_path: Path) -> None:
    ckpt = fake_checkpoint(PixelModel())
    for h, w in [(20, 30), (5, 7), (1, 1), (31, 100)]:
        truth = blocks(h, w, seed=h, size=3)
        scene = write_raster(tmp_path / f"s{h}x{w}.tif", colour_scene(truth))
        out = predict_scene(ckpt, scene, tmp_path / f"o{h}x{w}.tif", tile=64,
                            overlap=16).classes
        np.testing.assert_array_equal(read(out), truth)


# ------------------------------------------------------------------------- nodata
def _nodata_region(h: int, w: int) -> np.ndarray:
    region = np.zeros((h, w), bool)
    region[:12, :20] = True
    region[30:, 25:33] = True
    return region


@pytest.mark.parametrize("kind", ["alpha", "mask", "nodata"])
def test_nodata_from_alpha_mask_and_value(kind: str, tmp_path: Path) -> None:
    h, w = 45, 50
    truth = blocks(h, w, seed=1)
    invalid = _nodata_region(h, w)
    rgb = colour_scene(truth)
    path = tmp_path / f"{kind}.tif"
    if kind == "alpha":
        alpha = np.where(invalid, 0, 255).astype(np.uint8)[None]
        write_raster(path, np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES")
    elif kind == "mask":
        write_raster(path, rgb, mask=~invalid)
    else:
        rgb[:, invalid] = 0
        write_raster(path, rgb, nodata=0)
    out = predict_scene(fake_checkpoint(PixelModel()), path, tmp_path / "o.tif",
                        confidence=True).classes
    labels = read(out)
    np.testing.assert_array_equal(labels, np.where(invalid, 255, truth))
    conf = read(tmp_path / "o_confidence.tif")
    np.testing.assert_array_equal(conf == 255, invalid)
    with rasterio.open(out) as src:
        assert src.nodata == 255 and src.count == 1


# ------------------------------------------------------------------------- vectors
def test_vectors_merge_across_window_and_band_borders(tmp_path: Path) -> None:
    """One class with a square straddling a window border and a vectoriser band border, and
    a U shape whose arms meet two bands lower: one polygon each."""
    import geopandas as gpd

    truth = np.zeros((80, 70), np.uint8)
    truth[20:40, 20:40] = 1  # windows (32, stride 24) and bands (16 rows) cross it
    truth[45:75, 5:9] = 2  # U: two arms ...
    truth[45:75, 50:54] = 2
    truth[70:75, 5:54] = 2  # ... joined at the bottom
    truth[0:3, 60:70] = 1  # a second class-1 region
    scene = write_raster(tmp_path / "v.tif", colour_scene(truth))
    gpkg = tmp_path / "v.gpkg"
    # Tile 16, overlap 4: two strips of windows, columns [0, 40) and [36, 70).
    result = predict_scene(fake_checkpoint(PixelModel()), scene, tmp_path / "v_classes.tif",
                           vectors=gpkg, vector_band_rows=16, tile=16, overlap=4,
                           strip_width=30, preview=True)
    frame = gpd.read_file(gpkg, layer="classes")
    assert result.polygons == len(frame) == 4
    assert list(frame.columns) == ["class_id", "class_name", "area", "geometry"]
    np.testing.assert_allclose(frame.area, frame.geometry.area)
    assert frame.crs.to_epsg() == 32633
    by_class = frame.groupby("class_name").size().to_dict()
    assert by_class == {"red": 1, "green": 2, "blue": 1}
    pixel = 0.5 * 0.5
    square = frame[(frame.class_id == 1)].geometry.area.max()
    assert square == pytest.approx(400 * pixel)
    u = frame[frame.class_id == 2].geometry.iloc[0]
    assert u.geom_type == "Polygon" and u.area == pytest.approx((2 * 30 * 4 + 5 * 41) * pixel)
    red = frame[frame.class_id == 0].geometry.iloc[0]
    assert len(red.interiors) == 2  # the square and the U are holes; the strip is not
    assert frame.geometry.area.sum() == pytest.approx(80 * 70 * pixel)
    assert (frame.geom_type == "Polygon").all()
    # Reference: the same raster polygonised in one band gives the same polygons.
    from geoidec.inference.vectors import polygonize_class_raster

    _, n = polygonize_class_raster(result.classes, tmp_path / "one.gpkg",
                                   ["red", "green", "blue"], band_rows=1000)
    one = gpd.read_file(tmp_path / "one.gpkg")
    assert n == 4
    assert sorted(one.geometry.area.round(6)) == sorted(frame.geometry.area.round(6))
    np.testing.assert_array_equal(read(result.classes), truth)
    assert result.paths.preview is not None and result.paths.preview.is_file()


def test_vectors_random_map_matches_single_band(tmp_path: Path) -> None:
    """Any band height gives the polygons of a one-band polygonisation (areas per class)."""
    import geopandas as gpd

    from geoidec.inference.class_raster import write_class_raster
    from geoidec.inference.vectors import polygonize_class_raster

    labels = blocks(61, 47, seed=3, size=3)
    labels[np.random.default_rng(4).random(labels.shape) < 0.05] = 255
    raster = write_class_raster(tmp_path / "r.tif", [(0, labels)], height=61, width=47,
                                crs=None, transform=None, class_names=["a", "b", "c"],
                                colors=[(1, 1, 1)] * 3)
    reference = None
    for rows in (61, 1, 4, 10):
        out = tmp_path / f"r{rows}.gpkg"
        _, n = polygonize_class_raster(raster, out, ["a", "b", "c"], band_rows=rows)
        frame = gpd.read_file(out)
        key = (n, sorted(zip(frame.class_id, frame.geometry.area.round(6), strict=True)))
        reference = reference or key
        assert key == reference, rows
    assert frame.crs is None


def test_min_area_sieves_like_the_whole_map_in_any_band_height(tmp_path: Path) -> None:
    """``min_pixels``: whatever the band height of the polygoniser, the polygons are those of
    the whole map sieved with rasterio (GDAL's sieve), and no polygon is smaller."""
    import geopandas as gpd
    import rasterio.features

    from geoidec.inference.class_raster import write_class_raster
    from geoidec.inference.vectors import polygonize_class_raster

    rng = np.random.default_rng(5)
    labels = blocks(61, 47, seed=6, size=4)
    speckle = rng.random(labels.shape) < 0.08  # single pixels and small clumps
    labels[speckle] = rng.integers(0, 3, labels.shape)[speckle]
    labels[rng.random(labels.shape) < 0.02] = 255
    names, kwargs = ["a", "b", "c"], dict(height=61, width=47, crs=None, transform=None,
                                          colors=[(1, 1, 1)] * 3)
    raster = write_class_raster(tmp_path / "r.tif", [(0, labels)], class_names=names, **kwargs)
    whole = rasterio.features.sieve(labels, size=5, mask=labels != 255, connectivity=4)
    whole[labels == 255] = 255
    sieved = write_class_raster(tmp_path / "s.tif", [(0, whole)], class_names=names, **kwargs)
    _, n = polygonize_class_raster(sieved, tmp_path / "ref.gpkg", names)
    ref = gpd.read_file(tmp_path / "ref.gpkg", layer="classes")
    reference = (n, sorted(zip(ref.class_id, ref.geometry.area.round(6), strict=True)))
    _, raw = polygonize_class_raster(raster, tmp_path / "raw.gpkg", names)
    assert raw > n  # the speckle was there
    for rows in (61, 3, 8, 20):
        out = tmp_path / f"m{rows}.gpkg"
        _, count = polygonize_class_raster(raster, out, names, band_rows=rows, min_pixels=5)
        frame = gpd.read_file(out, layer="classes")
        assert (count, sorted(zip(frame.class_id, frame.geometry.area.round(6),
                                  strict=True))) == reference, rows
        assert frame.geometry.area.min() >= 5


def test_min_area_through_the_cli(run_dir: Path, big_scene: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import geopandas as gpd

    out = tmp_path / "m.tif"
    args = ["predict", big_scene, "--model", run_dir, "--out", out, "--vectors",
            tmp_path / "m.gpkg", "--quiet"]
    outcome = run_main([*args, "--min-area", "ten"], monkeypatch)
    assert_one_line_error(outcome, "--min-area ten", "10px")
    assert list(tmp_path.iterdir()) == []
    assert run_main([*args, "--min-area", "0.25"], monkeypatch).code == 0  # 0.05 m pixels
    frame = gpd.read_file(tmp_path / "m.gpkg", layer="classes")
    assert frame.geometry.area.min() >= 100 * 0.05 * 0.05 - 1e-9
    with rasterio.open(out) as src:  # the class map itself is not sieved
        assert src.read(1).shape == (300, 280)


def test_min_area_in_map_units_or_pixels() -> None:
    from affine import Affine

    from geoidec.inference.preflight import min_area_pixels

    half_metre = Affine(0.5, 0, 0, 0, -0.5, 0)
    assert min_area_pixels("10px", half_metre) == 10
    assert min_area_pixels("2.5", half_metre) == 10 and min_area_pixels("2.6", half_metre) == 11
    assert min_area_pixels(None, half_metre) == 0
    from geoidec.errors import UsageError

    with pytest.raises(UsageError, match="square map units"):
        min_area_pixels("ten", half_metre)


# -------------------------------------------------------------------- guard-rails
def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "geoidec" and r.levelno == logging.WARNING]


def test_guard_rails(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ckpt = fake_checkpoint(PixelModel())
    caplog.set_level(logging.WARNING, logger="geoidec")
    # Good input: no warning.
    scene = write_raster(tmp_path / "ok.tif", colour_scene(blocks(40, 40)))
    predict_scene(ckpt, scene, tmp_path / "ok_c.tif")
    assert _warnings(caplog) == []
    # No CRS; one class almost everywhere.
    one = np.zeros((40, 40), np.uint8)
    one[0, 0] = 1
    scene = write_raster(tmp_path / "nocrs.tif", colour_scene(one), crs=None)
    out = predict_scene(ckpt, scene, tmp_path / "nocrs_c.tif").classes
    found = _warnings(caplog)
    assert len(found) == 2 and all(m.startswith("nocrs.tif: ") for m in found)
    assert "no CRS" in found[0] and "one class (red)" in found[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(out) as src:
            assert src.crs is None and src.transform.is_identity
    caplog.clear()
    # 4 m pixels vs 0.5 m training; uint16 values far above 0..255; 97% nodata.
    data = (colour_scene(blocks(40, 40)).astype(np.uint16) * 20)
    invalid = np.ones((40, 40), bool)
    invalid[:6, :8] = False
    scene = write_raster(tmp_path / "odd.tif", data, mask=~invalid,
                         transform=Affine(4.0, 0, 500000, 0, -4.0, 5000000))
    predict_scene(ckpt, scene, tmp_path / "odd_c.tif")
    found = " | ".join(_warnings(caplog))
    for needle in ("pixel size 4 m", "0.5 m", "data type uint16", "values far outside",
                   "of the input is nodata"):
        assert needle in found, (needle, found)


# ------------------------------------------------------------- the CLI, real model
def test_class_map_cog(full: SimpleNamespace) -> None:
    with rasterio.open(full.scene) as src, rasterio.open(full.out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height) == (280, 300) == (src.width, src.height)
        assert dst.count == 1 and dst.dtypes[0] == "uint8" and dst.nodata == 255
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert dst.block_shapes == [(256, 256)] and dst.overviews(1) == [2]
        assert dst.compression.name.lower() == "deflate"
        cmap = dst.colormap(1)
        assert cmap[255] == (0, 0, 0, 0)
        assert json.loads(dst.tags(1)["CLASS_NAMES"]) == ISPRS
        assert dst.tags(1)["CLASS_5"] == "car"
        assert dst.tags()["geoidec_step"] == "1"
        labels = dst.read(1)
    assert cmap[2][:3] == (0, 0, 255)  # building is blue
    np.testing.assert_array_equal(labels[:20, :30], 255)
    assert labels[20:].max() <= 5 and labels[:, 30:].max() <= 5
    qml = ET.parse(full.out.with_suffix(".qml")).getroot()
    assert [e.get("label") for e in qml.iter("paletteEntry")] == ISPRS
    rows = read_rat_sidecar(full.out)
    assert [r["Class"] for r in rows] == ISPRS
    assert [int(r["Value"]) for r in rows] == list(range(6))
    assert (int(rows[2]["Red"]), int(rows[2]["Green"]), int(rows[2]["Blue"])) == (0, 0, 255)
    counts = np.bincount(labels.ravel(), minlength=256)
    assert [int(float(r["Count"])) for r in rows] == counts[:6].tolist()
    aux = ET.parse(full.out.with_name(full.out.name + ".aux.xml")).getroot()
    assert aux.tag == "PAMDataset"
    table = aux.find("PAMRasterBand[@band='1']/GDALRasterAttributeTable")
    assert table is not None and table.get("tableType") == "thematic"
    assert [f.findtext("Name") for f in table.findall("FieldDefn")] == [
        "Value", "Count", "Class", "Red", "Green", "Blue"]
    assert "wrote" in full.stdout and "big_classes.tif.aux.xml" in full.stdout
    # No temporary file is left behind.
    assert not [p for p in full.folder.iterdir() if p.name.startswith(".")]


def test_confidence_and_probabilities(full: SimpleNamespace) -> None:
    conf_path = full.folder / "big_classes_confidence.tif"
    prob_path = full.folder / "big_classes_probabilities.tif"
    with rasterio.open(full.out) as ref, rasterio.open(conf_path) as c, \
            rasterio.open(prob_path) as p:
        for dst in (c, p):
            assert dst.crs == ref.crs and dst.transform == ref.transform
            assert dst.shape == ref.shape and dst.nodata == 255
            assert dst.dtypes[0] == "uint8"
            assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert dst.overviews(1) == [2]
        assert p.count == 6 and p.descriptions == tuple(ISPRS)
        labels, conf, probs = ref.read(1), c.read(1), p.read()
    invalid = labels == 255
    np.testing.assert_array_equal(conf == 255, invalid)
    np.testing.assert_array_equal((probs == 255).all(axis=0), invalid)
    assert conf[~invalid].max() <= 100 and conf[~invalid].min() >= 100 // 6
    sums = probs[:, ~invalid].astype(int).sum(axis=0)
    assert sums.min() >= 97 and sums.max() <= 103  # rounded percentages
    np.testing.assert_array_equal(conf[~invalid], probs[:, ~invalid].max(axis=0))
    top = probs[:, ~invalid].argmax(axis=0)
    agree = (top == labels[~invalid]) | (probs[:, ~invalid].max(axis=0) == np.take_along_axis(
        probs[:, ~invalid], labels[~invalid][None].astype(int), 0)[0])
    assert agree.all()


def test_change_from_the_same_checkpoint_is_unchanged(full: SimpleNamespace) -> None:
    path = full.folder / "big_classes_change.tif"
    with rasterio.open(path) as dst:
        change = dst.read(1)
        assert dst.nodata == 255 and dst.tags(1)["CLASS_NAMES"] == '["unchanged", "changed"]'
    labels = read(full.out)
    np.testing.assert_array_equal(change, np.where(labels == 255, 255, 0))


def test_vectors_and_preview(full: SimpleNamespace) -> None:
    import geopandas as gpd
    import pyogrio

    gpkg = full.folder / "big.gpkg"
    assert pyogrio.list_layers(gpkg)[:, 0].tolist() == ["classes", "layer_styles"]
    frame = gpd.read_file(gpkg, layer="classes")
    np.testing.assert_allclose(frame.area, frame.geometry.area)
    # the QGIS style stored in the GeoPackage: one default style of the layer, a category
    # per class with the class colour of the checkpoint
    with sqlite3.connect(gpkg) as db:
        rows = db.execute("SELECT f_table_name, f_geometry_column, useAsDefault, styleQML "
                          "FROM layer_styles").fetchall()
        geometry = db.execute("SELECT column_name FROM gpkg_geometry_columns").fetchone()[0]
    assert [r[:3] for r in rows] == [("classes", geometry, 1)]
    style = ET.fromstring(rows[0][3].split("\n", 1)[1])
    renderer = style.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_name"
    colours = {s.get("name"): s.find("layer/Option/Option[@name='color']").get("value")
               for s in renderer.find("symbols")}
    ckpt = load_checkpoint(full.run)
    assert [(c.get("value"), colours[c.get("symbol")]) for c in renderer.find("categories")] \
        == [(c.name, ",".join(map(str, (*c.color, 255)))) for c in ckpt.classes]
    with rasterio.open(full.out) as src:
        labels, crs, bounds = src.read(1), src.crs, src.bounds
        res = src.res
    assert frame.crs == crs
    present = sorted(int(v) for v in np.unique(labels) if v != 255)
    assert sorted(frame.class_id.unique().tolist()) == present
    assert set(frame.class_name) == {ISPRS[i] for i in present}
    total = frame.geometry.area.sum() / (res[0] * res[1])
    assert total == pytest.approx((labels != 255).sum(), rel=0.02)  # simplified by 0.1 m
    minx, miny, maxx, maxy = frame.total_bounds
    assert minx >= bounds.left - 1e-6 and maxy <= bounds.top + 1e-6
    preview = full.folder / "big_classes_preview.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(preview) as png:
            assert png.driver == "PNG" and png.count in (3, 4)
            assert 1000 <= png.width <= 1300 and 300 <= png.height <= 1100


def test_change_between_steps(run_dir: Path, fake_potsdam: Path, tmp_path: Path) -> None:
    scene = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tif"
    step0, step1 = (run_dir / "checkpoints" / f"step_{s}.pt" for s in (0, 1))
    result = run_cli(["predict", scene, "--model", step1, "--out", tmp_path / "m1.tif",
                      "--change-from", step0, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    result = run_cli(["predict", scene, "--model", step0, "--out", tmp_path / "m0.tif",
                      "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    m0, m1 = read(tmp_path / "m0.tif"), read(tmp_path / "m1.tif")
    change = read(tmp_path / "m1_change.tif")
    # Step 0's classes are the first five of step 1's: indices match names.
    np.testing.assert_array_equal(change, (m0 != m1).astype(np.uint8))


def _tiles(folder: Path, fake_potsdam: Path, n: int = 3) -> list[Path]:
    """``n`` 64 px tiles side by side on one grid (the 2_13 tile shifted east)."""
    with rasterio.open(fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif") as src:
        data, crs, t = src.read(), src.crs.to_string(), src.transform
    folder.mkdir(parents=True, exist_ok=True)
    return [write_raster(folder / f"tile_{i}.tif", np.roll(data, i * 7, axis=2), crs=crs,
                         transform=t @ Affine.translation(64 * i, 0)) for i in range(n)]


def test_batch_folder_mosaic_and_resume(run_dir: Path, fake_potsdam: Path,
                                        tmp_path: Path) -> None:
    tiles = _tiles(tmp_path / "in", fake_potsdam)
    (tmp_path / "in" / "notes.txt").write_text("not a raster")
    out = tmp_path / "maps"
    result = run_cli(["predict", tmp_path / "in", "--model", run_dir, "--out", out,
                      "--confidence", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "3 scene(s) predicted, 0 done already, 0 failed" in result.stdout
    maps = [out / f"tile_{i}_classes.tif" for i in range(3)]
    assert all(p.is_file() for p in maps)
    assert all((out / f"tile_{i}_classes_confidence.tif").is_file() for i in range(3))
    with rasterio.open(out / "mosaic.vrt") as vrt, rasterio.open(tiles[0]) as first, \
            rasterio.open(tiles[2]) as last:
        assert vrt.crs == first.crs and vrt.res == first.res
        assert tuple(vrt.bounds) == pytest.approx(
            (first.bounds.left, last.bounds.bottom, last.bounds.right, first.bounds.top),
            abs=1e-6)
        assert (vrt.width, vrt.height) == (192, 64) and vrt.nodata == 255
        mosaic = vrt.read(1)
        assert vrt.colormap(1)[2][:3] == (0, 0, 255)
    for i, path in enumerate(maps):
        np.testing.assert_array_equal(mosaic[:, 64 * i: 64 * (i + 1)], read(path))
    assert (out / "mosaic.qml").is_file()
    # Resume: only the deleted scene is predicted again.
    before = {p: p.stat().st_mtime_ns for p in maps}
    maps[1].unlink()
    result = run_cli(["predict", str(tmp_path / "in" / "*.tif"), "--model", run_dir,
                      "--out", out, "--confidence", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "1 scene(s) predicted, 2 done already" in result.stdout
    assert maps[0].stat().st_mtime_ns == before[maps[0]]
    assert maps[2].stat().st_mtime_ns == before[maps[2]]
    assert maps[1].is_file()

def test_batch_into_its_own_folder(run_dir: Path, fake_potsdam: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The output folder may be the input folder: outputs are never taken as inputs."""
    folder = tmp_path / "tiles"
    _tiles(folder, fake_potsdam, n=2)
    for _ in range(2):
        outcome = run_main(["predict", folder, "--model", run_dir, "--out", folder,
                            "--quiet"], monkeypatch)
        assert outcome.code == 0, outcome.stderr
    assert "0 scene(s) predicted, 2 done already" in outcome.stdout
    assert sorted(p.name for p in folder.glob("*.tif")) == [
        "tile_0.tif", "tile_0_classes.tif", "tile_1.tif", "tile_1_classes.tif"]


def test_batch_passes_tta(fake_potsdam: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--tta reaches every scene of a folder: its maps are the single-scene --tta maps, and
    not those without (a model whose map is varied)."""
    folder = tmp_path / "tiles"
    _tiles(folder, fake_potsdam, n=2)
    model = varied_checkpoint(tmp_path / "step_0.pt", ISPRS[:5])

    def classes(args: list, path: Path) -> np.ndarray:
        outcome = run_main(["predict", *args, "--model", model, "--quiet"], monkeypatch)
        assert outcome.code == 0, outcome.stderr
        with rasterio.open(path) as src:
            return src.read(1)

    none = classes([folder, "--out", tmp_path / "none"],
                   tmp_path / "none" / "tile_1_classes.tif")
    d4 = classes([folder, "--out", tmp_path / "d4", "--tta", "d4"],
                 tmp_path / "d4" / "tile_1_classes.tif")
    single = classes([folder / "tile_1.tif", "--out", tmp_path / "one.tif", "--tta", "d4"],
                     tmp_path / "one.tif")
    np.testing.assert_array_equal(d4, single)
    assert (d4 != none).any()


def test_mosaic_skipped_for_mixed_crs(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                      ) -> None:
    a = write_raster(tmp_path / "a.tif", np.zeros((1, 8, 8), np.uint8))
    b = write_raster(tmp_path / "b.tif", np.zeros((1, 8, 8), np.uint8), crs="EPSG:32631")
    with caplog.at_level(logging.WARNING, logger="geoidec"):
        assert write_mosaic_vrt([a, b], tmp_path / "m.vrt", ["x"], [(1, 2, 3)]) is None
    assert "different CRSs" in caplog.text
    assert not (tmp_path / "m.vrt").exists()


def test_photo_gives_a_palette_png(run_dir: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(photo, "w", driver="JPEG", width=45, height=37, count=3,
                           dtype="uint8") as dst:
            dst.write(colour_scene(blocks(37, 45)))
    result = run_cli(["predict", photo, "--model", run_dir, "--out", tmp_path / "map.png",
                      "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    result = run_cli(["predict", photo, "--model", run_dir, "--quiet"])  # default name
    assert result.exit_code == 0, (result.output, result.exception)
    for path in (tmp_path / "map.png", tmp_path / "photo_classes.png"):
        raw = path.read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        assert raw[24:26] == b"\x08\x03"  # 8-bit, colour type 3 (palette)
        assert b"tRNS" in raw
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(path) as png:
                assert png.driver == "PNG" and (png.height, png.width) == (37, 45)
                assert png.nodata == 255 and png.colormap(1)[2][:3] == (0, 0, 255)
                assert json.loads(png.tags()["CLASS_NAMES"]) == ISPRS
                assert png.read(1).max() <= 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.png", "photo.jpg", "photo_classes.png"]


def test_bad_inputs_give_one_line(run_dir: Path, fake_potsdam: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    scene = fake_potsdam / "2_Ortho_RGB" / "top_potsdam_2_13_RGB.tif"
    out = tmp_path / "o.tif"

    def cli(*args: object) -> object:
        return run_main(["predict", *args, "--model", run_dir, "--quiet"], monkeypatch)

    assert_one_line_error(cli(tmp_path / "absent.tif", "--out", out), "absent.tif",
                          "not found", code=1)
    rgbir = fake_potsdam / "4_Ortho_RGBIR" / "top_potsdam_2_13_RGBIR.tif"
    assert_one_line_error(cli(rgbir, "--out", out), "4 band(s)", "expects 3", code=1)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert_one_line_error(cli(text, "--out", out), "notes.txt", "raster", code=1)
    (tmp_path / "o_confidence.tif").write_bytes(b"x")
    assert_one_line_error(cli(scene, "--out", out, "--confidence"), "o_confidence.tif",
                          "--overwrite")
    assert_one_line_error(cli(scene, "--out", out, "--change-from", tmp_path / "nope.pt"),
                          "nope.pt", code=1)
    assert_one_line_error(cli(str(tmp_path / "*.jp2"), "--out", tmp_path / "d"),
                          "no rasters", code=1)
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        shutil.copy(scene, tmp_path / sub / "same.tif")
    assert_one_line_error(cli(tmp_path / "x" / "same.tif", tmp_path / "y" / "same.tif",
                              "--out", tmp_path / "d"), "both be written", code=1)
    assert_one_line_error(cli(scene, "--out", out, "--overlap", "40"), "--overlap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "o_confidence.tif",
                                                          "x", "y"]
    out.write_bytes(b"x")
    assert_one_line_error(cli(scene, "--out", out), "o.tif", "--overwrite")
    assert out.read_bytes() == b"x"


def test_batch_reports_failed_scenes(run_dir: Path, fake_potsdam: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "in"
    _tiles(folder, fake_potsdam, n=1)
    shutil.copy(fake_potsdam / "4_Ortho_RGBIR" / "top_potsdam_2_13_RGBIR.tif",
                folder / "four.tif")
    outcome = run_main(["predict", folder, "--model", run_dir, "--out", tmp_path / "o",
                        "--quiet"], monkeypatch)
    assert_one_line_error(outcome, "1 of 2 scene(s) failed", "four.tif", code=1)
    assert (tmp_path / "o" / "tile_0_classes.tif").is_file()
    assert not (tmp_path / "o" / "four_classes.tif").exists()


def test_change_from_must_have_the_same_bands(tmp_path: Path) -> None:
    ckpt = fake_checkpoint(PixelModel())
    other = fake_checkpoint(PixelModel(), bands=4)
    scene = write_raster(tmp_path / "s.tif", colour_scene(blocks(10, 10)))
    with pytest.raises(DataError, match="--change-from"):
        predict_scene(ckpt, scene, tmp_path / "o.tif", change_from=other)


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo (gdal-bin) absent")
def test_gdalinfo_sees_colours_names_and_rat(full: SimpleNamespace) -> None:
    text = subprocess.run(["gdalinfo", str(full.out)], capture_output=True, text=True,
                          check=True).stdout
    assert "LAYOUT=COG" in text and "NoData Value=255" in text
    assert "Overviews: 140x150" in text
    assert "Color Table (RGB with 256 entries)" in text
    assert "<GDALRasterAttributeTable" in text and "<F>low_vegetation</F>" in text


def test_loaded_checkpoint_round_trip(run_dir: Path) -> None:
    """The trained checkpoint used above predicts 3-band inputs with 6 classes."""
    ckpt = load_checkpoint(run_dir)
    assert ckpt.bands == 3 and [c.name for c in ckpt.classes] == ISPRS


def test_cpu_threads_restored(tmp_path: Path) -> None:
    """With several torch threads only the forward uses them; the count is restored."""
    truth = blocks(30, 40)
    scene = write_raster(tmp_path / "s.tif", colour_scene(truth))
    seen: list[int] = []

    class Spy(PixelModel):
        def forward(self, x: torch.Tensor) -> SimpleNamespace:
            seen.append(torch.get_num_threads())
            return super().forward(x)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = predict_scene(fake_checkpoint(Spy()), scene, tmp_path / "o.tif", tile=16,
                            overlap=4).classes
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {2}
    np.testing.assert_array_equal(read(out), truth)


def test_stac_item_describes_the_map_its_classes_and_model(
        run_dir: Path, big_scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--stac``: a STAC Item beside the map that pystac reads back, with the map's grid,
    footprint, classes (code, name, colour), every output as an asset and the model's
    checkpoint digest; an existing Item is not replaced without --overwrite."""
    import hashlib

    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension
    from rasterio.warp import transform_bounds

    out = tmp_path / "m.tif"
    args = ["predict", big_scene, "--model", run_dir, "--out", out, "--confidence",
            "--vectors", tmp_path / "m.gpkg", "--stac", "--quiet"]
    assert run_cli(args).exit_code == 0
    item = pystac.Item.from_file(str(tmp_path / "m.stac.json"))
    with rasterio.open(out) as src:
        crs, transform, shape, bounds = src.crs, src.transform, src.shape, src.bounds
    proj = ProjectionExtension.ext(item)
    assert (proj.code, tuple(proj.shape), tuple(proj.transform)) == (
        crs.to_string(), shape, tuple(transform)[:6])
    np.testing.assert_allclose(item.bbox, transform_bounds(crs, "EPSG:4326", *bounds,
                                                           densify_pts=21))
    ckpt = load_checkpoint(run_dir)
    classes = ClassificationExtension.ext(item.assets["classes"]).classes
    assert [(c.value, c.name, c.color_hint) for c in classes] == [
        (i, c.name, "{:02X}{:02X}{:02X}".format(*c.color)) for i, c in enumerate(ckpt.classes)]
    assert item.assets["classes"].extra_fields["raster:bands"][0]["nodata"] == 255
    hrefs = {key: asset.get_absolute_href() for key, asset in item.assets.items()}
    assert set(hrefs) == {"classes", "confidence", "polygons", "qgis_style", "attribute_table"}
    assert all(Path(h).is_file() for h in hrefs.values()), hrefs
    digest = hashlib.sha256(Path(ckpt.path).read_bytes()).hexdigest()
    assert item.properties["geoidec:sha256"] == digest
    before = (tmp_path / "m.stac.json").read_bytes()
    (out).unlink()
    assert_one_line_error(run_main(args, monkeypatch), "m.stac.json", "--overwrite")
    assert (tmp_path / "m.stac.json").read_bytes() == before
