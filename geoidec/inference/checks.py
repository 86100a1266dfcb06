"""Guard-rails of prediction: one-line warnings when an input or a result looks wrong.

Warnings go to the ``geoidec`` logger (one line each, prefixed with the scene's file name);
they never stop a prediction. Before predicting (:func:`check_input`):

- the input has no CRS (the prediction runs in pixel space and the output has no CRS);
- its pixel size differs from the training data's by more than a factor
  :data:`RESOLUTION_FACTOR` (both must have a CRS; sizes compared in metres, degrees taken
  as 111,320 m);
- its data type differs from the training images' (checkpoint ``dtype`` when recorded, else
  ``uint8`` when the normalisation is the 8-bit range 0..255 on every band);
- its values lie far outside the training normalisation range ``[low, high]`` (sampled from
  a 4 x 4 grid of 64 px windows, so a large scene is not read twice): on some band the
  99th percentile is above ``high + span`` or the 1st below ``low - span``, or the 99th
  percentile is below ``low + 0.02 * span`` (e.g. reflectances 0..1 fed to a 0..255 model).

After predicting (:func:`check_result`): more than :data:`NODATA_FRACTION` of the input is
nodata, or more than :data:`ONE_CLASS_FRACTION` of the valid pixels fall in one class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from geoidec.data.normalization import Normalization
from geoidec.data.scene_reader import fill_mask

__all__ = [
    "NODATA_FRACTION",
    "ONE_CLASS_FRACTION",
    "RESOLUTION_FACTOR",
    "check_input",
    "check_result",
    "sample_values",
    "training_dtype",
]

log = logging.getLogger("geoidec")

RESOLUTION_FACTOR = 2.0
NODATA_FRACTION = 0.95
ONE_CLASS_FRACTION = 0.98
METRES_PER_DEGREE = 111_320.0


def _warn(messages: list[str], text: str) -> None:
    messages.append(text)
    log.warning(text)


def training_dtype(meta: dict[str, Any], normalization: Normalization) -> str | None:
    """The training images' data type: ``meta['dtype']`` if recorded, ``'uint8'`` when the
    normalisation is exactly 0..255 on every band (what training uses for 8-bit data), else
    ``None`` (unknown)."""
    if meta.get("dtype"):
        return str(meta["dtype"])
    if all(lo == 0.0 for lo in normalization.low) and all(
        hi == 255.0 for hi in normalization.high
    ):
        return "uint8"
    return None


def pixel_size_m(crs: Any, res: Sequence[float] | None) -> float | None:
    """Geometric-mean pixel size in metres, or ``None`` when the CRS units are unknown."""
    if crs is None or not res:
        return None
    try:
        crs = CRS.from_user_input(crs)
        size = math.sqrt(abs(float(res[0]) * float(res[-1])))
        if crs.is_geographic:
            return abs(float(res[-1])) * METRES_PER_DEGREE
        return size * float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - unknown units: no comparison
        return None


def sample_values(src: rasterio.DatasetReader, bands: Sequence[int], grid: int = 4,
                  size: int = 64, fill: Sequence[float | None] = ()) -> np.ndarray:
    """Valid pixel values ``(N, C)`` float64 of ``grid x grid`` small windows spread over
    the raster (cheap on large tiled rasters: a few blocks); pixels where a band holds its
    ``fill`` value (one per band, None for none) are not valid."""
    h, w = src.height, src.width
    rows = sorted({int(r) for r in np.linspace(0, max(h - size, 0), grid)})
    cols = sorted({int(c) for c in np.linspace(0, max(w - size, 0), grid)})
    samples = []
    for r in rows:
        for c in cols:
            window = Window(c, r, min(size, w - c), min(size, h - r))
            raw = src.read(list(bands), window=window)
            data = raw.astype(np.float64)
            ok = src.read_masks(list(bands), window=window).min(axis=0) > 0
            ok &= np.isfinite(data).all(axis=0)
            for i, value in enumerate(fill):
                if value is not None:
                    ok &= ~fill_mask(raw[i], value)
            samples.append(data[:, ok].T)
    return np.concatenate(samples) if samples else np.zeros((0, len(bands)))


def check_input(
    src: rasterio.DatasetReader,
    bands: Sequence[int],
    meta: dict[str, Any],
    normalization: Normalization,
    name: str,
) -> list[str]:
    """Warn about an input unlike the training data; return the messages."""
    messages: list[str] = []
    if src.crs is None:
        _warn(messages, f"{name}: no CRS; predicting in pixel space, the outputs have no "
                        "CRS either")
    elif meta.get("crs"):
        ours, theirs = pixel_size_m(src.crs, src.res), pixel_size_m(meta["crs"],
                                                                     meta.get("resolution"))
        if ours and theirs and max(ours / theirs, theirs / ours) > RESOLUTION_FACTOR:
            _warn(messages, f"{name}: pixel size {ours:.3g} m differs from the training "
                            f"data's {theirs:.3g} m by more than a factor "
                            f"{RESOLUTION_FACTOR:g}; resample the input (or expect poor "
                            "results)")
    expected = training_dtype(meta, normalization)
    dtype = src.dtypes[bands[0] - 1]
    if expected is not None and dtype != expected:
        _warn(messages, f"{name}: data type {dtype} differs from the training images' "
                        f"{expected}; check that the values are scaled the same way")
    values = sample_values(src, bands, fill=normalization.fill)
    if len(values):
        p1, p99 = np.percentile(values, [1.0, 99.0], axis=0)
        bad = []
        for b, (lo, hi, a, z) in enumerate(zip(normalization.low, normalization.high, p1, p99,
                                               strict=True)):
            span = hi - lo
            if z > hi + span or a < lo - span or z < lo + 0.02 * span:
                bad.append(f"band {b + 1}: {a:.4g}..{z:.4g} vs {lo:.4g}..{hi:.4g}")
        if bad:
            _warn(messages, f"{name}: values far outside the training range "
                            f"({'; '.join(bad)}); was the model trained on differently "
                            "scaled imagery?")
    return messages


def check_result(
    counts: Sequence[int],
    nodata_pixels: int,
    total_pixels: int,
    class_names: Sequence[str],
    name: str,
) -> list[str]:
    """Warn about a mostly-nodata input or a one-class output; return the messages."""
    messages: list[str] = []
    if total_pixels and nodata_pixels / total_pixels > NODATA_FRACTION:
        _warn(messages, f"{name}: {100 * nodata_pixels / total_pixels:.1f}% of the input is "
                        "nodata; is the nodata value, alpha band or mask right?")
    hist = np.asarray(counts[: len(class_names)], dtype=np.int64)
    valid = int(hist.sum())
    if valid and hist.max() / valid > ONE_CLASS_FRACTION:
        top = int(hist.argmax())
        _warn(messages, f"{name}: {100 * hist[top] / valid:.1f}% of the map is one class "
                        f"({class_names[top]}); check the input bands, scaling and "
                        "resolution")
    return messages
