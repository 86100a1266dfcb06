"""MiB (Cermelli et al., CVPR 2020): unbiased cross-entropy + unbiased logit distillation,
with the classifier's new heads initialised from background (done by the model's add_step).
"""

from __future__ import annotations

import torch

from geoidec.losses import mib_logit_distillation, unbiased_cross_entropy
from geoidec.methods.base import Batch
from geoidec.methods.finetune import Finetune


class MiB(Finetune):
    name = "mib"
    needs_old_model = True

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss_ce`` = UNCE(logits, target); ``loss_logit_kd`` = lambda * UNKD(new, old)."""
        if batch.old_out is None:
            return super().losses(batch)
        cfg = self.config
        logits, old_logits = batch.out.logits, batch.old_out.logits
        terms = {"loss_ce": unbiased_cross_entropy(logits, batch.target, old_logits.shape[1])}
        if cfg.logit_kd:
            terms["loss_logit_kd"] = cfg.lambda_logit_kd * mib_logit_distillation(
                logits, old_logits, temperature=cfg.kd_temperature)
        return terms
