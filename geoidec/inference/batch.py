"""Many scenes at once: a folder, a glob or a list of rasters into one output folder.

Each input ``NAME.ext`` (``.tif``, ``.tiff``, ``.jp2``, ``.png``, ``.jpg``, ``.jpeg``) is
predicted into ``DIR/NAME_classes.tif`` (a palette ``DIR/NAME_classes.png`` for a PNG/JPEG
without georeferencing), with the requested extras beside it (``NAME_classes_confidence.tif``
...; polygons in ``VECTORS/NAME_classes.gpkg``). A scene whose class map and requested
extras all exist is skipped, so an interrupted run resumes where it stopped (partial outputs
never carry a final name); ``overwrite`` recomputes everything. A scene that fails with a
user error (wrong bands, unreadable file) is reported and the others go on; the batch then
ends with one error naming the failures.

At the end, ``DIR/mosaic.vrt`` (+ ``mosaic.qml``) lists every georeferenced class map
(:func:`~geoidec.inference.mosaic.write_mosaic_vrt`).
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning

from geoidec.checkpoint import Checkpoint
from geoidec.config.choices import Tta
from geoidec.constants import IGNORE_INDEX
from geoidec.data.base import DataError
from geoidec.inference.checks import log
from geoidec.inference.distributed import PredictGroup
from geoidec.inference.mosaic import MOSAIC, write_mosaic_vrt
from geoidec.inference.outputs import Prediction, output_paths
from geoidec.inference.predict import predict_scene

__all__ = [
    "RASTER_SUFFIXES",
    "BatchResult",
    "find_scenes",
    "is_batch",
    "predict_many",
    "scene_output",
]

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".png", ".jpg", ".jpeg")
OUTPUT_TAGS = ("_classes", "_confidence", "_probabilities", "_change", "_preview")


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def is_batch(inputs: Sequence[str | Path]) -> bool:
    """Several inputs, a folder, or a glob pattern that is not an existing file."""
    if len(inputs) != 1:
        return True
    only = Path(inputs[0])
    return only.is_dir() or (_has_glob(str(only)) and not only.exists())


def _is_raster_name(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES and not path.name.startswith(".")


def find_scenes(inputs: Sequence[str | Path], out_dir: Path | None = None) -> list[Path]:
    """Rasters named by files, folders (not recursive) and glob patterns, in order.

    Our own outputs (``*_classes.tif`` ...) inside ``out_dir`` are left out, so the output
    folder may be the input folder.

    Raises:
        DataError: an input does not exist, nothing is found, or two inputs share a name.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and _is_raster_name(p))
        elif path.is_file():
            found.append(path)
        elif _has_glob(str(item)):
            found += sorted(Path(p) for p in glob.glob(str(item))
                            if Path(p).is_file() and _is_raster_name(Path(p)))
        else:
            raise DataError(f"input not found: {item}")
    out_resolved = Path(out_dir).resolve() if out_dir is not None else None
    scenes: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        resolved = path.resolve()
        if resolved in seen:
            continue
        if out_resolved is not None and resolved.parent == out_resolved and any(
                path.stem.endswith(tag) for tag in OUTPUT_TAGS):
            continue
        seen.add(resolved)
        scenes.append(path)
    if not scenes:
        raise DataError(f"no rasters ({', '.join('*' + s for s in RASTER_SUFFIXES)}) found in "
                        + ", ".join(str(i) for i in inputs))
    stems: dict[str, Path] = {}
    for path in scenes:
        if path.stem in stems:
            raise DataError(f"{stems[path.stem]} and {path} would both be written as "
                            f"{path.stem}_classes; rename one of them")
        stems[path.stem] = path
    return scenes


def _plain_image(path: Path) -> bool:
    """A PNG/JPEG without georeferencing (a photo): its class map is a palette PNG."""
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.crs is None and src.transform.is_identity and not src.gcps[0]
    except rasterio.errors.RasterioIOError:
        return False


def scene_output(scene: Path, out_dir: Path) -> Path:
    """``out_dir/NAME_classes.tif`` (``.png`` for a photo without georeferencing)."""
    suffix = ".png" if _plain_image(scene) else ".tif"
    return Path(out_dir) / f"{scene.stem}_classes{suffix}"


@dataclass
class BatchResult:
    """Outcome of :func:`predict_many`."""

    predicted: list[Prediction] = field(default_factory=list)
    #: Class maps found complete and skipped.
    skipped: list[Path] = field(default_factory=list)
    #: ``(scene, one-line reason)`` of scenes that failed.
    failed: list[tuple[Path, str]] = field(default_factory=list)
    #: Class maps of this batch (predicted or skipped), in input order.
    outputs: list[Path] = field(default_factory=list)
    mosaic: Path | None = None


def predict_many(
    checkpoint: Checkpoint,
    scenes: Sequence[Path],
    out_dir: Path,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    device: torch.device | None = None,
    overwrite: bool = False,
    confidence: bool = False,
    probabilities: bool = False,
    vectors_dir: Path | None = None,
    simplify: float = 0.0,
    change_from: Checkpoint | None = None,
    preview: bool = False,
    min_area: str | None = None,
    progress: Callable[[int, int, Path], Callable[[int, int], None] | None] | None = None,
    mosaic: bool = True,
    group: PredictGroup | None = None,
    tta: Tta = "none",
) -> BatchResult:
    """Predict every scene into ``out_dir`` (resuming), then write ``out_dir/mosaic.vrt``.

    Args:
        checkpoint: the model.
        scenes: input rasters (see :func:`find_scenes`).
        out_dir: output folder (created).
        vectors_dir: write ``NAME_classes.gpkg`` polygons here, or ``None``.
        progress: ``progress(index, n_scenes, scene)`` returns the per-window callback of
            that scene (or ``None``).
        mosaic: write the VRT mosaic.
        group: processes sharing every scene by rows (torchrun); rank 0 writes the files.
        tile, overlap, batch_size, device, overwrite, confidence, probabilities, simplify,
        change_from, preview, min_area, tta: as for
            :func:`~geoidec.inference.predict.predict_scene`.

    Returns:
        A :class:`BatchResult`; ``failed`` lists the scenes that raised a user error.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder {out_dir}: {exc.strerror}") from None
    result = BatchResult()
    for index, scene in enumerate(scenes):
        out = scene_output(scene, out_dir)
        vectors = (Path(vectors_dir) / f"{out.stem}.gpkg") if vectors_dir is not None else None
        paths = output_paths(out, confidence=confidence, probabilities=probabilities,
                             change=change_from is not None, vectors=vectors, preview=preview)
        if not overwrite and all(p.exists() for p in paths.requested()):
            log.info(f"{scene.name}: done already ({out.name}); skipped")
            result.skipped.append(out)
            result.outputs.append(out)
            continue
        # Not complete: outputs of this scene left by an interrupted run (extras are renamed
        # before the class map) or by a run with other options are redone.
        redo = True
        callback = progress(index, len(scenes), scene) if progress is not None else None
        try:
            prediction = predict_scene(
                checkpoint, scene, out, tile=tile, overlap=overlap, batch_size=batch_size,
                device=device, overwrite=redo, progress=callback, confidence=confidence,
                probabilities=probabilities, vectors=vectors, simplify=simplify,
                change_from=change_from, preview=preview, group=group, min_area=min_area,
                tta=tta)
        except (DataError, FileExistsError) as exc:
            log.warning(f"{scene.name}: skipped: {exc}")
            result.failed.append((scene, str(exc)))
            continue
        result.predicted.append(prediction)
        result.outputs.append(prediction.classes)
    if mosaic and (group is None or group.is_main):
        result.mosaic = _write_mosaic(checkpoint, result.outputs, out_dir)
    return result


def _write_mosaic(checkpoint: Checkpoint, outputs: list[Path], out_dir: Path) -> Path | None:
    """``out_dir/mosaic.vrt`` of the GeoTIFF class maps in ``outputs`` (``None``: none, or
    they cannot share one grid)."""
    tifs = [p for p in outputs if p.suffix == ".tif"]
    if not tifs:
        return None
    names = [c.name for c in checkpoint.classes]
    colors = [c.color for c in checkpoint.classes]
    codes = checkpoint.codes
    nodata = checkpoint.nodata_code if codes is not None else IGNORE_INDEX
    return write_mosaic_vrt(tifs, out_dir / MOSAIC, names, colors, nodata=nodata, codes=codes)
