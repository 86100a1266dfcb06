"""Export a step's checkpoint to ONNX, ready for the QGIS Deepness plugin.

The exported graph takes what Deepness feeds a segmentation model, ``(N, C, T, T)`` float32
tiles of the raster's band values divided by 255, and returns softmax probabilities
``(N, K, T, T)`` (K classes, background first, in the checkpoint's model order). geoidec's own
input scaling (per-band ``low``/``high`` to [0, 1], then ``mean``/``std``) is part of the
graph, so the model gives the same probabilities as ``geoidec predict`` on the same pixels;
the Deepness standardisation in the metadata is therefore the identity (mean 0, std 1).

Metadata (``metadata_props``, every value JSON, as Deepness reads them): ``model_type``
(``"Segmentor"``), ``class_names`` (``{"0": "background", ...}``), ``resolution`` (cm/px;
only for rasters in a metric CRS), ``tile_size`` and ``tiles_size`` (Deepness' code reads the
first, its documentation names the second), ``tiles_overlap`` (percent), ``seg_thresh``
(0: plain argmax, as geoidec), ``seg_small_segment`` (1: no filtering),
``standardization_mean``/``standardization_std`` (identity), and ``geoidec`` (bands,
normalisation, step, method, dataset, source checkpoint).

Batch size is dynamic; the tile size is the checkpoint's evaluation tile. Nodata is not part
of the graph: Deepness decides which pixels it feeds.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from geoidec.checkpoint import Checkpoint, load_checkpoint
from geoidec.data.base import DataError
from geoidec.data.normalization import Normalization
from geoidec.errors import UsageError
from geoidec.files import atomic_write, refuse_existing
from geoidec.models import SegmentationModel

OPSET = 17
FORMATS = ("onnx",)
INPUT_SCALE = 255.0


class ExportedSegmenter(nn.Module):
    """``softmax(model(standardize(to_unit(255 * x))))``: the model with geoidec's input
    normalisation in front (``x`` = band values / 255) and class probabilities out."""

    low: torch.Tensor
    span: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: SegmentationModel, normalization: Normalization) -> None:
        super().__init__()
        self.model = model

        def band(values: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)

        span = [h - lo for lo, h in zip(normalization.low, normalization.high, strict=True)]
        self.register_buffer("low", band(normalization.low))
        self.register_buffer("span", band(tuple(span)))
        self.register_buffer("mean", band(normalization.mean))
        self.register_buffer("std", band(normalization.std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = torch.clamp((x * INPUT_SCALE - self.low) / self.span, 0.0, 1.0)
        z = (unit - self.mean) / self.std
        return torch.softmax(self.model(z).logits.float(), dim=1)


@dataclass(frozen=True)
class ExportResult:
    """What was written."""

    path: Path
    tile_size: int
    bands: int
    classes: list[str]
    metadata: dict[str, str]
    max_difference: float | None


def _resolution_cm(ckpt: Checkpoint) -> float | None:
    """Pixel size in cm when the checkpoint's CRS is metric, else None."""
    from rasterio.crs import CRS

    crs, res = ckpt.meta.get("crs"), ckpt.meta.get("resolution")
    if not crs or not res:
        return None
    try:
        _units, factor = CRS.from_string(crs).linear_units_factor
    except Exception:  # noqa: BLE001 - geographic or unparsable CRS: no metric resolution
        return None
    return round(float(res[0]) * float(factor) * 100.0, 6)


def deepness_metadata(ckpt: Checkpoint, source: Path) -> dict[str, str]:
    """The ``metadata_props`` of the exported model (JSON-encoded values)."""
    tile = ckpt.tile_size
    overlap = int(ckpt.meta.get("overlap", 0))
    bands = ckpt.bands
    meta: dict[str, Any] = {
        "model_type": "Segmentor",
        "class_names": {str(i): c.name for i, c in enumerate(ckpt.classes)},
        "tile_size": tile,
        "tiles_size": tile,
        "tiles_overlap": int(round(100 * overlap / tile)),
        "seg_thresh": 0.0,
        "seg_small_segment": 1,
        "standardization_mean": [0.0] * bands,
        "standardization_std": [1.0] * bands,
        "geoidec": {
            "input": "band values / 255, (N, bands, tile, tile) float32",
            "output": "softmax probabilities (N, classes, tile, tile), background first",
            "bands": bands,
            "band_names": ckpt.meta.get("band_names", []),
            "normalization": ckpt.normalization.to_dict(),
            "step": ckpt.meta.get("step"),
            "method": ckpt.meta.get("method"),
            "dataset": ckpt.meta.get("dataset"),
            "class_colors": {str(i): list(c.color) for i, c in enumerate(ckpt.classes)},
            "checkpoint": str(source),
        },
    }
    codes = ckpt.codes
    if codes is not None:  # the user's class codes, keyed by output channel like class_names
        meta["geoidec"]["class_codes"] = {str(i): code for i, code in enumerate(codes)}
        meta["geoidec"]["nodata_code"] = ckpt.nodata_code
    resolution = _resolution_cm(ckpt)
    if resolution is not None:
        meta["resolution"] = resolution
    return {k: json.dumps(v) for k, v in meta.items()}


def _onnx_modules() -> tuple[Any, Any | None]:
    try:
        import onnx
    except ImportError:
        raise DataError("ONNX export needs the onnx package: pip install 'geoidec[export]' "
                        "(onnx, onnxruntime)") from None
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    return onnx, onnxruntime


def _trace(module: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """TorchScript-based ONNX export (no extra dependency), batch axis dynamic."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), opset_version=opset, input_names=["input"],
            output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            do_constant_folding=True, dynamo=False,
        )


def _finish(onnx: Any, path: Path, classes: int, tile: int, metadata: dict[str, str]) -> None:
    """Static output shape (Deepness checks the mask is square) and the metadata."""
    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[0].dim_param = "batch"
    for dim, value in zip(dims[1:], (classes, tile, tile), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    del model.metadata_props[:]
    for key, text in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, text
    model.doc_string = "geoidec segmentation model (input: band values / 255)"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _max_difference(onnxruntime: Any, path: Path, module: nn.Module, bands: int,
                    tile: int) -> float:
    """Largest difference between onnxruntime's and PyTorch's probabilities on random tiles."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, bands, tile, tile, generator=generator)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        want = module(x).numpy()
    return float(np.abs(got - want).max())


def export_onnx(source: str | Path, out: str | Path, *, step: int | None = None,
                opset: int = OPSET, overwrite: bool = False, check: bool = True) -> ExportResult:
    """Write ``out`` (atomically) from a checkpoint or a run folder's last (or ``step``'s)
    checkpoint; ``check`` compares onnxruntime with PyTorch on random tiles when onnxruntime
    is installed."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"--out {out}: an ONNX model file ends in .onnx")
    refuse_existing(out, overwrite=overwrite)
    onnx, onnxruntime = _onnx_modules()
    ckpt = load_checkpoint(source, step)
    module = ExportedSegmenter(ckpt.model, ckpt.normalization).eval()
    tile, bands = ckpt.tile_size, ckpt.bands
    metadata = deepness_metadata(ckpt, ckpt.path)
    example = torch.rand(2, bands, tile, tile)
    difference: float | None = None

    def write(tmp: Path) -> None:
        nonlocal difference
        _trace(module, example, tmp, opset)
        _finish(onnx, tmp, ckpt.num_classes, tile, metadata)
        if check and onnxruntime is not None:
            difference = _max_difference(onnxruntime, tmp, module, bands, tile)
            if difference > 1e-3:
                raise DataError(f"{out}: onnxruntime and PyTorch disagree by {difference:.2g}; "
                                "the export is not reliable with this torch/onnx combination")

    atomic_write(out, write, suffix=".onnx")
    return ExportResult(out, tile, bands, [c.name for c in ckpt.classes], metadata, difference)


__all__ = ["ExportResult", "ExportedSegmenter", "deepness_metadata", "export_onnx"]
