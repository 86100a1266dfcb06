"""Tests for geoidec.inference.writers (COG class raster, QGIS style)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geoidec.inference.writers import write_class_raster, write_qml

H, W = 300, 200
NAMES = ["background", "building", "tree"]
COLORS = [(0, 0, 0), (255, 0, 0), (0, 128, 64)]
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0)


def pattern() -> np.ndarray:
    rows, cols = np.mgrid[0:H, 0:W]
    labels = ((rows // 10 + cols // 7) % 3).astype(np.uint8)
    labels[:5, :9] = 255  # nodata corner
    return labels


def bands(labels: np.ndarray, step: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    for r in range(0, labels.shape[0], step):
        yield r, labels[r : r + step]


def write(path: Path, labels: np.ndarray, **kw) -> Path:
    args = dict(
        height=H,
        width=W,
        crs="EPSG:32633",
        transform=TRANSFORM,
        class_names=NAMES,
        colors=COLORS,
    )
    args.update(kw)
    return write_class_raster(path, bands(labels), **args)


def test_cog_contents(tmp_path: Path) -> None:
    labels = pattern()
    out = write(tmp_path / "pred.tif", labels)
    assert out == tmp_path / "pred.tif"
    with rasterio.open(out) as src:
        assert src.driver == "GTiff"
        assert src.crs == CRS.from_epsg(32633)
        assert src.transform == TRANSFORM
        assert (src.height, src.width, src.count) == (H, W, 1)
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        np.testing.assert_array_equal(src.read(1), labels)
        assert src.profile["tiled"] and src.block_shapes == [(256, 256)]
        assert src.compression.name.lower() == "deflate"
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1) == [2]
        cmap = src.colormap(1)
        for i, color in enumerate(COLORS):
            assert cmap[i] == (*color, 255)
        assert cmap[255] == (0, 0, 0, 0)
        assert src.descriptions == ("class",)
        tags = src.tags(1)
        assert json.loads(tags["CLASS_NAMES"]) == NAMES
        assert [tags[f"CLASS_{i}"] for i in range(3)] == NAMES
        meta = json.loads(src.tags()["geoidec_classes"])
        assert meta[1] == {"index": 1, "name": "building", "color": "#ff0000"}
    qml = ET.parse(tmp_path / "pred.qml").getroot()
    assert qml.tag == "qgis"
    renderer = qml.find("pipe/rasterrenderer")
    assert renderer is not None and renderer.get("type") == "paletted"
    assert renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [e.get("value") for e in entries] == ["0", "1", "2"]
    assert [e.get("label") for e in entries] == NAMES
    assert [e.get("color") for e in entries] == ["#000000", "#ff0000", "#008040"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pred.qml", "pred.tif", "pred.tif.aux.xml"]


def test_exists_and_overwrite(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tif", pattern())
    with pytest.raises(FileExistsError, match="--overwrite"):
        write(path, pattern())
    zeros = np.zeros((H, W), np.int64)  # int64 labels are accepted and cast
    write(path, zeros, overwrite=True)
    with rasterio.open(path) as src:
        assert src.read(1).max() == 0


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    def broken() -> Iterator[tuple[int, np.ndarray]]:
        yield 0, np.zeros((64, W), np.uint8)
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        write_class_raster(
            tmp_path / "b.tif",
            broken(),
            height=H,
            width=W,
            crs="EPSG:32633",
            transform=TRANSFORM,
            class_names=NAMES,
            colors=COLORS,
        )
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_existing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tif", pattern(), qml=False, rat=False)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="cover rows"):
        write_class_raster(
            path,
            bands(pattern()[:100]),
            height=H,
            width=W,
            crs=None,
            transform=None,
            class_names=NAMES,
            colors=COLORS,
            overwrite=True,
        )
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.tif"]


def test_bad_band_order(tmp_path: Path) -> None:
    def skipping() -> Iterator[tuple[int, np.ndarray]]:
        yield 0, np.zeros((10, W), np.uint8)
        yield 20, np.zeros((10, W), np.uint8)

    with pytest.raises(ValueError, match="expected 10"):
        write_class_raster(
            tmp_path / "d.tif",
            skipping(),
            height=H,
            width=W,
            crs=None,
            transform=None,
            class_names=NAMES,
            colors=COLORS,
        )
    assert list(tmp_path.iterdir()) == []


def test_no_crs(tmp_path: Path) -> None:
    labels = pattern()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = write(tmp_path / "px.tif", labels, crs=None, transform=Affine.identity())
    with rasterio.open(out) as src:
        assert src.crs is None
        assert src.transform == Affine.identity()
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(src.read(1), labels)


def test_small_raster_without_overviews(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 2], [2, 1, 255]], np.uint8)
    out = write_class_raster(
        tmp_path / "tiny.tif",
        [(0, labels[:1]), (1, labels[1:])],
        height=2,
        width=3,
        crs="EPSG:4326",
        transform=Affine(0.1, 0.0, 10.0, 0.0, -0.1, 50.0),
        class_names=NAMES,
        colors=COLORS,
        overview_resampling="mode",
    )
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), labels)
        assert src.overviews(1) == []
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_write_qml_standalone(tmp_path: Path) -> None:
    path = write_qml(tmp_path / "s.qml", ["a", "b & c"], [(1, 2, 3), (255, 255, 255)])
    entries = ET.parse(path).getroot().findall(".//paletteEntry")
    assert [(e.get("label"), e.get("color")) for e in entries] == [
        ("a", "#010203"),
        ("b & c", "#ffffff"),
    ]
    with pytest.raises(ValueError):
        write_qml(tmp_path / "x.qml", ["a"], [(1, 2, 3), (4, 5, 6)])
