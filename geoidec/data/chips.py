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


@dataclass
class ClassGrid:
    """Cumulative class counts per ``block`` x ``block`` cell of one scene's label.

    Pixels outside the raster (the last partial cells) count as ignored.

    ``cum[k, i, j]`` is the number of pixels of class ``k`` (dataset index; the last channel
    counts ignored/invalid pixels) in cells above and left of cell (i, j), exclusive.
    """

    cum: np.ndarray
    block: int
    height: int
    width: int
    scene: Scene | None = None
    decoder: LabelDecoder | None = None

    def totals(self) -> np.ndarray:
        """Pixel counts per class over the whole scene (last entry: ignored)."""
        return self.cum[:, -1, -1]

    def counts(self, window: Window, inner: bool = True) -> np.ndarray:
        """Pixel counts per class in the cells fully inside the window (``inner``) or in
        every cell the window touches (``inner=False``)."""
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
            return np.zeros(c.shape[0], dtype=np.int64)
        return c[:, r1, c1] - c[:, r0, c1] - c[:, r1, c0] + c[:, r0, c0]


def build_class_grid(
    scene: Scene, decoder: LabelDecoder, num_classes: int, block: int = BLOCK,
    band_rows: int = 1024,
) -> ClassGrid:
    """Stream a scene's label in row bands into a :class:`ClassGrid`."""
    band_rows = max(block, band_rows - band_rows % block)
    with SceneReader(scene, decoder) as reader:
        h, w = reader.height, reader.width
        gh, gw = -(-h // block), -(-w // block)
        grid = np.zeros((num_classes + 1, gh, gw), dtype=np.int64)
        for row in range(0, h, band_rows):
            n = min(band_rows, h - row)
            _, label, _ = reader.read(Window(0, row, gw * block, -(-n // block) * block))
            cells = label.reshape(-1, block, gw, block).transpose(0, 2, 1, 3)
            cells = cells.reshape(cells.shape[0], gw, -1)
            flat = np.where(cells == IGNORE_INDEX, num_classes, cells)
            flat = np.minimum(flat, num_classes)
            for k in range(num_classes + 1):
                grid[k, row // block: row // block + cells.shape[0]] = (flat == k).sum(axis=-1)
    cum = np.zeros((num_classes + 1, gh + 1, gw + 1), dtype=np.int64)
    cum[:, 1:, 1:] = grid.cumsum(axis=1).cumsum(axis=2)
    return ClassGrid(cum=cum, block=block, height=h, width=w, scene=scene, decoder=decoder)


def plan_chips(
    grids: Sequence[ClassGrid],
    classes: Sequence[int],
    count: int,
    size: int,
    generator: torch.Generator,
    min_class_fraction: float = 0.002,
    min_valid_fraction: float = 0.5,
    rounds: int = 6,
) -> list[tuple[int, Window]]:
    """``count`` chips (scene index, window) whose content passes the step's filter.

    Scenes are chosen in proportion to their area; positions come from torchgeo's
    RandomGeoSampler with ``generator``, so the plan is deterministic under a seed. The class
    grid rejects hopeless candidates cheaply (upper bounds from the cells a chip touches);
    the rest are checked exactly by reading their label window.
    """
    if count <= 0:
        return []
    wanted = list(classes)
    readers: dict[int, SceneReader] = {}

    def exact(s: int, win: Window, area: float) -> bool:
        grid = grids[s]
        if grid.scene is None or grid.decoder is None:
            return True
        if s not in readers:
            readers[s] = SceneReader(grid.scene, grid.decoder)
        _, label, valid = readers[s].read(win)
        return (valid.sum() / area >= min_valid_fraction
                and np.isin(label, wanted).sum() / area >= min_class_fraction)

    try:
        return _draw(grids, wanted, count, size, generator, min_class_fraction,
                     min_valid_fraction, rounds, exact)
    finally:
        for reader in readers.values():
            reader.close()


def _draw(
    grids: Sequence[ClassGrid],
    wanted: list[int],
    count: int,
    size: int,
    generator: torch.Generator,
    min_class_fraction: float,
    min_valid_fraction: float,
    rounds: int,
    exact: Callable[[int, Window, float], bool],
) -> list[tuple[int, Window]]:
    areas = torch.tensor([float(g.height * g.width) for g in grids])
    accepted: list[tuple[int, Window]] = []
    drawn = 0
    for _ in range(rounds):
        draws = max(2 * (count - len(accepted)), len(grids))
        per_scene = torch.bincount(
            torch.multinomial(areas, draws, replacement=True, generator=generator),
            minlength=len(grids),
        )
        candidates: list[tuple[int, Window]] = []
        for s, (grid, n) in enumerate(zip(grids, per_scene.tolist(), strict=True)):
            if n:
                wins = random_windows(grid.height, grid.width, size, n, generator)
                candidates += [(s, win) for win in wins]
        order = torch.randperm(len(candidates), generator=generator).tolist()
        for i in order:
            s, win = candidates[i]
            drawn += 1
            area = float(win.width * win.height)
            # upper bounds from every cell the chip touches, then the exact check
            outer = grids[s].counts(win, inner=False)
            if outer[wanted].sum() / area < min_class_fraction:
                continue
            valid_cells = 1.0 - grids[s].counts(win, inner=True)[-1] / area
            if valid_cells < min_valid_fraction or not exact(s, win, area):
                continue
            accepted.append((s, win))
            if len(accepted) == count:
                return accepted
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
        self._readers: dict[int, SceneReader] = {}

    def __len__(self) -> int:
        return len(self.chips)

    def _reader(self, index: int) -> SceneReader:
        if index not in self._readers:
            self._readers[index] = SceneReader(self.scenes[index], self.decoder)
        return self._readers[index]

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
        state["_readers"] = {}
        return state
