"""Tests for geoidec.inference.sliding (row-band blending predictor)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from geoidec.data.tiling import grid_windows
from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.inference.window_grid import WEIGHT_FLOOR, blend_weights


def coord_reader(height: int, width: int, tile: int, nodata: np.ndarray | None = None):
    """Reader whose image holds (row, col, window row_off, window col_off) per pixel.

    Pixels outside the scene are padded with -1 and flagged invalid, like a real reader.
    """
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    valid_scene = np.ones((height, width), bool) if nodata is None else ~nodata

    def read(window: Window) -> tuple[np.ndarray, np.ndarray]:
        r0, c0 = int(window.row_off), int(window.col_off)
        assert (int(window.height), int(window.width)) == (tile, tile)
        image = np.full((4, tile, tile), -1.0, np.float32)
        valid = np.zeros((tile, tile), bool)
        h = min(tile, height - r0)
        w = min(tile, width - c0)
        image[0, :h, :w] = rows[r0 : r0 + h, c0 : c0 + w]
        image[1, :h, :w] = cols[r0 : r0 + h, c0 : c0 + w]
        image[2], image[3] = r0, c0
        valid[:h, :w] = valid_scene[r0 : r0 + h, c0 : c0 + w]
        return image, valid

    return read


def collect(pred: SlidingWindowPredictor, read, height: int, width: int):
    bands = list(pred.run(read, height, width))
    starts = [b[0] for b in bands]
    probs = np.concatenate([b[1] for b in bands], axis=1)
    valid = np.concatenate([b[2] for b in bands], axis=0)
    return bands, starts, probs, valid


def test_blend_weights_shape_and_ramp() -> None:
    w = blend_weights(8, 2)
    assert w.shape == (8, 8) and w.dtype == np.float32
    assert (w > 0).all() and w.max() == 1.0
    assert np.all(w[2:6, 2:6] == 1.0)
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    r0 = (1 - math.cos(math.pi * 0.25)) / 2
    r1 = (1 - math.cos(math.pi * 0.75)) / 2
    np.testing.assert_allclose(w[4, :2], [r0, r1], rtol=1e-6)
    assert r0 + r1 == pytest.approx(1.0)  # neighbours' ramps sum to one
    assert blend_weights(6, 0).min() == 1.0
    assert blend_weights(512, 128).min() == pytest.approx(WEIGHT_FLOOR)
    with pytest.raises(ValueError):
        blend_weights(4, 5)


@pytest.mark.parametrize(
    ("tile", "overlap", "batch"), [(8, 2, 1), (8, 4, 3), (16, 5, 4), (7, 0, 2), (32, 8, 8)]
)
def test_constant_map_is_reproduced(tile: int, overlap: int, batch: int) -> None:
    h, w, k = 29, 23, 3
    const = torch.tensor([0.2, 0.5, 0.3])

    def predict(x: torch.Tensor) -> torch.Tensor:
        return const.view(1, k, 1, 1).expand(x.shape[0], k, tile, tile).clone()

    pred = SlidingWindowPredictor(
        predict, num_classes=k, tile=tile, overlap=overlap, batch_size=batch
    )
    _, _, probs, valid = collect(pred, coord_reader(h, w, tile), h, w)
    assert probs.shape == (k, h, w) and probs.dtype == np.float32
    np.testing.assert_allclose(
        probs, np.broadcast_to(const.numpy()[:, None, None], probs.shape), atol=1e-6
    )
    assert valid.all()


def test_position_dependent_map_independent_of_tiling() -> None:
    """A predict that depends only on absolute position gives the same scene for any tiling."""
    h, w = 37, 41

    def predict(x: torch.Tensor) -> torch.Tensor:
        r, c = x[:, 0], x[:, 1]
        p = torch.stack([torch.sigmoid((r - c) / 10), 1 - torch.sigmoid((r - c) / 10)], dim=1)
        return p

    expected = None
    for tile, overlap, batch in [(8, 2, 1), (16, 6, 5), (12, 0, 2), (64, 16, 1)]:
        pred = SlidingWindowPredictor(
            predict, num_classes=2, tile=tile, overlap=overlap, batch_size=batch
        )
        _, _, probs, _ = collect(pred, coord_reader(h, w, tile), h, w)
        if expected is None:
            rr, cc = np.mgrid[0:h, 0:w]
            s = 1 / (1 + np.exp(-(rr - cc) / 10))
            expected = np.stack([s, 1 - s]).astype(np.float32)
        np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_per_window_constants_blend_by_hand() -> None:
    # tile 8, overlap 2, stride 6; scene 8 x 14 -> windows at cols 0 and 6 (overlap 6..7).
    tile, overlap = 8, 2

    def predict(x: torch.Tensor) -> torch.Tensor:
        is_b = (x[:, 3, 0, 0] > 0).float().view(-1, 1, 1)  # window col_off > 0
        ones = torch.ones(x.shape[0], tile, tile)
        return torch.stack([ones * (1 - is_b), ones * is_b], dim=1)

    pred = SlidingWindowPredictor(predict, num_classes=2, tile=tile, overlap=overlap, batch_size=2)
    _, _, probs, _ = collect(pred, coord_reader(8, 14, tile), 8, 14)
    r0 = (1 - math.cos(math.pi / 4)) / 2  # 0.1464: weight of window B at col 6
    r1 = (1 + math.sqrt(2) / 2) / 2  # 0.8536: weight of window B at col 7
    np.testing.assert_allclose(probs[1, 3, 6], r0, rtol=1e-5)
    np.testing.assert_allclose(probs[1, 3, 7], r1, rtol=1e-5)
    np.testing.assert_allclose(probs[0, 3, 7], 1 - r1, rtol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, rtol=1e-6)  # weights sum right
    assert np.all(probs[1, :, :6] == 0.0) and np.all(probs[1, :, 8:] == 1.0)  # one window
    assert np.all(np.diff(probs[1, 3]) >= 0)  # smooth, monotone transition
    # Edge rows (weight near the floor, single window row) still carry their prediction.
    assert probs[1, 0, 13] == pytest.approx(1.0) and probs[0, 7, 0] == pytest.approx(1.0)


def reference(h: int, w: int, tile: int, overlap: int, k: int, seed: int) -> np.ndarray:
    """Full-scene (non-streaming) blending of per-window random probabilities."""
    acc = np.zeros((k, h, w))
    wsum = np.zeros((h, w))
    wts = blend_weights(tile, overlap).astype(np.float64)
    for win in grid_windows(h, w, tile, tile - overlap):
        r, c = int(win.row_off), int(win.col_off)
        p = window_probs(r, c, tile, k, seed).numpy().astype(np.float64)
        acc[:, r : r + tile, c : c + tile] += (p * wts)[:, : h - r, : w - c]
        wsum[r : r + tile, c : c + tile] += wts[: h - r, : w - c]
    return acc / wsum


def window_probs(r: int, c: int, tile: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 100003 + r * 1009 + c)
    return torch.softmax(torch.randn(k, tile, tile, generator=g), dim=0)


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "batch"),
    [(45, 31, 16, 4, 3), (16, 16, 16, 4, 1), (5, 3, 8, 2, 2), (5, 30, 8, 3, 4), (33, 6, 8, 1, 2)],
)
def test_bands_cover_once_and_match_reference(
    h: int, w: int, tile: int, overlap: int, batch: int
) -> None:
    k = 4

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [
                window_probs(int(x[i, 2, 0, 0]), int(x[i, 3, 0, 0]), tile, k, 7)
                for i in range(len(x))
            ]
        )

    calls: list[tuple[int, int]] = []
    pred = SlidingWindowPredictor(
        predict, num_classes=k, tile=tile, overlap=overlap, batch_size=batch
    )
    bands = list(
        pred.run(coord_reader(h, w, tile), h, w, progress=lambda d, t: calls.append((d, t)))
    )
    row = 0
    for start, probs, valid in bands:
        assert start == row
        n = probs.shape[1]
        assert 0 < n <= tile  # memory: a band never exceeds the tile height
        assert probs.shape == (k, n, w) and valid.shape == (n, w) and valid.dtype == bool
        row += n
    assert row == h
    full = np.concatenate([b[1] for b in bands], axis=1)
    np.testing.assert_allclose(full, reference(h, w, tile, overlap, k, 7), atol=1e-5)
    total = len(grid_windows(h, w, tile, tile - overlap))
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) == math.ceil(total / batch)


def test_invalid_pixels_come_back_false() -> None:
    h, w, tile = 20, 26, 8
    rng = np.random.default_rng(0)
    nodata = rng.random((h, w)) < 0.2
    nodata[:3, :5] = True

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 2, tile, tile), 0.5)

    pred = SlidingWindowPredictor(predict, num_classes=2, tile=tile, overlap=3, batch_size=3)
    _, _, _, valid = collect(pred, coord_reader(h, w, tile, nodata), h, w)
    np.testing.assert_array_equal(valid, ~nodata)


def test_small_scene_padding_is_cropped_and_valid() -> None:
    h, w, tile = 5, 3, 8
    pred = SlidingWindowPredictor(
        lambda x: torch.full((x.shape[0], 3, tile, tile), 1 / 3),
        num_classes=3,
        tile=tile,
        overlap=2,
    )
    bands, starts, probs, valid = collect(pred, coord_reader(h, w, tile), h, w)
    assert starts == [0] and probs.shape == (3, 5, 3) and valid.all()


def test_errors_propagate_and_reader_thread_stops() -> None:
    tile = 8

    def bad_predict(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 2, tile, tile - 1)

    pred = SlidingWindowPredictor(bad_predict, num_classes=2, tile=tile, overlap=2)
    with pytest.raises(ValueError, match="predict returned shape"):
        list(pred.run(coord_reader(30, 30, tile), 30, 30))

    def failing_read(window: Window):
        if window.row_off > 0:
            raise OSError("disk gone")
        return coord_reader(30, 30, tile)(window)

    ok = SlidingWindowPredictor(
        lambda x: torch.full((x.shape[0], 2, tile, tile), 0.5), num_classes=2, tile=tile, overlap=2
    )
    with pytest.raises(OSError, match="disk gone"):
        list(ok.run(failing_read, 30, 30))

    gen = ok.run(coord_reader(60, 60, tile), 60, 60)
    next(gen)
    gen.close()  # consumer stops early: prefetch thread is shut down
    assert not [t for t in threading.enumerate() if t.name.startswith("geoidec-read")]


def test_argument_validation() -> None:
    with pytest.raises(ValueError):
        SlidingWindowPredictor(lambda x: x, num_classes=2, tile=8, overlap=8)
    with pytest.raises(ValueError):
        SlidingWindowPredictor(lambda x: x, num_classes=0, tile=8, overlap=2)
    with pytest.raises(ValueError):
        SlidingWindowPredictor(lambda x: x, num_classes=2, tile=8, overlap=2, batch_size=0)


# ------------------------------------------------------------------- vertical strips
@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "strip_width"),
    [(37, 200, 16, 4, 40), (50, 333, 32, 8, 64), (20, 150, 16, 7, 30), (9, 97, 16, 8, 33),
     (10, 400, 32, 16, 100), (30, 120, 16, 11, 20), (12, 64, 16, 0, 16)],
)
def test_strips_equal_one_pass(h: int, w: int, tile: int, overlap: int,
                               strip_width: int) -> None:
    """Strips use the scene's own windows and join exactly: same probabilities as one pass
    over the whole width, every pixel once, with a window-position-dependent predict."""
    from geoidec.inference.strips import StripPredictor

    def predict(x: torch.Tensor) -> torch.Tensor:
        r, c, wr, wc = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
        p = torch.stack([torch.sigmoid((r - c) / 10 + (c - wc) / 7),
                         torch.sigmoid((c - wc - r + wr) / 5), torch.ones_like(r)], dim=1)
        return p / p.sum(dim=1, keepdim=True)

    pred = SlidingWindowPredictor(predict, num_classes=3, tile=tile, overlap=overlap,
                                  batch_size=3)
    _, _, full, _ = collect(pred, coord_reader(h, w, tile), h, w)
    strips = StripPredictor(pred, strip_width=strip_width)
    groups = strips.strips(w)
    assert len(groups) > 1
    assert sum(groups, []) == sorted({int(x.col_off) for x in pred.windows(h, w)})
    out = np.full((3, h, w), np.nan, np.float32)
    cover = np.zeros((h, w), int)
    seen = []
    for row, col, probs, valid in strips.run(coord_reader(h, w, tile), h, w,
                                             lambda d, t: seen.append((d, t))):
        n, width = valid.shape
        assert probs.shape == (3, n, width) and valid.all()
        out[:, row : row + n, col : col + width] = probs
        cover[row : row + n, col : col + width] += 1
    assert (cover == 1).all()
    np.testing.assert_allclose(out, full, atol=1e-6)
    assert seen[-1][0] == seen[-1][1] == len(pred.windows(h, w))
