"""Feature distillation between the frozen old model and the model being trained (IDEC's DADA).

Three distances D(F_new, F_old) on feature maps ``(B, C, h, w)`` are offered:

* ``"pod"``: pooled output distillation after PLOP's local POD, with every cell's embedding
  normalised (IDEC's default), :func:`pod_distance`;
* ``"l2"``: per-pixel L2 distance of channel-normalised features,
  :func:`normalized_l2_distance`;
* ``"channel_softmax"``: the channel-softmax KD of the IDEC authors' code,
  :func:`channel_softmax_distillation`.

:func:`feature_distillation` sums ``w_l * D(F_new^l, F_old^l)`` over named layers, with IDEC's
default weights :data:`IDEC_LAYER_WEIGHTS`.

PLOP's own local POD, as its authors' code computes it (no normalisation, Frobenius norm of the
concatenated strips), is :func:`local_pod_distance`, and PLOP's loss over layers and logits
(factors, logits' channel folding, ``sqrt(K / K_new)`` schedule, mean over entries) is
:func:`plop_pod_loss`.

Every distance of :func:`feature_distillation` accepts a per-pixel weight mask
(IDEC's "more emphasis on semantic-invariant knowledge": keep the pixels the pseudo-labels give
to old classes and background, let new-class regions drift).

Old features are always detached (stop-gradient: the old model is a frozen teacher). Everything
is computed in float32, whatever the input dtype (AMP-safe). Each function returns a float32
scalar, and an exact 0 with the autograd graph attached when no pixel contributes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FEATURE_DISTANCES",
    "IDEC_LAYER_WEIGHTS",
    "channel_softmax_distillation",
    "feature_distillation",
    "fold_extra_channels",
    "local_pod_distance",
    "normalized_l2_distance",
    "plop_pod_loss",
    "pod_distance",
]

#: IDEC's per-layer weights (backbone stages 1-3 and the ASPP output): 0.5, 1, 2, 1.
IDEC_LAYER_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"layer1": 0.5, "layer2": 1.0, "layer3": 2.0, "aspp": 1.0}
)

#: Names accepted by ``feature_distillation(distance=...)``.
FEATURE_DISTANCES: tuple[str, ...] = ("pod", "l2", "channel_softmax")


def _check_pair(f_new: Tensor, f_old: Tensor) -> None:
    if f_new.ndim != 4:
        raise ValueError(f"features must be (B, C, h, w), got shape {tuple(f_new.shape)}")
    if f_new.shape != f_old.shape:
        raise ValueError(
            f"new and old features differ in shape: {tuple(f_new.shape)} vs {tuple(f_old.shape)}"
        )


def _pixel_weights(mask: Tensor | None, f: Tensor) -> Tensor | None:
    """``mask`` (B, h, w) as float32 weights on ``f``'s device, shape-checked."""
    if mask is None:
        return None
    expected = (f.shape[0], *f.shape[2:])
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask shape {tuple(mask.shape)} must be {expected}")
    return mask.to(device=f.device, dtype=torch.float32)


def _weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """``sum(v * w) / sum(w)`` (plain mean without weights); 0 with graph when ``sum(w) == 0``."""
    if weights is None:
        return values.sum() / max(values.numel(), 1)
    total = weights.sum()
    weighted = (values * weights).sum()
    return torch.where(total > 0, weighted / total.clamp_min(1e-12), weighted * 0)


def _cell_bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous non-empty ranges covering ``range(length)`` (sizes differ by <= 1)."""
    edges = [i * length // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def pod_distance(
    f_new: Tensor,
    f_old: Tensor,
    scales: Sequence[int] = (1, 2, 4),
    mask: Tensor | None = None,
    square: bool = True,
) -> Tensor:
    r"""Local POD distance (PLOP, Douillard et al., CVPR 2021).

    Let ``X = F^2`` (element-wise, PLOP's default pre-processing; ``X = F`` with
    ``square=False``), optionally weighted per pixel: ``X(b, c, y, x) * m(b, y, x)``. For each
    scale s the map is cut into an s x s grid of cells R (integer boundaries ``i * h // s``;
    cells left empty when s > h or s > w are skipped). In a cell, the width- and height-pooled
    strips are::

        P_w(R) = [ sum_{x in R} X(b, c, y, x) ]_{c, y in R}        (C x h_R)
        P_h(R) = [ sum_{y in R} X(b, c, y, x) ]_{c, x in R}        (C x w_R)
        e(R)   = concat(P_w(R), P_h(R)) / || concat(P_w(R), P_h(R)) ||_2

    (a zero vector stays zero) and the distance is::

        D = mean_b mean_{s in scales} mean_{R at scale s} || e_new(R) - e_old(R) ||_2

    Each scale has the same weight whatever its number of cells. D is 0 for identical
    features, at most 2, and 0 when the mask is all zeros (both embeddings vanish).

    Differences with PLOP's code: PLOP mean-pools (sum here; the normalisation removes the
    scale), normalises the concatenation of all cells at once or not at all, and weights the
    cells of the finer scales more; here every cell is normalised on its own. PLOP's exact
    distance is :func:`local_pod_distance` (used by the PLOP baseline).

    Args:
        f_new: ``(B, C, h, w)`` features of the model being trained.
        f_old: ``(B, C, h, w)`` features of the old model (detached here).
        scales: grid sizes s (positive ints).
        mask: optional ``(B, h, w)`` bool or float weights in [0, 1].
        square: square the activations before pooling (PLOP's ``prepro="pow"``).

    Returns:
        Scalar float32 tensor.
    """
    _check_pair(f_new, f_old)
    if not scales or any(int(s) < 1 for s in scales):
        raise ValueError(f"scales must be positive ints, got {tuple(scales)}")
    weights = _pixel_weights(mask, f_new)
    x_new = f_new.float()
    x_old = f_old.detach().float()
    if square:
        x_new, x_old = x_new * x_new, x_old * x_old
    if weights is not None:
        x_new = x_new * weights[:, None]
        x_old = x_old * weights[:, None]
    batch, _, height, width = x_new.shape

    def embed(x: Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> Tensor:
        cell = x[:, :, rows[0] : rows[1], cols[0] : cols[1]]
        strips = torch.cat(
            [cell.sum(dim=3).reshape(batch, -1), cell.sum(dim=2).reshape(batch, -1)], 1
        )
        return F.normalize(strips, p=2.0, dim=1)

    def embed_all(x: Tensor, s: int) -> Tensor:
        # every cell at once when the grid divides the map: (B, s*s, C*(h/s + w/s))
        c = x.shape[1]
        grid = x.reshape(batch, c, s, height // s, s, width // s)
        rows = grid.sum(dim=5).permute(0, 2, 4, 1, 3).reshape(batch, s * s, -1)
        cols = grid.sum(dim=3).permute(0, 2, 3, 1, 4).reshape(batch, s * s, -1)
        return F.normalize(torch.cat([rows, cols], dim=2), p=2.0, dim=2)

    per_scale = []
    for s in scales:
        if height % s == 0 and width % s == 0:
            diff = embed_all(x_new, int(s)) - embed_all(x_old, int(s))
            per_scale.append(torch.linalg.vector_norm(diff, dim=2).mean(dim=1))
            continue
        cells = [
            (rows, cols)
            for rows in _cell_bounds(height, int(s))
            for cols in _cell_bounds(width, int(s))
        ]
        dists = [
            torch.linalg.vector_norm(embed(x_new, r, c) - embed(x_old, r, c), dim=1)
            for r, c in cells
        ]  # each (B,)
        per_scale.append(torch.stack(dists, dim=0).mean(dim=0))
    return torch.stack(per_scale, dim=0).mean(dim=0).mean()


def local_pod_distance(
    f_new: Tensor,
    f_old: Tensor,
    scales: Sequence[int] = (1, 2, 4),
    square: bool = True,
) -> Tensor:
    r"""PLOP's local POD distance, as the authors' code computes it (``_local_pod`` with
    ``normalize=False`` and the ``"frobenius"`` difference).

    Let ``X = F^2`` (PLOP's ``prepro="pow"``; ``X = F`` with ``square=False``). For each scale
    s the map is cut into s x s cells of ``k_h x k_w`` pixels, ``k_h = h // s``, ``k_w = w // s``;
    cell (i, j) covers rows ``[i k_h, (i+1) k_h)`` and columns ``[j k_w, (j+1) k_w)``. Each cell
    gives two strips, the mean over its width and the mean over its height::

        P_w(R) = [ mean_{x in R} X(b, c, y, x) ]_{c, y in R}        (C x k_h)
        P_h(R) = [ mean_{y in R} X(b, c, y, x) ]_{c, x in R}        (C x k_w)

    and all strips of all cells and scales are concatenated, WITHOUT any normalisation, into
    one vector ``e(b)`` per image. The distance is::

        D = mean_b || e_new(b) - e_old(b) ||_2

    Map sizes: PLOP's code takes ``k = w // s`` for both axes (it assumes square maps); here
    each axis uses its own length, which is the same on square maps. When s does not divide
    a side, the last ``h mod s`` rows / ``w mod s`` columns are left out of that scale, as
    PLOP's code leaves out the last columns. A scale with ``s > h`` or ``s > w`` (empty cells)
    is skipped: PLOP's code adds empty strips there (or NaNs on non-square maps).

    Args:
        f_new: ``(B, C, h, w)`` features (or folded logits) of the model being trained.
        f_old: ``(B, C, h, w)`` of the old model (detached here).
        scales: grid sizes s (positive ints); PLOP's ``spp_scales`` (1, 2, 4).
        square: square the values before pooling (PLOP's ``prepro="pow"``).

    Returns:
        Scalar float32 tensor (0 for identical inputs, with a finite zero gradient).
    """
    _check_pair(f_new, f_old)
    if not scales or any(int(s) < 1 for s in scales):
        raise ValueError(f"scales must be positive ints, got {tuple(scales)}")
    x_new = f_new.float()
    x_old = f_old.detach().float()
    if square:
        x_new, x_old = x_new * x_new, x_old * x_old
    batch, channels, height, width = x_new.shape
    diff = x_new - x_old
    strips = []  # e_new - e_old, piece by piece (pooling is linear; the order of the pieces
    # does not change the norm)
    for s in (int(s) for s in scales):
        kh, kw = height // s, width // s
        if kh == 0 or kw == 0:
            continue
        grid = diff[:, :, : s * kh, : s * kw].reshape(batch, channels, s, kh, s, kw)
        strips.append(grid.mean(dim=5).flatten(1))  # (B, C*s*kh*s): width-pooled strips
        strips.append(grid.mean(dim=3).flatten(1))  # (B, C*s*s*kw): height-pooled strips
    # vector_norm: a zero difference has a zero (not NaN) gradient
    return torch.linalg.vector_norm(torch.cat(strips, dim=1), dim=1).mean()


def fold_extra_channels(logits_new: Tensor, num_old: int) -> Tensor:
    r"""PLOP's ``extra_channels="sum"``: fold the new model's logits onto the old model's
    channels, the new classes' scores added to the background's::

        z'_0 = z_0 + sum_{c >= K_old} z_c,     z'_c = z_c  (1 <= c < K_old)

    Args:
        logits_new: ``(B, K, h, w)`` logits of the model being trained, ``K >= K_old``.
        num_old: K_old, the old model's outputs (background included).

    Returns:
        ``(B, K_old, h, w)``; ``logits_new`` itself when ``K == K_old``.
    """
    k = logits_new.shape[1]
    if not 1 <= num_old <= k:
        raise ValueError(f"num_old must be in [1, {k}], got {num_old}")
    if k == num_old:
        return logits_new
    background = logits_new[:, :1] + logits_new[:, num_old:].sum(dim=1, keepdim=True)
    return torch.cat([background, logits_new[:, 1:num_old]], dim=1)


def plop_pod_loss(
    new: Mapping[str, Tensor],
    old: Mapping[str, Tensor],
    factors: Mapping[str, float],
    num_classes: int,
    num_new: int,
    distance: Callable[[Tensor, Tensor], Tensor] = local_pod_distance,
) -> Tensor:
    r"""PLOP's POD loss (``features_distillation`` of the authors' code, ``"local"`` type)::

        L = (1 / N) * sum_{l in factors} lambda_l * D(F_new^l, F_old^l) * sqrt(K / K_new)

    with N the number of entries of ``factors`` (PLOP divides by the number of distilled
    maps, the logits included), D :func:`local_pod_distance`, K the classes seen (all outputs
    of the new model, background included) and K_new the outputs added at this step (PLOP's
    ``use_pod_schedule``). An entry whose new map has more channels than the old one (the
    logits) is first folded by :func:`fold_extra_channels`. An entry with factor 0 adds
    nothing but still counts in N (as in PLOP's code).

    Args:
        new: entry name -> ``(B, C_l, h_l, w_l)`` of the model being trained.
        old: entry name -> the old model's (same shape, or fewer channels for the logits).
        factors: entry name -> lambda_l (PLOP: 0.01 for the features, 0.0005 the logits).
        num_classes: K. num_new: K_new.
        distance: D (a recorder in tests).

    Returns:
        Scalar float32 tensor.

    Raises:
        KeyError: an entry missing from ``new``/``old``. ValueError: bad class counts.
    """
    if not 1 <= num_new <= num_classes:
        raise ValueError(f"need 1 <= num_new <= num_classes, got {num_new} and {num_classes}")
    schedule = math.sqrt(num_classes / num_new)
    terms: list[Tensor] = []
    for name, factor in factors.items():
        for side, maps in (("new", new), ("old", old)):
            if name not in maps:
                raise KeyError(f"entry {name!r} missing from the {side} maps (have {sorted(maps)})")
        f_new, f_old = new[name], old[name]
        if f_new.shape[1] != f_old.shape[1]:
            f_new = fold_extra_channels(f_new, f_old.shape[1])
        if factor == 0:
            continue
        terms.append(float(factor) * schedule * distance(f_new, f_old).float())
    if not terms:
        anchors = [t.float().sum() * 0 for t in new.values()]
        return torch.stack(anchors).sum() if anchors else torch.zeros(())
    return torch.stack(terms).sum() / len(factors)


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
    _check_pair(f_new, f_old)
    weights = _pixel_weights(mask, f_new)
    a = F.normalize(f_new.float(), p=2.0, dim=1)
    b = F.normalize(f_old.detach().float(), p=2.0, dim=1)
    dist = torch.linalg.vector_norm(a - b, dim=1)  # (B, h, w)
    return _weighted_mean(dist, weights)


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
    _check_pair(f_new, f_old)
    weights = _pixel_weights(mask, f_new)
    target = torch.softmax(alpha * f_old.detach().float(), dim=1)
    log_p = torch.log_softmax(f_new.float(), dim=1)
    per_pixel = -(target * log_p).sum(dim=1) / f_new.shape[1]  # (B, h, w)
    return _weighted_mean(per_pixel, weights)


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
        for side, feats in (("new", new), ("old", old)):
            if name not in feats:
                raise KeyError(
                    f"layer {name!r} missing from the {side} features (have {sorted(feats)})"
                )
        f_new = new[name]
        size = (int(f_new.shape[-2]), int(f_new.shape[-1]))
        layer_mask = None if mask is None else _resize_mask(mask, size)
        term = float(w) * fn(f_new, old[name], mask=layer_mask)
        total = term if total is None else total + term
    if total is None:
        anchors = [t.float().sum() * 0 for t in new.values()]
        return torch.stack(anchors).sum() if anchors else torch.zeros(())
    return total
