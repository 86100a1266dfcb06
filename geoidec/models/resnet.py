"""The ResNet backbones (ResNet-18, -50, -101): a torchvision ResNet cut into four stages."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torchvision import models as tvm

from geoidec.models.backbone_base import (
    STAGES,
    Backbone,
    check_strides,
    dilate,
    fresh_first_conv,
    stage_strides,
)

__all__ = ["ResNetBackbone"]


class ResNetBackbone(Backbone):
    """A torchvision ResNet without its pooling and ``fc`` layers.

    Bottleneck ResNets (50, 101) use torchvision's ``replace_stride_with_dilation``; ResNet-18's
    BasicBlock does not support it, so its last stage(s) are dilated with
    :func:`~geoidec.models.backbone_base.dilate`.
    """

    def __init__(self, arch: str, in_channels: int = 3, output_stride: int = 16,
                 first_stride: int = 2) -> None:
        super().__init__()
        check_strides(output_stride, first_stride)
        dilate_flags = [False, output_stride == 8, True]
        builder: Callable[..., tvm.ResNet] = getattr(tvm, arch)
        bottleneck = arch not in ("resnet18", "resnet34")
        net = builder(
            weights=None, replace_stride_with_dilation=dilate_flags if bottleneck else None
        )
        if not bottleneck:
            if output_stride == 8:
                dilate(net.layer3, 2)
                dilate(net.layer4, 4)
            else:
                dilate(net.layer4, 2)
        self.conv1 = net.conv1 if in_channels == 3 else fresh_first_conv(net.conv1, in_channels)
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
        self.strides = stage_strides(output_stride, first_stride)
        self.first_conv_key = "conv1.weight"

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Return ``layer1`` .. ``layer4`` features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, Tensor] = {}
        for stage in STAGES:
            x = getattr(self, stage)(x)
            out[stage] = x
        return out
