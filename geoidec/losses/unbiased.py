"""MiB's unbiased losses (Cermelli et al., CVPR 2020): background shift aware CE and KD.

At step t the current labels call "background" (0) every pixel that is not a new class, old
classes included, while the old model calls "background" every pixel that is not an old class,
new classes included. The two losses below re-group the new model's probabilities so that each
side is compared with what it can actually mean.

Conventions: logits ``(B, K, H, W)``, channel 0 = background, ``1 .. K_old - 1`` = old classes,
``K_old .. K - 1`` = classes new at this step; targets ``(B, H, W)`` int64 with
``ignore_index`` (255) for pixels no loss sees. Softmax and log-sum-exp are computed in
float32 whatever the input dtype (AMP-safe). Every loss is a scalar mean over the contributing
pixels, and an exact 0 that keeps the autograd graph when no pixel contributes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from geoidec.constants import IGNORE_INDEX

__all__ = ["unbiased_cross_entropy", "unbiased_distillation"]


def _check_logits(logits: Tensor, name: str) -> None:
    if logits.ndim != 4:
        raise ValueError(f"{name} must be (B, K, H, W), got shape {tuple(logits.shape)}")


def unbiased_cross_entropy(
    logits: Tensor, target: Tensor, num_old: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    r"""Unbiased cross-entropy (MiB "UNCE"): background absorbs the old classes.

    With ``p = softmax(logits)`` over the K channels, for a pixel i with label y_i::

        log p~(i) = log( sum_{c < K_old} p_c(i) )          if y_i == 0
                  = log p_{y_i}(i)                          otherwise
        L = -(1 / |V|) * sum_{i in V} log p~(i)             V = {i : y_i != ignore_index}

    computed as ``logsumexp(z_{0..K_old-1}) - logsumexp(z_{0..K-1})`` for background pixels.
    A current "background" pixel may really be an old class, so the model is not pushed to
    lower the old classes' scores there. Pixels labelled with an old class (pseudo-labels) or a
    new class use the plain log-softmax.

    Special cases: ``num_old == 1`` (no old foreground class) is the plain cross-entropy;
    ``num_old == K`` makes every background pixel's term ``log 1 = 0``.

    Args:
        logits: ``(B, K, H, W)`` scores of the model being trained.
        target: ``(B, H, W)`` int64 labels in ``[0, K)`` or ``ignore_index``.
        num_old: K_old, channels known before this step, background included (``1 <= K_old <= K``).
        ignore_index: label of pixels that do not contribute.

    Returns:
        Scalar float32 tensor; 0 (graph attached) when every pixel is ignored.
    """
    _check_logits(logits, "logits")
    num_classes = logits.shape[1]
    if not 1 <= num_old <= num_classes:
        raise ValueError(f"num_old must be in [1, {num_classes}], got {num_old}")
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
        )
    z = logits.float()
    log_norm = torch.logsumexp(z, dim=1)  # (B, H, W)
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target)).long()
    log_p_label = z.gather(1, safe_target.unsqueeze(1)).squeeze(1) - log_norm
    log_p_background = torch.logsumexp(z[:, :num_old], dim=1) - log_norm
    log_p = torch.where(safe_target == 0, log_p_background, log_p_label)
    log_p = torch.where(valid, log_p, torch.zeros_like(log_p))
    count = valid.sum().clamp_min(1)
    return -log_p.sum() / count


def unbiased_distillation(
    new_logits: Tensor,
    old_logits: Tensor,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Unbiased knowledge distillation (MiB "UNKD"): new-model background absorbs new classes.

    With K_old = ``old_logits.shape[1]``, T the temperature, ``q = softmax(z_old / T)`` over
    the K_old old channels and ``s = z_new / T``::

        log p^(i)_0 = logsumexp_{c in {0} U {K_old..K-1}} s_c(i) - logsumexp_{c < K} s_c(i)
        log p^(i)_c = s_c(i) - logsumexp_{c' < K} s_c'(i)                   1 <= c < K_old
        L = -(1 / |M|) * sum_{i in M} sum_{c < K_old} q_c(i) * log p^(i)_c

    where M is the set of pixels selected by ``mask`` (all pixels by default). The old model
    saw the new classes as background, so its background probability is matched with the new
    model's background-plus-new-classes probability.

    Notes:
        * The sum runs over classes and the mean over pixels. MiB's reference code averages
          over the K_old classes as well (an extra factor ``1 / K_old``); scale the loss weight
          accordingly when porting MiB's ``lambda``.
        * No ``T**2`` factor is applied (MiB does not apply one either); multiply outside if
          wanted.
        * This is the cross-entropy form of KD; with no new classes (K == K_old) it equals the
          standard KD cross-entropy ``-sum_c q_c log softmax(s)_c``, which differs from
          ``KL(q || p)`` by the constant entropy of q.
        * ``old_logits`` is detached (the old model is a frozen teacher).

    Args:
        new_logits: ``(B, K, H, W)`` scores of the model being trained.
        old_logits: ``(B, K_old, H, W)`` scores of the old model, ``K_old <= K``.
        temperature: T > 0, divides both logits.
        mask: optional ``(B, H, W)`` bool tensor of the pixels to distil.

    Returns:
        Scalar float32 tensor; 0 (graph attached) when the mask selects no pixel.
    """
    _check_logits(new_logits, "new_logits")
    _check_logits(old_logits, "old_logits")
    num_old = old_logits.shape[1]
    if num_old > new_logits.shape[1]:
        raise ValueError(
            f"old_logits has more channels ({num_old}) than new_logits ({new_logits.shape[1]})"
        )
    if old_logits.shape[0] != new_logits.shape[0] or old_logits.shape[2:] != new_logits.shape[2:]:
        raise ValueError(
            f"old_logits {tuple(old_logits.shape)} and new_logits {tuple(new_logits.shape)} "
            "differ in batch or spatial size"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    s = new_logits.float() / temperature
    q = torch.softmax(old_logits.detach().float() / temperature, dim=1)
    log_norm = torch.logsumexp(s, dim=1, keepdim=True)  # (B, 1, H, W)
    background_group = torch.cat([s[:, :1], s[:, num_old:]], dim=1)
    log_p_background = torch.logsumexp(background_group, dim=1, keepdim=True) - log_norm
    log_p_old = s[:, 1:num_old] - log_norm
    log_p = torch.cat([log_p_background, log_p_old], dim=1)  # (B, K_old, H, W)
    per_pixel = (q * log_p).sum(dim=1)  # (B, H, W)
    if mask is None:
        return -per_pixel.sum() / max(per_pixel.numel(), 1)
    mask = mask.to(device=per_pixel.device, dtype=torch.bool)
    if mask.shape != per_pixel.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must be {tuple(per_pixel.shape)}")
    selected = torch.where(mask, per_pixel, torch.zeros_like(per_pixel))
    return -selected.sum() / mask.sum().clamp_min(1)


def mib_logit_distillation(new_logits: Tensor, old_logits: Tensor,
                           temperature: float = 1.0) -> Tensor:
    """MiB's logit distillation term as its reference code scales it: ``UNKD / K_old``
    (:func:`unbiased_distillation` averaged over the ``K_old = old_logits.shape[1]`` old
    classes as well as over the pixels); MiB and IDEC weight it with ``lambda_logit_kd``."""
    return unbiased_distillation(new_logits, old_logits, temperature=temperature) / \
        old_logits.shape[1]
