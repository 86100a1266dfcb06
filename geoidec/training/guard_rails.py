"""Guard-rails of a ``--from`` step: the new images must have the parent model's bands (count
and names, an error otherwise); another pixel size, CRS or shift of the image statistics
(in the model's scaled units) gives a warning naming both values."""

from __future__ import annotations

import numpy as np

from geoidec.data.base import DatasetSpec
from geoidec.data.normalization import Normalization, sample_pixels, with_fill
from geoidec.data.scene_reader import open_raster
from geoidec.errors import DataError
from geoidec.training.parent import Parent

#: A band whose mean (in the model's [0, 1] scaling) moved by more than this many of the
#: training data's standard deviations, or whose spread changed by more than this factor,
#: is reported as a shift of the image statistics.
SHIFT_STDS = 2.0
SPREAD_FACTOR = 2.0


def _first_image(dataset: DatasetSpec) -> tuple[int, tuple[float, float], str | None, str]:
    """(band count read, pixel size, CRS, path) of the first training image."""
    scene = dataset.scenes("train")[0]
    with open_raster(scene.image) as src:
        count = len(scene.bands) if scene.bands else src.count
        return count, (abs(src.res[0]), abs(src.res[1])), (
            src.crs.to_string() if src.crs else None), str(scene.image)


def check_inputs(parent: Parent, dataset: DatasetSpec, normalization: Normalization,
                 stats_pixels: int) -> list[str]:
    """Errors (raised, one line) and warnings (returned) about new images unlike the model's
    training data: band count and names must match; pixel size, CRS and image statistics
    may differ, with a warning naming both values."""
    meta = parent.checkpoint.meta
    bands, res, crs, image = _first_image(dataset)
    if bands != int(meta["bands"]):
        raise DataError(f"{image} has {bands} band(s) but the model of {parent.source} was "
                        f"trained on {meta['bands']}; select the same bands (the dataset "
                        "YAML's bands key) in the same order")
    theirs = [str(n) for n in meta.get("band_names") or []]
    mine = [str(n) for n in dataset.band_names]
    if theirs and mine and theirs != mine:
        raise DataError(f"{dataset.name} has bands {', '.join(mine)} but the model of "
                        f"{parent.source} was trained on {', '.join(theirs)}; list the same "
                        "bands in the same order")
    warnings = []
    trained_res = meta.get("resolution")
    if trained_res and max(max(res) / max(trained_res), max(trained_res) / max(res)) > 1.5:
        warnings.append(f"warning: {image} has {res[0]:g} x {res[1]:g} pixels but the model "
                        f"was trained on {trained_res[0]:g} x {trained_res[1]:g}; resample "
                        "the new images to the model's pixel size (or expect poor results)")
    if meta.get("crs") and crs and crs != meta["crs"]:
        warnings.append(f"warning: {image} is in {crs} but the model was trained on images "
                        f"in {meta['crs']}; the pixel size is what matters, check it")
    shifted = statistics_shift(dataset, normalization, stats_pixels)
    if shifted:
        warnings.append("warning: the new images' statistics differ from the model's "
                        f"training data in {'; '.join(shifted)} (in the model's scaled units); "
                        "another sensor, season or scaling? The model's normalisation is kept")
    return warnings


def statistics_shift(dataset: DatasetSpec, normalization: Normalization,
                     stats_pixels: int) -> list[str]:
    """Bands whose pixels, scaled as the model scales them, have a mean more than
    :data:`SHIFT_STDS` training standard deviations away from the training mean, or a spread
    :data:`SPREAD_FACTOR` times wider or narrower."""
    scenes = with_fill(dataset.scenes("train"), normalization)
    per_scene = max(1024, stats_pixels // max(len(scenes), 1))
    pixels = np.concatenate([sample_pixels(s, per_scene)[0] for s in scenes])
    if not len(pixels):
        return []
    unit = np.asarray(normalization.to_unit(pixels.T[:, :, None]))[:, :, 0]  # (C, N)
    mean, std = unit.mean(axis=1), unit.std(axis=1)
    names = list(dataset.band_names) or [str(b + 1) for b in range(len(mean))]
    out = []
    for b, (m, s) in enumerate(zip(mean, std, strict=True)):
        m0, s0 = normalization.mean[b], normalization.std[b]
        if abs(m - m0) > SHIFT_STDS * s0 or not 1 / SPREAD_FACTOR <= (s / s0) <= SPREAD_FACTOR:
            label = f"band {b + 1}" + (f" ({names[b]})" if dataset.band_names else "")
            out.append(f"{label}: mean {m:.2f} vs {m0:.2f}, spread {s:.2f} vs {s0:.2f}")
    return out


__all__ = ["SHIFT_STDS", "SPREAD_FACTOR", "check_inputs", "statistics_shift"]
