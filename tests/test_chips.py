"""Training chips: per-block class grids, content-filtered chip plans and the chip Dataset."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from geoidec.data.base import Scene
from geoidec.data.chip_plan import plan_chips
from geoidec.data.chips import ChipDataset
from geoidec.data.class_grid import build_class_grid
from geoidec.data.decoders import ValueDecoder
from geoidec.data.isprs import potsdam, vaihingen
from geoidec.data.normalization import Normalization
from geoidec.data.scene_reader import SceneReader
from geoidec.errors import DataError
from geoidec.tasks import TaskSchedule

NUM = 6  # background + five ISPRS classes (grid channel 6 counts ignored pixels)


def _hand_counts(label: np.ndarray) -> np.ndarray:
    """Counts per class 0..5 and, last, ignored (255) pixels."""
    counts = np.bincount(label.ravel(), minlength=256)
    return np.concatenate([counts[:NUM], [counts[255]]])


def _key(chips: list[tuple[int, Window]]) -> list[tuple[int, int, int, int, int]]:
    return [(s, int(w.col_off), int(w.row_off), int(w.width), int(w.height)) for s, w in chips]


# ---------------------------------------------------------------------------- grids
@pytest.mark.parametrize("band_rows", [16, 1024])
def test_grid_counts_match_bincount_potsdam(
    fake_potsdam: Path, fakes: ModuleType, band_rows: int
) -> None:
    spec = potsdam(fake_potsdam)
    scene = spec.scenes("train")[1]
    grid = build_class_grid(scene, spec.decoder, NUM, block=16, band_rows=band_rows)
    assert grid.cum.shape == (NUM + 1, 5, 5)
    label = fakes.expected_label_indices("potsdam", "2_11", size=64)
    for r0, c0, h, w in [(0, 0, 64, 64), (0, 0, 16, 16), (16, 32, 32, 16), (48, 0, 16, 64),
                         (32, 16, 32, 48)]:
        counts = grid.counts(Window(c0, r0, w, h))
        expected = _hand_counts(label[r0:r0 + h, c0:c0 + w])
        np.testing.assert_array_equal(counts, expected, err_msg=str((r0, c0, h, w)))


def test_grid_counts_ignore_and_padding_vaihingen(fake_vaihingen: Path, fakes: ModuleType) -> None:
    spec = vaihingen(fake_vaihingen)
    area1, area3 = spec.scenes("train")
    # Area 1: 64 x 80 with an ignored middle row (row 32).
    grid = build_class_grid(area1, spec.decoder, NUM, block=16, band_rows=32)
    label = fakes.expected_label_indices("vaihingen", 1)
    for r0, c0, h, w in [(0, 0, 64, 80), (32, 16, 16, 32), (16, 0, 32, 80)]:
        np.testing.assert_array_equal(grid.counts(Window(c0, r0, w, h)),
                                      _hand_counts(label[r0:r0 + h, c0:c0 + w]))
    assert grid.counts(Window(0, 32, 80, 16))[-1] == 80  # the black row
    # Area 3: 72 rows, not a multiple of the block: the padded 8 rows count as ignored.
    grid3 = build_class_grid(area3, spec.decoder, NUM, block=16, band_rows=16)
    label3 = fakes.expected_label_indices("vaihingen", 3)
    assert grid3.cum.shape == (NUM + 1, 6, 5)
    whole = grid3.counts(Window(0, 0, 64, 80))
    expected = _hand_counts(label3)
    expected[-1] += 8 * 64
    np.testing.assert_array_equal(whole, expected)
    assert whole.sum() == 80 * 64


# ----------------------------------------------------------------------------- plans
@pytest.fixture(scope="module")
def potsdam_grids(fake_potsdam: Path) -> tuple:
    spec = potsdam(fake_potsdam)
    scenes = spec.scenes("train")
    return spec, scenes, [build_class_grid(s, spec.decoder, NUM) for s in scenes]


def test_plan_is_deterministic(potsdam_grids: tuple) -> None:
    _, _, grids = potsdam_grids
    a = plan_chips(grids, [1, 2, 3, 4], 40, 32, torch.Generator().manual_seed(7))
    b = plan_chips(grids, [1, 2, 3, 4], 40, 32, torch.Generator().manual_seed(7))
    c = plan_chips(grids, [1, 2, 3, 4], 40, 32, torch.Generator().manual_seed(8))
    assert len(a) == 40
    assert _key(a) == _key(b)
    assert _key(a) != _key(c)
    for s, w in a:
        assert s in (0, 1)
        assert (int(w.width), int(w.height)) == (32, 32)
        assert 0 <= w.col_off <= 32 and 0 <= w.row_off <= 32  # inside the 64 px tiles
    # Both scenes (equal areas) are used.
    assert {s for s, _ in a} == {0, 1}


def test_plan_zero_count(potsdam_grids: tuple) -> None:
    _, _, grids = potsdam_grids
    assert plan_chips(grids, [5], 0, 32, torch.Generator().manual_seed(0)) == []


def _shares(spec, scenes, chips, classes) -> list[float]:  # noqa: ANN001
    out = []
    for s, window in chips:
        with SceneReader(scenes[s], spec.decoder) as reader:
            label = reader.read_label(window)
        out.append(float(np.isin(label, classes).sum() / label.size))
    return out


@pytest.mark.parametrize(("classes", "fraction"), [([5], 0.05), ([1, 2, 3, 4], 0.5)])
def test_every_chip_holds_the_step_classes(
    potsdam_grids: tuple, classes: list[int], fraction: float
) -> None:
    spec, scenes, grids = potsdam_grids
    chips = plan_chips(grids, classes, 30, 32, torch.Generator().manual_seed(3),
                       min_class_fraction=fraction)
    assert len(chips) == 30
    shares = _shares(spec, scenes, chips, classes)
    assert min(shares) >= fraction, list(zip(_key(chips), shares, strict=True))


@pytest.mark.parametrize(("dataset", "classes", "fraction", "seed"),
                         [("potsdam", [4], 0.15, 3), ("vaihingen", [5], 0.002, 1)])
def test_every_chip_holds_the_step_classes_exactly(
    fake_potsdam: Path, fake_vaihingen: Path, dataset: str, classes: list[int],
    fraction: float, seed: int,
) -> None:
    spec = potsdam(fake_potsdam) if dataset == "potsdam" else vaihingen(fake_vaihingen)
    scenes = spec.scenes("train")
    grids = [build_class_grid(s, spec.decoder, NUM) for s in scenes]
    chips = plan_chips(grids, classes, 50, 32, torch.Generator().manual_seed(seed),
                       min_class_fraction=fraction)
    shares = _shares(spec, scenes, chips, classes)
    assert min(shares) >= fraction, min(shares)


def test_plan_fails_for_an_absent_class(tmp_path: Path) -> None:
    # A label raster holding values 1 and 3 only; class 3 (value 6) never occurs.
    values = np.ones((48, 48), dtype=np.int32)
    values[:, 24:] = 3
    path = tmp_path / "lab.tif"
    with rasterio.open(path, "w", driver="GTiff", width=48, height=48, count=1, dtype="int32",
                       transform=Affine.identity()) as dst:
        dst.write(values[None])
    decoder = ValueDecoder(values=(1.0, 3.0, 6.0))
    scene = Scene(name="s", image=path, label=path)
    grid = build_class_grid(scene, decoder, 4, block=16)
    np.testing.assert_array_equal(grid.counts(Window(0, 0, 48, 48)),
                                  [0, 48 * 24, 48 * 24, 0, 0])
    assert len(plan_chips([grid], [2], 4, 16, torch.Generator().manual_seed(0))) == 4
    with pytest.raises(DataError) as err:
        plan_chips([grid], [3], 4, 16, torch.Generator().manual_seed(0))
    assert "[3]" in str(err.value) and "min_class_fraction" in str(err.value)


def test_plan_repeats_when_few_chips_pass(potsdam_grids: tuple) -> None:
    _, _, grids = potsdam_grids
    chips = plan_chips(grids, [5], 200, 32, torch.Generator().manual_seed(0),
                       min_class_fraction=0.05)
    assert len(chips) == 200
    assert len(set(_key(chips))) < 200  # distinct windows are few, so some repeat


# ------------------------------------------------------------------------ ChipDataset
def test_chip_dataset(fake_potsdam: Path, fakes: ModuleType) -> None:
    spec = potsdam(fake_potsdam)
    scenes = spec.scenes("train")
    schedule = TaskSchedule.parse("4-1", spec.class_names)
    norm = Normalization(low=(0.0,) * 3, high=(255.0,) * 3, mean=(0.5,) * 3, std=(0.25,) * 3)
    chips = [(0, Window(0, 0, 32, 32)), (1, Window(16, 32, 32, 32)), (0, Window(48, 40, 32, 32))]
    raws = []
    for scene in scenes:
        with rasterio.open(scene.image) as src:
            raws.append(src.read().astype(np.float32))
    labels = [fakes.expected_label_indices("potsdam", t, size=64) for t in ("2_10", "2_11")]
    for step in (0, 1):
        lut = schedule.train_lut(step)
        data = ChipDataset(spec, scenes, chips, norm, lut)
        assert len(data) == 3
        for i, (s, w) in enumerate(chips):
            image, target = data[i]
            assert image.dtype == torch.float32 and target.dtype == torch.int64
            assert image.shape == (3, 32, 32) and target.shape == (32, 32)
            assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
            c0, r0 = int(w.col_off), int(w.row_off)
            c1, r1 = min(c0 + 32, 64), min(r0 + 32, 64)
            h, wd = r1 - r0, c1 - c0
            np.testing.assert_allclose(image[:, :h, :wd].numpy(),
                                       raws[s][:, r0:r1, c0:c1] / 255.0, rtol=1e-6)
            lab = labels[s][r0:r1, c0:c1]
            expected = np.zeros_like(lab, dtype=np.int64)  # clutter and old/future -> 0
            if step == 0:
                for cls in (1, 2, 3, 4):
                    expected[lab == cls] = cls
            else:
                expected[lab == 5] = 5
            np.testing.assert_array_equal(target[:h, :wd].numpy(), expected)
            # Beyond the raster (third chip overhangs): ignore and zero image.
            assert (target[h:, :] == 255).all() and (target[:, wd:] == 255).all()
            assert (image[:, h:, :] == 0).all() and (image[:, :, wd:] == 0).all()
    # Pickles without open readers (DataLoader workers).
    import pickle

    clone = pickle.loads(pickle.dumps(data))
    torch.testing.assert_close(clone[1][1], data[1][1])


def test_small_scenes_get_coarser_cells_and_store_present_classes_only(
    fake_potsdam: Path,
) -> None:
    spec = potsdam(fake_potsdam)
    scene = spec.scenes("train")[0]
    grid = build_class_grid(scene, spec.decoder, NUM)
    assert grid.block == 32  # a 64 px tile is a small scene
    # every fake tile holds all six classes and no ignored pixel: all rows kept
    assert grid.present.tolist() == [0, 1, 2, 3, 4, 5, NUM]
    assert grid.totals().tolist() == [64, 960, 1024, 960, 1024, 64, 0]


def test_reader_cache_closes_the_least_recently_used(fake_potsdam: Path) -> None:
    from geoidec.data.scene_reader import ReaderCache

    spec = potsdam(fake_potsdam)
    scenes = spec.scenes("train") + spec.scenes("test")
    cache = ReaderCache(max_open=2)
    first = cache.get(0, scenes[0], spec.decoder)
    cache.get(1, scenes[1], spec.decoder)
    assert cache.get(0, scenes[0], spec.decoder) is first  # reused, now most recent
    cache.get(2, scenes[2], spec.decoder)  # evicts scene 1, the least recently used
    assert sorted(cache._open) == [0, 2]
    assert first._image.closed is False
    cache.close()
    assert first._image.closed and not cache._open


def test_plan_counts_chips_skipped_as_nodata(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """The log says how many candidates were skipped as mostly nodata and how many for
    lacking the step's classes; with a left half of nodata and a right half of class 1,
    every rejection is for nodata, and the counts add up to the draws."""
    values = np.ones((48, 48), np.int32)
    values[:, :24] = 0  # the label raster's nodata
    path = tmp_path / "lab.tif"
    with rasterio.open(path, "w", driver="GTiff", width=48, height=48, count=1, dtype="int32",
                       transform=Affine.identity(), nodata=0) as dst:
        dst.write(values[None])
    decoder = ValueDecoder(values=(1.0, 3.0, 6.0))
    grid = build_class_grid(Scene(name="s", image=path, label=path), decoder, 4, block=16)
    assert grid.counts(Window(0, 0, 48, 48))[-1] == 48 * 24
    with caplog.at_level("INFO", logger="geoidec"):
        chips = plan_chips([grid], [1], 20, 16, torch.Generator().manual_seed(0),
                           min_valid_fraction=0.5)
    assert len(chips) == 20
    for _, win in chips:  # each accepted chip is at least half valid
        assert int(win.col_off) + 16 - max(int(win.col_off), 24) >= 8
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("chips:")]
    assert len(lines) == 1, lines
    found = re.match(r"chips: (\d+) accepted of (\d+) drawn; (\d+) skipped as mostly nodata"
                     r".*, (\d+) without enough", lines[0])
    assert found, lines[0]
    accepted, drawn, nodata, classes = (int(x) for x in found.groups())
    assert (accepted, classes) == (20, 0)
    assert nodata > 0 and accepted + nodata + classes == drawn


def _grid_from_label(tmp_path: Path, label: np.ndarray, name: str = "bal"):  # noqa: ANN202
    """A ClassGrid of a value label raster (values 1..3 -> classes 1..3, 0 ignored)."""
    from affine import Affine

    from geoidec.data.base import Scene
    from geoidec.data.decoders import ValueDecoder

    path = tmp_path / f"{name}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=label.shape[1], height=label.shape[0],
                       count=1, dtype="uint8", transform=Affine.identity()) as dst:
        dst.write(label.astype(np.uint8), 1)
    decoder = ValueDecoder(values=(1.0, 2.0, 3.0), ignore_values=(0.0,))
    return build_class_grid(Scene(name, path, path), decoder, 4, block=16)


def test_cell_counts_match_the_label(tmp_path: Path) -> None:
    label = np.full((64, 48), 1, dtype=np.uint8)
    label[40:44, 20:30] = 3  # 4 rows x 10 columns: cells (2, 1) and (2, 0..1)
    grid = _grid_from_label(tmp_path, label)
    counts = grid.cell_counts(3)
    expected = np.zeros((4, 3), dtype=np.int64)
    expected[2, 1] = 4 * 10  # columns 20-29 all in cell column 1 (16-31)
    np.testing.assert_array_equal(counts, expected)
    assert grid.cell_counts(2).sum() == 0  # absent class
    assert grid.cell_counts(1).sum() == 64 * 48 - 40


def test_balanced_chips_find_a_rare_class(tmp_path: Path) -> None:
    label = np.full((256, 256), 1, dtype=np.uint8)
    label[200:208, 16:24] = 3  # 64 px of class 3 in one corner (0.1 % of the scene)
    grid = _grid_from_label(tmp_path, label)

    def holding(chips: list) -> int:
        return sum(int(grid.counts(w, inner=False)[3] > 0) for _, w in chips)

    uniform = plan_chips([grid], [1, 3], 200, 32, torch.Generator().manual_seed(0),
                         min_class_fraction=0.0, min_valid_fraction=0.0)
    balanced = plan_chips([grid], [1, 3], 200, 32, torch.Generator().manual_seed(0),
                          min_class_fraction=0.0, min_valid_fraction=0.0, balanced=1.0)
    again = plan_chips([grid], [1, 3], 200, 32, torch.Generator().manual_seed(0),
                       min_class_fraction=0.0, min_valid_fraction=0.0, balanced=1.0)
    assert _key(balanced) == _key(again)
    # a 32 px chip holds the 8 x 8 block from about 1 in 64 positions uniformly; balanced,
    # half the chips target class 3 and every one of those holds it
    assert holding(uniform) < 15
    assert 70 <= holding(balanced) <= 130
    for _, w in balanced:  # inside the raster
        assert 0 <= w.row_off <= 256 - 32 and 0 <= w.col_off <= 256 - 32
