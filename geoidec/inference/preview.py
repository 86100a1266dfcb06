"""Quick-look PNG of a prediction: the input beside the coloured class map, with a legend.

Nothing is read for the preview: :class:`PreviewSampler` keeps every ``step``-th pixel of
the windows the predictor reads anyway (:meth:`PreviewSampler.add_window`, called from the
reading thread) and of the class-map row bands as they are written
(:meth:`PreviewSampler.add_labels`), where ``step = ceil(max(height, width) / max_side)``.
The scene is thus never held, nor read again, at full resolution: the preview costs
``(bands + 2) * (height / step) * (width / step)`` bytes.

The input is shown in RGB from the checkpoint's ``rgb_bands`` (grey from the first band when
there are none), scaled to [0, 1] with the training normalisation's ``low``/``high``; nodata
is transparent in both panels. :func:`write_preview` draws with matplotlib's Agg canvas
(no display, no global pyplot state).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from geoidec.constants import IGNORE_INDEX
from geoidec.files import refuse_existing

if TYPE_CHECKING:
    from matplotlib.typing import ColorType

__all__ = ["PreviewSampler", "write_preview"]

MAX_SIDE = 1024
"""Longest side of the decimated copies (pixels)."""


class PreviewSampler:
    """Decimated copies of the input (display channels) and of the class map.

    Args:
        height: scene rows.
        width: scene columns.
        bands: number of input bands read.
        rgb_bands: 0-based indexes of red, green, blue among the read bands, or ``None``.
        low: per-band value shown black (training normalisation ``low``).
        high: per-band value shown white (training normalisation ``high``).
        max_side: longest side of the copies.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        bands: int,
        rgb_bands: Sequence[int] | None,
        low: Sequence[float],
        high: Sequence[float],
        max_side: int = MAX_SIDE,
    ) -> None:
        self.height, self.width = height, width
        self.step = max(1, math.ceil(max(height, width) / max_side))
        rows, cols = math.ceil(height / self.step), math.ceil(width / self.step)
        rgb = list(rgb_bands) if rgb_bands is not None else []
        self.channels = rgb if len(rgb) == 3 and all(0 <= b < bands for b in rgb) else [0]
        self._low = np.asarray([low[b] for b in self.channels], np.float32)[:, None, None]
        span = np.asarray([high[b] - low[b] for b in self.channels], np.float32)
        self._span = np.where(span > 0, span, 1.0)[:, None, None]
        self.image = np.zeros((len(self.channels), rows, cols), np.uint8)
        self.valid = np.zeros((rows, cols), bool)
        self.labels = np.full((rows, cols), IGNORE_INDEX, np.uint8)

    def _slices(self, row: int, col: int) -> tuple[int, int, int, int]:
        """First sampled row/col offsets inside a block at (row, col) and their cells."""
        s = self.step
        r_first, c_first = (-row) % s, (-col) % s
        return r_first, c_first, (row + r_first) // s, (col + c_first) // s

    def add_window(self, row: int, col: int, image: np.ndarray, valid: np.ndarray) -> None:
        """Keep the sampled pixels of raw input ``image`` (C, h, w) read at ``(row, col)``;
        ``image``/``valid`` must lie inside the scene."""
        r_first, c_first, pr, pc = self._slices(row, col)
        s = self.step
        sub = image[self.channels, r_first::s, c_first::s]
        if sub.size == 0:
            return
        scaled = np.clip((sub - self._low) / self._span, 0.0, 1.0) * 255.0
        h, w = sub.shape[1:]
        self.image[:, pr : pr + h, pc : pc + w] = scaled.astype(np.uint8)
        self.valid[pr : pr + h, pc : pc + w] = valid[r_first::s, c_first::s]

    def add_labels(self, row: int, labels: np.ndarray, col: int = 0) -> None:
        """Keep the sampled pixels of a class-map chunk (n, w) at ``(row, col)``."""
        r_first, c_first, pr, pc = self._slices(row, col)
        sub = labels[r_first :: self.step, c_first :: self.step]
        self.labels[pr : pr + sub.shape[0], pc : pc + sub.shape[1]] = sub


def write_preview(
    path: Path,
    sampler: PreviewSampler,
    class_names: Sequence[str],
    colors: Sequence[Sequence[int]],
    *,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw the input beside the class map with a legend of class names into ``path`` (PNG).

    The figure is 12 inches wide at 100 dpi (1200 px), at most about 1000 px high.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    rows, cols = sampler.labels.shape
    alpha = np.where(sampler.valid, 255, 0).astype(np.uint8)
    if len(sampler.channels) == 3:
        rgb = np.moveaxis(sampler.image, 0, -1)
    else:
        rgb = np.repeat(sampler.image[0][..., None], 3, axis=-1)
    input_rgba = np.dstack([rgb, alpha])
    palette = np.zeros((256, 4), np.uint8)
    for i, color in enumerate(colors):
        palette[i] = (*(int(c) for c in color[:3]), 255)
    class_rgba = palette[sampler.labels]

    n_legend_rows = math.ceil(len(class_names) / 4)
    panel_h = float(np.clip(6.0 * rows / max(cols, 1), 2.0, 8.0))
    fig = Figure(figsize=(12.0, panel_h + 0.9 + 0.3 * n_legend_rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, data, label in ((axes[0], input_rgba, "input"), (axes[1], class_rgba, "classes")):
        ax.imshow(data, interpolation="nearest")
        ax.set_title(label)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(facecolor=cast("ColorType", np.asarray(c[:3]) / 255.0), edgecolor="black",
                     label=str(n))
               for n, c in zip(class_names, colors, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), frameon=False)
    if title:
        fig.suptitle(title)
    bottom = (0.3 * n_legend_rows + 0.3) / (panel_h + 0.9 + 0.3 * n_legend_rows)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=bottom, wspace=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
