"""The user's own class codes in every output of `geoidec predict`, and GIS overviews.

A dataset YAML's classes keep their label ``value`` (or an explicit ``code:``) as their pixel
value in predicted class maps, with ``background: {code: ...}`` and ``nodata_code``; the
codes travel YAML -> checkpoint -> class map, colour table, names, attribute table, QGIS
style, vectors, mosaic VRT and palette PNG. Without codes (ISPRS, VOC, ADE20K, older
checkpoints) the map holds output indices as before. Class maps get overviews by MODE,
confidence layers by AVERAGE, and nodata stays nodata in both.

Expected values are computed here (the mode of each 2x2 block, the index -> code table,
pixel counts), never read back from the code under test.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from conftest import assert_one_line_error, run_cli, run_main
from tiny_geotiffs import CLASSES, make_dataset, write_raster
from torch import nn

from geoidec.checkpoint import Checkpoint, load_checkpoint
from geoidec.data.classes import ClassInfo
from geoidec.data.geotiff import load_geotiff_dataset
from geoidec.data.normalization import Normalization
from geoidec.errors import DataError
from geoidec.inference.class_raster import write_class_raster
from geoidec.inference.predict import predict_scene
from geoidec.inference.raster_stream import RasterStream
from geoidec.inference.rat import read_rat_sidecar

VALUES = (5, 7, 9)
COLOURS = ("#1b7837", "#4575b4", "#fee090")
TINY = ["--steps", "2-1", "--iterations", "2", "--batch-size", "2", "--tile-size", "32",
        "--set", "model.aspp_channels=16", "--set", "eval.overlap=8", "--quiet",
        "--preset", "cpu"]
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0)
MASK = (slice(0, 16), slice(0, 16))
"""Nodata block (internal mask) of the e2e test image."""


# ---------------------------------------------------------------------------- helpers
def rgb(text: str) -> tuple[int, int, int]:
    text = text.lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def coded_dataset(root: Path, *, classes: list[dict] | None = None, **top: object) -> Path:
    """The tiny dataset with label values 5, 7, 9 (forest, water, field) and colours; class
    entries updated from ``classes`` (by position), top-level keys set from ``top``."""
    path = make_dataset(root, values=VALUES, size=48)
    doc = yaml.safe_load(path.read_text())
    for entry, colour in zip(doc["classes"], COLOURS, strict=True):
        entry["color"] = colour
    for entry, change in zip(doc["classes"], classes or [], strict=False):
        entry.update(change)
    doc.update(top)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def variant(path: Path, name: str, *, classes: list[dict] | None = None,
            **top: object) -> Path:
    """A copy of the dataset YAML ``path`` (same folder) with changes."""
    doc = yaml.safe_load(path.read_text())
    for entry, change in zip(doc["classes"], classes or [], strict=False):
        entry.update(change)
    doc.update(top)
    out = path.with_name(name)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def read(path: Path, band: int = 1, **kw: object) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, **kw) as src:
            return src.read(band)


def overview(path: Path) -> np.ndarray:
    """The first (2x) internal overview of band 1."""
    with rasterio.open(path) as src:
        assert src.overviews(1)[:1] == [2], src.overviews(1)
    return read(path, overview_level=0)


def block_mode(data: np.ndarray, nodata: int) -> np.ndarray:
    """Most frequent value of each 2x2 block, nodata left out (nodata if the block is all
    nodata); the crafted maps have a strict majority in every block (checked)."""
    h, w = data.shape
    cells = data.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    out = np.full((h // 2, w // 2), nodata, dtype=np.uint8)
    for i in range(h // 2):
        for j in range(w // 2):
            valid = cells[i, j][cells[i, j] != nodata]
            if valid.size:
                values, counts = np.unique(valid, return_counts=True)
                top = np.sort(counts)
                assert top.size == 1 or top[-1] > top[-2], cells[i, j]  # no tie
                out[i, j] = values[np.argmax(counts)]
    return out


def block_mean(data: np.ndarray, nodata: int) -> np.ndarray:
    """Mean of the valid values of each 2x2 block (exact integers in the crafted layers)."""
    h, w = data.shape
    cells = data.reshape(h // 2, 2, w // 2, 2).transpose(0, 2, 1, 3).reshape(h // 2, w // 2, 4)
    valid = cells != nodata
    total = np.where(valid, cells, 0).astype(np.int64).sum(axis=-1)
    n = valid.sum(axis=-1)
    mean = np.divide(total, np.maximum(n, 1))
    assert np.all(mean[n > 0] == np.round(mean[n > 0]))
    return np.where(n > 0, mean, nodata).astype(np.uint8)


def crafted_blocks(h: int, w: int, values: list[int], nodata: int,
                   seed: int = 0) -> np.ndarray:
    """A class map of 2x2 blocks, each with a strict majority: 3 + 1 (the odd one at a
    random place, so no fixed-position decimation equals the mode), 2 + 1 + 1, all nodata,
    3 nodata + 1 class, 2 nodata + 2 of one class, 1 nodata + 2 + 1."""
    rng = np.random.default_rng(seed)
    out = np.empty((h, w), dtype=np.uint8)
    for i in range(0, h, 2):
        for j in range(0, w, 2):
            a, b, c = rng.permutation(values)[:3]
            kind = rng.integers(0, 6)
            cells = {0: [a, a, a, b], 1: [a, a, b, c], 2: [nodata] * 4,
                     3: [nodata, nodata, nodata, a], 4: [nodata, nodata, a, a],
                     5: [nodata, a, a, b]}[int(kind)]
            out[i:i + 2, j:j + 2] = np.asarray(rng.permutation(cells)).reshape(2, 2)
    return out


def write_scene(path: Path, data: np.ndarray, mask: np.ndarray | None = None,
                crs: str | None = "EPSG:32633") -> Path:
    """A tiled GeoTIFF of ``data`` (C, H, W); ``mask`` (H, W) True = valid, as an internal
    mask."""
    return write_raster(path, data, crs=crs, transform=TRANSFORM, mask=mask, tiled=True,
                        blockxsize=256, blockysize=256)


class PixelModel(nn.Module):
    """Logits = 10 x the standardised bands: the class is the brightest band (pointwise)."""

    def forward(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=10.0 * x[:, :3])


RGB = np.array([[200, 10, 10], [10, 200, 10], [10, 10, 200]], np.uint8)  # index -> colour
FAKE_NAMES = ["red", "green", "blue"]
FAKE_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def fake_checkpoint(codes: list[int] | None, nodata_code: int = 255) -> Checkpoint:
    """A checkpoint around :class:`PixelModel` (3 bands, classes red/green/blue) whose
    classes carry ``codes`` (or none)."""
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.0,) * 3, std=(1.0,) * 3)
    meta = {"bands": 3, "band_names": ["r", "g", "b"], "rgb_bands": [0, 1, 2],
            "tile_size": 32, "overlap": 8, "crs": "EPSG:32633", "resolution": [0.5, 0.5],
            "step": 0}
    classes = [ClassInfo(n, c, None if codes is None else codes[i])
               for i, (n, c) in enumerate(zip(FAKE_NAMES, FAKE_COLOURS, strict=True))]
    return Checkpoint(path=Path("fake.pt"), model=PixelModel().eval(), classes=classes,
                      normalization=norm, meta=meta, nodata_code=nodata_code)


def qml_entries(path: Path) -> list[tuple[str, str, str]]:
    root = ET.parse(path).getroot()
    return [(e.get("value"), e.get("label"), e.get("color"))
            for e in root.findall("pipe/rasterrenderer/colorPalette/paletteEntry")]


# ------------------------------------------------------------------ dataset YAML keys
def test_codes_default_to_label_values(tmp_path: Path) -> None:
    spec = load_geotiff_dataset(coded_dataset(tmp_path))
    assert [(c.name, c.code) for c in spec.classes] == list(zip(CLASSES, VALUES, strict=True))
    assert [c.color for c in spec.classes] == [rgb(c) for c in COLOURS]
    assert spec.background.code == 0 and spec.nodata_code == 255


def test_explicit_code_background_and_nodata_code(tmp_path: Path) -> None:
    path = coded_dataset(tmp_path, classes=[{"code": 50}, {}, {"code": 1}],
                         background={"name": "other", "code": 3}, nodata_code=0)
    spec = load_geotiff_dataset(path)
    assert [c.code for c in spec.classes] == [50, 7, 1]
    assert (spec.background.name, spec.background.code, spec.nodata_code) == ("other", 3, 0)


def test_explicit_codes_for_large_label_values(tmp_path: Path) -> None:
    """Label values that cannot be uint8 codes (1000, 2000, 3000) need ``code:``; the
    labels still decode by value."""
    path = make_dataset(tmp_path / "big", values=(1000, 2000, 3000), test=1)
    with pytest.raises(DataError, match=r"label value 1000 cannot be its code"):
        load_geotiff_dataset(path)
    fixed = variant(path, "fixed.yaml", classes=[{"code": 10}, {"code": 20}, {"code": 30}])
    spec = load_geotiff_dataset(fixed)
    assert [c.code for c in spec.classes] == [10, 20, 30]
    from rasterio.windows import Window

    from geoidec.data.scene_reader import SceneReader

    scene = spec.scenes("train")[0]
    with SceneReader(scene, spec.decoder) as reader:
        label = reader.read_label(Window(0, 0, 48, 48))
    raw = read(scene.label)
    np.testing.assert_array_equal(label, np.searchsorted([0, 1000, 2000, 3000], raw))


BAD = [
    # (class changes, top-level changes, words of the one-line error)
    ([{"value": 1000}], {}, ["classes[0] (forest)", "label value 1000", "code:"]),
    ([{"value": -1}], {}, ["classes[0] (forest)", "label value -1", "code:"]),
    ([{"value": 2.5}], {}, ["label value 2.5", "code:"]),
    ([{"value": 0}], {}, ["classes[0] (forest)", "code 0", "background's code"]),
    ([{"code": 300}], {}, ["classes[0] (forest) code: 300", "outside 0..255"]),
    ([{"code": -3}], {}, ["code: -3", "outside 0..255"]),
    ([{"code": 2.5}], {}, ["classes[0] (forest) code: 2.5", "not an integer"]),
    ([{"code": "5"}], {}, ["code: '5'", "not an integer"]),
    ([{"code": True}], {}, ["code: True", "not an integer"]),
    ([{}, {"code": 5}], {}, ["classes[0] (forest) and classes[1] (water)", "code 5"]),
    ([{"code": 255}], {}, ["code 255", "nodata code"]),
    ([], {"nodata_code": 7}, ["classes[1] (water)", "code 7", "nodata code"]),
    ([], {"nodata_code": 256}, ["nodata_code: 256", "outside 0..255"]),
    ([], {"nodata_code": 1.5}, ["nodata_code: 1.5", "not an integer"]),
    ([], {"background": {"code": 9}}, ["classes[2] (field)", "code 9", "background's code"]),
    ([], {"background": {"code": 300}}, ["background.code: 300", "outside 0..255"]),
    ([], {"background": {"code": 4}, "nodata_code": 4}, ["background.code 4",
                                                         "nodata_code 4"]),
    ([], {"background": {"cod": 4}}, ["background has unknown key(s) ['cod']", "code"]),
]


@pytest.mark.parametrize(("classes", "top", "words"), BAD,
                         ids=[" ".join(b[2][:2]) for b in BAD])
def test_bad_codes_are_one_line_errors(tmp_path: Path, classes: list[dict], top: dict,
                                       words: list[str]) -> None:
    path = variant(coded_dataset(tmp_path), "bad.yaml", classes=classes, **top)
    with pytest.raises(DataError) as err:
        load_geotiff_dataset(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    for word in words:
        assert word in message, (word, message)


def test_bad_code_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = variant(coded_dataset(tmp_path), "bad.yaml", classes=[{"code": 300}])
    outcome = run_main(["train", path, "--out", tmp_path / "run", *TINY], monkeypatch)
    assert_one_line_error(outcome, str(path), "code: 300", "outside 0..255", code=1)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_benchmark_datasets_keep_index_codes() -> None:
    from geoidec.data import ade, isprs, voc

    every = (*isprs.CLASSES, isprs.CLUTTER, *voc.CLASSES, voc.BACKGROUND, *ade.CLASSES,
             ade.UNLABELLED)
    assert all(c.code is None for c in every)
    assert fake_checkpoint(None).codes is None


# ------------------------------------------------------------------ writers, overviews
def test_class_raster_of_codes_and_mode_overviews(tmp_path: Path) -> None:
    codes, nodata = [0, 5, 7, 9], 255
    names = ["background", *CLASSES]
    colours = [(0, 0, 0), *(rgb(c) for c in COLOURS)]
    data = crafted_blocks(300, 520, codes, nodata)
    out = write_class_raster(tmp_path / "m.tif", [(0, data[:128]), (128, data[128:])],
                             height=300, width=520, crs="EPSG:32633", transform=TRANSFORM,
                             class_names=names, colors=colours, codes=codes, nodata=nodata)
    np.testing.assert_array_equal(read(out), data)
    expected = block_mode(data, nodata)
    ovr = overview(out)
    np.testing.assert_array_equal(ovr, expected)
    # The test can fail: no fixed pixel of the blocks (nearest) gives the mode everywhere,
    # and blocks of nodata stay nodata while mostly-nodata blocks keep their class.
    for r in (0, 1):
        for c in (0, 1):
            assert (data[r::2, c::2] != expected).any()
    cells = data.reshape(150, 2, 260, 2).transpose(0, 2, 1, 3).reshape(150, 260, 4)
    all_nodata = (cells == nodata).all(axis=-1)
    three_nodata = (cells == nodata).sum(axis=-1) == 3
    assert all_nodata.any() and three_nodata.any()
    assert (ovr[all_nodata] == nodata).all() and (ovr[three_nodata] != nodata).all()
    with rasterio.open(out) as src:
        cmap = src.colormap(1)
        assert [cmap[v] for v in codes] == [(*c, 255) for c in colours]
        assert cmap[nodata][3] == 0
        tags = src.tags(1)
        assert [tags[f"CLASS_{v}"] for v in codes] == names
        by_value = json.loads(tags["CLASS_NAMES"])
        assert [by_value[v] for v in codes] == names and by_value[1] == ""
        meta = json.loads(src.tags()["geoidec_classes"])
        assert [(m["index"], m["code"], m["name"]) for m in meta] == [
            (i, v, n) for i, (v, n) in enumerate(zip(codes, names, strict=True))]
    rows = read_rat_sidecar(out)
    assert [(r["Value"], r["Class"], r["Count"]) for r in rows] == [
        (str(v), n, str(int((data == v).sum()))) for v, n in zip(codes, names, strict=True)]
    assert qml_entries(out.with_suffix(".qml")) == [
        (str(v), n, "#{:02x}{:02x}{:02x}".format(*c))
        for v, n, c in zip(codes, names, colours, strict=True)]


def test_value_counts_count_every_value_whichever_way() -> None:
    """Counted value by value when the labels hold only the expected values, by bincount
    when another value turns up or too many are expected: the same hand counts."""
    from geoidec.inference.class_raster import COUNTED_ONE_BY_ONE, value_counts

    labels = np.array([[0, 0, 5], [255, 5, 7]], np.uint8)
    want = np.zeros(256, np.int64)
    want[[0, 5, 7, 255]] = [2, 2, 1, 1]
    for expected in ([0, 5, 7, 255], [0, 5, 255], list(range(COUNTED_ONE_BY_ONE + 1))):
        np.testing.assert_array_equal(value_counts(labels, expected), want)


def test_class_raster_rejects_bad_codes(tmp_path: Path) -> None:
    args = dict(height=4, width=4, crs=None, transform=None, class_names=["a", "b"],
                colors=[(0, 0, 0), (1, 1, 1)])
    band = [(0, np.zeros((4, 4), np.uint8))]
    with pytest.raises(ValueError, match="must all differ"):
        write_class_raster(tmp_path / "a.tif", band, codes=[5, 5], **args)
    with pytest.raises(ValueError, match="no class code"):
        write_class_raster(tmp_path / "b.tif", band, codes=[5, 255], **args)
    assert list(tmp_path.iterdir()) == []


def test_confidence_overviews_average_valid_pixels(tmp_path: Path) -> None:
    """AVERAGE over the valid pixels of each block; a block of nodata stays nodata."""
    rng = np.random.default_rng(1)
    h, w = 300, 520
    data = np.empty((h, w), np.uint8)
    for i in range(0, h, 2):
        for j in range(0, w, 2):
            base = int(rng.integers(0, 90))
            kind = int(rng.integers(0, 4))
            cells = {0: [base, base + 2, base + 4, base + 6],  # mean base + 3
                     1: [255, 255, base, base + 10],  # mean base + 5
                     2: [255] * 4, 3: [255, 255, 255, base]}[kind]
            data[i:i + 2, j:j + 2] = np.asarray(rng.permutation(cells)).reshape(2, 2)
    stream = RasterStream(tmp_path / "c.tif", height=h, width=w, crs="EPSG:32633",
                          transform=TRANSFORM, overview_resampling="average",
                          descriptions=["confidence (%)"])
    stream.write(0, data)
    out = stream.commit()
    np.testing.assert_array_equal(overview(out), block_mean(data, 255))


def test_predict_writes_codes_with_mode_overviews(tmp_path: Path) -> None:
    """A pointwise model whose map is known: the class map is the codes of its classes
    (nodata code 0), every pixel; MODE overviews; counts, RAT and confidence overviews."""
    codes, nodata = [3, 5, 9], 0
    rng = np.random.default_rng(2)
    index = crafted_blocks(300, 520, [0, 1, 2], 255, seed=3)
    valid = index != 255
    pixels = np.where(valid, index, rng.integers(0, 3, index.shape)).astype(np.uint8)
    scene = write_scene(tmp_path / "scene.tif", np.moveaxis(RGB[pixels], -1, 0).copy(), valid)
    ckpt = fake_checkpoint(codes, nodata_code=nodata)
    result = predict_scene(ckpt, scene, tmp_path / "out.tif", tile=128, confidence=True)
    table = np.full(256, nodata, np.uint8)
    table[:3] = codes
    expected = table[index]
    got = read(result.classes)
    np.testing.assert_array_equal(got, expected)
    assert set(np.unique(got).tolist()) == {0, 3, 5, 9}
    with rasterio.open(result.classes) as src:
        assert src.nodata == nodata
        cmap = src.colormap(1)
        assert [cmap[c] for c in codes] == [(*c, 255) for c in FAKE_COLOURS]
        assert cmap[nodata][3] == 0
    np.testing.assert_array_equal(overview(result.classes), block_mode(expected, nodata))
    assert result.counts == [int((expected == c).sum()) for c in codes]
    assert result.nodata_pixels == int((~valid).sum())
    rows = read_rat_sidecar(result.classes)
    assert [(r["Value"], r["Class"], r["Count"]) for r in rows] == [
        (str(c), n, str(int((expected == c).sum())))
        for c, n in zip(codes, FAKE_NAMES, strict=True)]
    conf = read(result.paths.confidence)
    assert (conf[~valid] == 255).all() and (conf[valid] <= 100).all()
    np.testing.assert_array_equal(overview(result.paths.confidence), block_mean(conf, 255))


@pytest.mark.parametrize("coded", [True, False], ids=["codes", "indices"])
def test_predict_vectors_mosaic_and_png(coded: bool, tmp_path: Path) -> None:
    """Polygons carry the code and the name (and the output index as before); the mosaic
    VRT and the palette PNG are keyed by codes. Without codes: exactly the indices."""
    import geopandas as gpd

    from geoidec.inference.mosaic import write_mosaic_vrt
    from geoidec.inference.vectors import LAYER

    codes = [3, 5, 9] if coded else None
    values = codes or [0, 1, 2]
    index = np.zeros((40, 56), np.uint8)
    index[:, 20:] = 1
    index[10:30, 30:50] = 2
    index[0:8, 0:8] = 255
    valid = index != 255
    scene = write_scene(tmp_path / "s.tif", np.moveaxis(RGB[np.where(valid, index, 0)], -1, 0)
                        .copy(), valid)
    ckpt = fake_checkpoint(codes)
    result = predict_scene(ckpt, scene, tmp_path / "s_classes.tif",
                           vectors=tmp_path / "v.gpkg")
    table = np.full(256, 255, np.uint8)
    table[:3] = values
    expected = table[index]
    np.testing.assert_array_equal(read(result.classes), expected)
    frame = gpd.read_file(tmp_path / "v.gpkg", layer=LAYER)
    if coded:
        assert list(frame.columns) == ["class_id", "class_code", "class_name", "area",
                                       "geometry"]
        assert frame.class_code.tolist() == [codes[i] for i in frame.class_id]
    else:
        assert list(frame.columns) == ["class_id", "class_name", "area", "geometry"]
    assert frame.class_name.tolist() == [FAKE_NAMES[i] for i in frame.class_id]
    for i in range(3):
        area = frame[frame.class_id == i].geometry.area.sum()
        assert area == pytest.approx(int((index == i).sum()) * 0.25)
    with rasterio.open(result.classes) as src:
        names = json.loads(src.tags(1)["CLASS_NAMES"])
        assert src.nodata == 255
    if coded:
        assert names == ["", "", "", "red", "", "green", "", "", "", "blue"]
    else:
        assert names == FAKE_NAMES
    # Mosaic VRT of this map, keyed like the map.
    vrt = write_mosaic_vrt([result.classes], tmp_path / "mosaic.vrt", FAKE_NAMES,
                           FAKE_COLOURS, codes=codes)
    assert vrt is not None
    band = ET.parse(vrt).getroot().find("VRTRasterBand")
    entries = band.findall("ColorTable/Entry")
    for value, colour in zip(values, FAKE_COLOURS, strict=True):
        assert tuple(int(entries[value].get(k)) for k in ("c1", "c2", "c3", "c4")) == (
            *colour, 255)
    categories = [c.text or "" for c in band.findall("CategoryNames/Category")]
    assert [categories[v] for v in values] == FAKE_NAMES
    rat_values = [row.findall("F")[0].text for row in band.findall(
        "GDALRasterAttributeTable/Row")]
    assert rat_values == [str(v) for v in values]
    np.testing.assert_array_equal(read(vrt), expected)
    assert [e[0] for e in qml_entries(vrt.with_suffix(".qml"))] == [str(v) for v in values]
    # A photo (PNG without georeferencing) gives a palette PNG of the same values.
    photo = tmp_path / "photo.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(photo, "w", driver="PNG", width=56, height=40, count=3,
                           dtype="uint8") as dst:
            dst.write(np.moveaxis(RGB[np.where(valid, index, 0)], -1, 0))
    png = predict_scene(ckpt, photo, tmp_path / "photo_classes.png").classes
    assert png.suffix == ".png"
    np.testing.assert_array_equal(read(png), table[np.where(valid, index, 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(png) as src:
            cmap = src.colormap(1)
            assert [cmap[v][:3] for v in values] == FAKE_COLOURS
            assert json.loads(src.tags()["CLASS_NAMES"]) == names


# ----------------------------------------------------------------- train -> predict, CLI
@pytest.fixture(scope="module")
def coded_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny 2-1 run on the dataset of label values 5, 7, 9, and a test image with a
    nodata block (internal mask)."""
    root = tmp_path_factory.mktemp("codes")
    path = coded_dataset(root / "data")
    run = root / "run"
    result = run_cli(["train", path, "--out", run, *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    image = root / "data" / "images" / "test_0.tif"
    with rasterio.open(image) as src:
        pixels, profile = src.read(), src.profile
    mask = np.ones(pixels.shape[1:], bool)
    mask[MASK] = False
    masked = root / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "w",
                                                                   **profile) as dst:
        dst.write(pixels)
        dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return SimpleNamespace(root=root, yaml=path, run=run, image=image, masked=masked,
                           mask=mask)


def _strip_codes(ckpt_path: Path, out: Path) -> Path:
    """The checkpoint as geoidec wrote it before class codes existed."""
    payload = torch.load(ckpt_path, weights_only=True)
    payload["classes"] = [{k: v for k, v in c.items() if k != "code"}
                          for c in payload["classes"]]
    payload.pop("nodata_code")
    torch.save(payload, out)
    return out


def test_checkpoint_records_codes(coded_run: SimpleNamespace) -> None:
    step = coded_run.run / "checkpoints" / "step_1.pt"
    payload = torch.load(step, weights_only=True)
    assert [(c["index"], c["name"], c["code"]) for c in payload["classes"]] == [
        (0, "background", 0), (1, "forest", 5), (2, "water", 7), (3, "field", 9)]
    assert payload["nodata_code"] == 255
    ckpt = load_checkpoint(coded_run.run)
    assert ckpt.codes == [0, 5, 7, 9] and ckpt.nodata_code == 255
    step0 = load_checkpoint(coded_run.run, step=0)
    assert step0.codes == [0, 5, 7]
    # The ONNX export's metadata lists the codes beside the class names (output channels).
    from geoidec.export import deepness_metadata

    meta = deepness_metadata(ckpt, step)
    assert json.loads(meta["class_names"]) == {"0": "background", "1": "forest",
                                               "2": "water", "3": "field"}
    extra = json.loads(meta["geoidec"])
    assert extra["class_codes"] == {"0": 0, "1": 5, "2": 7, "3": 9}
    assert extra["nodata_code"] == 255


def test_cli_predict_writes_the_users_codes(coded_run: SimpleNamespace,
                                           tmp_path: Path) -> None:
    import geopandas as gpd

    out = tmp_path / "map.tif"
    result = run_cli(["predict", coded_run.masked, "--model", coded_run.run, "--out", out,
                      "--vectors", tmp_path / "map.gpkg", "--confidence", "--change-from",
                      coded_run.run, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    # The same model as an old checkpoint (no codes): the output indices, as before.
    old = _strip_codes(coded_run.run / "checkpoints" / "step_1.pt", tmp_path / "old.pt")
    assert load_checkpoint(old).codes is None and load_checkpoint(old).nodata_code == 255
    result = run_cli(["predict", coded_run.masked, "--model", old, "--out",
                      tmp_path / "old.tif", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    index = read(tmp_path / "old.tif")
    assert set(np.unique(index).tolist()) <= {0, 1, 2, 3, 255}
    assert [r["Value"] for r in read_rat_sidecar(tmp_path / "old.tif")] == ["0", "1", "2", "3"]
    with rasterio.open(tmp_path / "old.tif") as src:
        assert json.loads(src.tags(1)["CLASS_NAMES"]) == ["background", *CLASSES]

    table = np.full(256, 255, np.uint8)
    table[[0, 1, 2, 3]] = [0, *VALUES]
    coded = read(out)
    np.testing.assert_array_equal(coded, table[index])
    assert set(np.unique(coded).tolist()) <= {0, 5, 7, 9, 255}
    assert (coded[~coded_run.mask] == 255).all() and (coded[coded_run.mask] != 255).all()
    predicted = coded[coded_run.mask]
    assert not np.isin(predicted, [1, 2, 3]).any()  # no output index
    with rasterio.open(out) as src:
        assert src.nodata == 255
        cmap = src.colormap(1)
        assert [cmap[v][:3] for v in VALUES] == [rgb(c) for c in COLOURS]
        assert cmap[0] == (0, 0, 0, 255) and cmap[255][3] == 0
        assert [src.tags(1)[f"CLASS_{v}"] for v in VALUES] == list(CLASSES)
    rows = read_rat_sidecar(out)
    assert [(r["Value"], r["Class"], r["Count"]) for r in rows] == [
        (str(v), n, str(int((coded == v).sum())))
        for v, n in zip((0, *VALUES), ("background", *CLASSES), strict=True)]
    assert qml_entries(out.with_suffix(".qml")) == [
        (str(v), n, c) for v, n, c in zip((0, *VALUES), ("background", *CLASSES),
                                           ("#000000", *COLOURS), strict=True)]
    frame = gpd.read_file(tmp_path / "map.gpkg", layer="classes")
    assert list(frame.columns) == ["class_id", "class_code", "class_name", "area", "geometry"]
    np.testing.assert_allclose(frame.area, frame.geometry.area)  # m² (EPSG:32633)
    code_of = dict(zip(("background", *CLASSES), (0, *VALUES), strict=True))
    assert frame.class_code.tolist() == [code_of[n] for n in frame.class_name]
    assert sorted(set(frame.class_code)) == sorted(set(np.unique(predicted).tolist()))
    for code in set(frame.class_code):
        area = frame[frame.class_code == code].geometry.area.sum()
        assert area == pytest.approx(int((coded == code).sum()) * 0.25)
    change = read(tmp_path / "map_change.tif")  # the same model: unchanged, nodata kept
    assert (change[coded_run.mask] == 0).all() and (change[~coded_run.mask] == 255).all()
    confidence = read(tmp_path / "map_confidence.tif")
    assert (confidence[~coded_run.mask] == 255).all()
    assert (confidence[coded_run.mask] <= 100).all()


def test_cli_batch_mosaic_of_codes(coded_run: SimpleNamespace, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("test_0", "test_1"):
        (folder / f"{name}.tif").write_bytes(
            (coded_run.image.parent / f"{name}.tif").read_bytes())
    out = tmp_path / "out"
    result = run_cli(["predict", folder, "--model", coded_run.run, "--out", out, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    vrt = out / "mosaic.vrt"
    band = ET.parse(vrt).getroot().find("VRTRasterBand")
    assert band.findtext("NoDataValue") == "255"
    entries = band.findall("ColorTable/Entry")
    for value, colour in zip(VALUES, COLOURS, strict=True):
        assert tuple(int(entries[value].get(k)) for k in ("c1", "c2", "c3")) == rgb(colour)
    categories = [c.text or "" for c in band.findall("CategoryNames/Category")]
    assert [categories[v] for v in VALUES] == list(CLASSES)
    assert [row.findall("F")[0].text for row in band.findall(
        "GDALRasterAttributeTable/Row")] == ["0", "5", "7", "9"]
    mosaic = read(vrt)
    parts = [read(out / f"test_{i}_classes.tif") for i in (0, 1)]
    np.testing.assert_array_equal(mosaic, np.concatenate(parts, axis=1))
    assert set(np.unique(mosaic).tolist()) <= {0, 5, 7, 9}


def test_explicit_codes_end_to_end(tmp_path: Path, coded_run: SimpleNamespace) -> None:
    """``code:``, ``background: {code}`` and ``nodata_code`` reach the class map."""
    path = variant(coded_run.yaml, "explicit.yaml", classes=[{"code": 50}, {}, {"code": 1}],
                   background={"name": "other", "code": 3}, nodata_code=0)
    run = tmp_path / "run"
    result = run_cli(["train", path, "--out", run, *TINY])
    assert result.exit_code == 0, (result.output, result.exception)
    ckpt = load_checkpoint(run)
    assert ckpt.codes == [3, 50, 7, 1] and ckpt.nodata_code == 0
    assert [c.name for c in ckpt.classes] == ["other", *CLASSES]
    out = tmp_path / "map.tif"
    result = run_cli(["predict", coded_run.masked, "--model", run, "--out", out, "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    old = _strip_codes(run / "checkpoints" / "step_1.pt", tmp_path / "old.pt")
    result = run_cli(["predict", coded_run.masked, "--model", old, "--out",
                      tmp_path / "old.tif", "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    table = np.full(256, 0, np.uint8)
    table[[0, 1, 2, 3]] = [3, 50, 7, 1]
    coded = read(out)
    np.testing.assert_array_equal(coded, table[read(tmp_path / "old.tif")])
    assert (coded[~coded_run.mask] == 0).all() and (coded[coded_run.mask] != 0).all()
    with rasterio.open(out) as src:
        assert src.nodata == 0
        assert src.colormap(1)[50][:3] == rgb(COLOURS[0]) and src.colormap(1)[0][3] == 0
    assert [r["Value"] for r in read_rat_sidecar(out)] == ["3", "50", "7", "1"]
