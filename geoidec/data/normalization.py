"""Per-band normalisation statistics, computed once from the training images.

Raw values of any dtype are first scaled to [0, 1] with per-band ``low``/``high`` (the dtype
range for 8-bit imagery, the 1st/99th percentiles otherwise) and clipped, so photometric
augmentation works on [0, 1] data; then standardised with the ``mean``/``std`` of the scaled
training pixels::

    x01 = clip((x - low) / (high - low), 0, 1)        x_model = (x01 - mean) / std

The statistics travel in every checkpoint, so prediction normalises exactly as training did.

Per-band fill values travel with them (``fill``): values declared with ``fill_values`` in a
dataset YAML, and undeclared ones that :func:`detect_fill_values` finds in the training sample
(a band filled with its dtype's minimum over whole areas, say). A pixel where any band holds
its fill value is nodata, in the statistics, in training, in evaluation and at prediction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from geoidec.data.base import Scene
from geoidec.data.scene_reader import fill_mask, open_raster
from geoidec.errors import DataError

log = logging.getLogger("geoidec")

#: A candidate fill value of a band is flagged when it covers at least this share of the band's
#: sampled valid pixels ...
FILL_MIN_SHARE = 0.005
#: ... and at least this many times more pixels than all the values next to it together ...
FILL_SPIKE_RATIO = 20.0
#: ... "next to it" meaning within this fraction of the band's 1-99 % percentile span on
#: either side ...
FILL_NEIGHBOUR_SPAN = 0.01
#: ... and, in integer bands, at least this many values on either side (1 % of an 8-bit band's
#: span is only 2 values, where the clipped tail of saturated whites is still dense).
FILL_NEIGHBOUR_STEPS = 4
#: Candidate fill values of float bands, besides the dtype's minimum.
FLOAT_FILL_CANDIDATES = (-9999.0, -32768.0)


@dataclass(frozen=True)
class Normalization:
    """Per-band scaling to [0, 1] and standardisation, and the per-band fill values (nodata;
    empty when no band has one, else one entry per band, None for a band without)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fill: tuple[float | None, ...] = ()

    @property
    def bands(self) -> int:
        return len(self.low)

    def to_unit(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Raw values (C, H, W) or (B, C, H, W) to [0, 1]."""
        lib = torch if isinstance(image, torch.Tensor) else np
        shape = (-1, 1, 1)
        low = _as(image, self.low).reshape(shape)
        span = _as(image, [h - lo for lo, h in zip(self.low, self.high, strict=True)])
        out = (image - low) / span.reshape(shape)
        return lib.clip(out, 0.0, 1.0)

    def standardize(self, image01: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[0, 1] values to the model's input scale."""
        shape = (-1, 1, 1)
        return (image01 - _as(image01, self.mean).reshape(shape)) / _as(
            image01, self.std
        ).reshape(shape)

    def to_dict(self) -> dict[str, list[float | None]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        """The inverse of :meth:`to_dict`; checkpoints older than ``fill`` have none."""
        fill = tuple(None if x is None else float(x) for x in data.get("fill") or ())
        return cls(**{k: tuple(float(x) for x in data[k]) for k in ("low", "high", "mean", "std")},
                   fill=fill)


def with_fill(scenes: Sequence[Scene], normalization: Normalization) -> tuple[Scene, ...]:
    """``scenes`` carrying the fill values of ``normalization`` (declared and detected ones),
    so they read exactly as the statistics were computed; unchanged when it has none."""
    if not normalization.fill:
        return tuple(scenes)
    return tuple(dataclasses.replace(s, fill=normalization.fill) for s in scenes)


def _as(ref: np.ndarray | torch.Tensor, values: Sequence[float]) -> np.ndarray | torch.Tensor:
    if isinstance(ref, torch.Tensor):
        return torch.tensor(values, dtype=ref.dtype, device=ref.device)
    return np.asarray(values, dtype=np.float32)


def sample_pixels(scene: Scene, max_pixels: int) -> tuple[np.ndarray, str]:
    """Up to ``max_pixels`` valid pixels (N, C) of a scene, read decimated; and its dtype.

    Nodata pixels (masks, NaN/inf, a band at the scene's declared fill value) are left out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = open_raster(scene.image)
    with src:
        bands = list(scene.bands or range(1, src.count + 1))
        factor = max(1.0, math.sqrt(src.height * src.width / max(max_pixels, 1)))
        shape = (max(1, int(src.height / factor)), max(1, int(src.width / factor)))
        data = src.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest)
        masks = src.read_masks(bands, out_shape=(len(bands), *shape),
                               resampling=Resampling.nearest)
        dtype = src.dtypes[bands[0] - 1]
    if scene.fill and len(scene.fill) != len(bands):
        raise DataError(f"{scene.image}: {len(scene.fill)} fill value(s) given for "
                        f"{len(bands)} band(s); give one per band read")
    pixels = data.reshape(len(bands), -1).T.astype(np.float64)
    ok = masks.reshape(len(bands), -1).min(axis=0) > 0
    ok &= np.isfinite(pixels).all(axis=1)
    for i, value in enumerate(scene.fill):
        if value is not None:
            ok &= ~fill_mask(data[i].reshape(-1), value)
    return pixels[ok], dtype


def fill_candidates(dtype: str) -> tuple[float, ...]:
    """Values a band of ``dtype`` is typically filled with: the dtype's minimum and maximum
    for integers; the dtype's minimum, -9999 and -32768 for floats (as that dtype holds
    them)."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return (float(info.min), float(info.max))
    if np.issubdtype(dt, np.floating):
        return tuple(float(dt.type(v)) for v in (np.finfo(dt).min, *FLOAT_FILL_CANDIDATES))
    return ()


def detect_fill_values(
    pixels: np.ndarray, dtypes: Collection[str], skip: Collection[int] = (),
) -> list[tuple[int, float, float]]:
    """Undeclared fill values in sampled valid pixels (N, C) of bands of ``dtypes``:
    ``(band index, value, share of the band's pixels)`` per band with one (bands in ``skip``,
    those with a declared value, are not searched).

    The rule, per band: each candidate value ``v`` of :func:`fill_candidates` is counted
    (``n_v`` pixels at exactly ``v`` among the band's ``n`` sampled valid pixels); the band's
    1st and 99th percentiles over the pixels at no candidate give its span ``p99 - p1`` and
    the neighbourhood half-width ``w = FILL_NEIGHBOUR_SPAN * span`` (for integer bands at
    least ``FILL_NEIGHBOUR_STEPS``; 1 for a float band without spread); ``m_v`` counts the
    pixels within ``w`` of ``v``, ``v`` excluded. ``v`` is flagged when it is an isolated
    spike::

        n_v >= FILL_MIN_SHARE * n   and   n_v >= FILL_SPIKE_RATIO * m_v

    8-bit imagery whose dark shadows or saturated whites run into 0 or 255 (clipped there)
    keeps a populated tail next to the end value and is not flagged (a real 8-bit RGB crop
    of Rotterdam: 1.1-1.3 % of each band at 255 and 4-6x fewer pixels at 251..254); a
    Sentinel-2 band of values 30..6000 filled with 0 over an area is. At most one value per
    band is flagged (the most frequent), and a band holding nothing but candidate values is
    left alone (that is no fill over part of a band).
    """
    if not len(pixels):
        return []
    candidates = sorted({v for d in dtypes for v in fill_candidates(d)})
    integer = bool(dtypes) and all(np.issubdtype(np.dtype(d), np.integer) for d in dtypes)
    found = []
    for b in range(pixels.shape[1]):
        if b in skip or not candidates:
            continue
        x = pixels[:, b]
        rest = x[~np.isin(x, candidates)]
        if not rest.size:
            continue
        p1, p99 = np.percentile(rest, [1.0, 99.0])
        width = FILL_NEIGHBOUR_SPAN * float(p99 - p1)
        if integer:
            width = max(width, float(FILL_NEIGHBOUR_STEPS))
        elif width <= 0:
            width = 1.0
        best = None
        for v in candidates:
            at = int(np.count_nonzero(x == v))
            if at < FILL_MIN_SHARE * len(x):
                continue
            near = int(np.count_nonzero((x >= v - width) & (x <= v + width))) - at
            if at >= FILL_SPIKE_RATIO * near and (best is None or at > best[1]):
                best = (v, at)
        if best is not None:
            found.append((b, best[0], best[1] / len(x)))
    return found


def format_value(value: float, dtype: str) -> str:
    """A fill value as a user would write it in YAML (integers without ``.0``; floats in the
    shortest form that reads back to the same value of ``dtype``)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    dt = np.dtype(dtype)
    return str(dt.type(value)) if np.issubdtype(dt, np.floating) else repr(float(value))


def fill_message(number: int, name: str | None, value: str, share: float) -> str:
    """The one-line warning about a detected fill value ``value`` of band ``number``."""
    where = f"band {number}" + (f" ({name})" if name else "")
    key = name or number
    return (f"warning: {where}: value {value} fills {100 * share:.1f}% of the sampled pixels "
            "and looks like an undeclared fill value; treated as nodata (declare it with "
            f"fill_values: {{{key}: {value}}} in the dataset YAML)")


def compute_normalization(
    scenes: Sequence[Scene], max_pixels: int = 2_000_000, *,
    band_names: Sequence[str] = (), messages: list[str] | None = None, detect: bool = True,
) -> Normalization:
    """Statistics from a decimated sample of every training scene (``max_pixels`` in total,
    spread evenly, at least 1024 per scene).

    Pixels at a fill value declared by the scenes (:attr:`Scene.fill`) are left out; so are
    those at an undeclared fill value found by :func:`detect_fill_values` (``detect``), each
    reported in one line (naming the band, with its name from ``band_names``) appended to
    ``messages``, or logged as a warning of the ``geoidec`` logger when ``messages`` is None.
    The returned ``fill`` holds both, for the scenes to read with (:func:`with_fill`).
    """
    samples, dtypes = [], set()
    per_scene = max(1024, max_pixels // max(len(scenes), 1))
    for scene in scenes:
        pixels, dtype = sample_pixels(scene, per_scene)
        samples.append(pixels)
        dtypes.add(dtype)
    counts = {s.shape[1] for s in samples}
    if len(counts) != 1:
        raise DataError(f"training images have different band counts {sorted(counts)}")
    data = np.concatenate(samples)
    if len(data) == 0:
        raise DataError("training images have no valid (non-nodata) pixels")
    n_bands = data.shape[1]
    fill: list[float | None] = [None] * n_bands
    for scene in scenes:
        for i, value in enumerate(scene.fill):
            if fill[i] is None:
                fill[i] = value
    if detect:
        declared = {i for i, v in enumerate(fill) if v is not None}
        numbers = list(scenes[0].bands or range(1, n_bands + 1))
        dtype = sorted(dtypes)[0]
        for b, value, share in detect_fill_values(data, dtypes, skip=declared):
            fill[b] = value
            name = band_names[b] if b < len(band_names) else None
            text = fill_message(numbers[b], name, format_value(value, dtype), share)
            if messages is None:
                log.warning(text)
            else:
                messages.append(text)
            data = data[data[:, b] != value]
        if len(data) == 0:
            raise DataError("training images have no valid pixels once the fill values "
                            "found are left out; declare the fill values (fill_values) or "
                            "nodata of the images")
    if dtypes == {"uint8"}:
        low = np.zeros(data.shape[1])
        high = np.full(data.shape[1], 255.0)
    else:
        low, high = np.percentile(data, [1.0, 99.0], axis=0)
    high = np.where(high > low, high, low + 1.0)
    unit = np.clip((data - low) / (high - low), 0.0, 1.0)
    mean, std = unit.mean(axis=0), unit.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    return Normalization(
        low=tuple(float(v) for v in low),
        high=tuple(float(v) for v in high),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        fill=tuple(fill) if any(v is not None for v in fill) else (),
    )
