"""Predict a whole scene with a step's checkpoint into GIS-ready outputs.

One pass of the sliding-window predictor (:mod:`geoidec.inference.sliding`: windows read in a
prefetch thread, cosine-blended probabilities in a row-band accumulator) feeds every output
band by band, so memory is bounded by a row band whatever the scene size:

- ``OUT.tif``: the class map (:class:`~geoidec.inference.writers.ClassRasterStream`: COG,
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

Windows overhanging the scene (scenes smaller than a tile) are padded by mirroring the
scene's pixels, not with zeros, and a scene that fits in one tile is predicted with one
window just large enough (a multiple of 32 px). Input bands flagged as alpha are masks, not
data, when the remaining band count is the model's. Guard-rail warnings:
:mod:`geoidec.inference.checks`.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import rasterio
import torch
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from geoidec.checkpoint import Checkpoint
from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import Scene
from geoidec.data.normalization import Normalization
from geoidec.data.scene_reader import SceneReader, open_raster
from geoidec.errors import DataError, UsageError
from geoidec.files import refuse_existing
from geoidec.inference.checks import check_input, check_result, log, sample_values
from geoidec.inference.distributed import (
    PartFile,
    PredictGroup,
)
from geoidec.inference.forward import probability_fn
from geoidec.inference.outputs import (
    CHANGE_CLASSES,
    CHANGE_COLORS,
    OutputPaths,
    Prediction,
    output_paths,
)
from geoidec.inference.preview import PreviewSampler, write_preview
from geoidec.inference.reading import ThreadReaders, WindowReader
from geoidec.inference.sinks import Sinks, encode_all, merge_and_complete, predict_part
from geoidec.inference.sliding import SlidingWindowPredictor
from geoidec.inference.strips import StripPredictor
from geoidec.inference.vectors import polygonize_class_raster

__all__ = [
    "CHANGE_CLASSES",
    "CHANGE_COLORS",
    "OutputPaths",
    "Prediction",
    "output_paths",
    "predict_scene",
    "resolve_tiling",
    "select_bands",
]

STRIP_WIDTH = 2048
"""Widest strip predicted at a time (px): memory is that of a scene this wide."""
GDAL_CACHE_MB = 32
"""GDAL block cache during prediction, unless GDAL_CACHEMAX is set (GDAL's default, 5% of
the RAM, would let the cache of a large scene's blocks grow with the scene)."""
TILE_MULTIPLE = 32
"""A single window for a small scene is rounded up to this multiple (the output stride)."""
READERS_MAX = 6
"""Most threads reading windows for a GPU."""
ProgressFn = Callable[[int, int], None]
P = ParamSpec("P")
R = TypeVar("R")


def resolve_tiling(
    checkpoint: Checkpoint, tile: int | None, overlap: int | None, height: int, width: int
) -> tuple[int, int]:
    """Window size and overlap: the checkpoint's unless given; one window just large enough
    (multiple of :data:`TILE_MULTIPLE`) for a scene that fits in a tile."""
    if tile is not None and tile <= 0:
        raise UsageError(f"--tile-size must be positive, got {tile}")
    if tile is None or tile == checkpoint.tile_size:
        tile = checkpoint.tile_size
        overlap = int(checkpoint.meta.get("overlap", tile // 4)) if overlap is None else overlap
    elif overlap is None:
        overlap = min(int(checkpoint.meta.get("overlap", tile // 4)), tile // 4)
    if not 0 <= overlap < tile:
        raise UsageError(f"--overlap must be in [0, {tile}) for tile {tile}, got {overlap}")
    if height <= tile and width <= tile:
        small = TILE_MULTIPLE * math.ceil(max(height, width) / TILE_MULTIPLE)
        if small < tile:
            return small, min(overlap, small // 4)
    return tile, overlap


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


def reading_threads(device: torch.device, threads: int | None = None) -> int:
    """Threads reading windows: several when a GPU does the forward (the CPU is free and
    decoding would otherwise starve it), one on CPU (the forward uses every core) unless
    ``threads`` asks for more."""
    if device.type == "cpu":
        return 1 if threads is None else max(1, min(READERS_MAX, threads))
    return max(1, min(READERS_MAX, threads or (os.cpu_count() or 2) - 1))


PredictFn = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def _threads_for_forward_only(device: torch.device) -> Iterator[Callable[[PredictFn],
                                                                          PredictFn]]:
    """On CPU, give the forward all torch threads and everything else one.

    Yields a wrapper for the forward function. The blending, normalisation and slicing
    between forwards are small tensor operations; with several OpenMP threads each pays a
    thread synchronisation that, on a busy CPU, costs more than the operation itself
    (measured on 2 shared cores: 8 ms instead of 0.04 ms of CPU for one window's weight sum).
    The thread count is restored on exit.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1:
        yield lambda fn: fn
        return

    def wrap(fn: PredictFn) -> PredictFn:
        def call(x: torch.Tensor) -> torch.Tensor:
            torch.set_num_threads(threads)
            try:
                return fn(x)
            finally:
                torch.set_num_threads(1)

        return call

    torch.set_num_threads(1)
    try:
        yield wrap
    finally:
        torch.set_num_threads(threads)


def _check_codes(checkpoint: Checkpoint, names: list[str], codes: list[int],
                 nodata: int) -> None:
    """The checkpoint's class codes can be written: uint8, all different, none the nodata
    code (a dataset YAML ensures this; a checkpoint put together otherwise may not)."""
    seen: dict[int, str] = {}
    for name, code in zip(names, codes, strict=True):
        if not 0 <= code <= 255 or code == nodata:
            raise DataError(f"{checkpoint.path}: class {name} has code {code}, which a uint8 "
                            f"class map with nodata {nodata} cannot hold")
        if code in seen:
            raise DataError(f"{checkpoint.path}: classes {seen[code]} and {name} share the code "
                            f"{code}; give them different codes in the dataset YAML (code:)")
        seen[code] = name


def _check_outputs_free(paths: OutputPaths, overwrite: bool) -> None:
    refuse_existing(*paths.requested(), overwrite=overwrite)


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

    Returns:
        A :class:`Prediction` (paths, class counts, warnings).

    Raises:
        DataError: unreadable input, wrong band count, existing outputs, bad options.
    """
    scene_path = Path(scene_path)
    paths = output_paths(out, confidence=confidence, probabilities=probabilities,
                         change=change_from is not None, vectors=vectors, preview=preview)
    _check_options(paths, out, scene_path, batch_size, simplify, min_area, overwrite)
    device = device or torch.device("cpu")
    bands, messages, crs, transform = _inspect_input(checkpoint, scene_path, change_from, paths)
    job = _Job(checkpoint, paths, scene_path.name, transform, overwrite, simplify,
               vector_band_rows, min_area)
    predict_fn, normalizations, lut = _forward(checkpoint, change_from, device)
    workers = max(1, threads if threads is not None else os.cpu_count() or 1)
    with _threads_for_forward_only(device) as wrap, SceneReader(
            Scene(name=scene_path.stem, image=scene_path, bands=bands,
                  fill=checkpoint.normalization.fill)) as reader:
        height, width = reader.height, reader.width
        tile_, overlap_ = resolve_tiling(checkpoint, tile, overlap, height, width)
        if paths.preview is not None:
            job.sampler = PreviewSampler(
                height, width, bands=len(bands), rgb_bands=checkpoint.meta.get("rgb_bands"),
                low=checkpoint.normalization.low, high=checkpoint.normalization.high)
        predictor = SlidingWindowPredictor(
            wrap(predict_fn), num_classes=job.k + (0 if lut is None else len(lut)),
            tile=tile_, overlap=overlap_, batch_size=batch_size, device=device,
            readers=readers if readers is not None else reading_threads(device, workers))
        geo = {"height": height, "width": width, "crs": crs,
               "transform": transform if crs is not None else None, "overwrite": overwrite,
               "threads": workers}
        sinks: Sinks | None = None
        part: PartFile | None = None
        handles = ThreadReaders(reader.scene)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                if group is None or group.is_main:
                    sinks = job.sinks(change_from, geo)
                read = WindowReader(handles, normalizations, job.sampler)
                strips = StripPredictor(predictor, strip_width=strip_width,
                                        carry_dir=paths.classes.parent)
                rows = None if group is None else group.rows(height)
                chunks = strips.run_sums(read, height, width, progress, rows=rows)
                if group is None:
                    assert sinks is not None
                    encode_all(chunks, sinks, job.k, lut, paths, workers > 1)
                    polygons = job.complete(sinks)
                else:
                    part = predict_part(group, chunks, paths, rows, width, job.k, lut,
                                        workers > 1)
                    polygons = merge_and_complete(group, sinks, paths.classes, height,
                                                  job.sampler, lambda: job.complete(sinks))
        except BaseException:
            if sinks is not None:
                sinks.abort()
            if part is not None:
                part.remove()
            raise
        finally:
            handles.close()
    return job.result(sinks, height, width, messages, polygons, change_from is not None)


def _check_options(paths: OutputPaths, out: Path, scene_path: Path, batch_size: int,
                   simplify: float, min_area: str | None, overwrite: bool) -> None:
    """Every option checked, and the output folder made, before the input is read."""
    if Path(out).suffix.lower() in (".jpg", ".jpeg"):
        log.warning(f"{scene_path.name}: class maps are not written as JPEG (it would mix "
                    f"class values); writing the palette PNG {paths.classes}")
    if batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {batch_size}")
    if simplify < 0:
        raise UsageError(f"--simplify must be >= 0, got {simplify}")
    min_area_pixels(min_area, rasterio.Affine.identity())  # a bad value stops before any output
    _check_outputs_free(paths, overwrite)
    try:
        paths.classes.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder {paths.classes.parent}: "
                        f"{exc.strerror}") from None


def _inspect_input(checkpoint: Checkpoint, scene_path: Path, change_from: Checkpoint | None,
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


def _forward(checkpoint: Checkpoint, change_from: Checkpoint | None, device: torch.device
             ) -> tuple[PredictFn, list[Normalization], np.ndarray | None]:
    """The probabilities of the model (and of ``change_from`` after its classes, on the same
    windows), the normalisations the window reader applies (one, or one per model when they
    differ), and the lookup table of the other model's classes into this one's (254: a
    class this model lacks)."""
    amp = device.type == "cuda"
    new_fn = probability_fn(checkpoint.model.to(device).eval(), device, amp=amp)
    normalizations = [checkpoint.normalization]
    if change_from is None:
        return new_fn, normalizations, None
    old_fn = probability_fn(change_from.model.to(device).eval(), device, amp=amp)
    if change_from.normalization != checkpoint.normalization:
        normalizations.append(change_from.normalization)
    c, split = checkpoint.bands, len(normalizations) == 2

    def both(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([new_fn(x[:, :c]), old_fn(x[:, c:] if split else x)], dim=1)

    index = {cl.name: i for i, cl in enumerate(checkpoint.classes)}
    lut = np.array([index.get(cl.name, 254) for cl in change_from.classes], dtype=np.uint8)
    return both, normalizations, lut


class _Job:
    """One scene's prediction: the class metadata of the outputs, the finishing steps
    (vectors, preview, commit) and the :class:`Prediction` returned."""

    def __init__(self, checkpoint: Checkpoint, paths: OutputPaths, name: str, transform: Any,
                 overwrite: bool, simplify: float, vector_band_rows: int,
                 min_area: str | None) -> None:
        self.checkpoint, self.paths, self.name = checkpoint, paths, name
        self.transform, self.overwrite, self.simplify = transform, overwrite, simplify
        self.vector_band_rows, self.min_area = vector_band_rows, min_area
        self.names = [c.name for c in checkpoint.classes]
        self.colors = [c.color for c in checkpoint.classes]
        self.k = checkpoint.num_classes
        self.codes = checkpoint.codes
        self.nodata = checkpoint.nodata_code if self.codes is not None else IGNORE_INDEX
        if self.codes is not None:
            _check_codes(checkpoint, self.names, self.codes, self.nodata)
        self.sampler: PreviewSampler | None = None

    def sinks(self, change_from: Checkpoint | None, geo: dict) -> Sinks:
        provenance = {"geoidec_checkpoint": str(Path(self.checkpoint.path).resolve()),
                      "geoidec_step": str(self.checkpoint.meta.get("step", "")),
                      "geoidec_input": self.name}
        return Sinks(self.paths, self.names, self.colors, self.k, change_from, provenance,
                     geo, self.sampler, codes=self.codes, nodata=self.nodata)

    def complete(self, sinks: Sinks | None) -> int:
        """Finish and commit every output (rank 0); the polygon count."""
        assert sinks is not None
        count = 0
        sinks.finish()
        if self.paths.vectors is not None:
            _, count = polygonize_class_raster(
                sinks.classes.converted, self.paths.vectors, self.names,
                simplify=self.simplify, band_rows=self.vector_band_rows,
                overwrite=self.overwrite, nodata=self.nodata, codes=self.codes,
                colors=self.colors, min_pixels=min_area_pixels(self.min_area, self.transform))
        if self.paths.preview is not None and self.sampler is not None:
            write_preview(self.paths.preview, self.sampler, self.names, self.colors,
                          title=self.name, overwrite=self.overwrite)
        sinks.commit()
        return count

    def result(self, sinks: Sinks | None, height: int, width: int, messages: list[str],
               polygons: int, change: bool) -> Prediction:
        if sinks is None:  # another rank wrote the outputs
            return Prediction(paths=self.paths, height=height, width=width, counts=[],
                              nodata_pixels=0, polygons=0, warnings=messages)
        counts = sinks.classes.counts[sinks.classes.values].tolist()
        messages += check_result(counts, sinks.nodata_pixels, height * width, self.names,
                                 self.name)
        return Prediction(paths=self.paths, height=height, width=width, counts=counts,
                          nodata_pixels=sinks.nodata_pixels, polygons=polygons,
                          warnings=messages, transitions=sinks.transitions if change else None)


def min_area_pixels(min_area: str | None, transform: Any) -> int:
    """Pixels of the minimum mapping unit ``min_area``: ``"10px"`` is 10 pixels, ``"500"``
    500 square CRS units (rounded up to whole pixels of ``transform``); 0 without one."""
    if min_area is None:
        return 0
    text = str(min_area).strip().lower()
    try:
        value = float(text[:-2] if text.endswith("px") else text)
    except ValueError:
        raise UsageError(f"--min-area {min_area}: give an area in square map units (e.g. "
                         "500 for 500 m²) or pixels (e.g. 10px)") from None
    if value < 0:
        raise UsageError(f"--min-area must be >= 0, got {min_area}")
    if text.endswith("px"):
        return math.ceil(value)
    pixel = abs(transform.a * transform.e - transform.b * transform.d) or 1.0
    return math.ceil(value / pixel - 1e-9)


