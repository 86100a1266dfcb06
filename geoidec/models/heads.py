"""Decoder pieces: the ASPP module and the classifier that grows by one head per step."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP as _TorchvisionASPP

__all__ = ["ASPP", "HEADS", "IncrementalClassifier", "LRASPPContext", "atrous_rates_for"]

#: Decoder heads of :func:`geoidec.models.build_model`.
HEADS: tuple[str, ...] = ("aspp", "lraspp")


def atrous_rates_for(output_stride: int) -> tuple[int, int, int]:
    """DeepLabV3 atrous rates: (6, 12, 18) at output stride 16, doubled at output stride 8."""
    if output_stride == 16:
        return (6, 12, 18)
    if output_stride == 8:
        return (12, 24, 36)
    raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")


class ASPP(_TorchvisionASPP):
    """torchvision's DeepLabV3 ASPP without its trailing dropout.

    Branches: a 1x1 convolution, three 3x3 atrous convolutions and image-level pooling, each
    with BatchNorm + ReLU, concatenated and projected by 1x1 conv + BN + ReLU to
    ``out_channels``. The dropout torchvision puts at the end of the projection is removed so
    that the returned map is a deterministic feature (it is distilled at incremental steps);
    :class:`~geoidec.models.deeplab.SegmentationModel` applies dropout before the classifier.

    Note:
        The pooling branch applies BatchNorm to a 1x1 map, so in training mode it needs a
        batch of at least 2 images; eval mode works with any batch size.
    """

    convs: nn.ModuleList
    project: nn.Sequential

    def __init__(
        self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 256
    ) -> None:
        super().__init__(in_channels, atrous_rates, out_channels)
        layers = list(self.project)
        if isinstance(layers[-1], nn.Dropout):
            self.project = nn.Sequential(*layers[:-1])
        pool_bn = [m for m in self.convs[-1].modules() if isinstance(m, nn.BatchNorm2d)]
        self._pool_bn = pool_bn[0] if pool_bn else None

    @property
    def needs_batch_of_two(self) -> bool:
        """True while the pooling branch's BatchNorm is in training mode."""
        return self._pool_bn is not None and self._pool_bn.training


class LRASPPContext(nn.Module):
    """The high-resolution branch of LR-ASPP (Howard et al., "Searching for MobileNetV3"):
    ``relu(bn(conv1x1(x))) * sigmoid(conv1x1(avgpool(x)))``.

    A light alternative to :class:`ASPP` (no atrous convolutions, whose rates of 6-18 reach
    past a 64 px satellite chip's feature map). Its output plays the ASPP output's role: it is
    distilled, projected for region contrast and classified;
    :class:`~geoidec.models.deeplab.SegmentationModel` adds the low-level classifier on
    ``layer2``.
    """

    needs_batch_of_two = False

    def __init__(self, in_channels: int, out_channels: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.cbr(x) * self.scale(x)


class IncrementalClassifier(nn.ModuleList):
    """A list of 1x1-conv heads, one per learning step, whose outputs are concatenated.

    Head 0 predicts background (output 0) and the step-0 classes; head t predicts the classes
    added at step t. Indexing gives the heads (``classifier[-1]`` is the newest).
    """

    def __init__(self, in_channels: int, classes_per_step: Sequence[int]) -> None:
        if len(classes_per_step) == 0 or any(int(n) < 1 for n in classes_per_step):
            raise ValueError(
                f"classes_per_step must be a non-empty list of positive ints, got "
                f"{list(classes_per_step)}"
            )
        super().__init__(nn.Conv2d(in_channels, int(n), kernel_size=1) for n in classes_per_step)
        self.in_channels = in_channels

    @property
    def classes_per_step(self) -> list[int]:
        """Number of outputs of each head."""
        return [head.out_channels for head in self if isinstance(head, nn.Conv2d)]

    @property
    def num_classes(self) -> int:
        """Total number of outputs, background included."""
        return sum(self.classes_per_step)

    def forward(self, x: Tensor) -> Tensor:
        """Concatenate the heads' logits along channels."""
        return torch.cat([head(x) for head in self], dim=1)

    @torch.no_grad()
    def add_step(self, n_new: int, shift_background: bool = True) -> nn.Conv2d:
        """Append a head of ``n_new`` classes with MiB initialisation and return it.

        The new classes copy the background weights; their biases and the background bias are
        set to ``b_bg - log(n_new + 1)``. The softmax over the old foreground classes is then
        unchanged and the old background probability is split evenly between the background
        and the new classes. ``shift_background=False`` copies the background bias unshifted
        (the second of two classifiers whose logits are summed, where one shift is enough).
        """
        if int(n_new) < 1:
            raise ValueError(f"n_new must be a positive int, got {n_new}")
        n_new = int(n_new)
        first = self[0]
        assert isinstance(first, nn.Conv2d) and first.bias is not None
        head = nn.Conv2d(self.in_channels, n_new, kernel_size=1).to(
            device=first.weight.device, dtype=first.weight.dtype
        )
        assert head.bias is not None
        bg_bias = first.bias[0] - (math.log(n_new + 1) if shift_background else 0.0)
        head.weight.copy_(first.weight[0:1].expand_as(head.weight))
        head.bias.fill_(bg_bias.item())
        first.bias[0] = bg_bias
        self.append(head)
        return head
