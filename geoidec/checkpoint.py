"""Per-step checkpoints: one file that alone suffices to predict.

A checkpoint holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` (a downloaded checkpoint cannot run code). Keys:

``format``, ``geoidec_version``, ``state_dict``, ``model`` (the architecture, rebuilt with
``build_model(**model)``), ``classes`` (``[{index, name, color, code}]`` in model order,
background first; ``code`` is the class's pixel value in predicted maps, null when the output
index is the code; older checkpoints have no ``code``), ``nodata_code`` (nodata value of
predicted maps, 255; absent in older checkpoints), ``step``, ``step_classes``, ``bands``
(count), ``band_names``, ``rgb_bands``,
``normalization``, ``tile_size``, ``overlap``, ``resolution``, ``crs``, ``task`` (the schedule),
``method``, ``dataset``, ``config`` (the resolved run configuration).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geoidec import __version__
from geoidec.constants import IGNORE_INDEX
from geoidec.data.classes import ClassInfo
from geoidec.data.normalization import Normalization
from geoidec.errors import DataError
from geoidec.files import atomic_write
from geoidec.models import SegmentationModel, build_model
from geoidec.run_folder import RunFolder

FORMAT = "geoidec.checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint with its model rebuilt."""

    path: Path
    model: SegmentationModel
    classes: list[ClassInfo]
    normalization: Normalization
    meta: dict[str, Any]
    #: Nodata value of predicted class maps (the dataset's ``nodata_code``; 255 for older
    #: checkpoints and datasets without codes).
    nodata_code: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def codes(self) -> list[int] | None:
        """Pixel value of each class (model order) in predicted maps, when every class has a
        code (datasets from a YAML); ``None``: the output index is the code (ISPRS, VOC,
        ADE20K, checkpoints written before codes existed)."""
        codes = [c.code for c in self.classes]
        if any(code is None for code in codes):
            return None
        return [int(code) for code in codes]  # type: ignore[arg-type]

    @property
    def bands(self) -> int:
        return int(self.meta["bands"])

    @property
    def tile_size(self) -> int:
        return int(self.meta["tile_size"])


def save_checkpoint(path: Path, model: SegmentationModel, meta: dict[str, Any]) -> Path:
    """Save weights + metadata atomically.

    The checkpoint is serialised in memory and written with Python's file API, so a full disk
    is an ``OSError`` (one line) rather than an error of torch's C++ writer.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "geoidec_version": __version__,
        "state_dict": state,
        "model": dict(model.config),
        **meta,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda p: p.write_bytes(buffer.getbuffer()))


def resolve_checkpoint(path: str | Path, step: int | None = None) -> Path:
    """A checkpoint file, or a run folder (its last step, or ``step``)."""
    path = Path(path)
    if path.is_dir():
        run = RunFolder(path)
        found = run.saved_steps()
        if step is not None:
            found = [t for t in found if t == step]
        if not found:
            which = f"step {step}" if step is not None else "any step"
            raise DataError(f"no checkpoint of {which} in {run.checkpoints}; is {path} a "
                            "geoidec run?")
        return run.checkpoint(found[-1])
    if not path.exists():
        raise DataError(f"model not found: {path} (pass a run folder or a step_N.pt file)")
    return path


def load_checkpoint(path: str | Path, step: int | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint (or a run's last one) safely and rebuild its model."""
    file = resolve_checkpoint(path, step)
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise DataError(f"{file} is not a readable geoidec checkpoint ({exc.__class__.__name__})"
                        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{file} is not a geoidec checkpoint (format {FORMAT} expected)")
    arch = dict(payload["model"])
    arch["weights"] = "none"
    model = build_model(**arch)
    state = payload["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:200]
        raise DataError(f"{file} does not match the model it describes ({first}); it was "
                        f"written by geoidec {payload.get('geoidec_version', '?')}") from None
    model.eval()
    classes = [ClassInfo(c["name"], tuple(c["color"]),
                         None if c.get("code") is None else int(c["code"]))
               for c in payload["classes"]]
    meta = {k: v for k, v in payload.items() if k not in ("state_dict",)}
    return Checkpoint(
        path=file,
        model=model,
        classes=classes,
        normalization=Normalization.from_dict(payload["normalization"]),
        meta=meta,
        nodata_code=int(payload.get("nodata_code", IGNORE_INDEX)),
    )
