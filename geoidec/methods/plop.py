"""PLOP (Douillard et al., "PLOP: Learning without Forgetting for Continual Semantic
Segmentation", CVPR 2021), as its authors' code (arthurdouillard/CVPR2021_PLOP, ``--method
PLOP``) runs it. At step t > 0, with the frozen step t-1 model run on the same batch:

    L = L_ce(entropy pseudo-labels, adaptive factor) + L_pod

* Pseudo-labels: per old class c (background included) tau_c is the median of the old
  model's normalised entropy over the background pixels it predicts as c (floored at 0.001,
  PLOP's ``--threshold``). A pixel labelled background takes the old model's class c when its
  entropy is below tau_c and becomes ignore (255) otherwise, also when c is the background
  (uncertain background is ignored).
* Adaptive factor (``method.plop_adaptive_factor``, PLOP's ``classif_adaptive_factor``): each
  image's per-pixel cross-entropy is multiplied by ``n_certain / (n_background + 1e-6)``, the
  share of its background pixels that kept a label (a certain old class or background); the
  loss is the mean over all pixels of the batch, ignored ones included (they add 0), as
  PLOP's ``reduction="none"`` then ``.mean()``. With the switch off the factor is 1 and the
  mean stays over all pixels.
* Local POD (``loss_feat_kd``): :func:`~geoidec.losses.plop_pod_loss` over ``layer1`` to
  ``layer4``, ``aspp`` (factor ``method.lambda_pod``, 0.01) and the logits (factor
  ``method.lambda_pod_logits``, 0.0005; the logits before upsampling, as PLOP's
  ``sem_logits_small``, with the new model's background and new-class channels summed into
  one background channel), each times ``sqrt(K / K_new)``, summed and divided by
  the 6 entries; distance :func:`~geoidec.losses.local_pod_distance` (squared maps, width-
  and height-pooled strips of 1x1, 2x2 and 4x4 cells, no normalisation, L2 norm per image).

Step 0 (no old model) is plain cross-entropy over the labelled pixels (:class:`Finetune`), so
that a step 0 can be shared between methods.

Where geoidec differs from PLOP's code:

* The entropy medians are a running estimate over the step's batches (histograms summed over
  DDP processes), refreshed every ``method.pseudo_update_every`` optimiser steps; PLOP runs the
  old model over the step's training data once before training (per process) and keeps the
  medians fixed.
* Entropy scale: geoidec's normalised entropy is ``H / log K_old`` in [0, 1] and its median is
  read from 100 bins. PLOP's code divides the entropy by ``K_old log K_old log K`` (a mean
  over channels, then ``max_value``), so nearly every pixel falls in the first of its 100
  bins and its "median" is an interpolation inside that bin (larger than the true median
  when the entropies crowd near 0); its histogram walk also adds bin indices instead of
  counts when the median lies beyond the first bin. The 0.001 floor is therefore not the
  same cut either.
* The distilled backbone maps are the stage outputs the backbone returns (after the last
  activation); PLOP distils each ResNet stage's last block before its final activation.
* Non-square maps: cells are ``h // s`` by ``w // s`` (PLOP uses ``w // s`` for both axes);
  see :func:`~geoidec.losses.local_pod_distance`.
* As in PLOP's code, an image without any background pixel gets an adaptive factor of 0 (its
  cross-entropy is dropped).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from geoidec.config import MethodConfig
from geoidec.constants import IGNORE_INDEX
from geoidec.losses import (
    EntropyMedians,
    entropy_pseudo_label,
    local_pod_distance,
    plop_pod_loss,
)
from geoidec.methods.base import Batch, RunningThresholds, StepPlan
from geoidec.methods.finetune import Finetune
from geoidec.models.deeplab import FEATURE_NAMES

#: Key of the logits among the POD entries (distilled with ``lambda_pod_logits``).
LOGITS = "logits"
#: Feature maps distilled with ``lambda_pod`` (PLOP: every backbone stage and the ASPP).
POD_LAYERS: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n != LOGITS)


def pod_factors(config: MethodConfig) -> dict[str, float]:
    """POD factor of each distilled entry, in PLOP's order (features, then the logits)."""
    factors = {name: float(config.lambda_pod) for name in POD_LAYERS}
    factors[LOGITS] = float(config.lambda_pod_logits)
    return factors


def adaptive_factor(target: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """PLOP's ``classif_adaptive_factor``: per image, background pixels of ``target`` that
    kept a label in ``labelled`` (not ignore) over all its background pixels, ``(B,)``::

        a_b = #{target == 0 and labelled != 255} / (#{target == 0} + 1e-6)
    """
    background = target == 0
    certain = background & (labelled != IGNORE_INDEX)
    num = certain.float().sum(dim=(1, 2))
    den = background.float().sum(dim=(1, 2))
    return num / (den + 1e-6)


class PLOP(RunningThresholds, Finetune):
    name = "plop"
    needs_old_model = True

    def __init__(self, config: MethodConfig) -> None:
        super().__init__(config)
        #: Running per-class entropy histograms of the old model (steps t > 0).
        self.medians: EntropyMedians | None = None
        #: Entropy thresholds in use, per old class (index 0: background).
        self.current: torch.Tensor | None = None
        #: Optimiser step at which ``current`` was last refreshed.
        self.refreshed_at = -1
        #: Pixels pseudo-labelled per old class (index 0: background kept as background).
        self.counts = torch.zeros(1, dtype=torch.long)
        #: Background pixels sent to ignore (uncertain, old background included).
        self.uncertain = 0

    def start_step(self, plan: StepPlan, num_old: int) -> None:
        super().start_step(plan, num_old)
        self.medians = EntropyMedians(num_old) if num_old else None
        self.current = None
        self.refreshed_at = -1
        self.counts = torch.zeros(max(num_old, 1), dtype=torch.long)
        self.uncertain = 0

    def _taus(self, old_logits: torch.Tensor, background: torch.Tensor,
              global_step: int) -> torch.Tensor:
        """Per-class entropy thresholds: counted on every micro-batch, refreshed every
        ``pseudo_update_every`` optimiser steps (micro-batches of one step share it)."""
        return self._refreshed(self.medians, old_logits, background, global_step)

    def _target(self, batch: Batch, old_logits: torch.Tensor) -> torch.Tensor:
        taus = self._taus(old_logits, batch.target == 0, batch.global_step)
        target, stats = entropy_pseudo_label(batch.target, old_logits,
                                             taus.to(old_logits.device),
                                             include_background=True)
        self.counts += stats["pseudo"].cpu()
        self.uncertain += int(stats["uncertain"])
        return target

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss_ce``: cross-entropy on the pseudo-labels, times the adaptive factor, mean
        over all pixels; ``loss_feat_kd``: PLOP's POD over the stages, ASPP and logits."""
        if batch.old_out is None or self.medians is None:
            return super().losses(batch)
        new, old = batch.out, batch.old_out
        old_logits = old.logits.detach()
        target = self._target(batch, old_logits)
        ce = F.cross_entropy(new.logits, target, ignore_index=IGNORE_INDEX, reduction="none")
        if self.config.plop_adaptive_factor:
            ce = adaptive_factor(batch.target, target).to(ce.device)[:, None, None] * ce
        num_classes = new.logits.shape[1]
        pod = plop_pod_loss(
            {k: new.features[k] for k in (*POD_LAYERS, LOGITS)},
            {k: old.features[k].detach() for k in (*POD_LAYERS, LOGITS)},
            pod_factors(self.config),
            num_classes=num_classes,
            num_new=num_classes - self.num_old,
            distance=local_pod_distance,
        )
        return {"loss_ce": ce.mean(), "loss_feat_kd": pod}

    def step_stats(self) -> dict[str, Any]:
        """Pseudo-labelled pixels per old class, background pixels sent to ignore and the
        entropy thresholds last in use of every old class, background included (keyed by
        model index)."""
        if self.medians is None:
            return {}
        current = self.current if self.current is not None else self.medians.thresholds()
        taus = current.tolist()
        return {"pseudo_labels": {c: int(self.counts[c]) for c in range(1, self.num_old)},
                "uncertain_pixels": self.uncertain,
                "entropy_thresholds": {c: round(float(t), 4) for c, t in enumerate(taus)}}
