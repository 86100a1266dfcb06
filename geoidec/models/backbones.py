"""Backbones for the DeepLabV3 segmentation model: the registry and the builder.

Every backbone maps an image ``(B, C, H, W)`` to a dict of four feature maps ``layer1`` ..
``layer4`` with strides 4, 8, 16 and 16 (output stride 16: the last stage is dilated instead of
strided) or 4, 8, 8, 8 (output stride 8: the last two stages are dilated); with
``first_stride=1`` the stem convolution does not downsample and every stride is halved (for
10-30 m satellite pixels, where a 64 px chip is already 640 m wide). Channel counts and strides
are exposed as the ``channels`` and ``strides`` attributes.

The parameter names of a backbone are those of the torchvision classification network it wraps
(``conv1.weight``, ``layer1.0.conv1.weight``, ``features.0.0.weight``, ...), so that torchvision
ImageNet checkpoints load by name; see :func:`geoidec.models.weights.load_backbone_weights`.
The architectures are in :mod:`geoidec.models.resnet` and :mod:`geoidec.models.mobilenet`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from geoidec.models.backbone_base import Backbone
from geoidec.models.mobilenet import MobileNetBackbone
from geoidec.models.resnet import ResNetBackbone

__all__ = ["BACKBONES", "build_backbone", "canonical_backbone_name"]


def _factory(cls: type[ResNetBackbone | MobileNetBackbone], arch: str
             ) -> Callable[..., Backbone]:
    def factory(in_channels: int = 3, output_stride: int = 16, first_stride: int = 2
                ) -> Backbone:
        return cls(arch, in_channels=in_channels, output_stride=output_stride,
                   first_stride=first_stride)

    factory.__doc__ = f"torchvision {arch} backbone."
    return factory


#: Registry: name -> factory ``(in_channels=3, output_stride=16, first_stride=2) -> Backbone``.
BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet101": _factory(ResNetBackbone, "resnet101"),
    "resnet50": _factory(ResNetBackbone, "resnet50"),
    "resnet18": _factory(ResNetBackbone, "resnet18"),
    "mobilenet_v3_large": _factory(MobileNetBackbone, "mobilenet_v3_large"),
    "mobilenet_v3_small": _factory(MobileNetBackbone, "mobilenet_v3_small"),
    "mobilenet_v2": _factory(MobileNetBackbone, "mobilenet_v2"),
}


def canonical_backbone_name(name: str) -> str:
    """Return the registry name for ``name`` (case and ``-``/``_`` insensitive).

    Raises:
        ValueError: unknown name; the one-line message lists the available names and suggests
            the closest one.
    """
    key = name.strip().lower().replace("-", "_")
    if key in BACKBONES:
        return key
    available = ", ".join(sorted(BACKBONES))
    compact = key.replace("_", "")
    close = [n for n in sorted(BACKBONES) if compact and n.replace("_", "").startswith(compact)]
    if not close:
        close = difflib.get_close_matches(key, list(BACKBONES), n=1, cutoff=0.5)
    hint = " Did you mean " + " or ".join(f"'{n}'" for n in close) + "?" if close else ""
    raise ValueError(f"Unknown backbone '{name}'.{hint} Available backbones: {available}.")


def build_backbone(name: str, in_channels: int = 3, output_stride: int = 16,
                   first_stride: int = 2) -> Backbone:
    """Instantiate a registered backbone with random weights."""
    return BACKBONES[canonical_backbone_name(name)](
        in_channels=in_channels, output_stride=output_stride, first_stride=first_stride
    )
