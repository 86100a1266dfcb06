"""Per-class sigmoid classification (SSUL, the IDEC authors' code) as an alternative to the
softmax cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geoidec.constants import IGNORE_INDEX

__all__ = ["binary_cross_entropy"]


def binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class sigmoid BCE (SSUL style, the authors' code): one-hot targets over the
    non-ignored pixels, ``-mean[y log s(z) + (1-y) log(1-s(z))]``."""
    valid = target != IGNORE_INDEX
    if not valid.any():
        return logits.sum() * 0.0
    onehot = F.one_hot(target.clamp(max=logits.shape[1] - 1), logits.shape[1])
    onehot = onehot.permute(0, 3, 1, 2).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").mean(1)
    return loss[valid].mean()
