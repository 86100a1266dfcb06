"""Segmentation networks: DeepLabV3 (ASPP) over ResNet / MobileNet backbones with a classifier
that grows by one 1x1-conv head per incremental step (MiB initialisation).

Main entry points: :func:`build_model` and :class:`SegmentationModel` (``forward`` returns a
:class:`SegOutput` of logits and named features), the backbone registry :data:`BACKBONES`, and
:func:`load_backbone_weights` (``"none"``, ``"imagenet"`` or a local torchvision checkpoint,
raising :class:`WeightsError` with a one-line message).
"""

from geoidec.models.backbone_base import Backbone
from geoidec.models.backbones import BACKBONES
from geoidec.models.deeplab import FEATURE_NAMES, SegmentationModel, SegOutput, build_model
from geoidec.models.heads import ASPP, IncrementalClassifier
from geoidec.models.weight_sources import WeightsError
from geoidec.models.weights import LoadedWeights, adapt_first_conv, load_backbone_weights

__all__ = [
    "ASPP",
    "BACKBONES",
    "FEATURE_NAMES",
    "Backbone",
    "IncrementalClassifier",
    "LoadedWeights",
    "SegOutput",
    "SegmentationModel",
    "WeightsError",
    "adapt_first_conv",
    "build_model",
    "load_backbone_weights",
]
