"""Training chips: where to cut them (torchgeo's RandomGeoSampler, filtered by content) and a
torch Dataset that reads them.

For step t of an incremental task, a chip is kept only when at least
``min_class_fraction`` of its pixels belong to the classes learnt at step t (the "overlapped"
setting of the CISS literature applied to chips) and at least ``min_valid_fraction`` of it is
valid imagery. Class content is looked up in a per-scene grid of class counts per block, built
once by streaming the label raster in row bands (memory bounded by one band).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.windows import Window
from torch.utils.data import Dataset

from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import DataError, DatasetSpec, LabelDecoder, Scene, SceneReader
from geoidec.data.normalization import Normalization
from geoidec.data.tiling import random_windows

log = logging.getLogger(__name__)

BLOCK = 16
#: Scenes smaller than this many pixels get 32 px cells (VOC/ADE: thousands of small images).
SMALL_SCENE = 1024 * 1024


class ReaderCache:
    """At most ``max_open`` scene readers open at once (least recently used closed first), so
    datasets of tens of thousands of images stay under the open-file limit."""

    def __init__(self, max_open: int = 64) -> None:
        self.max_open = max_open
        self._open: OrderedDict[int, SceneReader] = OrderedDict()

    def get(self, index: int, scene: Scene, decoder: LabelDecoder | None) -> SceneReader:
        reader = self._open.pop(index, None)
        if reader is None:
            reader = SceneReader(scene, decoder)
            while len(self._open) >= self.max_open:
                self._open.popitem(last=False)[1].close()
        self._open[index] = reader
        return reader

    def close(self) -> None:
        for reader in self._open.values():
            reader.close()
        self._open.clear()


@dataclass
class ClassGrid:
    """Cumulative class counts per ``block`` x ``block`` cell of one scene's label.

    Only the classes present in the scene are stored (``present``, dataset indices; the
    last row counts ignored/invalid pixels, including the area outside the raster in the
    last partial cells). ``cum[k, i, j]`` counts pixels of ``present[k]`` in the cells above
    and left of cell (i, j), exclusive.
    """

    cum: np.ndarray
    present: np.ndarray
    num_classes: int
    block: int
    height: int
    width: int
    scene: Scene | None = None
    decoder: LabelDecoder | None = None

    def _expand(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.num_classes + 1, dtype=np.int64)
        out[self.present] = values
        return out

    def totals(self) -> np.ndarray:
        """Pixel counts per class over the whole scene (last entry: ignored)."""
        return self._expand(self.cum[:, -1, -1])

    def cell_counts(self, index: int) -> np.ndarray:
        """Pixels of class ``index`` (dataset index) in every cell, ``(rows, cols)`` int64."""
        rows, cols = self.cum.shape[1] - 1, self.cum.shape[2] - 1
        where = np.flatnonzero(self.present == index)
        if where.size == 0:
            return np.zeros((rows, cols), dtype=np.int64)
        c = self.cum[where[0]].astype(np.int64)
        return c[1:, 1:] - c[:-1, 1:] - c[1:, :-1] + c[:-1, :-1]

    def counts(self, window: Window, inner: bool = True) -> np.ndarray:
        """Pixel counts per class (dataset index; last entry: ignored) in the cells fully
        inside the window (``inner``) or in every cell the window touches."""
        b = self.block
        rows, cols = self.cum.shape[1] - 1, self.cum.shape[2] - 1
        start_r, stop_r = window.row_off / b, (window.row_off + window.height) / b
        start_c, stop_c = window.col_off / b, (window.col_off + window.width) / b
        if inner:
            r0, r1 = math.ceil(start_r), math.floor(stop_r)
            c0, c1 = math.ceil(start_c), math.floor(stop_c)
        else:
            r0, r1 = math.floor(start_r), math.ceil(stop_r)
            c0, c1 = math.floor(start_c), math.ceil(stop_c)
        r0, r1 = min(max(r0, 0), rows), min(max(r1, 0), rows)
        c0, c1 = min(max(c0, 0), cols), min(max(c1, 0), cols)
        c = self.cum
        if r1 <= r0 or c1 <= c0:
            return np.zeros(self.num_classes + 1, dtype=np.int64)
        return self._expand(c[:, r1, c1] - c[:, r0, c1] - c[:, r1, c0] + c[:, r0, c0])


def build_class_grid(
    scene: Scene, decoder: LabelDecoder, num_classes: int, block: int | None = None,
    band_rows: int = 1024,
) -> ClassGrid:
    """Stream a scene's label in row bands into a :class:`ClassGrid` (``num_classes``
    counts background; the extra last bin counts ignored pixels)."""
    bins = num_classes + 1
    with SceneReader(scene, decoder) as reader:
        h, w = reader.height, reader.width
        block = block or (32 if h * w < SMALL_SCENE else BLOCK)
        band_rows = max(block, band_rows - band_rows % block)
        gh, gw = -(-h // block), -(-w // block)
        grid = np.zeros((gh, gw, bins), dtype=np.int64)
        for row in range(0, h, band_rows):
            n = -(-min(band_rows, h - row) // block) * block
            _, label, _ = reader.read(Window(0, row, gw * block, n))
            flat = np.minimum(np.where(label == IGNORE_INDEX, num_classes, label), num_classes)
            cell = (np.arange(n)[:, None] // block) * gw + np.arange(gw * block)[None] // block
            counts = np.bincount((cell * bins + flat).ravel(), minlength=(n // block) * gw * bins)
            grid[row // block: row // block + n // block] = counts.reshape(-1, gw, bins)
    present = np.flatnonzero(grid.sum(axis=(0, 1)))
    if present.size == 0 or present[-1] != num_classes:
        present = np.append(present, num_classes)
    cum = np.zeros((present.size, gh + 1, gw + 1), dtype=np.int32)
    cum[:, 1:, 1:] = grid[:, :, present].transpose(2, 0, 1).cumsum(axis=1).cumsum(axis=2)
    return ClassGrid(cum=cum, present=present, num_classes=num_classes, block=block, height=h,
                     width=w, scene=scene, decoder=decoder)


NODATA, CLASSES = "nodata", "classes"
"""Why a candidate chip was rejected (counted in the log)."""


def plan_chips(
    grids: Sequence[ClassGrid],
    classes: Sequence[int],
    count: int,
    size: int,
    generator: torch.Generator,
    min_class_fraction: float = 0.002,
    min_valid_fraction: float = 0.5,
    rounds: int = 6,
    balanced: float = 0.0,
) -> list[tuple[int, Window]]:
    """``count`` chips (scene index, window) whose content passes the step's filter.

    Scenes are chosen in proportion to their area; positions come from torchgeo's
    RandomGeoSampler with ``generator``, so the plan is deterministic under a seed. The class
    grid rejects hopeless candidates cheaply (upper bounds from the cells a chip touches);
    the rest are checked exactly by reading their label window.

    ``balanced`` (0 to 1) is the share of candidates drawn class-balanced instead
    (:func:`balanced_windows`: a class drawn uniformly among ``classes``, then a chip around
    one of its pixels), so rare classes are seen as often as common ones.
    """
    if count <= 0:
        return []
    wanted = list(classes)
    readers = ReaderCache()

    def exact(s: int, win: Window, area: float, clean: bool) -> str | None:
        grid = grids[s]
        if grid.scene is None or grid.decoder is None:
            return None
        reader = readers.get(s, grid.scene, grid.decoder)
        if clean:  # no ignored pixel near the chip: the label alone decides
            label = reader.read_label(win)
            valid = label != IGNORE_INDEX
        else:
            _, label, valid = reader.read(win)
        if valid.sum() / area < min_valid_fraction:
            return NODATA
        if np.isin(label, wanted).sum() / area < min_class_fraction:
            return CLASSES
        return None

    try:
        return _draw(grids, wanted, count, size, generator, min_class_fraction,
                     min_valid_fraction, rounds, exact, balanced)
    finally:
        readers.close()


def balanced_windows(
    grids: Sequence[ClassGrid], classes: Sequence[int], count: int, size: int,
    generator: torch.Generator,
) -> list[tuple[int, Window]]:
    """``count`` class-balanced chips: each draws a class uniformly among the ``classes``
    present in ``grids``, then a grid cell with probability proportional to that class's
    pixels in it (over every scene), then a ``size`` px window holding the whole cell at a
    uniform offset (kept inside the raster when the raster is larger than the window)."""
    pools = []
    for c in classes:
        per_scene = [g.cell_counts(int(c)) for g in grids]
        weights = np.concatenate([p.ravel() for p in per_scene]).astype(np.float64)
        if weights.sum() > 0:
            starts = np.cumsum([0] + [p.size for p in per_scene])
            pools.append((torch.from_numpy(weights), starts))
    if not pools or count <= 0:
        return []
    picks = torch.randint(len(pools), (count,), generator=generator).tolist()
    out: list[tuple[int, Window]] = []
    for k in picks:
        weights, starts = pools[k]
        flat = int(torch.multinomial(weights, 1, generator=generator))
        s = int(np.searchsorted(starts, flat, side="right") - 1)
        grid = grids[s]
        cols = grid.cum.shape[2] - 1
        row, col = divmod(flat - int(starts[s]), cols)
        b = grid.block
        offsets = []
        for cell, extent in ((row, grid.height), (col, grid.width)):
            low, high = cell * b + b - size, cell * b  # the cell lies inside the window
            if extent >= size:
                low, high = max(low, 0), min(high, extent - size)
            span = max(high - low, 0)
            offsets.append(low + int(torch.randint(span + 1, (1,), generator=generator)))
        out.append((s, Window(offsets[1], offsets[0], size, size)))
    return out


def _draw(
    grids: Sequence[ClassGrid],
    wanted: list[int],
    count: int,
    size: int,
    generator: torch.Generator,
    min_class_fraction: float,
    min_valid_fraction: float,
    rounds: int,
    exact: Callable[[int, Window, float, bool], str | None],
    balanced: float = 0.0,
) -> list[tuple[int, Window]]:
    areas = torch.tensor([float(g.height * g.width) for g in grids])
    accepted: list[tuple[int, Window]] = []
    drawn = 0
    rejected = {NODATA: 0, CLASSES: 0}

    def report() -> None:
        log.info("chips: %d accepted of %d drawn; %d skipped as mostly nodata or ignored "
                 "(< %.0f%% valid), %d without enough of the step's classes (< %.1f%%)",
                 len(accepted), drawn, rejected[NODATA], 100 * min_valid_fraction,
                 rejected[CLASSES], 100 * min_class_fraction)

    for _ in range(rounds):
        draws = max(2 * (count - len(accepted)), len(grids))
        n_balanced = int(round(draws * balanced))
        draws -= n_balanced
        per_scene = torch.zeros(len(grids), dtype=torch.long)
        if draws:
            per_scene = torch.bincount(
                torch.multinomial(areas, draws, replacement=True, generator=generator),
                minlength=len(grids),
            )
        candidates: list[tuple[int, Window]] = []
        for s, (grid, n) in enumerate(zip(grids, per_scene.tolist(), strict=True)):
            if n:
                wins = random_windows(grid.height, grid.width, size, n, generator)
                candidates += [(s, win) for win in wins]
        candidates += balanced_windows(grids, wanted, n_balanced, size, generator)
        order = torch.randperm(len(candidates), generator=generator).tolist()
        for i in order:
            s, win = candidates[i]
            drawn += 1
            grid = grids[s]
            area = float(win.width * win.height)
            inside = float(
                max(0, min(win.row_off + win.height, grid.height) - max(win.row_off, 0))
                * max(0, min(win.col_off + win.width, grid.width) - max(win.col_off, 0))
            )
            # bounds from the cells fully inside (inner) and touched by (outer) the chip
            outer, inner = grid.counts(win, inner=False), grid.counts(win, inner=True)
            valid_bound = min(inside - inner[-1], float(outer[:-1].sum())) / area
            if valid_bound < min_valid_fraction:
                rejected[NODATA] += 1  # even the upper bound of valid pixels fails
                continue
            if outer[wanted].sum() / area < min_class_fraction:
                rejected[CLASSES] += 1
                continue
            sure = (inner[wanted].sum() / area >= min_class_fraction
                    and (inside - outer[-1]) / area >= min_valid_fraction)
            reason = None if sure else exact(s, win, area, outer[-1] == 0)
            if reason is not None:
                rejected[reason] += 1
                continue
            accepted.append((s, win))
            if len(accepted) == count:
                report()
                return accepted
    report()
    if not accepted:
        raise DataError(
            f"no training chip of {size} px contains the step's classes {wanted} "
            f"(tried {drawn} random chips); check the labels or lower data.min_class_fraction"
        )
    level = logging.WARNING if len(accepted) < count // 2 else logging.INFO
    log.log(level, "only %d distinct chips of %d passed the content filter; repeating them",
            len(accepted), count)
    repeat = torch.randint(len(accepted), (count - len(accepted),), generator=generator)
    return accepted + [accepted[i] for i in repeat.tolist()]


class ChipDataset(Dataset):
    """Reads planned chips: image scaled to [0, 1] (C, H, W) float32 and the remapped target
    (H, W) int64 (model-index space through ``lut``; invalid pixels 255)."""

    def __init__(
        self,
        dataset: DatasetSpec,
        scenes: Sequence[Scene],
        chips: Sequence[tuple[int, Window]],
        normalization: Normalization,
        lut: np.ndarray,
    ) -> None:
        self.decoder = dataset.decoder
        self.scenes = list(scenes)
        self.chips = list(chips)
        self.normalization = normalization
        self.lut = lut
        self._readers = ReaderCache()

    def __len__(self) -> int:
        return len(self.chips)

    def _reader(self, index: int) -> SceneReader:
        return self._readers.get(index, self.scenes[index], self.decoder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, window = self.chips[i]
        image, label, valid = self._reader(s).read(window)
        unit = self.normalization.to_unit(image)
        unit[:, ~valid] = 0.0
        target = self.lut[label]
        return torch.from_numpy(np.ascontiguousarray(unit)), torch.from_numpy(
            target.astype(np.int64)
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = ReaderCache()
        return state
