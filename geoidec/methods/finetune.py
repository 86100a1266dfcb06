"""Fine-tuning: plain cross-entropy on the current step's labels (the lower bound).

Old classes appear only as background in step t's labels, so the model forgets them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geoidec.constants import IGNORE_INDEX
from geoidec.methods.base import Batch, Method


class Finetune(Method):
    name = "finetune"

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss_ce = CE(logits, target)`` over non-ignored pixels."""
        return {
            "loss_ce": F.cross_entropy(batch.out.logits, batch.target, ignore_index=IGNORE_INDEX)
        }
