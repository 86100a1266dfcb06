"""Typed, frozen run configuration loaded from YAML presets plus command-line overrides.

A configuration is a tree of frozen dataclasses. It is built from, in order:

1. the dataclass defaults below,
2. a preset YAML under ``configs/presets/`` (``cpu`` or ``paper``) or any YAML file,
3. explicit flags (``--iterations 50`` becomes ``train.iterations=50``),
4. ``--set section.key=value`` overrides (values parsed with ``yaml.safe_load``).

Unknown sections or keys are errors that name the key and list the valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from geoidec.errors import UsageError


class ConfigError(UsageError):
    """A configuration problem, phrased for the user in one line."""


#: Methods of the registry (geoidec.methods.METHODS; a test keeps both equal).
METHOD_NAMES: tuple[str, ...] = ("finetune", "joint", "mib", "plop", "idec")
#: ISPRS Potsdam imagery: 2_Ortho_RGB, 3_Ortho_IRRG or 4_Ortho_RGBIR.
Modality = Literal["rgb", "irrg", "rgbir"]
#: Evaluation splits.
Split = Literal["test", "val", "train"]
#: Lightning precisions accepted by ``train.precision`` (``auto``: AMP on CUDA, else fp32).
Precision = Literal["auto", "32", "16", "bf16", "32-true", "16-mixed", "bf16-mixed"]
#: Backbones of the model registry (geoidec.models.BACKBONES; a test keeps both equal), here
#: so that a typo stops before torch is imported or any data is read.
BACKBONE_NAMES: tuple[str, ...] = (
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet101", "resnet18",
    "resnet50",
)
#: ``train.device``: auto, cpu, cuda, cuda:N or mps.
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def choices(cls: type, name: str) -> tuple[Any, ...]:
    """The values a ``Literal`` field of a config dataclass accepts (for ``--help``)."""
    return typing.get_args(typing.get_type_hints(cls)[name])


@dataclass(frozen=True)
class ModelConfig:
    """Network: DeepLabV3 (ASPP) over a registered backbone."""

    backbone: str = "mobilenet_v3_small"
    #: ``none``, ``imagenet`` (torchvision weights, needs network), torchgeo's weights by
    #: name (``ResNet50_Weights.SENTINEL2_ALL_MOCO``; the first convolution takes the
    #: filters of the dataset's bands, matched by band name) or a path to a local file.
    weights: str = "none"
    aspp_channels: int = 64
    output_stride: Literal[8, 16] = 16
    #: Decoder: ``aspp`` (DeepLabV3) or ``lraspp`` (LR-ASPP: light context branch plus a
    #: low-level classifier; the ``satellite`` preset's).
    head: Literal["aspp", "lraspp"] = "aspp"
    #: Stride of the backbone's first convolution: 2 (as built) or 1 (feature maps twice as
    #: fine, for 10-30 m pixels).
    first_stride: Literal[1, 2] = 2

    def __post_init__(self) -> None:
        key = self.backbone.strip().lower().replace("-", "_")
        if key not in BACKBONE_NAMES:
            raise ConfigError(_unknown("model.backbone", self.backbone, BACKBONE_NAMES))


@dataclass(frozen=True)
class DataConfig:
    """Tiling and reading."""

    #: Training chip size in pixels (also the default evaluation/prediction window).
    tile_size: int = 128
    #: ISPRS Potsdam imagery: ``rgb`` (2_Ortho_RGB), ``irrg`` (3_Ortho_IRRG) or ``rgbir``.
    modality: Modality = "rgb"
    #: Chips of step t must contain at least this fraction of pixels of step t's classes.
    min_class_fraction: float = 0.002
    #: Chips with less valid area than this are skipped (valid: imagery that is not nodata
    #: and labelled; lower it for sparse labels).
    min_valid_fraction: float = 0.5
    #: Share of training chips drawn class-balanced (a class drawn uniformly among the
    #: step's classes, then a chip around one of its pixels) instead of uniformly in space.
    balanced_chips: float = 0.0
    #: DataLoader worker processes (0: read in the training process).
    num_workers: int = 0
    #: Pixels sampled in total (spread evenly over the training scenes, at least 1024 each)
    #: to compute normalisation statistics.
    stats_pixels: int = 2_000_000
    #: Which training scenes step t may use: ``overlapped`` (any scene holding a class of
    #: step t; other classes are background) or ``disjoint`` (also no future class).
    protocol: Literal["overlapped", "disjoint"] = "overlapped"
    #: Train on the held-out validation scenes too (the papers train on the whole train
    #: split; keep false to tune on val without touching test).
    train_on_val: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, per incremental step."""

    #: Iterations of step 0 (and of joint training).
    iterations: int = 200
    #: Iterations of steps t > 0 (default: same as ``iterations``).
    iterations_incremental: int | None = None
    #: If set, iterations are derived from epochs over the step's chips (paper preset).
    epochs: int | None = None
    #: Chips drawn per epoch and scene when ``epochs`` is set.
    chips_per_scene: int = 100
    batch_size: int = 8
    #: ``sgd`` (momentum, optionally Nesterov; the papers') or ``adamw``.
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    lr_incremental: float = 0.001
    #: Backbone learning rate = lr x backbone_lr_mult.
    backbone_lr_mult: float = 1.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    #: Keep every BatchNorm layer in eval mode (running statistics of the previous step,
    #: not updated) at steps t > 0, as some CISS code does; false trains BatchNorm as MiB,
    #: PLOP and IDEC do. Step 0 and joint always train it.
    freeze_bn: bool = False
    #: Clip the global gradient norm (None: no clipping). Light MobileNets trained with SGD
    #: diverge at the first incremental iterations without it.
    grad_clip: float | None = None
    #: ``auto`` uses mixed precision on CUDA and fp32 elsewhere; ``32`` forces fp32.
    precision: Precision = "auto"
    #: Train in the channels-last memory layout: convolutions run faster (2-core CPU, 256 px
    #: chips: 1.31x steps/s for MobileNetV3, 1.12x for ResNet-50; the standard fast path of
    #: mixed precision on CUDA). Off by default until the real-data comparison of
    #: docs/results.md is rerun with it (it changes the convolutions' rounding, so every
    #: trained model a little). Checkpoints are saved in the standard layout either way.
    channels_last: bool = False
    #: Compile the model being trained with ``torch.compile`` (``nn.Module.compile``): faster
    #: steps after a compilation of tens of seconds (a C++ compiler is needed on CPU).
    compile: bool = False
    seed: int = 0
    #: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    #: Devices per node: GPUs, or CPU processes (gloo backend). More than one (or
    #: ``num_nodes`` > 1) trains with DDP; see docs/reliability.md.
    devices: int = 1
    #: ``auto`` (one process, or DDP when devices x num_nodes > 1) or ``ddp``.
    strategy: Literal["auto", "ddp"] = "auto"
    #: Nodes taking part; start one process per device on every node (srun or torchrun).
    num_nodes: int = 1
    #: Batches whose gradients are summed per optimiser step; iterations count optimiser steps.
    accumulate: int = 1
    #: Save the step in progress every N iterations to checkpoints/step_T.partial.ckpt, so
    #: ``--resume`` continues an interrupted step from there (0: never).
    checkpoint_every: int = 100
    progress: bool = True
    #: Where the loss terms, learning rate and per-step evaluation go besides the run
    #: folder's CSV files: ``csv`` (nothing more) or ``tensorboard`` (RUN/logs/step_T and
    #: RUN/logs/evaluation event files; needs ``pip install 'geoidec[tensorboard]'``).
    logger: Literal["csv", "tensorboard"] = "csv"

    def __post_init__(self) -> None:
        if not _DEVICE.match(self.device):
            raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps, got "
                              f"'{self.device}'")


@dataclass(frozen=True)
class AugmentConfig:
    """Kornia augmentation on the model's device, all per sample (the settings of
    :class:`geoidec.data.transforms.TrainAugmentation`; invalid values raise ConfigError).

    Attributes:
        hflip: probability of a horizontal flip (left-right).
        vflip: probability of a vertical flip (up-down).
        rot90: probability of a rotation by ``k * 90`` degrees, ``k`` uniform in ``{1, 2, 3}``
            (so ``rot90=1`` always rotates). Non-square inputs only use ``k = 2``, which keeps
            their shape.
        scale: range of the zoom factor, drawn uniformly; above 1 zooms in (a random crop
            resized to the full size), below 1 zooms out (the shrunk image placed at a random
            offset, padded with 0 in the image and 255 in the mask). ``(1.0, 1.0)`` disables it.
        scale_p: probability of applying the scale jitter.
        brightness: gain drawn from ``[1 - brightness, 1 + brightness]``, multiplied into every
            band (a change of illumination). In ``[0, 1]``.
        contrast: factor ``c`` drawn from ``[1 - contrast, 1 + contrast]``; every band is blended
            with its own spatial mean, ``m + c * (x - m)``. In ``[0, 1]``.
        saturation: factor drawn from ``[1 - saturation, 1 + saturation]``, blending the RGB bands
            with their grayscale (torchvision's formula, via kornia). In ``[0, 1]``.
        hue: shift of the RGB bands' hue drawn from ``[-hue, hue]``, in turns. In ``[0, 0.5]``.
        gamma: exponent drawn from ``[1 - gamma, 1 + gamma]`` applied to every band. In
            ``[0, 1)``; 0 (the default) disables it.
        photometric_p: probability that a sample gets the photometric jitter (all enabled
            photometric steps together, in the order brightness, contrast, saturation, hue,
            gamma, each followed by a clamp to ``[0, 1]``).
    """

    hflip: float = 0.5
    vflip: float = 0.5
    rot90: float = 0.5
    scale: tuple[float, float] = (0.75, 1.5)
    scale_p: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.1
    hue: float = 0.0
    gamma: float = 0.0
    photometric_p: float = 0.8

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "rot90", "scale_p", "photometric_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"augment.{name} must be a probability in [0, 1], got "
                                  f"{getattr(self, name)}")
        if len(self.scale) != 2:
            raise ConfigError(f"augment.scale must be a (low, high) pair, got {self.scale}")
        low, high = self.scale
        if not 0.0 < low <= high:
            raise ConfigError(f"augment.scale must satisfy 0 < low <= high, got {self.scale}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment.{name} must lie in [0, 1], got {value}")
        if not 0.0 <= self.hue <= 0.5:
            raise ConfigError(f"augment.hue must lie in [0, 0.5] (turns), got {self.hue}")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"augment.gamma must lie in [0, 1), got {self.gamma}")

    @property
    def geometric_enabled(self) -> bool:
        """Whether any geometric transform can fire."""
        scale_on = self.scale_p > 0 and self.scale != (1.0, 1.0)
        return self.hflip > 0 or self.vflip > 0 or self.rot90 > 0 or scale_on

    @property
    def photometric_enabled(self) -> bool:
        """Whether any photometric step can fire."""
        strengths = (self.brightness, self.contrast, self.saturation, self.hue, self.gamma)
        return self.photometric_p > 0 and any(s > 0 for s in strengths)


@dataclass(frozen=True)
class EvalConfig:
    """Sliding-window evaluation over whole stitched scenes."""

    #: Window size (default: data.tile_size, as protocol.md recommends).
    tile_size: int | None = None
    overlap: int = 32
    batch_size: int = 8
    #: ``test`` (standard) or ``val`` (held-out part of train).
    split: Split = "test"


@dataclass(frozen=True)
class MethodConfig:
    """Continual-learning method and its settings (defaults from docs/method.md).

    Each IDEC term has a switch for the ablation (``--set method.feature_kd=false``).
    """

    #: finetune, joint, mib, plop or idec.
    name: str = "finetune"
    # --- IDEC switches (the four terms of the ablation)
    feature_kd: bool = True
    logit_kd: bool = True
    pseudo_labels: bool = True
    arcl: bool = True
    # --- classification loss on the (pseudo-labelled) target: ce or bce (authors' code)
    classification: Literal["ce", "bce"] = "ce"
    # --- DADA feature distillation
    #: 0.1: at 1.0 the distillation dominated and blocked new classes (docs/method.md)
    lambda_feat_kd: float = 0.1
    #: pod (PLOP-style pooled strips), l2 (normalised L2) or channel_softmax (authors' code)
    feat_kd_distance: Literal["pod", "l2", "channel_softmax"] = "pod"
    #: Weights of layer1, layer2, layer3 and the ASPP output.
    feat_kd_weights: tuple[float, float, float, float] = (0.5, 1.0, 2.0, 1.0)
    #: Weight feature distances by the old-class (and background) pseudo-label mask.
    feat_kd_mask: bool = True
    channel_softmax_alpha: float = 2.0
    # --- unbiased logit distillation (MiB, IDEC); weight of the loss averaged over the old
    # classes, as in MiB's code (so MiB's published lambda applies unchanged)
    lambda_logit_kd: float = 10.0
    kd_temperature: float = 1.0
    # --- dynamic class-specific pseudo-labels (IDEC)
    #: dynamic (per-class quantile of the running confidence) or fixed (authors' code)
    pseudo_label_mode: Literal["dynamic", "fixed"] = "dynamic"
    pseudo_quantile: float = 0.5
    pseudo_max_threshold: float = 0.9
    pseudo_fixed_threshold: float = 0.7
    #: Judge the old model's background by its own threshold like any old class (uncertain
    #: background predictions become uncertain pixels instead of background targets).
    pseudo_background: bool = False
    #: Uncertain background pixels (old-class prediction below its threshold): ``ignore``
    #: (the paper's dynamic rule), ``background`` (the authors' fixed rule) or ``auto``
    #: (ignore in dynamic mode, background in fixed mode).
    uncertain: Literal["auto", "ignore", "background"] = "auto"
    #: Recompute the per-class thresholds every N iterations.
    pseudo_update_every: int = 20
    # --- ARCL
    lambda_arcl: float = 0.1
    arcl_temperature: float = 0.1
    #: infonce (default) or triplet (authors' code)
    arcl_loss: Literal["infonce", "triplet"] = "infonce"
    arcl_margin: float = 1.0
    # --- PLOP
    #: Local POD factor of each feature entry (backbone stages 1-4 and the ASPP output).
    lambda_pod: float = 0.01
    #: Local POD factor of the logits (PLOP's ``"after"`` switch).
    lambda_pod_logits: float = 0.0005
    #: Scale each image's cross-entropy by its share of confidently labelled background
    #: (PLOP's ``classif_adaptive_factor``).
    plop_adaptive_factor: bool = True
    # --- SSUL-like option of the authors' code
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        if self.name not in METHOD_NAMES:
            close = difflib.get_close_matches(self.name, METHOD_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown method '{self.name}'{hint}; valid: "
                              f"{', '.join(METHOD_NAMES)}")


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-safe dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Config:
        """Build from a (possibly partial) nested dict, validating every key."""
        return _build(cls, data, "")

    def override(self, updates: Mapping[str, Any]) -> Config:
        """Return a copy with dotted-key updates (``{"train.lr": 0.1}``) applied."""
        tree = self.to_dict()
        for dotted, value in updates.items():
            _assign(tree, dotted, value)
        return Config.from_dict(tree)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _assign(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(
            f"config key '{dotted}' must look like section.key; sections: {', '.join(tree)}"
        )
    section, key = parts
    if section not in tree:
        raise ConfigError(_unknown("section", section, tree))
    if key not in tree[section]:
        raise ConfigError(_unknown(f"key in '{section}'", key, tree[section], prefix=section))
    tree[section][key] = value


def _unknown(what: str, name: str, valid: Iterable[str], prefix: str = "") -> str:
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    shown = ", ".join(f"{prefix}.{v}" if prefix else v for v in valid)
    return f"unknown config {what} '{name}'{hint}; valid: {shown}"


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{prefix or 'root'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                _unknown(f"key in '{prefix}'" if prefix else "section", key, names, prefix)
            )
        tp = hints[key]
        where = f"{prefix}.{key}" if prefix else key
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(cast(type, tp), value or {}, where)
        else:
            kwargs[key] = _coerce(value, tp, where)
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check and convert a YAML scalar/list to the annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(
                f"config '{where}' must be a list of {len(args)} values, got {value!r}"
            )
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is Literal:
        return _choice(value, args, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config '{where}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config '{where}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config '{where}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config '{where}' must be a string, got {value!r}")
    return value


def _choice(value: Any, allowed: tuple[Any, ...], where: str) -> Any:
    """``value`` if it is one of ``allowed`` (YAML's ``32`` matches ``"32"``, ``"16"`` matches
    16); else a one-line error naming the valid choices."""
    candidates = [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        candidates.append(str(int(value)) if float(value).is_integer() else str(value))
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        candidates.append(int(value))
    for candidate in candidates:
        for option in allowed:
            if type(candidate) is type(option) and candidate == option:
                return option
    shown = ", ".join(str(a) for a in allowed)
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"{where} must be one of {shown}, not {value!r}{hint}")


def configs_dir() -> Path:
    """Folder of the bundled YAML configurations (``configs/`` in the repository)."""
    return Path(str(resources.files("geoidec.configs")))


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in (configs_dir() / "presets").glob("*.yaml"))


def read_yaml(path: Path) -> Any:
    """Read a YAML file with ``safe_load``; errors are one line."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({exc.__class__.__name__})") from None


def load_config(
    preset: str | Path | None = "cpu",
    overrides: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    dataset_defaults: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults + preset (name or YAML path) + the dataset's settings for that preset
    (``dataset_defaults``, dotted keys) + flag overrides + ``key=value`` strings."""
    cfg = Config()
    if preset is not None:
        path = Path(preset)
        if not path.suffix:
            path = configs_dir() / "presets" / f"{preset}.yaml"
            if not path.exists():
                raise ConfigError(
                    f"unknown preset '{preset}'; valid: {', '.join(preset_names())} "
                    "or a path to a YAML file"
                )
        cfg = Config.from_dict(read_yaml(path) or {})
    if dataset_defaults:
        cfg = cfg.override(dataset_defaults)
    updates = {k: v for k, v in (overrides or {}).items() if v is not None}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value (e.g. train.lr=0.01), got '{item}'")
        updates[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return cfg.override(updates) if updates else cfg
