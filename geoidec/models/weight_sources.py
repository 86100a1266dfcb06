"""Where pretrained backbone weights come from, read into a plain state dict.

Three sources, chosen by the ``weights`` setting: ``imagenet`` (torchvision's default ImageNet
weights), torchgeo's weights by name (``ResNet50_Weights.SENTINEL2_ALL_MOCO``, with the bands
they were trained on), or the path of a local ``.pth``/``.pt`` checkpoint. Downloads go through
the torch hub cache. Every failure is a :class:`WeightsError` with a one-line message.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchvision import models as tvm

__all__ = ["PretrainedState", "WeightsError", "read_pretrained", "torchgeo_weights"]

_STRIPPED_PREFIXES: tuple[str, ...] = ("module.", "backbone.", "model.")


class WeightsError(RuntimeError):
    """Pretrained weights could not be obtained or do not fit the backbone (one-line message)."""


class PretrainedState(NamedTuple):
    """A checkpoint read by :func:`read_pretrained`."""

    state: dict[str, Tensor]  #: tensors by name, ``module.``/``backbone.``/``model.`` stripped
    source: str  #: the download URL or the file path
    what: str  #: how error messages name the weights
    bands: list[str]  #: the bands the weights were trained on (torchgeo's), else empty


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _imagenet_state_dict(name: str) -> tuple[dict[str, Tensor], str]:
    """Download (or read from the torch hub cache) torchvision's default ImageNet weights."""
    enum = tvm.get_model_weights(name)
    weights = enum.DEFAULT  # type: ignore[attr-defined]
    url: str = weights.url
    filename = url.rsplit("/", 1)[-1]
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError, ValueError) as exc:  # URLError/HTTPError are OSErrors
        raise WeightsError(
            f"Could not download ImageNet weights for backbone '{name}' from {url} "
            f"(offline?): {type(exc).__name__}: {_one_line(exc)}. Pass --weights "
            f"/path/to/{filename} with a local torchvision checkpoint instead."
        ) from exc
    return state, url


def torchgeo_weights(spec: str) -> Any | None:
    """torchgeo's pretrained weights named ``spec`` (``ResNet50_Weights.SENTINEL2_ALL_MOCO``,
    the names of ``torchgeo.models``), or ``None`` when ``spec`` is not such a name."""
    if not re.fullmatch(r"[A-Za-z0-9]+_Weights\.[A-Za-z0-9_]+", spec):
        return None
    from torchgeo import models as tg

    enum_name, member = spec.split(".")
    enum = getattr(tg, enum_name, None)
    if enum is None or member not in getattr(enum, "__members__", {}):
        known = [f"{e}.{m}" for e in dir(tg) if e.endswith("_Weights")
                 for m in getattr(getattr(tg, e), "__members__", {})]
        close = difflib.get_close_matches(spec, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise WeightsError(f"torchgeo has no weights '{spec}'{hint}; see "
                           "https://torchgeo.readthedocs.io/en/stable/api/weights.html")
    return enum[member]


def _torchgeo_state_dict(weights: Any, name: str) -> tuple[dict[str, Tensor], str]:
    """Download (or read from the torch hub cache) torchgeo weights for backbone ``name``."""
    model = str(weights.meta.get("model", ""))
    if model and model != name:
        raise WeightsError(f"torchgeo weights {weights} are for a {model}, not the backbone "
                           f"'{name}'; set --set model.backbone={model}")
    url: str = weights.url
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise WeightsError(
            f"Could not download torchgeo weights {weights} from {url} (offline?): "
            f"{type(exc).__name__}: {_one_line(exc)}. Download it where there is a network "
            f"into {Path(torch.hub.get_dir()) / 'checkpoints'} and name the weights again "
            f"(or pass --weights /path/to/{url.rsplit('/', 1)[-1]}, without the band "
            "matching)") from exc
    logging.getLogger("geoidec").warning(
        "%s: geoidec standardises each band with the training images' own statistics, not "
        "with the weights' pretraining normalisation; fine-tuning adapts the first layers",
        weights)
    return state, url


def _read_checkpoint(path: Path) -> dict[str, Tensor]:
    """Read a ``.pth``/``.pt`` state dict (possibly wrapped in ``state_dict``/``model``)."""
    if not path.is_file():
        close = difflib.get_close_matches(str(path).lower(), ["none", "imagenet"], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise WeightsError(
            f"Weights file not found: {path} (weights must be 'none', 'imagenet' or the path "
            f"of a local .pth/.pt checkpoint).{hint}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise WeightsError(
            f"Could not read weights file {path} (not a torch checkpoint?): "
            f"{type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    for _ in range(2):  # unwrap {"state_dict": {...}} (geoidec and lightning checkpoints)
        if isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = [
                obj[k]
                for k in ("state_dict", "model_state_dict", "model")
                if isinstance(obj.get(k), Mapping)
            ]
            obj = next((d for d in inner if any(isinstance(v, Tensor) for v in d.values())), obj)
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"Weights file {path} does not contain a state dict of tensors.")
    return {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}


def _strip_prefixes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _STRIPPED_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    stripped = True
        out.setdefault(key, value)
    return out


def read_pretrained(name: str, weights: str) -> PretrainedState:
    """The checkpoint that ``weights`` (``"imagenet"``, a torchgeo weights name or a file path)
    names for the registered backbone ``name``.

    Raises:
        WeightsError: download failed, unknown torchgeo name, torchgeo weights of another
            backbone, file missing or unreadable. One-line message.
    """
    bands: list[str] = []
    tg_weights = torchgeo_weights(weights)
    if weights == "imagenet":
        state, source = _imagenet_state_dict(name)
        what = f"ImageNet weights {source}"
    elif tg_weights is not None:
        state, source = _torchgeo_state_dict(tg_weights, name)
        what = f"torchgeo weights {weights}"
        bands = list(tg_weights.meta.get("bands") or [])
    else:
        path = Path(os.path.expanduser(weights))
        state = _read_checkpoint(path)
        source = str(path)
        what = f"weights file {path}"
    return PretrainedState(_strip_prefixes(state), source, what, bands)
