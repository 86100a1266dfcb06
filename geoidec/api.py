"""Python API for notebooks and scripts: load a trained model, map arrays.

    import geoidec
    model = geoidec.load("runs/v2")            # a run folder (its last step) or a step_N.pt
    model.classes                              # [ModelClass(index, name, code, color), ...]
    codes = model.predict(image)               # (bands, H, W) numpy array or torch tensor
    probs = model.predict_proba(image)         # (K, H, W) float32

``predict`` runs exactly what ``geoidec predict`` runs (the checkpoint's window size and
overlap, cosine blending, strips of at most 2,048 px, the training normalisation, nodata
and fill values read as invalid), so for the bands of a GeoTIFF it returns the class map
``geoidec predict`` writes, pixel for pixel (tests/test_api.py). docs/api.md has the guide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window

from geoidec.constants import IGNORE_INDEX
from geoidec.data.scene_reader import fill_mask
from geoidec.errors import DataError

__all__ = ["Model", "ModelClass", "load", "predict_file", "train"]


@dataclass(frozen=True)
class ModelClass:
    """One output of a model: its index (model order, background 0), name, code (its value
    in class maps: the dataset YAML's, or the index for datasets without codes) and RGB
    colour."""

    index: int
    name: str
    code: int
    color: tuple[int, int, int]


def load(path: str | Path, *, step: int | None = None, device: str = "auto") -> Model:
    """The model of a run folder (its last step, or ``step``) or of a ``step_N.pt``
    checkpoint, on ``device`` (``auto``: CUDA when present)."""
    from geoidec.checkpoint import load_checkpoint
    from geoidec.devices import resolve_device

    dev = resolve_device(device)
    return Model(load_checkpoint(path, step, map_location=dev), dev)


class _ArrayReader:
    """A scene reader over an in-memory ``(C, H, W)`` array, with the validity rule of
    :class:`geoidec.data.scene_reader.SceneReader`: a pixel is valid when every band is
    finite, none equals ``nodata`` and none equals its band's fill value."""

    def __init__(self, image: np.ndarray, nodata: float | None,
                 fill: Sequence[float | None] | None) -> None:
        self.image = image
        self.height, self.width = image.shape[1:]
        ok = np.ones(image.shape[1:], dtype=bool)
        if np.issubdtype(image.dtype, np.floating):
            ok &= np.isfinite(image).all(axis=0)
        if nodata is not None:
            ok &= ~(fill_mask(image, nodata).any(axis=0))
        for band, value in enumerate(fill or ()):
            if value is not None:
                ok &= ~fill_mask(image[band], value)
        self.valid = ok

    def get(self) -> _ArrayReader:  # the interface of predict.py's thread-local readers
        return self

    def read_image(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        rows = slice(int(window.row_off), int(window.row_off) + int(window.height))
        cols = slice(int(window.col_off), int(window.col_off) + int(window.width))
        valid = self.valid[rows, cols]
        part = self.image[:, rows, cols].astype(np.float32)
        part[:, ~valid] = 0.0
        return part, valid.copy()


class Model:
    """A trained geoidec model (see :func:`load`)."""

    def __init__(self, checkpoint: Any, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.device = device
        codes = checkpoint.codes
        self.classes = [ModelClass(i, c.name, codes[i] if codes else i, tuple(c.color))
                        for i, c in enumerate(checkpoint.classes)]
        #: Value of class-map pixels where the input is invalid.
        self.nodata_code = checkpoint.nodata_code if codes is not None else IGNORE_INDEX
        self.bands: int = checkpoint.bands
        self.band_names: list[str] | None = checkpoint.meta.get("band_names")
        self.resolution = checkpoint.meta.get("resolution")
        self.crs = checkpoint.meta.get("crs")

    def __repr__(self) -> str:
        names = ", ".join(c.name for c in self.classes)
        return (f"geoidec.Model({self.checkpoint.path}, step {self.checkpoint.meta.get('step')}"
                f", {self.bands} band(s), classes: {names})")

    def _as_array(self, image: np.ndarray | torch.Tensor) -> np.ndarray:  # (C, H, W)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        image = np.asarray(image)
        if image.ndim == 2 and self.bands == 1:
            image = image[None]
        if image.ndim != 3 or image.shape[0] != self.bands:
            names = f" ({', '.join(self.band_names)})" if self.band_names else ""
            raise DataError(f"the model expects an array of shape (bands, height, width) with "
                            f"{self.bands} band(s){names}; got shape {tuple(image.shape)}")
        return image

    def _probabilities(self, image: np.ndarray | torch.Tensor, nodata: float | None,
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Blended probabilities (K, H, W) float32 and the valid mask (H, W)."""
        from geoidec.inference.forward import probability_fn
        from geoidec.inference.predictor_setup import (
            reading_threads,
            resolve_tiling,
            threads_for_forward_only,
        )
        from geoidec.inference.reading import WindowReader
        from geoidec.inference.sliding import SlidingWindowPredictor
        from geoidec.inference.strips import StripPredictor

        array = self._as_array(image)
        reader = _ArrayReader(array, nodata, self.checkpoint.normalization.fill)
        height, width = reader.height, reader.width
        k = self.checkpoint.num_classes
        probs = np.zeros((k, height, width), dtype=np.float32)
        valid = np.zeros((height, width), dtype=bool)
        model = self.checkpoint.model.to(self.device).eval()
        forward = probability_fn(model, self.device, amp=self.device.type == "cuda")
        tile, overlap = resolve_tiling(self.checkpoint, None, None, height, width)
        with threads_for_forward_only(self.device) as wrap:
            predictor = SlidingWindowPredictor(
                wrap(forward), num_classes=k, tile=tile, overlap=overlap,
                batch_size=batch_size, device=self.device, readers=reading_threads(self.device))
            read = WindowReader(reader, [self.checkpoint.normalization])
            for row, col, p, v in StripPredictor(predictor).run(read, height, width):
                rows, cols = slice(row, row + p.shape[1]), slice(col, col + p.shape[2])
                probs[:, rows, cols], valid[rows, cols] = p, v
        return probs, valid

    def predict_proba(self, image: Any, *, nodata: float | None = None,
                      batch_size: int = 8) -> Any:
        """Class probabilities ``(K, H, W)`` float32 in model order (:attr:`classes`) for a
        ``(bands, H, W)`` array of raw band values (as in the training rasters); 0 where
        the input is invalid (non-finite, ``nodata`` or a band's fill value). An xarray
        DataArray gives a DataArray with a ``class`` dimension (the class names) and the
        input's other coordinates, CRS and transform."""
        values, nodata = _unwrap(image, nodata)
        probs, valid = self._probabilities(values, nodata, batch_size)
        probs[:, ~valid] = 0.0
        if not _is_dataarray(image):
            return probs
        return _wrap(image, probs, "probability", extra=("class", [c.name for c in self.classes]))

    def predict(self, image: Any, *, nodata: float | None = None, batch_size: int = 8) -> Any:
        """The class map ``(H, W)`` uint8 of a ``(bands, H, W)`` array: each pixel's class
        code (:attr:`ModelClass.code`), :attr:`nodata_code` where the input is invalid. An
        xarray DataArray (``rioxarray``'s ``open_rasterio``) gives a DataArray with the
        input's coordinates, CRS and transform, and the nodata code as its nodata; its
        nodata value, when it has one, marks invalid input pixels."""
        from geoidec.inference.layers import code_table

        values, nodata = _unwrap(image, nodata)
        probs, valid = self._probabilities(values, nodata, batch_size)
        labels = probs.argmax(axis=0).astype(np.uint8)
        labels[~valid] = IGNORE_INDEX
        table = code_table([c.code for c in self.classes], self.nodata_code)
        codes = labels if table is None else table[labels]
        if not _is_dataarray(image):
            return codes
        return _wrap(image, codes, "class", nodata=self.nodata_code)


def _is_dataarray(obj: Any) -> bool:
    return type(obj).__name__ == "DataArray" and hasattr(obj, "dims")


def _unwrap(image: Any, nodata: float | None) -> tuple[Any, float | None]:
    """The values of an xarray DataArray (and its nodata, from rioxarray, unless given);
    anything else unchanged."""
    if not _is_dataarray(image):
        return image, nodata
    if nodata is None:
        rio = getattr(image, "rio", None)  # present once rioxarray is imported
        nodata = rio.nodata if rio is not None else image.attrs.get("_FillValue")
    return image.values, None if nodata is None else float(nodata)


def _wrap(like: Any, values: np.ndarray, name: str, *, nodata: int | None = None,
          extra: tuple[str, list[str]] | None = None) -> Any:
    """``values`` as a DataArray on ``like``'s spatial dimensions and coordinates, with its
    CRS and transform (rioxarray), ``extra`` as a leading dimension."""
    import xarray as xr

    spatial = like.dims[1:]
    dims = ((extra[0],) if extra else ()) + tuple(spatial)
    coords = {d: like.coords[d] for d in spatial if d in like.coords}
    if extra:
        coords[extra[0]] = extra[1]
    out = xr.DataArray(values, dims=dims, coords=coords, name=name)
    rio = getattr(like, "rio", None)
    if rio is not None and rio.crs is not None:
        out = out.rio.write_crs(rio.crs).rio.write_transform(rio.transform())
    if nodata is not None:
        out = out.rio.write_nodata(nodata) if rio is not None else out.assign_attrs(
            _FillValue=nodata)
    return out


def train(
    dataset: str | Path,
    *,
    steps: str | None = None,
    method: str = "idec",
    out: str | Path | None = None,
    from_run: str | Path | None = None,
    eval_on: Sequence[str | Path] = (),
    root: str | Path | None = None,
    preset: str = "auto",
    iterations: int | None = None,
    batch_size: int | None = None,
    tile_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    weights: str | None = None,
    modality: str = "rgb",
    settings: Mapping[str, Any] | Sequence[str] = (),
    overwrite: bool = False,
    quiet: bool = False,
    label: str | None = None,
    step0_from: str | Path | None = None,
    resume: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """``geoidec train`` as a function (the command line calls it): train ``dataset`` (a
    dataset name or YAML) on ``steps``, or one step ``from_run`` an existing model, and
    return the :class:`geoidec.training.run.RunResult` (``run_dir``, ``report``).

    Arguments mirror the command's options; ``settings`` are ``--set`` values, as a mapping
    (``{"train.lr": 0.01}``) or ``key=value`` strings."""
    import sys

    from geoidec.config import load_config
    from geoidec.data.registry import auto_preset, load_dataset
    from geoidec.errors import UsageError
    from geoidec.training.run import train_run

    say = echo or (lambda m: print(f"geoidec: {m}", file=sys.stderr))
    sets = [f"{k}={v}" for k, v in settings.items()] if isinstance(settings, Mapping) \
        else list(settings)
    overrides = {
        "method.name": method, "train.iterations": iterations, "train.batch_size": batch_size,
        "data.tile_size": tile_size, "train.seed": seed, "train.device": device,
        "model.weights": weights, "data.modality": modality,
        "train.progress": False if quiet else None,
    }
    if iterations is not None:
        overrides["train.iterations_incremental"] = iterations
    load_config("cpu" if preset == "auto" else preset, overrides, sets)  # typos stop here
    root = Path(root) if root is not None else None
    spec = load_dataset(str(dataset), root, modality)
    if preset == "auto":
        preset, why = auto_preset(spec)
        say(f"preset {preset} ({why}; another with --preset)")
    name = Path(preset).stem if preset.endswith((".yaml", ".yml")) else preset
    cfg = load_config(preset, overrides, sets, dataset_defaults=spec.preset_overrides.get(name))
    if iterations is not None:
        cfg = cfg.override({"train.epochs": None})
    resume = Path(resume) if resume is not None else None
    out = Path(out) if out is not None else None
    if resume is not None and out is not None and out.resolve() != resume.resolve():
        raise UsageError(f"--resume {resume} continues that run folder; --out {out} names "
                         "another one (leave --out out)")
    step0 = Path(step0_from) if step0_from is not None else None
    if from_run is not None:
        from geoidec.training.extend import extend_run

        if steps is not None:
            raise UsageError("--from adds the dataset's new classes in one step; leave "
                             "--steps out")
        if step0 is not None:
            raise UsageError("--from starts from a model; --step0-from cannot be combined "
                             "with it")
        others = [load_dataset(str(d), root, modality) for d in eval_on]
        run_dir = resume or out or Path("runs") / f"{spec.name}-from-{Path(from_run).name}"
        return extend_run(spec, Path(from_run), cfg, run_dir, eval_on=others,
                          overwrite=overwrite, echo=say, label=label, resume=resume)
    if eval_on:
        raise UsageError("--eval-on scores a --from run on other datasets; a run of one "
                         "dataset is scored on its own test split")
    steps = steps or str(len(spec.classes))
    run_dir = resume or out or Path("runs") / (
        f"{spec.name}-{steps.replace('|', '_')}-{cfg.method.name}")
    return train_run(spec, steps, cfg, run_dir, overwrite=overwrite, echo=say, label=label,
                     step0_from=step0, resume=resume)


def predict_file(scene: str | Path, model: str | Path, out: str | Path | None = None, *,
                 device: str = "auto", **options: Any) -> Any:
    """``geoidec predict SCENE --model MODEL`` for one scene as a function: the class map
    (default ``SCENE_classes.tif`` beside the scene) and the extras requested in
    ``options`` (``confidence=True``, ``vectors=Path``, ``change_from=...`` a run or
    checkpoint, ``min_area``, ``overwrite``, ...: the keywords of
    :func:`geoidec.inference.predict.predict_scene`); returns its
    :class:`~geoidec.inference.outputs.Prediction` (``paths``, class ``counts``, ...)."""
    from geoidec.checkpoint import load_checkpoint
    from geoidec.devices import resolve_device
    from geoidec.inference.batch import scene_output
    from geoidec.inference.predict import predict_scene

    scene, dev = Path(scene), resolve_device(device)
    if isinstance(options.get("change_from"), str | Path):
        options["change_from"] = load_checkpoint(options["change_from"], map_location=dev)
    target = Path(out) if out is not None else scene_output(scene, scene.parent)
    return predict_scene(load_checkpoint(model, map_location=dev), scene, target, device=dev,
                         **options)
