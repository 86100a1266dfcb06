"""Loss terms of IDEC and of the baselines it is compared with (MiB, PLOP).

One small function per term, formula in its docstring; see ``docs/method.md``.

* :mod:`.unbiased`: MiB's unbiased cross-entropy and unbiased logit distillation (and the
  latter as MiB's code scales it, shared by MiB and IDEC).
* :mod:`.classification`: per-class sigmoid BCE (IDEC's ``method.classification: bce``).
* :mod:`.distillation`: feature distillation (normalised L2, the authors' channel-softmax KD)
  and IDEC's weighted multi-layer sum (DADA), whose ``"pod"`` distance lives in :mod:`.pod`.
* :mod:`.pod`: pooled output distillation: POD with normalised cells (IDEC), PLOP's own local
  POD and its loss over layers and logits.
* :mod:`.feature_maps`: shape checks, pixel weights and masked means shared by the two above.
* :mod:`.contrastive`: region embeddings and IDEC's asymmetric region-wise contrast (ARCL).
* :mod:`.thresholds`: class-specific thresholds from running per-class statistics of the old
  model (IDEC's dynamic confidence thresholds, PLOP's entropy medians).
* :mod:`.pseudo_labels`: class-specific pseudo-labelling of the background (IDEC, PLOP).
"""

from geoidec.losses.classification import binary_cross_entropy
from geoidec.losses.contrastive import arcl_infonce, arcl_triplet, region_embeddings
from geoidec.losses.distillation import (
    FEATURE_DISTANCES,
    IDEC_LAYER_WEIGHTS,
    channel_softmax_distillation,
    feature_distillation,
    normalized_l2_distance,
)
from geoidec.losses.pod import (
    fold_extra_channels,
    local_pod_distance,
    plop_pod_loss,
    pod_distance,
)
from geoidec.losses.pseudo_labels import entropy_pseudo_label, pseudo_label
from geoidec.losses.thresholds import DynamicThresholds, EntropyMedians, normalized_entropy
from geoidec.losses.unbiased import (
    mib_logit_distillation,
    unbiased_cross_entropy,
    unbiased_distillation,
)

__all__ = [
    "FEATURE_DISTANCES",
    "IDEC_LAYER_WEIGHTS",
    "DynamicThresholds",
    "EntropyMedians",
    "arcl_infonce",
    "arcl_triplet",
    "binary_cross_entropy",
    "channel_softmax_distillation",
    "entropy_pseudo_label",
    "feature_distillation",
    "fold_extra_channels",
    "local_pod_distance",
    "mib_logit_distillation",
    "normalized_entropy",
    "normalized_l2_distance",
    "plop_pod_loss",
    "pod_distance",
    "pseudo_label",
    "region_embeddings",
    "unbiased_cross_entropy",
    "unbiased_distillation",
]
