"""Tests for geoidec.data.tiling (window layouts via torchgeo samplers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from geoidec.data.tiling import PixelGeoDataset, grid_windows, random_windows


def _offsets(windows: list[Window]) -> list[tuple[int, int]]:
    return [(int(w.row_off), int(w.col_off)) for w in windows]


def _coverage(height: int, width: int, windows: list[Window]) -> np.ndarray:
    cover = np.zeros((height, width), dtype=int)
    for w in windows:
        r, c = int(w.row_off), int(w.col_off)
        cover[r : r + int(w.height), c : c + int(w.width)] += 1
    return cover


def test_pixel_dataset_index() -> None:
    ds = PixelGeoDataset(5, 6)
    x, y, _ = ds.bounds
    assert (x.start, x.stop, y.start, y.stop) == (0, 6, 0, 5)
    assert ds.res == (1.0, 1.0)
    assert ds.crs is None
    assert len(ds) == 1
    assert ds.index.index.name == "datetime"
    assert ds[slice(0, 1)] == {"bounds": slice(0, 1)}


def test_grid_exact_fit() -> None:
    # h=10: rows 0,3,6 (6+4=10); w=7: cols 0,3 (3+4=7). No shift needed.
    wins = grid_windows(10, 7, 4, 3)
    assert _offsets(wins) == [(0, 0), (0, 3), (3, 0), (3, 3), (6, 0), (6, 3)]
    assert all(w.width == 4 and w.height == 4 for w in wins)
    assert (_coverage(10, 7, wins) >= 1).all()


def test_grid_edge_shift() -> None:
    # h=11: torchgeo rows 0,3,6,9 -> 9 overhangs, shifted to 7; w=9: cols 0,3,6 -> 5.
    wins = grid_windows(11, 9, 4, 3)
    rows = [0, 3, 6, 7]
    cols = [0, 3, 5]
    assert _offsets(wins) == [(r, c) for r in rows for c in cols]
    assert len(set(_offsets(wins))) == len(wins)
    assert (_coverage(11, 9, wins) >= 1).all()
    for w in wins:
        assert w.row_off + w.height <= 11 and w.col_off + w.width <= 9


def test_grid_no_overlap_stride_equals_size() -> None:
    wins = grid_windows(8, 12, 4, 4)
    assert _offsets(wins) == [(r, c) for r in (0, 4) for c in (0, 4, 8)]
    assert (_coverage(8, 12, wins) == 1).all()


@pytest.mark.parametrize(
    ("h", "w", "size", "stride"), [(37, 53, 8, 5), (64, 64, 16, 16), (17, 100, 16, 1)]
)
def test_grid_properties(h: int, w: int, size: int, stride: int) -> None:
    wins = grid_windows(h, w, size, stride)
    offs = _offsets(wins)
    assert offs == sorted(offs)
    assert len(set(offs)) == len(offs)
    assert (_coverage(h, w, wins) >= 1).all()
    for win in wins:
        assert 0 <= win.row_off and win.row_off + size <= h
        assert 0 <= win.col_off and win.col_off + size <= w
    # consecutive origins never further apart than the stride
    rows = sorted({r for r, _ in offs})
    assert all(b - a <= stride for a, b in zip(rows, rows[1:], strict=False))


def test_grid_small_raster() -> None:
    assert _offsets(grid_windows(3, 2, 4, 3)) == [(0, 0)]
    wins = grid_windows(3, 9, 4, 3)  # short raster: one window row at 0, overhanging
    assert _offsets(wins) == [(0, 0), (0, 3), (0, 5)]
    assert all(w.height == 4 for w in wins)
    assert _offsets(grid_windows(9, 3, 4, 4)) == [(0, 0), (4, 0), (5, 0)]


@pytest.mark.parametrize(("size", "stride"), [(0, 1), (-4, 1), (4, 0), (4, 5), (4, -1)])
def test_grid_invalid_arguments(size: int, stride: int) -> None:
    with pytest.raises(ValueError):
        grid_windows(10, 10, size, stride)


def test_random_deterministic_and_inside() -> None:
    a = random_windows(50, 40, 8, 20, torch.Generator().manual_seed(3))
    b = random_windows(50, 40, 8, 20, torch.Generator().manual_seed(3))
    c = random_windows(50, 40, 8, 20, torch.Generator().manual_seed(4))
    assert _offsets(a) == _offsets(b)
    assert _offsets(a) != _offsets(c)
    assert len(a) == 20
    for w in a + c:
        assert w.width == 8 and w.height == 8
        assert 0 <= w.row_off <= 42 and 0 <= w.col_off <= 32


def test_random_reaches_every_offset_and_keeps_global_rng() -> None:
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    wins = random_windows(10, 7, 4, 400, torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(1), expected)  # global RNG untouched
    assert {int(w.row_off) for w in wins} == set(range(7))
    assert {int(w.col_off) for w in wins} == set(range(4))


def test_random_small_raster() -> None:
    wins = random_windows(3, 20, 8, 10, torch.Generator().manual_seed(0))
    assert all(w.row_off == 0 and w.height == 8 for w in wins)
    assert all(0 <= w.col_off <= 12 for w in wins)
    assert _offsets(random_windows(2, 2, 8, 3, torch.Generator())) == [(0, 0)] * 3
    assert random_windows(10, 10, 4, 0, torch.Generator()) == []
    with pytest.raises(ValueError):
        random_windows(10, 10, 0, 3, torch.Generator())
