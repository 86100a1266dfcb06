"""The MobileNet backbones (MobileNetV2, MobileNetV3-Large and -Small): the ``features`` of a
torchvision MobileNet cut into four stages by their stride."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor, nn
from torchvision import models as tvm

from geoidec.models.backbone_base import (
    STAGES,
    Backbone,
    check_strides,
    dilate,
    fresh_first_conv,
    stage_strides,
)

__all__ = ["MobileNetBackbone"]


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
        check_strides(output_stride, first_stride)
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
                dilate(features[i], 2)
            for i in range(starts[3], self.stage_ends[3]):
                dilate(features[i], 4)
        else:
            for i in range(starts[3], self.stage_ends[3]):
                dilate(features[i], 2)

        stem = features[0]
        assert isinstance(stem, nn.Sequential) and isinstance(stem[0], nn.Conv2d)
        if in_channels != 3:
            stem[0] = fresh_first_conv(stem[0], in_channels)
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
        self.strides = stage_strides(output_stride, first_stride)
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
