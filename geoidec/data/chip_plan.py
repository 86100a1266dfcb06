"""Where to cut training chips: a content-filtered plan of (scene index, window).

For step t of an incremental task, a chip is kept only when at least ``min_class_fraction`` of
its pixels belong to the classes learnt at step t (the "overlapped" setting of the CISS
literature applied to chips) and at least ``min_valid_fraction`` of it is valid imagery.
Candidates come from torchgeo's RandomGeoSampler (uniform in space) and, optionally, from
class-balanced draws; each scene's :class:`~geoidec.data.class_grid.ClassGrid` rejects
hopeless candidates cheaply, and the label window decides the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.windows import Window

from geoidec.constants import IGNORE_INDEX
from geoidec.data.class_grid import ClassGrid
from geoidec.data.scene_reader import ReaderCache
from geoidec.data.tiling import random_windows
from geoidec.errors import DataError

log = logging.getLogger(__name__)

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
    content = _ContentFilter(grids, list(classes), min_class_fraction, min_valid_fraction,
                             ReaderCache())
    try:
        return _draw(content, count, size, generator, rounds, balanced)
    finally:
        content.readers.close()


@dataclass
class _ContentFilter:
    """The step's filter over candidate chips: upper bounds from the class grids first, the
    chip's label window when the bounds cannot decide."""

    grids: Sequence[ClassGrid]
    wanted: list[int]
    min_class_fraction: float
    min_valid_fraction: float
    readers: ReaderCache

    def __call__(self, s: int, win: Window) -> str | None:
        """Why chip ``win`` of scene ``s`` is rejected (:data:`NODATA`, :data:`CLASSES`);
        ``None`` when it is kept."""
        grid = self.grids[s]
        area = float(win.width * win.height)
        inside = float(
            max(0, min(win.row_off + win.height, grid.height) - max(win.row_off, 0))
            * max(0, min(win.col_off + win.width, grid.width) - max(win.col_off, 0))
        )
        # bounds from the cells fully inside (inner) and touched by (outer) the chip
        outer, inner = grid.counts(win, inner=False), grid.counts(win, inner=True)
        valid_bound = min(inside - inner[-1], float(outer[:-1].sum())) / area
        if valid_bound < self.min_valid_fraction:
            return NODATA  # even the upper bound of valid pixels fails
        if outer[self.wanted].sum() / area < self.min_class_fraction:
            return CLASSES
        sure = (inner[self.wanted].sum() / area >= self.min_class_fraction
                and (inside - outer[-1]) / area >= self.min_valid_fraction)
        return None if sure else self._exact(s, win, area, outer[-1] == 0)

    def _exact(self, s: int, win: Window, area: float, clean: bool) -> str | None:
        """The filter on the chip's label window (``clean``: no ignored pixel near the chip,
        so the label alone decides validity)."""
        grid = self.grids[s]
        if grid.scene is None or grid.decoder is None:
            return None
        reader = self.readers.get(s, grid.scene, grid.decoder)
        if clean:
            label = reader.read_label(win)
            valid = label != IGNORE_INDEX
        else:
            _, label, valid = reader.read(win)
        if valid.sum() / area < self.min_valid_fraction:
            return NODATA
        if np.isin(label, self.wanted).sum() / area < self.min_class_fraction:
            return CLASSES
        return None


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


def _candidates(
    grids: Sequence[ClassGrid], wanted: list[int], missing: int, size: int,
    generator: torch.Generator, areas: torch.Tensor, balanced: float,
) -> list[tuple[int, Window]]:
    """One round of candidates, in random order: twice the ``missing`` chips (at least one
    per scene), a ``balanced`` share of them class-balanced, the rest uniform in space over
    scenes drawn in proportion to their ``areas``."""
    draws = max(2 * missing, len(grids))
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
    return [candidates[i] for i in order]


def _draw(
    content: _ContentFilter,
    count: int,
    size: int,
    generator: torch.Generator,
    rounds: int,
    balanced: float,
) -> list[tuple[int, Window]]:
    """Up to ``rounds`` rounds of candidates until ``count`` pass ``content``; the chips that
    passed are repeated when fewer did."""
    grids = content.grids
    areas = torch.tensor([float(g.height * g.width) for g in grids])
    accepted: list[tuple[int, Window]] = []
    rejected = {NODATA: 0, CLASSES: 0}
    drawn = 0
    for _ in range(rounds):
        for s, win in _candidates(grids, content.wanted, count - len(accepted), size,
                                  generator, areas, balanced):
            drawn += 1
            reason = content(s, win)
            if reason is not None:
                rejected[reason] += 1
                continue
            accepted.append((s, win))
            if len(accepted) == count:
                _report(content, len(accepted), drawn, rejected)
                return accepted
    _report(content, len(accepted), drawn, rejected)
    if not accepted:
        raise DataError(
            f"no training chip of {size} px contains the step's classes {content.wanted} "
            f"(tried {drawn} random chips); check the labels or lower data.min_class_fraction"
        )
    return _repeat(accepted, count, generator)


def _report(content: _ContentFilter, accepted: int, drawn: int, rejected: dict[str, int]
            ) -> None:
    """Log how many candidates passed and why the others were skipped."""
    log.info("chips: %d accepted of %d drawn; %d skipped as mostly nodata or ignored "
             "(< %.0f%% valid), %d without enough of the step's classes (< %.1f%%)",
             accepted, drawn, rejected[NODATA], 100 * content.min_valid_fraction,
             rejected[CLASSES], 100 * content.min_class_fraction)


def _repeat(accepted: list[tuple[int, Window]], count: int, generator: torch.Generator
            ) -> list[tuple[int, Window]]:
    """``accepted`` topped up to ``count`` chips with random repeats of its own chips."""
    level = logging.WARNING if len(accepted) < count // 2 else logging.INFO
    log.log(level, "only %d distinct chips of %d passed the content filter; repeating them",
            len(accepted), count)
    repeat = torch.randint(len(accepted), (count - len(accepted),), generator=generator)
    return accepted + [accepted[i] for i in repeat.tolist()]
