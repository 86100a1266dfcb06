"""Pseudo-labelling of the background with the old model (IDEC's dynamic class-specific rule).

At step t a pixel labelled background (0) may really be an old class. The old model's argmax c
and its certainty decide, per pixel, between three outcomes:

* c == 0: the pixel stays background;
* c >= 1 and certain enough for class c: the pixel takes label c (a pseudo-label);
* c >= 1 and not certain enough: "uncertain background", set to ``ignore_index`` so that no
  loss pushes it either way.

"Certain enough" compares the max-softmax confidence with a class-specific threshold
(:func:`pseudo_label`, IDEC) or the normalised entropy with one (:func:`entropy_pseudo_label`,
PLOP); the thresholds come from :mod:`geoidec.losses.thresholds` (:class:`DynamicThresholds`,
:class:`EntropyMedians`) or are fixed. Ground-truth labels other than 0 (new classes, ignore)
are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from geoidec.constants import BACKGROUND, IGNORE_INDEX
from geoidec.losses.thresholds import normalized_entropy, softmax_confidence

__all__ = ["entropy_pseudo_label", "pseudo_label"]


def _as_thresholds(
    thresholds: Tensor | Sequence[float] | float, num_old: int, device: torch.device
) -> Tensor:
    t = torch.as_tensor(thresholds, dtype=torch.float32, device=device)
    if t.ndim == 0:
        return t.expand(num_old)
    if t.shape != (num_old,):
        raise ValueError(f"thresholds must have {num_old} values, got shape {tuple(t.shape)}")
    return t


def _relabel(
    target: Tensor,
    pred: Tensor,
    accept: Tensor,
    num_old: int,
    ignore_index: int,
    uncertain_label: int | None,
    include_background: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    background = target == BACKGROUND
    candidate = background if include_background else background & (pred != BACKGROUND)
    take = candidate & accept
    reject = candidate & ~accept
    out = torch.where(take, pred.to(target.dtype), target)
    fill = ignore_index if uncertain_label is None else uncertain_label
    out = out.masked_fill(reject, fill)
    stats = {
        "pseudo": torch.bincount(pred[take].reshape(-1), minlength=num_old),
        "uncertain": int(reject.sum().item()),
    }
    return out, stats


def _check_target(target: Tensor, old_logits: Tensor) -> None:
    if old_logits.ndim != 4:
        raise ValueError(f"old_logits must be (B, K_old, H, W), got {tuple(old_logits.shape)}")
    if target.shape != (old_logits.shape[0], *old_logits.shape[2:]):
        raise ValueError(
            f"target {tuple(target.shape)} and old_logits {tuple(old_logits.shape)} differ in "
            "batch or spatial size (upsample the logits first)"
        )


@torch.no_grad()
def pseudo_label(
    target: Tensor,
    old_logits: Tensor,
    thresholds: Tensor | Sequence[float] | float,
    ignore_index: int = IGNORE_INDEX,
    uncertain_label: int | None = None,
    include_background: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    r"""Confidence pseudo-labelling of background pixels with class-specific thresholds.

    For each pixel with ``target == 0``, with ``c = argmax softmax(old_logits)`` and
    ``conf = max softmax(old_logits)`` (float32)::

        c == 0                        -> 0
        c >= 1 and conf >= tau_c      -> c
        c >= 1 and conf <  tau_c      -> ignore_index   ("uncertain background")

    With ``include_background=True`` the old model's background is an old class like the
    others: ``conf >= tau_0`` stays background, ``conf < tau_0`` is uncertain too.
    Other targets (new classes, ``ignore_index``) are unchanged.

    Args:
        target: ``(B, H, W)`` int64 current labels.
        old_logits: ``(B, K_old, H, W)`` old-model scores at the target's resolution.
        thresholds: tau, ``(K_old,)`` (e.g. :meth:`DynamicThresholds.thresholds`) or one float
            for every class (the authors' fixed rule; tau_0 is never used).
        ignore_index: label given to uncertain pixels.
        uncertain_label: overrides the label of uncertain pixels (e.g. 0 to keep them
            background, as the authors' code does); ``None`` = ``ignore_index``.
        include_background: judge the old model's background by tau_0 too.

    Returns:
        ``(new_target, stats)``: a new tensor (the input is not modified) and
        ``{"pseudo": (K_old,) int64 pixels relabelled per old class (index 0: background
        pixels kept as background, only counted with ``include_background``),
        "uncertain": int pixels set to the uncertain label}``.
    """
    _check_target(target, old_logits)
    num_old = old_logits.shape[1]
    pred, conf = softmax_confidence(old_logits)
    tau = _as_thresholds(thresholds, num_old, old_logits.device)
    return _relabel(target, pred, conf >= tau[pred], num_old, ignore_index, uncertain_label,
                    include_background)


@torch.no_grad()
def entropy_pseudo_label(
    target: Tensor,
    old_logits: Tensor,
    thresholds_entropy: Tensor | Sequence[float] | float,
    ignore_index: int = IGNORE_INDEX,
    uncertain_label: int | None = None,
    include_background: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    r"""Entropy pseudo-labelling of background pixels (PLOP).

    For each pixel with ``target == 0``, with ``c = argmax old_logits`` and H the
    :func:`normalized_entropy` of the old logits, ``H = -sum_c p_c log p_c / log K_old``::

        c == 0                    -> 0
        c >= 1 and H <  tau_c     -> c
        c >= 1 and H >= tau_c     -> ignore_index

    With ``include_background=True`` (PLOP's code) the old model's background is judged by
    its own threshold tau_0 like any old class::

        H <  tau_c                -> c            (c == 0 included: stays background)
        H >= tau_c                -> ignore_index (c == 0 included: uncertain background)

    Args:
        target: ``(B, H, W)`` int64 current labels.
        old_logits: ``(B, K_old, H, W)`` old-model scores at the target's resolution.
        thresholds_entropy: tau, ``(K_old,)`` (e.g. :meth:`EntropyMedians.thresholds`) or one
            float for every class.
        ignore_index: label given to uncertain pixels.
        uncertain_label: overrides the label of uncertain pixels; ``None`` = ``ignore_index``.
        include_background: apply the threshold to pixels the old model predicts as
            background too (PLOP); default: they stay background (IDEC's rule).

    Returns:
        ``(new_target, stats)`` as :func:`pseudo_label`; with ``include_background``,
        ``stats["pseudo"][0]`` counts the background pixels kept as background (certain) and
        ``stats["uncertain"]`` includes the uncertain background ones.
    """
    _check_target(target, old_logits)
    num_old = old_logits.shape[1]
    pred = old_logits.argmax(dim=1)
    ent = normalized_entropy(old_logits)
    tau = _as_thresholds(thresholds_entropy, num_old, old_logits.device)
    return _relabel(target, pred, ent < tau[pred], num_old, ignore_index, uncertain_label,
                    include_background)
