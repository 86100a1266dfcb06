"""Prediction that survives scale and interruption: one scene shared by several processes
(torchrun, disjoint row bands, one output identical to a single process), and a prediction
killed mid-scene that leaves nothing under a final name and simply runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from conftest import free_port, run_main, varied_checkpoint

from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.inference.strips import StripPredictor

NAMES = ["background", "field", "roof", "water"]
TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0)


def _scene(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """3-band uint8 GeoTIFF of blocky colours with a nodata (0) corner."""
    rng = np.random.default_rng(seed)
    h, w = size
    blocks = rng.integers(1, 255, (3, h // 16 + 1, w // 16 + 1), dtype=np.uint8)
    data = np.repeat(np.repeat(blocks, 16, axis=1), 16, axis=2)[:, :h, :w].copy()
    data[:, :20, :30] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3,
                           dtype="uint8", crs="EPSG:32633", transform=TRANSFORM, nodata=0,
                           tiled=True, blockxsize=64, blockysize=64) as dst:
            dst.write(data)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny DeepLabV3 (random weights give varied maps), tile 64, overlap 16."""
    return varied_checkpoint(tmp_path_factory.mktemp("ckpt") / "step_0.pt", NAMES)


# ------------------------------------------------------------------- row shares
def _local_probs(x: torch.Tensor) -> torch.Tensor:
    """A 5x5 receptive field: the blend of neighbouring windows matters."""
    return torch.softmax(F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, 1) * 9,
                         dim=1)


@pytest.mark.parametrize("strip_width", [10_000, 100])
def test_row_shares_are_the_whole_scene_bit_for_bit(strip_width: int) -> None:
    """Rows [y0, y1) of a share equal the same rows of one run over the whole scene (exact
    equality: each pixel is blended from the same windows in the same order)."""
    rng = np.random.default_rng(1)
    h, w = 157, 203
    image = rng.random((3, h, w), dtype=np.float32)

    def read(window):  # noqa: ANN001, ANN202
        r, c = int(window.row_off), int(window.col_off)
        return image[:, r : r + 32, c : c + 32], np.ones((32, 32), bool)

    def run(rows: tuple[int, int] | None) -> tuple[np.ndarray, list[int]]:
        pred = SlidingWindowPredictor(_local_probs, num_classes=3, tile=32, overlap=12,
                                      batch_size=5)
        out = np.full((3, h, w), np.nan, np.float32)
        seen = []
        for row, col, probs, valid in StripPredictor(pred, strip_width=strip_width).run(
                read, h, w, rows=rows):
            assert valid.all()
            out[:, row : row + probs.shape[1], col : col + probs.shape[2]] = probs
            seen.extend(range(row, row + probs.shape[1]))
        return out, seen

    whole, _ = run(None)
    assert not np.isnan(whole).any()
    for world in (2, 3, 7):
        bounds = [r * h // world for r in range(world + 1)]
        merged = np.full_like(whole, np.nan)
        for y0, y1 in zip(bounds[:-1], bounds[1:], strict=True):
            part, seen = run((y0, y1))
            assert set(seen) == set(range(y0, y1)), (world, y0, y1)
            merged[:, y0:y1] = part[:, y0:y1]
            assert np.isnan(part[:, :y0]).all() and np.isnan(part[:, y1:]).all()
        np.testing.assert_array_equal(merged, whole)


# --------------------------------------------------------- torchrun, one output
def _read_all(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        info = {"crs": src.crs, "transform": src.transform, "nodata": src.nodata,
                "dtype": src.dtypes, "descriptions": src.descriptions,
                "overviews": src.overviews(1), "tags": src.tags(1),
                "colormap": src.colormap(1) if path.name.endswith("classes.tif") else None}
        return src.read(), info


def test_torchrun_shares_one_scene_into_one_identical_output(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = _scene(tmp_path / "scene.tif", (300, 260))
    extras = ["--confidence", "--probabilities", "--preview", "--quiet"]
    single = tmp_path / "single" / "scene_classes.tif"
    outcome = run_main(["predict", scene, "--model", checkpoint, "--out", single,
                        "--device", "cpu", *extras], monkeypatch)
    assert outcome.code == 0, outcome.stderr[-2000:]

    shared = tmp_path / "shared" / "scene_classes.tif"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("GEOIDEC_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "3",
         "--master_port", str(free_port()), "-m", "geoidec.cli.main", "predict", str(scene),
         "--model", str(checkpoint), "--out", str(shared), "--device", "cpu", *extras],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1, proc.stdout  # rank 0 alone reports

    for name in ("scene_classes.tif", "scene_classes_confidence.tif",
                 "scene_classes_probabilities.tif"):
        a, info_a = _read_all(single.parent / name)
        b, info_b = _read_all(shared.parent / name)
        np.testing.assert_array_equal(a, b, err_msg=name)
        info_a["tags"].pop("geoidec_checkpoint", None)
        info_b["tags"].pop("geoidec_checkpoint", None)
        assert info_a == info_b, name
    classes, _ = _read_all(shared)
    assert len(np.unique(classes[0][classes[0] != 255])) > 1  # a real map, not constant
    assert (classes[0][:20, :30] == 255).all()  # nodata corner kept
    assert sorted(p.name for p in shared.parent.iterdir()) == sorted(
        p.name for p in single.parent.iterdir())  # same files, no hidden part left
    assert not [p for p in shared.parent.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------ killed mid-scene
def _start_predict(checkpoint: Path, scene: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("GEOIDEC_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "geoidec.cli.main", "predict", str(scene), "--model",
         str(checkpoint), "--out", str(out), "--device", "cpu", "--batch-size", "1",
         "--confidence", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists(), f"prediction ended before {path.name} appeared"


@pytest.fixture(scope="module")
def large_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough (about 700 windows of 64 px) to be killed mid-scene."""
    return _scene(tmp_path_factory.mktemp("large") / "large.tif", (1200, 1000), seed=3)


def test_sigkill_mid_scene_leaves_no_final_output_and_a_rerun_completes(
        checkpoint: Path, large_scene: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "maps" / "large_classes.tif"
    proc = _start_predict(checkpoint, large_scene, out)
    _wait_for(out.with_name(f".{out.name}.partial.tif"), proc)
    time.sleep(0.5)  # some windows written into the partial file
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and not out.with_name("large_classes_confidence.tif").exists()

    rerun = run_main(["predict", large_scene, "--model", checkpoint, "--out", out,
                      "--device", "cpu", "--confidence", "--quiet"], monkeypatch)
    assert rerun.code == 0, rerun.stderr[-2000:]
    with rasterio.open(out) as src:
        assert (src.height, src.width) == (1200, 1000)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        labels = src.read(1)
    assert (labels[:20, :30] == 255).all() and (labels[20:] != 255).all()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]


def test_sigterm_mid_scene_removes_partial_outputs(checkpoint: Path, large_scene: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "maps" / "large_classes.tif"
    proc = _start_predict(checkpoint, large_scene, out)
    _wait_for(out.with_name(f".{out.name}.partial.tif"), proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "stopped by SIGTERM" in stderr.strip().splitlines()[-1]
    assert list(out.parent.iterdir()) == []  # nothing final, nothing partial


def test_parallel_window_readers_give_the_same_outputs(checkpoint: Path,
                                                       tmp_path: Path) -> None:
    """Several reading threads (each with its own GDAL handle, as on a GPU) write exactly
    what one thread writes."""
    from geoidec.checkpoint import load_checkpoint
    from geoidec.inference.predict import predict_scene

    scene = _scene(tmp_path / "scene.tif", (250, 190), seed=5)
    ckpt = load_checkpoint(checkpoint)
    outs = []
    for readers in (1, 4):
        out = tmp_path / f"r{readers}" / "classes.tif"
        predict_scene(ckpt, scene, out, batch_size=3, readers=readers, probabilities=True,
                      preview=True)
        outs.append(out)
    for name in ("classes.tif", "classes_probabilities.tif"):
        a, _ = _read_all(outs[0].parent / name)
        b, _ = _read_all(outs[1].parent / name)
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_layers_in_torch_match_numpy() -> None:
    """The GPU path of the output layers (torch) gives numpy's values: class map (first
    maximum on ties), confidence and probabilities (round half to even), change and the
    other map's classes (counted for the transition table), nodata."""
    from geoidec.inference.layers import output_layers as _layers
    from geoidec.inference.layers import output_layers_on as _layers_on
    from geoidec.inference.outputs import output_paths

    rng = np.random.default_rng(0)
    probs = rng.random((7, 9, 11)).astype(np.float32)  # 4 new + 3 old classes
    probs[:, 0, 0] = 0.5  # a tie: the first class wins
    probs[1, 0, 1] = 0.125  # rounds to 12 (half to even) in both
    valid = rng.random((9, 11)) > 0.2
    lut = np.array([0, 2, 1], np.uint8)
    paths = output_paths(Path("x.tif"), confidence=True, probabilities=True, change=True)
    acc, wsum = torch.from_numpy(probs), torch.ones(9, 11)  # sums of one window of weight 1
    expected = _layers(acc, wsum, torch.from_numpy(valid), 4, lut, paths)
    got = _layers_on(acc, wsum, torch.from_numpy(valid), 4, lut, paths)
    assert got.dtype == np.uint8 and got.shape == (1 + 1 + 4 + 1 + 1, 9, 11)
    np.testing.assert_array_equal(expected[-1][valid], probs[4:].argmax(axis=0)[valid])
    np.testing.assert_array_equal(got, expected)
    assert expected[0, 0, 0] == 0 and (expected[:, ~valid] == 255).all()


def test_background_writer_keeps_order_and_raises_errors() -> None:
    from geoidec.inference.sinks import Background as _Background

    seen: list[int] = []
    with _Background(seen.append, depth=2) as background:
        for i in range(50):
            background.submit(i)
    assert seen == list(range(50))

    def fail_at_3(i: int) -> None:
        if i == 3:
            raise OSError(28, "No space left on device")
        seen.append(i)

    seen.clear()
    with pytest.raises(OSError, match="No space"):
        with _Background(fail_at_3, depth=2) as background:
            for i in range(10):
                background.submit(i)
    assert seen[:3] == [0, 1, 2] and 3 not in seen
    assert len(seen) <= 3 + 2  # at most `depth` calls queued behind the failure ran

    seen.clear()
    with _Background(seen.append, depth=0) as background:  # inline (CPU prediction)
        background.submit(7)
        assert seen == [7]  # ran at once, in this thread
