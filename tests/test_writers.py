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

from geoidec.inference.class_raster import write_class_raster
from geoidec.inference.style import write_qml

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


# ------------------------------------------------------- streams, RAT, PNG (predict)
def test_rat_sidecar(tmp_path: Path) -> None:
    from geoidec.inference.rat import read_rat_sidecar

    labels = pattern()
    out = write(tmp_path / "r.tif", labels)
    root = ET.parse(tmp_path / "r.tif.aux.xml").getroot()
    assert root.tag == "PAMDataset"
    table = root.find("PAMRasterBand[@band='1']/GDALRasterAttributeTable")
    assert table is not None and table.get("tableType") == "thematic"
    fields = [(f.findtext("Name"), f.findtext("Type"), f.findtext("Usage"))
              for f in table.findall("FieldDefn")]
    assert fields == [("Value", "0", "5"), ("Count", "1", "1"), ("Class", "2", "2"),
                      ("Red", "0", "6"), ("Green", "0", "7"), ("Blue", "0", "8")]
    rows = read_rat_sidecar(out)
    counts = np.bincount(labels.ravel(), minlength=256)
    assert rows == [
        {"Value": str(i), "Count": str(counts[i]), "Class": NAMES[i],
         "Red": str(COLORS[i][0]), "Green": str(COLORS[i][1]), "Blue": str(COLORS[i][2])}
        for i in range(3)
    ]
    # GDAL reads the sidecar with the raster (it is listed among the dataset's files).
    with rasterio.open(out) as src:
        assert any(f.endswith("r.tif.aux.xml") for f in src.files)


def test_palette_png(tmp_path: Path) -> None:
    labels = pattern()
    out = write(tmp_path / "map.png", labels, crs=None, transform=None, fmt="PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]  # no sidecars
    raw = out.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[24:26] == b"\x08\x03"  # 8-bit palette
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(out) as src:
            assert src.driver == "PNG" and src.nodata == 255
            np.testing.assert_array_equal(src.read(1), labels)
            assert src.colormap(1)[1] == (255, 0, 0, 255) and src.colormap(1)[255][3] == 0
            assert json.loads(src.tags()["CLASS_NAMES"]) == NAMES


def test_stream_chunks_any_order_and_two_phase_commit(tmp_path: Path) -> None:
    from geoidec.inference.raster_stream import RasterStream

    data = np.arange(3 * H * W, dtype=np.int64).reshape(3, H, W) % 101
    stream = RasterStream(tmp_path / "p.tif", height=H, width=W, count=3, crs="EPSG:32633",
                          transform=TRANSFORM, descriptions=["a", "b", "c"],
                          overview_resampling="average")
    for c0, c1 in ((120, W), (0, 120)):  # right strip first, then the left one
        for r0 in range(0, H, 70):
            stream.write(r0, data[:, r0 : r0 + 70, c0:c1], c0)
    converted = stream.finish()
    assert converted.is_file() and not (tmp_path / "p.tif").exists()
    stream.commit()
    with rasterio.open(tmp_path / "p.tif") as src:
        np.testing.assert_array_equal(src.read(), data)
        assert src.descriptions == ("a", "b", "c") and src.nodata == 255
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif"]
    # Missing chunks are caught at finish, and nothing is left behind.
    with pytest.raises(ValueError, match="cover"), RasterStream(
            tmp_path / "q.tif", height=H, width=W) as stream:
        stream.write(0, np.zeros((H, 100), np.uint8), 0)
        stream.finish()
    with pytest.raises(ValueError, match="outside"), RasterStream(
            tmp_path / "q.tif", height=H, width=W) as stream:
        stream.write(0, np.zeros((10, 50), np.uint8), W - 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif"]
