"""PLOP (Douillard et al., CVPR 2021): pseudo-labels from the old model where its entropy is
below the per-class median, plus multi-scale pooled local feature distillation (Local POD).

geoidec applies POD to the backbone stages and the ASPP output with equal weights and keeps
the running per-class entropy medians of the current step (PLOP computes them in one pass
over the step's data before training; a running estimate needs no extra pass).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from geoidec.constants import IGNORE_INDEX
from geoidec.losses import EntropyMedians, entropy_pseudo_label, feature_distillation
from geoidec.methods.base import Batch, StepPlan
from geoidec.methods.finetune import Finetune

POD_LAYERS = {"layer1": 1.0, "layer2": 1.0, "layer3": 1.0, "aspp": 1.0}


class PLOP(Finetune):
    name = "plop"
    needs_old_model = True

    def start_step(self, plan: StepPlan, num_old: int) -> None:
        super().start_step(plan, num_old)
        self.medians = EntropyMedians(num_old) if num_old else None
        self.counts = torch.zeros(max(num_old, 1), dtype=torch.long)
        self.uncertain = 0

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss_ce`` on entropy pseudo-labels; ``loss_feat_kd`` = lambda_pod * POD."""
        if batch.old_out is None or self.medians is None:
            return super().losses(batch)
        old_logits = batch.old_out.logits.detach()
        self.medians.update(old_logits, mask=batch.target == 0)
        target, stats = entropy_pseudo_label(batch.target, old_logits, self.medians.thresholds())
        self.counts += stats["pseudo"].cpu()
        self.uncertain += int(stats["uncertain"])
        return {
            "loss_ce": F.cross_entropy(batch.out.logits, target, ignore_index=IGNORE_INDEX),
            "loss_feat_kd": self.config.lambda_pod * feature_distillation(
                batch.out.features, batch.old_out.features, POD_LAYERS, distance="pod"
            ),
        }

    def step_stats(self) -> dict[str, Any]:
        if self.medians is None:
            return {}
        return {"pseudo_labels": self.counts[1:].tolist(), "uncertain_pixels": self.uncertain,
                "entropy_thresholds": [round(float(t), 4) for t in self.medians.thresholds()]}
