"""Batched, device-agnostic training augmentation for image/mask pairs.

:class:`TrainAugmentation` runs on whole batches already on the model's device (CPU or GPU),
after the data loader, so augmentation never costs a CPU round trip. It applies, per sample:

1. photometric jitter on ``[0, 1]`` data (brightness and contrast on every band, saturation and
   hue on the three bands named by ``rgb_bands``, optional gamma), then
2. geometric transforms shared by image and mask: horizontal flip, vertical flip, an exact
   90-degree rotation and a scale jitter (zoom in or out, with a random offset).

Photometric jitter runs first so that contrast statistics are not polluted by zoom-out padding
and the padding stays black. Flips and rotations are exact index operations (``torch.flip``,
``torch.rot90``); only the scale jitter resamples, with
:func:`kornia.geometry.transform.warp_affine` (bilinear for the image, nearest for the mask).
Image padding is 0 and mask padding is :data:`~geoidec.constants.IGNORE_INDEX` (255), never a
class index: class 0 is background, a real class.

Randomness: every parameter of a call is drawn with one ``torch.rand`` call on the CPU from
torch's global generator (the same generator kornia uses), then moved to the data's device as a
few small tensors. Hence ``torch.manual_seed(s)`` followed by the same calls on the same inputs
gives the same outputs, and the drawn parameters do not depend on the device. A call that
augments consumes ``14 * B`` uniforms whatever the settings; an identity call (eval mode, or
everything disabled) consumes none.

Why not ``kornia.augmentation.AugmentationSequential``: in kornia 0.9 ``RandomRotation90`` is an
interpolating affine warp (float noise on the image, corners cut off and zero-padded on non-square
inputs) whose ``times`` is drawn from a continuous range and rounded (so ``times=(0, 3)`` draws 0
and 3 half as often as 1 and 2), and a ``fill_value`` given to ``RandomAffine`` pads the image and
the mask with the same value. Drawing the parameters once and applying them to both tensors is
the equivalent of one ``AugmentationSequential``, with exact rotations and separate paddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from kornia.enhance import adjust_hue, adjust_saturation_with_gray_subtraction
from kornia.geometry.transform import warp_affine
from torch import Tensor

from geoidec.config import AugmentConfig
from geoidec.constants import IGNORE_INDEX

__all__ = ["AugmentationParams", "AugmentationSettings", "TrainAugmentation"]

AugmentationSettings = AugmentConfig
"""The augmentation settings (one class with the config's ``augment`` section)."""

# Columns of the uniform draw made by TrainAugmentation.sample_params (one row per sample).
_HFLIP, _VFLIP, _ROT_GATE, _ROT_K, _SCALE_GATE, _SCALE, _SHIFT_X, _SHIFT_Y = range(8)
_PHOTO_GATE, _BRIGHTNESS, _CONTRAST, _SATURATION, _HUE, _GAMMA = range(8, 14)
_N_DRAWS = 14


@dataclass(frozen=True)
class AugmentationParams:
    """Per-sample parameters of one :class:`TrainAugmentation` call (CPU tensors of length B).

    Attributes:
        hflip: bool, flip left-right.
        vflip: bool, flip up-down.
        rot_k: int64 in ``{0, 1, 2, 3}``, counter-clockwise quarter turns (``torch.rot90``).
        scale: float64 zoom factor (1 where the scale jitter is off).
        shift: float64 (B, 2), the (x, y) offset in input pixels of the point that lands on the
            output centre, relative to the input centre.
        photometric: bool, the sample gets the photometric jitter.
        brightness, contrast, saturation, hue, gamma: float64 factors (neutral where off).
    """

    hflip: Tensor
    vflip: Tensor
    rot_k: Tensor
    scale: Tensor
    shift: Tensor
    photometric: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    gamma: Tensor


def _select(flags: Tensor, device: torch.device) -> Tensor | None:
    """Indices (on ``device``) of the true entries of a CPU bool vector, or None if none."""
    idx = torch.nonzero(flags).flatten()
    return idx.to(device) if idx.numel() else None


class TrainAugmentation(torch.nn.Module):
    """Random geometric and photometric augmentation of ``(image, mask)`` batches.

    Args:
        settings: probabilities and strengths, see :class:`AugmentationSettings`.
        rgb_bands: indices of the (red, green, blue) bands for saturation and hue jitter, which
            only run when the image has at least 3 bands; ``None`` skips them (all bands then
            get brightness, contrast and gamma only). For IRRG imagery pass the false-colour
            bands you want treated as RGB, or ``None``.

    ``forward(image, mask)`` takes ``image`` (B, C, H, W) floating in ``[0, 1]`` (any C >= 1) and
    ``mask`` (B, H, W) integer labels (classes and 255), both on the same device, and returns
    tensors of the same shapes, dtypes and device. Output images are clamped to ``[0, 1]``
    where a photometric step ran; mask values are a subset of the input values plus 255.
    In eval mode, or when no transform can fire, the inputs are returned unchanged (the same
    tensor objects). Inputs are never modified in place.

    Reproducible under ``torch.manual_seed`` (see the module docstring).
    """

    def __init__(
        self,
        settings: AugmentationSettings = AugmentationSettings(),
        *,
        rgb_bands: tuple[int, int, int] | None = (0, 1, 2),
    ) -> None:
        super().__init__()
        if rgb_bands is not None:
            if len(rgb_bands) != 3 or len(set(rgb_bands)) != 3 or min(rgb_bands) < 0:
                raise ValueError(f"rgb_bands must be 3 distinct band indices, got {rgb_bands}")
            rgb_bands = tuple(int(b) for b in rgb_bands)  # type: ignore[assignment]
        self.settings = settings
        self.rgb_bands = rgb_bands

    def extra_repr(self) -> str:
        return f"settings={self.settings}, rgb_bands={self.rgb_bands}"

    # ------------------------------------------------------------------ parameters
    def sample_params(self, batch_size: int, height: int, width: int) -> AugmentationParams:
        """Draw the parameters of one call from torch's global generator (CPU tensors).

        Always consumes ``batch_size * 14`` uniforms, whatever the settings.
        """
        s = self.settings
        u = torch.rand(batch_size, _N_DRAWS, dtype=torch.float64)

        def uniform(col: int, low: float, high: float) -> Tensor:
            return low + (high - low) * u[:, col]

        hflip = u[:, _HFLIP] < s.hflip
        vflip = u[:, _VFLIP] < s.vflip
        if height == width:
            k_choice = 1 + (u[:, _ROT_K] * 3).long().clamp(max=2)  # uniform in {1, 2, 3}
        else:
            k_choice = torch.full((batch_size,), 2, dtype=torch.long)  # keeps (H, W)
        rot_k = torch.where(u[:, _ROT_GATE] < s.rot90, k_choice, torch.zeros_like(k_choice))

        scale_on = (u[:, _SCALE_GATE] < s.scale_p) & (s.scale != (1.0, 1.0))
        scale = torch.where(scale_on, uniform(_SCALE, *s.scale), torch.ones(batch_size).double())
        # Largest offset keeping the zoom-in viewport inside the input, or the zoomed-out input
        # inside the output: c * |1 - 1/s| with c the centre coordinate.
        reach = (1.0 - 1.0 / scale).abs()
        shift = torch.stack(
            (
                (2 * u[:, _SHIFT_X] - 1) * reach * (width - 1) / 2,
                (2 * u[:, _SHIFT_Y] - 1) * reach * (height - 1) / 2,
            ),
            dim=1,
        )
        shift = torch.where(scale_on[:, None], shift, torch.zeros_like(shift))

        photometric = u[:, _PHOTO_GATE] < s.photometric_p
        return AugmentationParams(
            hflip=hflip,
            vflip=vflip,
            rot_k=rot_k,
            scale=scale,
            shift=shift,
            photometric=photometric,
            brightness=uniform(_BRIGHTNESS, 1 - s.brightness, 1 + s.brightness),
            contrast=uniform(_CONTRAST, 1 - s.contrast, 1 + s.contrast),
            saturation=uniform(_SATURATION, 1 - s.saturation, 1 + s.saturation),
            hue=uniform(_HUE, -s.hue, s.hue),
            gamma=uniform(_GAMMA, 1 - s.gamma, 1 + s.gamma),
        )

    # ------------------------------------------------------------------ application
    def forward(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Augment a batch; see the class docstring."""
        self._check_inputs(image, mask)
        s = self.settings
        if not self.training or not (s.geometric_enabled or s.photometric_enabled):
            return image, mask
        batch, _, height, width = image.shape
        params = self.sample_params(batch, height, width)
        return self.apply_params(image, mask, params)

    def apply_params(
        self, image: Tensor, mask: Tensor, params: AugmentationParams
    ) -> tuple[Tensor, Tensor]:
        """Apply drawn parameters (e.g. replay a draw); ignores the training flag.

        (Not named ``apply``: that is :meth:`torch.nn.Module.apply`, which parents call.)
        """
        self._check_inputs(image, mask)
        if self.settings.photometric_enabled:
            image = self._photometric(image, params)
        if self.settings.geometric_enabled:
            image, mask = self._geometric(image, mask, params)
        return image, mask

    @staticmethod
    def _check_inputs(image: Tensor, mask: Tensor) -> None:
        if image.ndim != 4 or not image.is_floating_point():
            raise ValueError(f"image must be a floating (B, C, H, W) tensor, got {image.shape}")
        if mask.ndim != 3 or mask.is_floating_point():
            raise ValueError(f"mask must be an integer (B, H, W) tensor, got {mask.shape}")
        if image.shape[0] != mask.shape[0] or image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} and mask {tuple(mask.shape)} disagree")
        if image.device != mask.device:
            raise ValueError(f"image on {image.device} but mask on {mask.device}")

    def _photometric(self, image: Tensor, params: AugmentationParams) -> Tensor:
        s = self.settings
        idx = _select(params.photometric, image.device)
        if idx is None:
            return image
        gate = params.photometric

        def factor(values: Tensor) -> Tensor:
            return values[gate].to(device=image.device, dtype=image.dtype).view(-1, 1, 1, 1)

        x = image.index_select(0, idx).clamp(0.0, 1.0)
        if s.brightness > 0:
            x = (x * factor(params.brightness)).clamp_(0.0, 1.0)
        if s.contrast > 0:
            mean = x.mean(dim=(-2, -1), keepdim=True)
            x = torch.lerp(mean, x, factor(params.contrast)).clamp_(0.0, 1.0)
        rgb = self.rgb_bands
        if rgb is not None and x.shape[1] >= 3 and (s.saturation > 0 or s.hue > 0):
            if max(rgb) >= x.shape[1]:
                raise ValueError(f"rgb_bands {rgb} out of range for {x.shape[1]} bands")
            bands = torch.tensor(rgb, device=x.device)
            colour = x.index_select(1, bands)
            if s.saturation > 0:
                sat = factor(params.saturation)
                colour = adjust_saturation_with_gray_subtraction(colour, sat).clamp(0.0, 1.0)
            if s.hue > 0:
                colour = adjust_hue(colour, factor(params.hue).flatten() * 2 * math.pi)
                colour = colour.clamp(0.0, 1.0)
            x = x.index_copy(1, bands, colour)
        if s.gamma > 0:
            x = x.pow(factor(params.gamma)).clamp_(0.0, 1.0)
        return image.index_copy(0, idx, x)

    def _geometric(
        self, image: Tensor, mask: Tensor, params: AugmentationParams
    ) -> tuple[Tensor, Tensor]:
        device = image.device
        for flags, dim in ((params.hflip, -1), (params.vflip, -2)):
            idx = _select(flags, device)
            if idx is not None:
                image = image.index_copy(0, idx, image.index_select(0, idx).flip(dim))
                mask = mask.index_copy(0, idx, mask.index_select(0, idx).flip(dim))
        for k in (1, 2, 3):
            idx = _select(params.rot_k == k, device)
            if idx is not None:
                image = image.index_copy(0, idx, image.index_select(0, idx).rot90(k, (-2, -1)))
                mask = mask.index_copy(0, idx, mask.index_select(0, idx).rot90(k, (-2, -1)))
        zoom = params.scale != 1.0
        idx = _select(zoom, device)
        if idx is not None:
            image, mask = self._zoom(image, mask, idx, params.scale[zoom], params.shift[zoom])
        return image, mask

    @staticmethod
    def _zoom(
        image: Tensor, mask: Tensor, idx: Tensor, scale: Tensor, shift: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Zoom the samples ``idx`` by ``scale`` about the input point ``centre + shift``."""
        height, width = image.shape[-2:]
        centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
        # Source -> destination pixel map (align_corners=True pixel centres 0..W-1):
        # dst = s * (src - centre - shift) + centre.
        matrix = torch.zeros(len(scale), 2, 3, dtype=torch.float64)
        matrix[:, 0, 0] = scale
        matrix[:, 1, 1] = scale
        matrix[:, :, 2] = centre - scale[:, None] * (centre + shift)
        work_dtype = image.dtype if image.dtype == torch.float64 else torch.float32
        matrix = matrix.to(device=image.device, dtype=work_dtype)

        # Warp labels + 1 (>= 1 inside the tile) with zero padding, so 0 marks padding only;
        # nearest sampling keeps the values exact (floats hold integers up to 2**24).
        labels = mask.index_select(0, idx).unsqueeze(1).to(work_dtype) + 1
        labels = warp_affine(labels, matrix, (height, width), mode="nearest", align_corners=True)
        inside = labels > 0
        labels = torch.where(inside, labels - 1, float(IGNORE_INDEX))
        mask = mask.index_copy(0, idx, labels.squeeze(1).round().to(mask.dtype))

        # The image is zero wherever the mask is padding, including the half-pixel fringe that
        # bilinear sampling would otherwise smear outside the tile.
        sub = image.index_select(0, idx).to(work_dtype)
        warped = warp_affine(sub, matrix, (height, width), mode="bilinear", align_corners=True)
        warped = warped * inside
        image = image.index_copy(0, idx, warped.to(image.dtype))
        return image, mask
