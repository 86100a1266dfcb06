"""Checks and pixel weights shared by the feature distances (:mod:`.pod`, :mod:`.distillation`).

A pair of feature maps ``(B, C, h, w)``, one of the model being trained and one of the frozen
old model; the named maps of a multi-layer loss; an optional ``(B, h, w)`` per-pixel weight mask;
the weighted mean over pixels; and the exact zero, with the autograd graph attached, that a
loss returns when nothing contributes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def check_pair(f_new: Tensor, f_old: Tensor) -> None:
    """Raise ValueError unless ``f_new`` is ``(B, C, h, w)`` and ``f_old`` has its shape."""
    if f_new.ndim != 4:
        raise ValueError(f"features must be (B, C, h, w), got shape {tuple(f_new.shape)}")
    if f_new.shape != f_old.shape:
        raise ValueError(
            f"new and old features differ in shape: {tuple(f_new.shape)} vs {tuple(f_old.shape)}"
        )


def pixel_weights(mask: Tensor | None, f: Tensor) -> Tensor | None:
    """``mask`` (B, h, w) as float32 weights on ``f``'s device, shape-checked."""
    if mask is None:
        return None
    expected = (f.shape[0], *f.shape[2:])
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask shape {tuple(mask.shape)} must be {expected}")
    return mask.to(device=f.device, dtype=torch.float32)


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """``sum(v * w) / sum(w)`` (plain mean without weights); 0 with graph when ``sum(w) == 0``."""
    if weights is None:
        return values.sum() / max(values.numel(), 1)
    total = weights.sum()
    weighted = (values * weights).sum()
    return torch.where(total > 0, weighted / total.clamp_min(1e-12), weighted * 0)


def require_entry(
    name: str, new: Mapping[str, Tensor], old: Mapping[str, Tensor], what: str, maps: str
) -> tuple[Tensor, Tensor]:
    """``(new[name], old[name])``; KeyError naming the side that lacks ``name`` otherwise.

    ``what`` and ``maps`` word the message: ``"{what} 'x' missing from the new {maps}"``.
    """
    for side, found in (("new", new), ("old", old)):
        if name not in found:
            raise KeyError(f"{what} {name!r} missing from the {side} {maps} (have {sorted(found)})")
    return new[name], old[name]


def zero_with_graph(maps: Mapping[str, Tensor]) -> Tensor:
    """An exact float32 0 with the graph of every map in ``maps`` attached (plain 0 if none)."""
    anchors = [t.float().sum() * 0 for t in maps.values()]
    return torch.stack(anchors).sum() if anchors else torch.zeros(())
