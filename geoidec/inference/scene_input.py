"""What of an input scene feeds the model: its bands (alpha bands left out when the model
expects the others), the guard-rail warnings about it, its CRS and its transform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from geoidec.checkpoint import Checkpoint
from geoidec.data.scene_reader import open_raster
from geoidec.errors import DataError
from geoidec.inference.checks import check_input, log, sample_values
from geoidec.inference.outputs import OutputPaths

__all__ = ["inspect_input", "select_bands"]


def _looks_like_alpha(src: rasterio.DatasetReader, band: int) -> bool:
    """An alpha band holds (almost) only 0 and the dtype's maximum; a 4th band flagged alpha
    that holds continuous values (RGB + near-infrared written as RGBA) is data."""
    values = sample_values(src, [band])[:, 0] if src.count else np.zeros(0)
    if not len(values):
        return True
    top = float(np.iinfo(src.dtypes[band - 1]).max) if np.issubdtype(
        np.dtype(src.dtypes[band - 1]), np.integer) else 1.0
    return float(np.isin(values, (0.0, top)).mean()) >= 0.99


def select_bands(src: rasterio.DatasetReader, expected: int, path: Path,
                 band_names: list[str] | None = None) -> tuple[int, ...]:
    """1-based bands to feed the model: all of them, or all but alpha bands when that
    matches the model's band count; otherwise a one-line :class:`DataError`. A band counts as
    alpha when GDAL says so and it holds only 0 and the maximum value (sampled)."""
    every = tuple(range(1, src.count + 1))
    if src.count == expected:
        return every
    alpha = [i + 1 for i, ci in enumerate(src.colorinterp)
             if ci == ColorInterp.alpha and _looks_like_alpha(src, i + 1)]
    data = tuple(b for b in every if b not in alpha)
    if alpha and len(data) == expected:
        return data
    names = band_names or []
    want = f"{expected} ({', '.join(names)})" if names else str(expected)
    extra = f" plus {len(alpha)} alpha band(s)" if alpha else ""
    raise DataError(
        f"{path} has {len(data)} band(s){extra} but the model expects {want}; give an image "
        "with the training bands in the same order"
    )


def inspect_input(checkpoint: Checkpoint, scene_path: Path, change_from: Checkpoint | None,
                  paths: OutputPaths) -> tuple[tuple[int, ...], list[str], Any, Any]:
    """The bands to feed the model, the input's guard-rail warnings, its CRS and transform."""
    name = scene_path.name
    with open_raster(scene_path) as src:
        bands = select_bands(src, checkpoint.bands, scene_path,
                             checkpoint.meta.get("band_names"))
        messages = check_input(src, bands, checkpoint.meta, checkpoint.normalization, name)
        crs, transform = src.crs, src.transform
    if change_from is not None and change_from.bands != checkpoint.bands:
        raise DataError(f"--change-from {change_from.path} expects {change_from.bands} "
                        f"band(s) but --model expects {checkpoint.bands}")
    if paths.fmt == "PNG" and crs is not None:
        log.warning(f"{name}: a PNG class map carries no georeferencing; use a .tif output "
                    "for GIS work")
    return bands, messages, crs, transform
