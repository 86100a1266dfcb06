"""Loading pretrained weights into a backbone: tensors matched by name and shape, and the first
convolution fitted to the dataset's bands.

The checkpoint comes from :mod:`geoidec.models.weight_sources`. Its first-convolution filters
are picked by band name when the weights name their bands (torchgeo's), else adapted from RGB
to the backbone's band count (:func:`adapt_first_conv`). At least
:data:`MIN_MATCHED_FRACTION` of the backbone's tensors must be found in the checkpoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from geoidec.models.backbones import canonical_backbone_name
from geoidec.models.weight_sources import PretrainedState, WeightsError, read_pretrained

__all__ = [
    "MIN_MATCHED_FRACTION",
    "LoadedWeights",
    "adapt_first_conv",
    "load_backbone_weights",
    "select_first_conv_bands",
]

MIN_MATCHED_FRACTION = 0.9


class LoadedWeights(NamedTuple):
    """What :func:`load_backbone_weights` loaded."""

    source: str  #: ``"none"``, the ImageNet URL, or the file path
    matched: int  #: backbone tensors taken from the checkpoint
    total: int  #: backbone tensors (``num_batches_tracked`` counters excluded)
    adapted_first_conv: bool  #: the first convolution was adapted to the number of bands


class _Matched(NamedTuple):
    """The checkpoint's tensors that fit a backbone, and what did not."""

    tensors: dict[str, Tensor]  #: to load, in the backbone's dtypes
    unmatched: list[str]  #: why counted tensors were left out (``"'key' missing"``, ...)
    total: int  #: backbone tensors (``num_batches_tracked`` counters excluded)
    adapted: bool  #: the first convolution was adapted to the number of bands


def _band_key(name: str) -> str:
    """``B02`` and ``B2``, ``b8A`` and ``B8a`` are the same band."""
    match = re.fullmatch(r"[Bb]0*(\d+)([Aa]?)", name.strip())
    return f"B{match[1]}{match[2].upper()}" if match else name.strip().lower()


def select_first_conv_bands(weight: Tensor, trained: Sequence[str], wanted: Sequence[str],
                            what: str) -> Tensor:
    """The first-convolution filters ``(O, len(trained), k, k)`` of the bands ``wanted``, in
    that order, picked by name (``B02`` = ``B2``); a one-line error naming the bands when
    one is missing."""
    index = {_band_key(b): i for i, b in enumerate(trained)}
    missing = [b for b in wanted if _band_key(b) not in index]
    if missing:
        raise WeightsError(
            f"{what} was trained on bands {', '.join(trained)}; the dataset's band(s) "
            f"{', '.join(missing)} are not among them (name the bands like the weights' in "
            "band_names, or choose weights of this sensor)")
    return weight[:, [index[_band_key(b)] for b in wanted]].contiguous()


def adapt_first_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Adapt RGB filters ``(O, 3, k, k)`` to ``in_channels`` input bands.

    More bands: the RGB filters are kept as they are and each extra band gets the mean of the
    RGB filters scaled by ``3 / in_channels`` (the usual multispectral initialisation). Fewer
    bands: every band gets the mean of the RGB filters scaled by ``3 / in_channels`` (for one
    band, the sum of the RGB filters).
    """
    if weight.ndim != 4:
        raise ValueError(f"expected a 4-d convolution weight, got shape {tuple(weight.shape)}")
    if weight.shape[1] == in_channels:
        return weight
    mean = weight.mean(dim=1, keepdim=True) * (weight.shape[1] / in_channels)
    if in_channels < weight.shape[1]:
        return mean.repeat(1, in_channels, 1, 1).contiguous()
    extra = mean.repeat(1, in_channels - weight.shape[1], 1, 1)
    return torch.cat([weight, extra], dim=1).contiguous()


def _fit_first_conv(src: Tensor, target: Tensor, found: PretrainedState,
                    band_names: Sequence[str]) -> tuple[Tensor, bool]:
    """The checkpoint's first-convolution weight ``src`` for the backbone's ``target``: the
    filters of the dataset's bands when the weights name theirs, then adapted from another band
    count with :func:`adapt_first_conv`. Also whether it was adapted."""
    if found.bands and src.ndim == 4:
        if not band_names and src.shape[1] != target.shape[1]:
            raise WeightsError(f"{found.what} was trained on bands {', '.join(found.bands)}; "
                               "name the dataset's bands (band_names in its YAML) so "
                               "they can be matched")
        if band_names:
            src = select_first_conv_bands(src, found.bands, band_names, found.what)
    if (
        src.shape != target.shape
        and src.ndim == 4
        and src.shape[0] == target.shape[0]
        and src.shape[2:] == target.shape[2:]
    ):
        return adapt_first_conv(src.float(), target.shape[1]), True
    return src, False


def _match(backbone_module: nn.Module, found: PretrainedState,
           band_names: Sequence[str]) -> _Matched:
    """The checkpoint's tensors that fit ``backbone_module`` by name and shape."""
    first_key = getattr(backbone_module, "first_conv_key", None)
    to_load: dict[str, Tensor] = {}
    unmatched: list[str] = []
    adapted = False
    total = 0
    for key, target in backbone_module.state_dict().items():
        counted = not key.endswith("num_batches_tracked")
        total += counted
        src = found.state.get(key)
        if src is None:
            if counted:
                unmatched.append(f"'{key}' missing")
            continue
        if key == first_key:
            src, fitted = _fit_first_conv(src, target, found, band_names)
            adapted = adapted or fitted
        if src.shape != target.shape:
            if counted:
                unmatched.append(f"'{key}' shape {tuple(src.shape)} != {tuple(target.shape)}")
            continue
        to_load[key] = src.to(dtype=target.dtype)
    return _Matched(to_load, unmatched, total, adapted)


def load_backbone_weights(backbone_module: nn.Module, name: str, weights: str,
                          band_names: Sequence[str] = ()) -> LoadedWeights:
    """Load pretrained weights into a backbone, in place.

    Args:
        backbone_module: the backbone (a :class:`~geoidec.models.backbone_base.Backbone`; any
            module works, without the first-convolution adaptation).
        name: backbone registry name (selects the torchvision ImageNet weights).
        weights: ``"none"`` (leave the random initialisation), ``"imagenet"`` (torchvision's
            default ImageNet weights; needs network or the torch hub cache), torchgeo's
            weights by name (the first convolution takes the filters of ``band_names``), or
            the path of a local ``.pth``/``.pt`` file: a torchvision classification checkpoint
            or a state dict of this backbone (``module.``/``backbone.``/``model.`` prefixes
            are stripped, classifier keys ignored). A 3-band first convolution is adapted to
            the backbone's number of bands with :func:`adapt_first_conv`.
        band_names: the dataset's bands, matched against torchgeo weights' bands.

    Returns:
        What was loaded (matched / total tensors).

    Raises:
        WeightsError: download failed, file missing or unreadable, or fewer than 90% of the
            backbone's tensors matched the checkpoint by name and shape. One-line message.
    """
    if weights == "none":
        total = sum(
            1 for k in backbone_module.state_dict() if not k.endswith("num_batches_tracked")
        )
        return LoadedWeights("none", 0, total, False)
    name = canonical_backbone_name(name)
    found = read_pretrained(name, weights)
    fit = _match(backbone_module, found, band_names)
    matched = sum(1 for k in fit.tensors if not k.endswith("num_batches_tracked"))
    if fit.total == 0 or matched < MIN_MATCHED_FRACTION * fit.total:
        example = f" (e.g. {fit.unmatched[0]})" if fit.unmatched else ""
        raise WeightsError(
            f"{found.what} does not fit backbone '{name}': only {matched}/{fit.total} tensors "
            f"matched by name and shape, need {MIN_MATCHED_FRACTION:.0%}{example}; expected a "
            f"torchvision {name} classification checkpoint or a state dict of this backbone."
        )
    backbone_module.load_state_dict(fit.tensors, strict=False)
    return LoadedWeights(found.source, matched, fit.total, fit.adapted)
