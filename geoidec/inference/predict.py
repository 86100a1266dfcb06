"""Predict a whole scene with a step's checkpoint into GIS-ready outputs.

One pass of the sliding-window predictor (:mod:`geoidec.inference.sliding`: windows read in a
prefetch thread, cosine-blended probabilities in a row-band accumulator) feeds every output
band by band, so memory is bounded by a row band whatever the scene size:

- ``OUT.tif``: the class map (:class:`~geoidec.inference.class_raster.ClassRasterStream`: COG,
  colour table, class names, ``OUT.qml``, ``OUT.tif.aux.xml`` raster attribute table,
  overviews by MODE); or a palette PNG when ``OUT`` ends in ``.png`` (``.jpg`` is written as
  ``.png``: JPEG would mix class values). Pixels hold the model's output indices, or, when
  the checkpoint's classes carry codes (a dataset YAML), the classes' codes: the indices
  are mapped with a uint8 lookup table just before writing, nodata becomes the checkpoint's
  nodata code, and every piece of class metadata is keyed by the codes;
- ``OUT_confidence.tif`` (``confidence``): the maximum class probability, uint8 0..100,
  nodata 255;
- ``OUT_probabilities.tif`` (``probabilities``): one uint8 0..100 band per class (band
  descriptions = class names), nodata 255;
- ``OUT_change.tif`` (``change_from``): 0 = same class as the other checkpoint's map,
  1 = changed, 255 = nodata; classes are matched by name. Both models run on the same
  windows (their probabilities are blended side by side), so the change map is exactly the
  comparison of the two class maps that each checkpoint predicts on its own;
- ``vectors`` (a ``.gpkg``): polygons per class merged across windows and bands
  (:mod:`geoidec.inference.vectors`);
- ``OUT_preview.png`` (``preview``): a decimated quick-look (:mod:`geoidec.inference.preview`).

Every output is written to a temporary name and renamed when all are complete, the class map
last: a class map under its final name means the scene is done (batch runs resume on it).

:func:`predict_scene` is one pipeline over one window reader: the options are checked
(:mod:`~geoidec.inference.preflight`) and the input inspected
(:mod:`~geoidec.inference.scene_input`), then windows are read and normalised
(:mod:`~geoidec.inference.reading`), inferred in strips (:mod:`~geoidec.inference.strips`,
set up by :mod:`~geoidec.inference.predictor_setup`), turned into output layers
(:mod:`~geoidec.inference.layers`) and written to the sinks (:mod:`~geoidec.inference.sinks`);
the sidecars and the commit follow (:mod:`~geoidec.inference.scene_job`).

Windows overhanging the scene (scenes smaller than a tile) are padded by mirroring the
scene's pixels, not with zeros, and a scene that fits in one tile is predicted with one
window just large enough (a multiple of 32 px). Input bands flagged as alpha are masks, not
data, when the remaining band count is the model's. Guard-rail warnings:
:mod:`geoidec.inference.checks`.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

from geoidec.checkpoint import Checkpoint
from geoidec.config.choices import Tta
from geoidec.data.base import Scene
from geoidec.data.scene_reader import SceneReader
from geoidec.inference.distributed import PartFile, PredictGroup
from geoidec.inference.outputs import Prediction, output_paths
from geoidec.inference.predictor_setup import (
    model_forward,
    reading_threads,
    resolve_tiling,
    threads_for_forward_only,
)
from geoidec.inference.preflight import check_options
from geoidec.inference.reading import ThreadReaders, WindowReader
from geoidec.inference.scene_input import inspect_input
from geoidec.inference.scene_job import SceneJob
from geoidec.inference.sinks import encode_all, merge_and_complete, predict_part
from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.inference.strips import StripPredictor

__all__ = ["predict_scene"]

STRIP_WIDTH = 2048
"""Widest strip predicted at a time (px): memory is that of a scene this wide."""
GDAL_CACHE_MB = 32
"""GDAL block cache during prediction, unless GDAL_CACHEMAX is set (GDAL's default, 5% of
the RAM, would let the cache of a large scene's blocks grow with the scene)."""
ProgressFn = Callable[[int, int], None]
P = ParamSpec("P")
R = TypeVar("R")


def _bounded_gdal_cache(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with GDAL's block cache capped at :data:`GDAL_CACHE_MB` (unless the user
    set GDAL_CACHEMAX)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if os.environ.get("GDAL_CACHEMAX"):
            return func(*args, **kwargs)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
            return func(*args, **kwargs)

    return wrapper


@_bounded_gdal_cache
def predict_scene(
    checkpoint: Checkpoint,
    scene_path: Path,
    out: Path,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    device: torch.device | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    confidence: bool = False,
    probabilities: bool = False,
    vectors: Path | None = None,
    simplify: float = 0.0,
    change_from: Checkpoint | None = None,
    preview: bool = False,
    vector_band_rows: int = 1024,
    strip_width: int = STRIP_WIDTH,
    group: PredictGroup | None = None,
    readers: int | None = None,
    min_area: str | None = None,
    threads: int | None = None,
    tta: Tta = "none",
) -> Prediction:
    """Sliding-window prediction of ``scene_path`` into ``out`` and the requested extras.

    The class map has the scene's CRS, transform and size, the class of each pixel (its
    code when the checkpoint's classes have codes, else its output index), the nodata code
    (255 unless the dataset YAML set ``nodata_code``) where the input is nodata
    (nodata value, alpha band, mask, NaN), a colour table and class names, a QGIS style and a
    raster attribute table beside it. See the module docstring for every output.

    Args:
        checkpoint: the model and everything needed to use it.
        scene_path: input raster (any GDAL raster with the training bands).
        out: class map path (``.tif``: COG; ``.png``: palette PNG).
        tile: window size (default: the checkpoint's).
        overlap: window overlap (default: the checkpoint's, capped at tile/4 for another
            tile size).
        batch_size: windows per forward pass.
        device: torch device (default CPU).
        overwrite: replace existing outputs.
        progress: ``progress(done_windows, total_windows)``.
        confidence: also write ``OUT_confidence.tif``.
        probabilities: also write ``OUT_probabilities.tif``.
        vectors: also write class polygons to this GeoPackage.
        simplify: polygon simplification tolerance in CRS units (0 = none).
        change_from: also write ``OUT_change.tif`` against this checkpoint's map.
        preview: also write ``OUT_preview.png``.
        vector_band_rows: rows polygonised at a time.
        strip_width: widest strip of windows predicted at a time (memory bound; see
            :mod:`geoidec.inference.strips`).
        group: the processes predicting this scene together (launched by torchrun; see
            :mod:`geoidec.inference.distributed`); rank 0 writes the outputs.
        readers: threads reading windows (default :func:`reading_threads`).
        threads: CPU threads for the work around the model (default: every core): with
            more than one, outputs are encoded in a background thread while the next
            windows are predicted, and GDAL compresses the COGs with as many threads.
        min_area: minimum mapping unit of the polygons: ``"500"`` (square CRS units, m² in
            a projected CRS) or ``"10px"`` (pixels); smaller regions are merged into a
            neighbour before polygonising (see :func:`min_area_pixels`).
        tta: test-time augmentation: ``none``, ``flip`` or ``d4`` (the mean of the
            probabilities over 4 flips or the 8 symmetries of the square; 4x or 8x the
            forwards, see :func:`~geoidec.inference.forward.probability_fn`).

    Returns:
        A :class:`Prediction` (paths, class counts, warnings).

    Raises:
        DataError: unreadable input, wrong band count, existing outputs, bad options.
    """
    scene_path = Path(scene_path)
    paths = output_paths(out, confidence=confidence, probabilities=probabilities,
                         change=change_from is not None, vectors=vectors, preview=preview)
    check_options(paths, out, scene_path, batch_size, simplify, min_area, overwrite)
    device = device or torch.device("cpu")
    bands, messages, crs, transform = inspect_input(checkpoint, scene_path, change_from, paths)
    job = SceneJob(checkpoint, paths, scene_path.name, transform, overwrite, simplify,
                   vector_band_rows, min_area, change_from)
    predict_fn, normalizations, lut = model_forward(checkpoint, change_from, device, tta)
    workers = max(1, threads if threads is not None else os.cpu_count() or 1)
    scene = Scene(name=scene_path.stem, image=scene_path, bands=bands,
                  fill=checkpoint.normalization.fill)
    with threads_for_forward_only(device) as wrap, SceneReader(scene) as reader:
        height, width = reader.height, reader.width
        tile_, overlap_ = resolve_tiling(checkpoint, tile, overlap, height, width)
        job.start_preview(height, width, len(bands))
        predictor = SlidingWindowPredictor(
            wrap(predict_fn), num_classes=job.k + (0 if lut is None else len(lut)),
            tile=tile_, overlap=overlap_, batch_size=batch_size, device=device,
            readers=readers if readers is not None else reading_threads(device, workers))
        strips = StripPredictor(predictor, strip_width=strip_width,
                                carry_dir=paths.classes.parent)
        geo = {"height": height, "width": width, "crs": crs,
               "transform": transform if crs is not None else None, "overwrite": overwrite,
               "threads": workers}
        with closing(ThreadReaders(reader.scene)) as handles:
            read = WindowReader(handles, normalizations, job.sampler)
            polygons = _write_outputs(job, strips, read, geo, lut, group, progress,
                                      workers > 1)
    return job.result(height, width, messages, polygons)


def _write_outputs(job: SceneJob, strips: StripPredictor, read: WindowReader,
                   geo: dict[str, Any], lut: np.ndarray | None, group: PredictGroup | None,
                   progress: ProgressFn | None, background: bool) -> int:
    """Windows read by ``read`` -> blended sums (``strips``) -> output layers -> the job's
    sinks -> sidecars and commit; the polygon count. With a ``group``, every rank writes
    its rows to a part file and rank 0 merges them into the sinks. On any error every
    temporary is removed."""
    height, width = geo["height"], geo["width"]
    part: PartFile | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            if group is None or group.is_main:
                job.open_sinks(geo)
            rows = None if group is None else group.rows(height)
            chunks = strips.run_sums(read, height, width, progress, rows=rows)
            if group is None:
                assert job.sinks is not None
                encode_all(chunks, job.sinks, job.k, lut, job.paths, background)
                return job.complete()
            part = predict_part(group, chunks, job.paths, rows, width, job.k, lut, background)
            return merge_and_complete(group, job.sinks, job.paths.classes, height,
                                      job.sampler, job.complete)
    except BaseException:
        job.abort()
        if part is not None:
            part.remove()
        raise
