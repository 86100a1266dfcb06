"""Backbones for the DeepLabV3 segmentation model, and loading of their pretrained weights.

Every backbone maps an image ``(B, C, H, W)`` to a dict of four feature maps ``layer1`` ..
``layer4`` with strides 4, 8, 16 and 16 (output stride 16: the last stage is dilated instead of
strided) or 4, 8, 8, 8 (output stride 8: the last two stages are dilated); with
``first_stride=1`` the stem convolution does not downsample and every stride is halved (for
10-30 m satellite pixels, where a 64 px chip is already 640 m wide). Channel counts and strides
are exposed as the ``channels`` and ``strides`` attributes.

The parameter names of a backbone are those of the torchvision classification network it wraps
(``conv1.weight``, ``layer1.0.conv1.weight``, ``features.0.0.weight``, ...), so that torchvision
ImageNet checkpoints load by name; see :func:`load_backbone_weights`.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torchvision import models as tvm

__all__ = [
    "BACKBONES",
    "Backbone",
    "LoadedWeights",
    "MobileNetBackbone",
    "ResNetBackbone",
    "WeightsError",
    "adapt_first_conv",
    "build_backbone",
    "canonical_backbone_name",
    "load_backbone_weights",
]

STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
SUPPORTED_OUTPUT_STRIDES: tuple[int, ...] = (8, 16)
MIN_MATCHED_FRACTION = 0.9
_STRIPPED_PREFIXES: tuple[str, ...] = ("module.", "backbone.", "model.")


class WeightsError(RuntimeError):
    """Pretrained weights could not be obtained or do not fit the backbone (one-line message)."""


class Backbone(nn.Module):
    """Base class: a feature extractor returning ``{"layer1": ..., ..., "layer4": ...}``.

    Attributes:
        name: registry name of the backbone.
        in_channels: number of input bands.
        output_stride: stride of ``layer4`` relative to the input (8 or 16).
        channels: channel count of each stage.
        strides: stride of each stage relative to the input.
        first_conv_key: state-dict key of the first convolution's weight (adapted when the
            number of input bands differs from a checkpoint's).
    """

    name: str
    in_channels: int
    output_stride: int
    channels: dict[str, int]
    strides: dict[str, int]
    first_conv_key: str

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        """Return the four stage outputs."""
        raise NotImplementedError


def _check_output_stride(output_stride: int) -> None:
    if output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise ValueError(
            f"output_stride must be one of {SUPPORTED_OUTPUT_STRIDES}, got {output_stride}"
        )


def _check_first_stride(first_stride: int) -> None:
    if first_stride not in (1, 2):
        raise ValueError(f"first_stride must be 1 or 2, got {first_stride}")


def _stage_strides(output_stride: int, first_stride: int) -> dict[str, int]:
    """Stride of each stage relative to the input. ``first_stride=1`` (the stem convolution
    keeps full resolution, for 10-30 m satellite pixels) halves every stride."""
    scale = 2 // first_stride
    return {
        "layer1": 4 // scale,
        "layer2": 8 // scale,
        "layer3": min(16, output_stride) // scale,
        "layer4": output_stride // scale,
    }


def _fresh_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv``'s geometry taking ``in_channels`` inputs, freshly initialised."""
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _dilate(module: nn.Module, dilation: int) -> None:
    """Turn a downsampling stage into a dilated one, in place.

    Every strided convolution becomes stride 1, and every convolution wider than 1x1 gets
    ``dilation`` with the matching 'same' padding. This is the generic DeepLab recipe; for
    MobileNetV3 it gives exactly torchvision's ``dilated=True`` last stage.
    """
    for m in module.modules():
        if not isinstance(m, nn.Conv2d):
            continue
        if m.stride != (1, 1):
            m.stride = (1, 1)
        k_h, k_w = m.kernel_size
        if k_h > 1 or k_w > 1:
            m.dilation = (dilation, dilation)
            m.padding = (dilation * (k_h - 1) // 2, dilation * (k_w - 1) // 2)


class ResNetBackbone(Backbone):
    """A torchvision ResNet without its pooling and ``fc`` layers.

    Bottleneck ResNets (50, 101) use torchvision's ``replace_stride_with_dilation``; ResNet-18's
    BasicBlock does not support it, so its last stage(s) are dilated with :func:`_dilate`.
    """

    def __init__(self, arch: str, in_channels: int = 3, output_stride: int = 16,
                 first_stride: int = 2) -> None:
        super().__init__()
        _check_output_stride(output_stride)
        _check_first_stride(first_stride)
        dilate_flags = [False, output_stride == 8, True]
        builder: Callable[..., tvm.ResNet] = getattr(tvm, arch)
        bottleneck = arch not in ("resnet18", "resnet34")
        net = builder(
            weights=None, replace_stride_with_dilation=dilate_flags if bottleneck else None
        )
        if not bottleneck:
            if output_stride == 8:
                _dilate(net.layer3, 2)
                _dilate(net.layer4, 4)
            else:
                _dilate(net.layer4, 2)
        self.conv1 = net.conv1 if in_channels == 3 else _fresh_first_conv(net.conv1, in_channels)
        self.conv1.stride = (first_stride, first_stride)
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4

        self.name = arch
        self.in_channels = in_channels
        self.output_stride = output_stride
        self.first_stride = first_stride
        expansion = 4 if bottleneck else 1
        self.channels = {f"layer{i + 1}": 64 * 2**i * expansion for i in range(4)}
        self.strides = _stage_strides(output_stride, first_stride)
        self.first_conv_key = "conv1.weight"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``layer1`` .. ``layer4`` features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, Tensor] = {}
        for stage in STAGES:
            x = getattr(self, stage)(x)
            out[stage] = x
        return out


def _module_stride(module: nn.Module) -> int:
    """The downsampling factor of a feature block (largest convolution stride inside)."""
    stride = 1
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            stride = max(stride, m.stride[0])
    return stride


class MobileNetBackbone(Backbone):
    """The ``features`` of a torchvision MobileNetV2/V3, cut into four stages.

    A block belongs to stage k (``layer1`` .. ``layer4``) when its output has stride 2**(k+1),
    the stem (stride 2) going to ``layer1``. The last stage ends with the network's final 1x1
    convolution (960 channels for MobileNetV3-Large, 576 for -Small, 1280 for V2), as in
    torchvision's DeepLabV3-MobileNetV3. Its stride-32 stage is dilated for output stride 16
    (and the stride-16 stage too for output stride 8).
    """

    def __init__(self, arch: str, in_channels: int = 3, output_stride: int = 16,
                 first_stride: int = 2) -> None:
        super().__init__()
        _check_output_stride(output_stride)
        _check_first_stride(first_stride)
        builder: Callable[..., nn.Module] = getattr(tvm, arch)
        features = builder(weights=None).features
        assert isinstance(features, nn.Sequential)

        # Stage of each block, from the cumulative stride before any dilation.
        stage_of: list[int] = []
        cumulative = 1
        for block in features:
            cumulative *= _module_stride(block)
            stage_of.append(max(0, int(math.log2(cumulative)) - 2))
        if sorted(set(stage_of)) != [0, 1, 2, 3] or cumulative != 32:
            raise RuntimeError(f"unexpected stride layout for {arch}: {stage_of}")
        self.stage_ends = [max(i for i, s in enumerate(stage_of) if s == k) + 1 for k in range(4)]
        starts = [0, *self.stage_ends[:-1]]
        if output_stride == 8:
            for i in range(starts[2], self.stage_ends[2]):
                _dilate(features[i], 2)
            for i in range(starts[3], self.stage_ends[3]):
                _dilate(features[i], 4)
        else:
            for i in range(starts[3], self.stage_ends[3]):
                _dilate(features[i], 2)

        stem = features[0]
        assert isinstance(stem, nn.Sequential) and isinstance(stem[0], nn.Conv2d)
        if in_channels != 3:
            stem[0] = _fresh_first_conv(stem[0], in_channels)
        stem[0].stride = (first_stride, first_stride)
        self.features = features

        self.name = arch
        self.in_channels = in_channels
        self.output_stride = output_stride
        self.first_stride = first_stride
        self.channels = {
            stage: self._out_channels(features[end - 1])
            for stage, end in zip(STAGES, self.stage_ends, strict=True)
        }
        self.strides = _stage_strides(output_stride, first_stride)
        self.first_conv_key = "features.0.0.weight"

    @staticmethod
    def _out_channels(block: nn.Module) -> int:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``layer1`` .. ``layer4`` features."""
        out: dict[str, Tensor] = {}
        start = 0
        for stage, end in zip(STAGES, self.stage_ends, strict=True):
            for i in range(start, end):
                x = self.features[i](x)
            out[stage] = x
            start = end
        return out


def _resnet(arch: str) -> Callable[..., Backbone]:
    def factory(in_channels: int = 3, output_stride: int = 16, first_stride: int = 2
                ) -> Backbone:
        return ResNetBackbone(arch, in_channels=in_channels, output_stride=output_stride,
                              first_stride=first_stride)

    factory.__doc__ = f"torchvision {arch} backbone."
    return factory


def _mobilenet(arch: str) -> Callable[..., Backbone]:
    def factory(in_channels: int = 3, output_stride: int = 16, first_stride: int = 2
                ) -> Backbone:
        return MobileNetBackbone(arch, in_channels=in_channels, output_stride=output_stride,
                                 first_stride=first_stride)

    factory.__doc__ = f"torchvision {arch} backbone."
    return factory


#: Registry: name -> factory ``(in_channels=3, output_stride=16, first_stride=2) -> Backbone``.
BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet101": _resnet("resnet101"),
    "resnet50": _resnet("resnet50"),
    "resnet18": _resnet("resnet18"),
    "mobilenet_v3_large": _mobilenet("mobilenet_v3_large"),
    "mobilenet_v3_small": _mobilenet("mobilenet_v3_small"),
    "mobilenet_v2": _mobilenet("mobilenet_v2"),
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


class LoadedWeights(NamedTuple):
    """What :func:`load_backbone_weights` loaded."""

    source: str  #: ``"none"``, the ImageNet URL, or the file path
    matched: int  #: backbone tensors taken from the checkpoint
    total: int  #: backbone tensors (``num_batches_tracked`` counters excluded)
    adapted_first_conv: bool  #: the first convolution was adapted to the number of bands


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


def load_backbone_weights(backbone_module: nn.Module, name: str, weights: str,
                          band_names: Sequence[str] = ()) -> LoadedWeights:
    """Load pretrained weights into a backbone, in place.

    Args:
        backbone_module: the backbone (a :class:`Backbone`; any module works, without the
            first-convolution adaptation).
        name: backbone registry name (selects the torchvision ImageNet weights).
        weights: ``"none"`` (leave the random initialisation), ``"imagenet"`` (torchvision's
            default ImageNet weights; needs network or the torch hub cache), or the path of a
            local ``.pth``/``.pt`` file: a torchvision classification checkpoint or a state dict
            of this backbone (``module.``/``backbone.``/``model.`` prefixes are stripped,
            classifier keys ignored). A 3-band first convolution is adapted to the backbone's
            number of bands with :func:`adapt_first_conv`.

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
    trained_bands: list[str] = []
    tg_weights = torchgeo_weights(weights)
    if weights == "imagenet":
        state, source = _imagenet_state_dict(name)
        what = f"ImageNet weights {source}"
    elif tg_weights is not None:
        state, source = _torchgeo_state_dict(tg_weights, name)
        what = f"torchgeo weights {weights}"
        trained_bands = list(tg_weights.meta.get("bands") or [])
    else:
        path = Path(os.path.expanduser(weights))
        state = _read_checkpoint(path)
        source = str(path)
        what = f"weights file {path}"
    state = _strip_prefixes(state)

    own = backbone_module.state_dict()
    first_key = getattr(backbone_module, "first_conv_key", None)
    to_load: dict[str, Tensor] = {}
    unmatched: list[str] = []
    adapted = False
    total = 0
    for key, target in own.items():
        counted = not key.endswith("num_batches_tracked")
        total += counted
        src = state.get(key)
        if src is None:
            if counted:
                unmatched.append(f"'{key}' missing")
            continue
        if key == first_key and trained_bands and src.ndim == 4:
            if not band_names and src.shape[1] != target.shape[1]:
                raise WeightsError(f"{what} was trained on bands {', '.join(trained_bands)}; "
                                   "name the dataset's bands (band_names in its YAML) so "
                                   "they can be matched")
            if band_names:
                src = select_first_conv_bands(src, trained_bands, band_names, what)
        if (
            key == first_key
            and src.shape != target.shape
            and src.ndim == 4
            and src.shape[0] == target.shape[0]
            and src.shape[2:] == target.shape[2:]
        ):
            src = adapt_first_conv(src.float(), target.shape[1])
            adapted = True
        if src.shape != target.shape:
            if counted:
                unmatched.append(f"'{key}' shape {tuple(src.shape)} != {tuple(target.shape)}")
            continue
        to_load[key] = src.to(dtype=target.dtype)
    matched = sum(1 for k in to_load if not k.endswith("num_batches_tracked"))
    if total == 0 or matched < MIN_MATCHED_FRACTION * total:
        example = f" (e.g. {unmatched[0]})" if unmatched else ""
        raise WeightsError(
            f"{what} does not fit backbone '{name}': only {matched}/{total} tensors matched by "
            f"name and shape, need {MIN_MATCHED_FRACTION:.0%}{example}; expected a torchvision "
            f"{name} classification checkpoint or a state dict of this backbone."
        )
    backbone_module.load_state_dict(to_load, strict=False)
    return LoadedWeights(source, matched, total, adapted)
