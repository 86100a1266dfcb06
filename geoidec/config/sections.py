"""The config sections that describe the network and the data: ``model``, ``data``,
``augment`` and ``eval`` (frozen dataclasses; invalid values raise
:class:`~geoidec.config.choices.ConfigError`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geoidec.config.choices import (
    BACKBONE_NAMES,
    ConfigError,
    Modality,
    Split,
    Tta,
    unknown_message,
)

__all__ = ["AugmentConfig", "DataConfig", "EvalConfig", "ModelConfig"]


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
            raise ConfigError(unknown_message("model.backbone", self.backbone, BACKBONE_NAMES))


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
    #: Test-time augmentation: ``none``, ``flip`` (mean over 4 flips) or ``d4`` (over the
    #: 8 rotations and flips of the square); 4 or 8 forwards per window.
    tta: Tta = "none"
