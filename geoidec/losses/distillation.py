"""Feature distillation between the frozen old model and the model being trained (IDEC's DADA).

Three distances D(F_new, F_old) on feature maps ``(B, C, h, w)`` are offered:

* ``"pod"``: pooled output distillation after PLOP's local POD, with every cell's embedding
  normalised (IDEC's default), :func:`geoidec.losses.pod.pod_distance`;
* ``"l2"``: per-pixel L2 distance of channel-normalised features,
  :func:`normalized_l2_distance`;
* ``"channel_softmax"``: the channel-softmax KD of the IDEC authors' code,
  :func:`channel_softmax_distillation`.

:func:`feature_distillation` sums ``w_l * D(F_new^l, F_old^l)`` over named layers, with IDEC's
default weights :data:`IDEC_LAYER_WEIGHTS`.

Every distance of :func:`feature_distillation` accepts a per-pixel weight mask
(IDEC's "more emphasis on semantic-invariant knowledge": keep the pixels the pseudo-labels give
to old classes and background, let new-class regions drift).

Old features are always detached (stop-gradient: the old model is a frozen teacher). Everything
is computed in float32, whatever the input dtype (AMP-safe). Each function returns a float32
scalar, and an exact 0 with the autograd graph attached when no pixel contributes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

from geoidec.losses.feature_maps import (
    check_pair,
    pixel_weights,
    require_entry,
    weighted_mean,
    zero_with_graph,
)
from geoidec.losses.pod import pod_distance

__all__ = [
    "FEATURE_DISTANCES",
    "IDEC_LAYER_WEIGHTS",
    "channel_softmax_distillation",
    "feature_distillation",
    "normalized_l2_distance",
]

#: IDEC's per-layer weights (backbone stages 1-3 and the ASPP output): 0.5, 1, 2, 1.
IDEC_LAYER_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"layer1": 0.5, "layer2": 1.0, "layer3": 2.0, "aspp": 1.0}
)

#: Names accepted by ``feature_distillation(distance=...)``.
FEATURE_DISTANCES: tuple[str, ...] = ("pod", "l2", "channel_softmax")


def normalized_l2_distance(f_new: Tensor, f_old: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Mean per-pixel L2 distance between channel-L2-normalised features.

    ::

        f^(i) = F(:, i) / || F(:, i) ||_2                           (zero vector stays zero)
        D = sum_i m_i * || f^_new(i) - f^_old(i) ||_2 / sum_i m_i

    over all pixels i of the batch, ``m = 1`` without a mask. D lies in [0, 2]; 0 when the
    mask weights sum to 0.

    Args:
        f_new: ``(B, C, h, w)`` features of the model being trained.
        f_old: ``(B, C, h, w)`` features of the old model (detached here).
        mask: optional ``(B, h, w)`` bool or float pixel weights.

    Returns:
        Scalar float32 tensor.
    """
    check_pair(f_new, f_old)
    weights = pixel_weights(mask, f_new)
    a = F.normalize(f_new.float(), p=2.0, dim=1)
    b = F.normalize(f_old.detach().float(), p=2.0, dim=1)
    dist = torch.linalg.vector_norm(a - b, dim=1)  # (B, h, w)
    return weighted_mean(dist, weights)


def channel_softmax_distillation(
    f_new: Tensor, f_old: Tensor, alpha: float = 2.0, mask: Tensor | None = None
) -> Tensor:
    r"""Channel-softmax KD of the IDEC authors' code.

    For every pixel i the C channels are turned into a distribution; alpha sharpens the old
    model's one only::

        L = -(1 / (N * C)) * sum_i m_i * sum_c softmax_c(alpha * F_old(i)) * log softmax_c(F_new(i))

    with ``N = sum_i m_i`` (the number of pixels without a mask, ``m = 1``). The ``1 / C``
    factor is kept as written in the authors' formula. 0 when the mask weights sum to 0.

    Args:
        f_new: ``(B, C, h, w)`` features of the model being trained.
        f_old: ``(B, C, h, w)`` features of the old model (detached here).
        alpha: sharpening factor applied to the old features.
        mask: optional ``(B, h, w)`` bool or float pixel weights.

    Returns:
        Scalar float32 tensor.
    """
    check_pair(f_new, f_old)
    weights = pixel_weights(mask, f_new)
    target = torch.softmax(alpha * f_old.detach().float(), dim=1)
    log_p = torch.log_softmax(f_new.float(), dim=1)
    per_pixel = -(target * log_p).sum(dim=1) / f_new.shape[1]  # (B, h, w)
    return weighted_mean(per_pixel, weights)


def _resize_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, H, W) mask to float32 (B, h, w): nearest for bool/int masks, area for float ones."""
    weights = mask.to(torch.float32)
    if tuple(mask.shape[-2:]) == tuple(size):
        return weights
    mode = "area" if mask.is_floating_point() else "nearest"
    return F.interpolate(weights[:, None], size=size, mode=mode)[:, 0]


def feature_distillation(
    new: Mapping[str, Tensor],
    old: Mapping[str, Tensor],
    weights: Mapping[str, float] = IDEC_LAYER_WEIGHTS,
    distance: str = "pod",
    mask: Tensor | None = None,
    alpha: float = 2.0,
) -> Tensor:
    r"""Weighted sum of per-layer feature distances.

    ::

        L = sum_{l in weights} w_l * D(F_new^l, F_old^l ; m^l)

    D is ``"pod"`` (:func:`pod_distance`, default scales), ``"l2"``
    (:func:`normalized_l2_distance`) or ``"channel_softmax"``
    (:func:`channel_softmax_distillation` with ``alpha``). ``mask`` (B, H, W) at input
    resolution is resized to each layer's (h, w): nearest for bool/int masks, area averaging
    for float masks; ``m^l`` are float weights. Layers with weight 0 are skipped.

    Args:
        new: layer name -> ``(B, C_l, h_l, w_l)`` features of the model being trained.
        old: layer name -> features of the old model (same shapes; detached).
        weights: layer name -> w_l; defaults to :data:`IDEC_LAYER_WEIGHTS`.
        distance: one of :data:`FEATURE_DISTANCES`.
        mask: optional (B, H, W) bool or float pixel weights.
        alpha: sharpening of the ``channel_softmax`` distance.

    Returns:
        Scalar float32 tensor (0 with the graph of ``new`` attached when no layer is weighted).

    Raises:
        ValueError: unknown ``distance``. KeyError: a weighted layer missing from ``new``/``old``.
    """
    functions: dict[str, Callable[..., Tensor]] = {
        "pod": pod_distance,
        "l2": normalized_l2_distance,
        "channel_softmax": lambda a, b, mask=None: channel_softmax_distillation(
            a, b, alpha=alpha, mask=mask
        ),
    }
    if distance not in functions:
        raise ValueError(
            f"unknown feature distance {distance!r}; valid: {', '.join(FEATURE_DISTANCES)}"
        )
    fn = functions[distance]
    total: Tensor | None = None
    for name, w in weights.items():
        if w == 0:
            continue
        f_new, f_old = require_entry(name, new, old, "layer", "features")
        size = (int(f_new.shape[-2]), int(f_new.shape[-1]))
        layer_mask = None if mask is None else _resize_mask(mask, size)
        term = float(w) * fn(f_new, f_old, mask=layer_mask)
        total = term if total is None else total + term
    if total is None:
        return zero_with_graph(new)
    return total
