"""The :class:`Backbone` base class and the stage geometry every backbone shares.

A backbone maps an image ``(B, C, H, W)`` to four feature maps ``layer1`` .. ``layer4``. This
module holds what the ResNet and MobileNet backbones have in common: the stage names, the
accepted strides and the stride of each stage, the dilation that replaces a downsampling stage
(output stride 8 or 16), and the freshly initialised first convolution for other band counts.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "STAGES",
    "SUPPORTED_OUTPUT_STRIDES",
    "Backbone",
    "check_strides",
    "dilate",
    "fresh_first_conv",
    "stage_strides",
]

STAGES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
SUPPORTED_OUTPUT_STRIDES: tuple[int, ...] = (8, 16)


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


def check_strides(output_stride: int, first_stride: int) -> None:
    """Raise ``ValueError`` unless ``output_stride`` is 8 or 16 and ``first_stride`` 1 or 2."""
    if output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise ValueError(
            f"output_stride must be one of {SUPPORTED_OUTPUT_STRIDES}, got {output_stride}"
        )
    if first_stride not in (1, 2):
        raise ValueError(f"first_stride must be 1 or 2, got {first_stride}")


def stage_strides(output_stride: int, first_stride: int) -> dict[str, int]:
    """Stride of each stage relative to the input. ``first_stride=1`` (the stem convolution
    keeps full resolution, for 10-30 m satellite pixels) halves every stride."""
    scale = 2 // first_stride
    return {
        "layer1": 4 // scale,
        "layer2": 8 // scale,
        "layer3": min(16, output_stride) // scale,
        "layer4": output_stride // scale,
    }


def fresh_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
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


def dilate(module: nn.Module, dilation: int) -> None:
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
