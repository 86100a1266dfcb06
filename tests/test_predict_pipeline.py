"""The fast prediction pipeline (issue 15) computes what the plain arithmetic computes.

Overviews in numpy (mode and average, nodata left out) against hand-computed cells and
GDAL's own level sizes; table-lookup normalisation against the float32 arithmetic; windows
read into the reused batch buffers against a plain reader; blended sums against blended
probabilities; the branch-free class argmax against numpy's; one and several threads giving
the same files; the channels-last layout (training and prediction) and a compiled model
giving the same maps; checkpoints saved in the standard layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from affine import Affine
from conftest import varied_checkpoint
from rasterio.windows import Window

from geoidec.checkpoint import load_checkpoint, save_checkpoint
from geoidec.config.choices import TTA_WORDS
from geoidec.data.base import Scene
from geoidec.data.normalization import Normalization
from geoidec.data.scene_reader import SceneReader
from geoidec.inference.conversion import is_cog
from geoidec.inference.forward import TTA_VIEWS, probability_fn
from geoidec.inference.layers import argmax_classes
from geoidec.inference.overviews import downsample, overview_chain, overview_sizes
from geoidec.inference.predict import predict_scene
from geoidec.inference.reading import ThreadReaders, WindowReader, lookup_table
from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.models import build_model

TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0)
NAMES = ["background", "field", "roof", "water"]


def _write(path: Path, data: np.ndarray, **extra: object) -> Path:
    count, h, w = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count,
                           dtype=data.dtype, crs="EPSG:32633", transform=TRANSFORM,
                           tiled=True, blockxsize=64, blockysize=64, **extra) as dst:
            dst.write(data)
    return path


# ---------------------------------------------------------------------- overviews
def test_mode_and_average_of_hand_made_cells() -> None:
    n = 255
    data = np.array([[1, 1, 2, 3, n, n, 4, 6, 7],
                     [1, 2, 2, 3, n, 5, 9, n, 8]], dtype=np.uint8)
    # cells: [1 1 / 1 2] -> 1 (3 of 4); [2 3 / 2 3] -> tie 2-2: the first, 2;
    # [n n / n 5] -> 5 (nodata left out); [4 6 / 9 n] -> all once: the first, 4;
    # the odd last column (7 / 8) is left out, as GDAL's level is 9 // 2 = 4 wide
    np.testing.assert_array_equal(downsample(data, "mode", n), [[1, 2, 5, 4]])
    # means of the valid values, rounded half up: 5/4 -> 1, 10/4 -> 2.5 -> 3, 5, 19/3 -> 6
    np.testing.assert_array_equal(downsample(data, "average", n), [[1, 3, 5, 6]])
    assert downsample(np.array([[3, 4, 4]], np.uint8), "mode", n).tolist() == [[3]]
    nodata_cell = np.full((2, 2), n, np.uint8)
    assert downsample(nodata_cell, "mode", n)[0, 0] == n
    assert downsample(nodata_cell, "average", n)[0, 0] == n
    bands = np.stack([data, data[::-1]])
    assert downsample(bands, "mode", n).shape == (2, 1, 4)


def test_mode_without_nodata_takes_the_first_most_frequent_value() -> None:
    """A band with no nodata takes the branch-free path: every kind of 2 x 2 cell by hand,
    then random cells with many ties, with and without nodata, against a per-cell count."""
    cells = {  # (a b / c d) -> mode, ties to the first value in row-major order
        (1, 1, 2, 3): 1, (1, 2, 2, 3): 2, (1, 2, 3, 3): 3, (1, 2, 3, 4): 1, (1, 2, 2, 1): 1,
        (1, 2, 1, 2): 1, (1, 2, 3, 2): 2, (4, 4, 4, 4): 4, (1, 2, 2, 2): 2, (3, 1, 1, 3): 3}
    top = np.array([v for cell in cells for v in cell[:2]], np.uint8)
    bottom = np.array([v for cell in cells for v in cell[2:]], np.uint8)
    np.testing.assert_array_equal(downsample(np.stack([top, bottom]), "mode", 255)[0],
                                  list(cells.values()))

    def by_count(data: np.ndarray, nodata: int) -> np.ndarray:
        h, w = data.shape[0] // 2, data.shape[1] // 2
        out = np.empty((h, w), np.uint8)
        for i in range(h):
            for j in range(w):
                cell = [int(v) for v in data[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].ravel()]
                counts = [cell.count(v) if v != nodata else 0 for v in cell]
                out[i, j] = cell[counts.index(max(counts))]  # all nodata: nodata
        return out

    rng = np.random.default_rng(4)
    for values in ([0, 1, 2], [0, 1, 2, 255], [5, 255]):
        data = rng.choice(np.array(values, np.uint8), (41, 67))
        np.testing.assert_array_equal(downsample(data, "mode", 255), by_count(data, 255))


def test_average_without_nodata_rounds_half_up_like_the_masked_path() -> None:
    """A band with no nodata takes the direct (sum + 2) // 4 path: hand-computed means
    (6/4 = 1.5 -> 2, 1018/4 = 254.5 -> 255, 2/4 -> 1, 1/4 -> 0), the same values as the
    nodata-aware path gives on random data once one nodata pixel forces it."""
    data = np.array([[0, 1, 254, 255, 1, 0, 0, 0],
                     [2, 3, 254, 255, 1, 0, 1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(downsample(data, "average", 7), [[2, 255, 1, 0]])
    rng = np.random.default_rng(1)
    band = rng.integers(0, 250, (64, 96), dtype=np.uint8)
    forced = band.copy()
    forced[-1, -1] = 255  # one nodata pixel in the last cell: the masked path runs
    direct, masked = downsample(band, "average", 255), downsample(forced, "average", 255)
    np.testing.assert_array_equal(direct[:-1], masked[:-1])
    np.testing.assert_array_equal(direct[-1, :-1], masked[-1, :-1])


def test_overview_levels_are_gdal_auto_levels(tmp_path: Path) -> None:
    """The chain's levels are those GDAL's COG driver makes itself (OVERVIEWS=AUTO), and
    the COG keeps them."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4, (1, 700, 1100), dtype=np.uint8)
    src = _write(tmp_path / "map.tif", data, nodata=255)
    rasterio.shutil.copy(src, tmp_path / "gdal.tif", driver="COG", BLOCKSIZE=256,
                         OVERVIEWS="AUTO", OVERVIEW_RESAMPLING="MODE")
    with rasterio.open(tmp_path / "gdal.tif") as gdal:
        gdal_sizes = []
        for i in range(len(gdal.overviews(1))):
            with rasterio.open(tmp_path / "gdal.tif", overview_level=i) as ovr:
                gdal_sizes.append((ovr.height, ovr.width))
    assert overview_sizes(700, 1100, 256) == gdal_sizes == [(350, 550), (175, 275), (87, 137)]
    chain = overview_chain(src, "mode", 255, 256)
    assert [p.name for p in chain] == ["map.tif.ovr", "map.tif.ovr.ovr", "map.tif.ovr.ovr.ovr"]
    with rasterio.open(chain[0]) as first:
        np.testing.assert_array_equal(first.read(1), downsample(data[0], "mode", 255))
    with rasterio.open(src) as opened:
        assert opened.overviews(1) == [2, 4, 8]


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lookup_table_is_the_float32_arithmetic(dtype: type) -> None:
    top = np.iinfo(dtype).max
    norm = Normalization(low=(3.0, 10.0), high=(200.0, float(top) * 0.9), mean=(0.4, 0.5),
                         std=(0.2, 0.3))
    table = lookup_table(norm, np.dtype(dtype))
    values = np.arange(top + 1, dtype=np.float32)
    image = np.stack([values, values])[:, None, :]
    expected = np.asarray(norm.standardize(norm.to_unit(image)), dtype=np.float32)[:, 0]
    np.testing.assert_array_equal(table, expected)


@pytest.mark.parametrize("kind", ["uint8", "uint16-nodata-fill", "float32-nan"])
def test_window_reader_equals_the_plain_reading(tmp_path: Path, kind: str) -> None:
    """read_into (table lookup or arithmetic, mask only when needed) gives exactly what
    reading floats, masking and normalising gives, edge windows mirrored."""
    rng = np.random.default_rng(1)
    extra: dict[str, object] = {}
    fill: tuple = ()
    if kind == "uint8":
        data = rng.integers(0, 256, (3, 90, 100), dtype=np.uint8)
    elif kind == "uint16-nodata-fill":
        data = rng.integers(0, 4000, (3, 90, 100), dtype=np.uint16)
        data[:, :7, :9] = 0
        data[1, 50:60, 50:60] = 17  # band 2's fill value
        extra, fill = {"nodata": 0}, (None, 17.0, None)
    else:
        data = rng.random((3, 90, 100)).astype(np.float32) * 1000
        data[2, 10:20, 30:40] = np.nan
    path = _write(tmp_path / "scene.tif", data, **extra)
    norm = Normalization(low=(5.0,) * 3, high=(900.0,) * 3, mean=(0.4,) * 3, std=(0.2,) * 3,
                         fill=fill)
    scene = Scene(name="s", image=path, fill=fill)
    reader = WindowReader(ThreadReaders(scene), [norm, norm])
    with SceneReader(scene) as plain:
        assert plain.all_valid == (kind == "uint8")
        for window in (Window(10, 20, 64, 64), Window(0, 0, 64, 64), Window(60, 50, 64, 64)):
            x = np.full((6, 64, 64), np.nan, np.float32)
            valid = np.zeros((64, 64), bool)
            reader.read_into(window, x, valid)
            h = min(64, 90 - int(window.row_off))
            w = min(64, 100 - int(window.col_off))
            image, ok = plain.read_image(Window(window.col_off, window.row_off, w, h))
            expected = np.asarray(norm.standardize(norm.to_unit(image)), np.float32)
            expected[:, ~ok] = 0.0
            np.testing.assert_array_equal(x[:3, :h, :w], expected)
            np.testing.assert_array_equal(x[3:, :h, :w], expected)
            np.testing.assert_array_equal(valid[:h, :w], ok)
            assert not valid[h:].any() and not valid[:, w:].any()
            assert np.isfinite(x).all()
    reader.readers.close()


# ---------------------------------------------------------------- predictor and sums
def _local(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(torch.nn.functional.avg_pool2d(x, 3, 1, 1) * 5, dim=1)


def test_batch_buffers_and_sums_equal_a_plain_reader(tmp_path: Path) -> None:
    """Windows read into the reused buffer ring (three slots, eleven batches) blend to the
    probabilities of windows read one by one, and run_sums' acc / wsum is run's result."""
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, (3, 150, 170), dtype=np.uint8)
    path = _write(tmp_path / "scene.tif", data)
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.5,) * 3, std=(0.25,) * 3)
    reader = WindowReader(ThreadReaders(Scene(name="s", image=path)), [norm])

    def plain(window: Window) -> tuple[np.ndarray, np.ndarray]:
        return reader(window)  # no read_into: the stacking path

    def predictor() -> SlidingWindowPredictor:
        return SlidingWindowPredictor(_local, num_classes=3, tile=32, overlap=8,
                                      batch_size=3)

    fast = list(predictor().run(reader, 150, 170))
    slow = list(predictor().run(plain, 150, 170))
    assert len(fast) == len(slow) > 3
    for (r1, p1, v1), (r2, p2, v2) in zip(fast, slow, strict=True):
        assert r1 == r2
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(v1, v2)
    for (row, acc, wsum, _), (r2, p2, _) in zip(predictor().run_sums(reader, 150, 170), slow,
                                                 strict=True):
        assert row == r2
        np.testing.assert_array_equal((acc / wsum).numpy(), p2)
    reader.readers.close()


def test_branch_free_argmax_equals_numpy() -> None:
    rng = np.random.default_rng(3)
    probs = rng.random((5, 40, 50)).astype(np.float32)
    probs[:, 0, :10] = 0.5  # ties: the first class wins, as in numpy
    probs[3, 1, :10] = probs[1, 1, :10]
    top, labels = argmax_classes(probs)
    np.testing.assert_array_equal(labels, probs.argmax(axis=0))
    np.testing.assert_array_equal(top, probs.max(axis=0))
    assert labels.dtype == np.uint8 and labels[0, 0] == 0


# ------------------------------------------------------------- whole scenes, settings
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model whose map is varied (calibrated logits)."""
    return varied_checkpoint(tmp_path_factory.mktemp("ckpt") / "step_0.pt", NAMES)


@pytest.fixture(scope="module")
def blocky_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(4)
    blocks = rng.integers(1, 255, (3, 20, 22), dtype=np.uint8)
    data = np.repeat(np.repeat(blocks, 16, axis=1), 16, axis=2)[:, :300, :340].copy()
    return _write(tmp_path_factory.mktemp("scene") / "scene.tif", data)


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_threads_change_nothing_in_the_outputs(tiny_checkpoint: Path, blocky_scene: Path,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread (inline writes, one reader, one conversion at a time) and four (readers,
    background writer, conversions side by side), strips of 100 px: the same files, COGs
    laid out from the written tiles (GDAL's COG driver never copies one)."""
    copies: list[object] = []
    monkeypatch.setattr(rasterio.shutil, "copy", lambda *a, **k: copies.append(a))
    ckpt = load_checkpoint(tiny_checkpoint)
    outs = {}
    for threads in (1, 4):
        out = tmp_path / f"t{threads}" / "map.tif"
        predict_scene(ckpt, blocky_scene, out, threads=threads, confidence=True,
                      probabilities=True, strip_width=100)
        outs[threads] = out
    for suffix in ("", "_confidence", "_probabilities"):
        a, b = (o.with_name(f"map{suffix}.tif") for o in (outs[1], outs[4]))
        np.testing.assert_array_equal(_read(a), _read(b))
        with rasterio.open(a) as src:
            assert src.overviews(1) == [2] and is_cog(src)
            for band in range(1, src.count + 1):
                assert len(np.unique(src.read(band))) > 1
    leftovers = [p.name for p in outs[4].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [] and copies == []


def test_reading_threads_per_device() -> None:
    """On CPU one reader per two threads (the forward needs the cores), at most
    READERS_MAX; on a GPU every core but one reads."""
    from geoidec.inference.predictor_setup import READERS_MAX, reading_threads

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [reading_threads(cpu, t) for t in (None, 1, 2, 3, 4, 9, 64)] == [
        1, 1, 1, 1, 2, 4, READERS_MAX]
    assert [reading_threads(cuda, t) for t in (1, 3, 64)] == [1, 3, READERS_MAX]


def test_channels_last_and_compile_give_the_same_probabilities(tiny_checkpoint: Path) -> None:
    x = (torch.rand(2, 3, 64, 64) - 0.45) / 0.25
    plain = probability_fn(load_checkpoint(tiny_checkpoint).model.eval(), torch.device("cpu"),
                           channels_last=False)(x)
    model = load_checkpoint(tiny_checkpoint).model.eval()
    fast = probability_fn(model, torch.device("cpu"))(x)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    if not _has_compiler():
        pytest.skip("torch.compile needs a C++ compiler on CPU")
    model = load_checkpoint(tiny_checkpoint).model.eval()
    model.compile()
    compiled = probability_fn(model, torch.device("cpu"))(x)
    torch.testing.assert_close(compiled, plain, atol=1e-4, rtol=1e-4)


def test_test_time_augmentation_is_the_mean_over_the_symmetries(tiny_checkpoint: Path) -> None:
    """``tta``: the mean of the probabilities over the views, each turned back onto the
    input's pixels; checked against the same group written with rot90 (d4: 4 rotations,
    each with and without a left-right flip; flip: rotation by 180 is both flips)."""
    model = load_checkpoint(tiny_checkpoint).model.eval()
    one = probability_fn(model, torch.device("cpu"), channels_last=False)
    x = (torch.rand(2, 3, 32, 32) - 0.45) / 0.25

    def view(k: int, mirror: bool) -> torch.Tensor:
        v = torch.rot90(x, k, dims=(-2, -1))
        y = one(v.flip(-1) if mirror else v)
        return torch.rot90(y.flip(-1) if mirror else y, -k, dims=(-2, -1))

    d4 = torch.stack([view(k, m) for k in range(4) for m in (False, True)]).mean(0)
    flips = torch.stack([view(0, False), view(0, True), view(2, False), view(2, True)]).mean(0)
    for tta, want in (("d4", d4), ("flip", flips), ("none", one(x))):
        got = probability_fn(model, torch.device("cpu"), channels_last=False, tta=tta)(x)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(d4.sum(1), torch.ones(2, 32, 32))
    assert not torch.allclose(d4, one(x), atol=1e-4)  # the model is not symmetric
    with pytest.raises(ValueError, match="none, flip, d4"):
        probability_fn(model, torch.device("cpu"), tta="d8")
    # The words that model cards quote name every test-time augmentation computed.
    assert set(TTA_WORDS) == set(TTA_VIEWS)


def test_flip_tta_maps_a_mirrored_scene_to_the_mirrored_map(tiny_checkpoint: Path,
                                                            tmp_path: Path) -> None:
    """One window covering the scene: with ``tta="flip"`` the map of the left-right mirror
    of a scene is the mirror of its map (the mean over flips is symmetric); without, this
    untrained model's maps are not."""
    ckpt = load_checkpoint(tiny_checkpoint)
    data = np.random.default_rng(7).integers(1, 255, (3, 64, 64), dtype=np.uint8)
    scenes = {"a": _write(tmp_path / "a.tif", data),
              "m": _write(tmp_path / "m.tif", data[:, :, ::-1].copy())}
    agree = {}
    for tta in ("none", "flip"):
        maps = {}
        for key, scene in scenes.items():
            out = tmp_path / tta / f"{key}.tif"
            predict_scene(ckpt, scene, out, tile=64, overlap=0, tta=tta)
            maps[key] = _read(out)[0]
        agree[tta] = float((maps["a"][:, ::-1] == maps["m"]).mean())
    assert agree["flip"] >= 0.999, agree
    assert agree["none"] < 0.95, agree


def test_prediction_layout_is_chosen_per_device(tiny_checkpoint: Path) -> None:
    """Channels-last on CPU; the standard layout on CUDA, where fp16 convolutions ran faster
    in it (benchmarks/precision_layout.py). Building the forward converts the model, so
    this runs without a GPU."""
    for device, want in (("cpu", True), ("cuda", False)):
        model = load_checkpoint(tiny_checkpoint).model.eval()
        probability_fn(model, torch.device(device), amp=device == "cuda")
        conv = next(m for m in model.modules()
                    if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) is want, device


def _has_compiler() -> bool:
    import shutil

    return shutil.which("g++") is not None or shutil.which("clang++") is not None


def test_checkpoints_are_saved_in_the_standard_layout(tmp_path: Path) -> None:
    model = build_model("mobilenet_v3_small", [3], in_channels=3, aspp_channels=16)
    model.to(memory_format=torch.channels_last)
    path = save_checkpoint(tmp_path / "step_0.pt", model, {"step": 0})
    state = torch.load(path, weights_only=False)["state_dict"]
    assert all(t.is_contiguous() for t in state.values())


def test_evaluation_reading_pads_with_invalid_zeros(tmp_path: Path) -> None:
    """``mirror=False`` (evaluation): a window overhanging the scene reads as the plain
    read_image of the whole window, normalised, 0 and invalid outside the scene."""
    from geoidec.inference.reading import SingleReader

    rng = np.random.default_rng(5)
    path = _write(tmp_path / "small.tif", rng.integers(0, 256, (3, 40, 50), dtype=np.uint8))
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.5,) * 3, std=(0.25,) * 3)
    with SceneReader(Scene(name="s", image=path)) as reader:
        x, valid = WindowReader(SingleReader(reader), [norm], mirror=False)(Window(0, 0, 64, 64))
        image, ok = reader.read_image(Window(0, 0, 64, 64))
    expected = np.asarray(norm.standardize(norm.to_unit(image)), np.float32)
    expected[:, ~ok] = 0.0
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(valid, ok)
    assert ok[:40, :50].all() and not ok[40:].any() and (x[:, 40:] == 0).all()
