"""Checks of the training data made before a run writes anything, reported as messages.

- scenes without any valid, labelled pixel (all nodata): no chip is ever cut from them;
- label values that no class of a dataset YAML lists: they are trained and evaluated as
  background, as docs/datasets.md says, and a warning names them so a typo in the dataset YAML
  does not go unnoticed;
- raster read errors (truncated or corrupt files) as one line naming the scene's files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from geoidec.data.base import DatasetSpec, Scene
from geoidec.data.class_grid import ClassGrid
from geoidec.data.decoders import ValueDecoder
from geoidec.data.scene_reader import open_raster
from geoidec.errors import DataError

#: Label pixels read (decimated) per scene, and scenes read at most, when looking for
#: unlisted values.
AUDIT_PIXELS = 1_000_000
AUDIT_SCENES = 256


def is_raster_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a rasterio/GDAL error (a truncated or corrupt file read)."""
    module = type(exc).__module__ or ""
    return module.startswith("rasterio") and (
        type(exc).__name__ == "RasterioIOError" or type(exc).__name__.startswith("CPLE_"))


def raster_error_reason(exc: BaseException) -> str:
    """GDAL's messages along the exception chain in one line: the first names the file and
    band, the last the low-level cause (rasterio's 'see previous exception' is dropped)."""
    texts: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(texts) < 8:
        text = " ".join(str(cause).split())
        if text and "previous exception" not in text and text not in texts:
            texts.append(text)
        cause = cause.__cause__ or cause.__context__
    if not texts:
        return type(exc).__name__
    reason = texts[0] if len(texts) == 1 else f"{texts[0]} ({texts[-1]})"
    return reason[:400]


@contextmanager
def reading(scene: Scene) -> Iterator[None]:
    """Turn a raster read error inside the block into a one-line :class:`DataError` naming
    the scene's files."""
    try:
        yield
    except Exception as exc:
        if not is_raster_error(exc):
            raise
        files = ", ".join(str(p) for p in (scene.image, scene.label) if p is not None)
        raise DataError(f"cannot read scene {scene.name} ({files}): {raster_error_reason(exc)}; "
                        "is a file truncated or corrupt?") from None


def nodata_messages(grids: Sequence[ClassGrid], scenes: Sequence[Scene]) -> list[str]:
    """One message per training scene without a valid labelled pixel, and a summary of the
    share of training pixels that are nodata or ignored (never sampled for a chip)."""
    messages = []
    invalid_total, area_total = 0, 0
    for grid, scene in zip(grids, scenes, strict=True):
        totals = grid.totals()
        area = grid.height * grid.width
        padded = (grid.cum.shape[1] - 1) * (grid.cum.shape[2] - 1) * grid.block ** 2
        invalid = min(max(int(totals[-1]) - (padded - area), 0), area)
        invalid_total += invalid
        area_total += area
        if invalid >= area:
            messages.append(f"warning: training scene {scene.name} has no valid labelled pixel "
                            "(all nodata or ignored); no chip is cut from it")
    if area_total and invalid_total:
        messages.append(f"{100 * invalid_total / area_total:.1f}% of the training pixels are "
                        "nodata or ignored; chips with less than data.min_valid_fraction valid "
                        "pixels are skipped")
    return messages


def unlisted_label_values(dataset: DatasetSpec, scenes: Sequence[Scene],
                          max_pixels: int = AUDIT_PIXELS,
                          max_scenes: int = AUDIT_SCENES) -> dict[float, list[str]]:
    """Label values found in ``scenes`` (decimated reads of at most ``max_scenes`` spread over
    the list) that no class or ignore value of a dataset YAML lists, with the scenes holding
    them. 0, the usual "unlabelled" value, is not reported (it is background too). Empty for
    the built-in datasets, whose label coding is fixed."""
    decoder = dataset.decoder
    if not isinstance(decoder, ValueDecoder) or "yaml" not in dataset.meta:
        return {}
    known = {0.0, *decoder.values, *decoder.ignore_values}
    found: dict[float, list[str]] = {}
    labelled = [s for s in scenes if s.label is not None]
    step = max(1, math.ceil(len(labelled) / max_scenes))
    for scene in labelled[::step]:
        assert scene.label is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = open_raster(scene.label)
        with src, reading(scene):
            factor = max(1.0, math.sqrt(src.height * src.width / max_pixels))
            shape = (max(1, int(src.height / factor)), max(1, int(src.width / factor)))
            band = src.read(1, out_shape=shape, resampling=Resampling.nearest)
            nodata = src.nodata
        values = np.unique(band[np.isfinite(band)] if band.dtype.kind == "f" else band)
        for value in values.tolist():
            if value in known or (nodata is not None and value == nodata):
                continue
            found.setdefault(value, []).append(scene.name)
    return found


def unlisted_values_message(found: dict[float, list[str]]) -> str | None:
    """The warning for :func:`unlisted_label_values` (None when nothing was found)."""
    if not found:
        return None
    values = sorted(found)
    shown = ", ".join(f"{v:g}" for v in values[:10]) + (", ..." if len(values) > 10 else "")
    scenes = sorted({s for names in found.values() for s in names})
    where = ", ".join(scenes[:3]) + (", ..." if len(scenes) > 3 else "")
    return (f"warning: label value(s) {shown} (in {where}) are not listed in the dataset's "
            "classes; they are trained and evaluated as background (list them under "
            "ignore_values to ignore them instead)")


__all__ = [
    "is_raster_error",
    "nodata_messages",
    "raster_error_reason",
    "reading",
    "unlisted_label_values",
    "unlisted_values_message",
]
