"""DeepLabV3 with a growing classifier, returning logits and intermediate features."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from geoidec.models.backbone_base import Backbone
from geoidec.models.backbones import build_backbone, canonical_backbone_name
from geoidec.models.heads import (
    ASPP,
    HEADS,
    IncrementalClassifier,
    LRASPPContext,
    atrous_rates_for,
)
from geoidec.models.weights import load_backbone_weights

__all__ = ["FEATURE_NAMES", "SegOutput", "SegmentationModel", "build_model"]

#: Keys of :attr:`SegOutput.features`.
FEATURE_NAMES: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4", "aspp", "logits")


class SegOutput(NamedTuple):
    """Output of :class:`SegmentationModel`.

    Attributes:
        logits: ``(B, K, H, W)`` class scores at the input's size (bilinear upsampling,
            ``align_corners=False``); K counts all classes, background (index 0) included.
        features: ``layer1``, ``layer2``, ``layer3``, ``layer4`` (backbone stages, strides 4,
            8, 16, 16 at output stride 16; ``layer4`` is the ASPP's input) and ``aspp``
            (the head's context features before dropout: the ASPP output, or LR-ASPP's
            attention-scaled branch; stride 16), and ``logits``: the class scores before
            upsampling (stride 16; LR-ASPP: ``layer2``'s stride), which PLOP distils.
    """

    logits: Tensor
    features: dict[str, Tensor]


class SegmentationModel(nn.Module):
    """DeepLabV3: backbone -> ASPP -> dropout -> growing 1x1-conv classifier.

    With ``head="lraspp"`` the ASPP is LR-ASPP's context branch (:class:`LRASPPContext`) and a
    second growing classifier on ``layer2`` adds its logits (LR-ASPP's low-level branch), as
    in torchvision's LR-ASPP MobileNetV3.

    Build it with :func:`build_model`. With the ASPP head, training mode needs batches of at
    least 2 images (the image-pooling branch has BatchNorm on a 1x1 map); eval mode accepts
    batch 1.
    """

    def __init__(
        self,
        backbone: Backbone,
        classes_per_step: Sequence[int],
        *,
        aspp_channels: int = 256,
        dropout: float = 0.1,
        head: str = "aspp",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head '{head}'; valid: {', '.join(HEADS)}")
        self.backbone = backbone
        self.head = head
        self.aspp: ASPP | LRASPPContext
        self.low_classifier: IncrementalClassifier | None = None
        if head == "lraspp":
            self.aspp = LRASPPContext(backbone.channels["layer4"], aspp_channels)
            self.low_classifier = IncrementalClassifier(backbone.channels["layer2"],
                                                        classes_per_step)
        else:
            self.aspp = ASPP(
                backbone.channels["layer4"],
                atrous_rates_for(backbone.output_stride),
                out_channels=aspp_channels,
            )
        self.dropout = nn.Dropout(dropout)
        self.classifier = IncrementalClassifier(aspp_channels, classes_per_step)
        # Projection head for region-wise contrastive learning (IDEC's ARCL): 2-layer 1x1 conv
        # on the ASPP output. Only methods that contrast regions use (and train) it.
        proj = min(128, aspp_channels)
        self.projection = nn.Sequential(
            nn.Conv2d(aspp_channels, aspp_channels, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(aspp_channels, proj, 1),
        )
        self._aspp_channels = aspp_channels
        self._dropout_p = float(dropout)

    # -- structure ------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Total number of classes, background included."""
        return self.classifier.num_classes

    @property
    def classes_per_step(self) -> list[int]:
        """Number of classifier outputs added at each step (step 0 includes background)."""
        return self.classifier.classes_per_step

    @property
    def feature_channels(self) -> dict[str, int]:
        """Channel count of each entry of :attr:`SegOutput.features`."""
        ch = self.backbone.channels
        return {
            "layer1": ch["layer1"],
            "layer2": ch["layer2"],
            "layer3": ch["layer3"],
            "layer4": ch["layer4"],
            "aspp": self._aspp_channels,
            "logits": self.num_classes,
        }

    @property
    def feature_strides(self) -> dict[str, int]:
        """Stride of each entry of :attr:`SegOutput.features` relative to the input."""
        st = self.backbone.strides
        return {
            "layer1": st["layer1"],
            "layer2": st["layer2"],
            "layer3": st["layer3"],
            "layer4": st["layer4"],
            "aspp": st["layer4"],
            "logits": st["layer2"] if self.low_classifier is not None else st["layer4"],
        }

    @property
    def config(self) -> dict[str, Any]:
        """Plain-dict architecture: ``build_model(**model.config)`` rebuilds it identically."""
        return {
            "backbone": self.backbone.name,
            "classes_per_step": self.classes_per_step,
            "in_channels": self.backbone.in_channels,
            "aspp_channels": self._aspp_channels,
            "output_stride": self.backbone.output_stride,
            "dropout": self._dropout_p,
            "first_stride": self.backbone.first_stride,
            "head": self.head,
        }

    def add_step(self, n_new: int) -> None:
        """Grow the classifier by a head of ``n_new`` classes (MiB initialisation).

        Create the optimiser after calling this, so that it sees the new head's parameters.
        """
        self.classifier.add_step(n_new)
        if self.low_classifier is not None:  # summed logits: one background shift is enough
            self.low_classifier.add_step(n_new, shift_background=False)

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the backbone."""
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the decoder: ASPP, classifier(s) and projection head."""
        yield from self.aspp.parameters()
        yield from self.classifier.parameters()
        if self.low_classifier is not None:
            yield from self.low_classifier.parameters()
        yield from self.projection.parameters()

    def project(self, aspp_features: Tensor) -> Tensor:
        """Embeddings ``(B, D, h, w)`` of the projection head, L2-normalised over channels."""
        return F.normalize(self.projection(aspp_features), dim=1)

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: Tensor) -> SegOutput:
        """Segment ``x`` ``(B, C, H, W)``; see :class:`SegOutput`."""
        if x.ndim != 4 or x.shape[1] != self.backbone.in_channels:
            raise ValueError(
                f"expected input (B, {self.backbone.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if x.shape[0] < 2 and self.aspp.needs_batch_of_two:
            raise ValueError(
                "training mode needs a batch of at least 2 images (BatchNorm in the ASPP "
                "image-pooling branch); use model.eval() for batch 1 or drop_last=True in the "
                "DataLoader"
            )
        stages = self.backbone(x)
        aspp = self.aspp(stages["layer4"])
        logits = self.classifier(self.dropout(aspp))
        if self.low_classifier is not None:
            low = stages["layer2"]
            logits = F.interpolate(logits, size=low.shape[-2:], mode="bilinear",
                                   align_corners=False) + self.low_classifier(low)
        small = logits
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        features = {
            "layer1": stages["layer1"],
            "layer2": stages["layer2"],
            "layer3": stages["layer3"],
            "layer4": stages["layer4"],
            "aspp": aspp,
            "logits": small,
        }
        return SegOutput(logits, features)


BN_MOMENTUM = 0.1


def build_model(
    backbone: str,
    classes_per_step: Sequence[int],
    *,
    in_channels: int = 3,
    aspp_channels: int = 256,
    output_stride: int = 16,
    weights: str = "none",
    dropout: float = 0.1,
    first_stride: int = 2,
    head: str = "aspp",
    band_names: Sequence[str] = (),
) -> SegmentationModel:
    """Build a DeepLabV3 segmentation model with one classifier head per listed step.

    Args:
        backbone: a name of :data:`~geoidec.models.backbones.BACKBONES` (``resnet101``,
            ``resnet50``, ``resnet18``, ``mobilenet_v3_large``, ``mobilenet_v3_small``,
            ``mobilenet_v2``).
        classes_per_step: outputs of each step's head, e.g. ``[5, 1]``: step 0 has background
            + 4 classes, step 1 adds one.
        in_channels: number of input bands.
        aspp_channels: width of the ASPP output (and classifier input).
        output_stride: 16 (last stage dilated) or 8 (last two stages dilated).
        weights: ``"none"``, ``"imagenet"`` or a local checkpoint path; see
            :func:`~geoidec.models.weights.load_backbone_weights`. Only the backbone is
            initialised from it.
        dropout: dropout probability before the classifier.
        first_stride: 2 (the backbone's own stem) or 1 (no downsampling in the stem: every
            feature map twice as fine, four times the compute; for 10-30 m pixels).
        head: ``"aspp"`` (DeepLabV3) or ``"lraspp"`` (LR-ASPP: a light context branch plus
            a low-level classifier on ``layer2``).
        band_names: the input bands' names: torchgeo weights trained on other bands give
            the first convolution the filters of these bands, matched by name.

    Raises:
        ValueError: unknown backbone or invalid argument.
        WeightsError: weights could not be loaded.
    """
    name = canonical_backbone_name(backbone)
    net = build_backbone(name, in_channels=in_channels, output_stride=output_stride,
                         first_stride=first_stride)
    load_backbone_weights(net, name, weights, band_names)
    model = SegmentationModel(
        net, list(classes_per_step), aspp_channels=aspp_channels, dropout=dropout, head=head
    )
    # torchvision's MobileNets use BatchNorm momentum 0.01, tuned for 600-epoch ImageNet runs:
    # with a few hundred iterations their running statistics stay near the initial (0, 1) and
    # eval-mode predictions collapse. One momentum for every BatchNorm keeps short runs sane.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = BN_MOMENTUM
    return model
