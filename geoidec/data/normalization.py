"""Per-band normalisation statistics, computed once from the training images.

Raw values of any dtype are first scaled to [0, 1] with per-band ``low``/``high`` (the dtype
range for 8-bit imagery, the 1st/99th percentiles otherwise) and clipped, so photometric
augmentation works on [0, 1] data; then standardised with the ``mean``/``std`` of the scaled
training pixels::

    x01 = clip((x - low) / (high - low), 0, 1)        x_model = (x01 - mean) / std

The statistics travel in every checkpoint, so prediction normalises exactly as training did.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from geoidec.data.base import DataError, Scene, open_raster


@dataclass(frozen=True)
class Normalization:
    """Per-band scaling to [0, 1] and standardisation."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

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

    def to_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        return cls(**{k: tuple(float(x) for x in data[k]) for k in ("low", "high", "mean", "std")})


def _as(ref: np.ndarray | torch.Tensor, values: Sequence[float]) -> np.ndarray | torch.Tensor:
    if isinstance(ref, torch.Tensor):
        return torch.tensor(values, dtype=ref.dtype, device=ref.device)
    return np.asarray(values, dtype=np.float32)


def sample_pixels(scene: Scene, max_pixels: int) -> tuple[np.ndarray, str]:
    """Up to ``max_pixels`` valid pixels (N, C) of a scene, read decimated; and its dtype."""
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
    pixels = data.reshape(len(bands), -1).T.astype(np.float64)
    ok = masks.reshape(len(bands), -1).min(axis=0) > 0
    ok &= np.isfinite(pixels).all(axis=1)
    return pixels[ok], dtype


def compute_normalization(scenes: Sequence[Scene], max_pixels: int = 2_000_000) -> Normalization:
    """Statistics from a decimated sample of every training scene (``max_pixels`` in total,
    spread evenly, at least 1024 per scene)."""
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
    )
