"""Pooled output distillation (POD): local POD distances between feature maps, PLOP's loss.

Both distances pool a map ``(B, C, h, w)`` over the width and over the height of the cells of
s x s grids (scales s) and compare the pooled strips of the new and the old model:

* :func:`pod_distance`: every cell's embedding normalised on its own (IDEC's ``"pod"`` feature
  distance, weighted per pixel by a mask);
* :func:`local_pod_distance`: PLOP's local POD as its authors' code computes it (no
  normalisation, Frobenius norm of the concatenated strips).

PLOP's loss over layers and logits (factors, logits' channel folding by
:func:`fold_extra_channels`, ``sqrt(K / K_new)`` schedule, mean over entries) is
:func:`plop_pod_loss`.

Old features are always detached and everything is computed in float32 (AMP-safe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from geoidec.losses.feature_maps import check_pair, pixel_weights, require_entry, zero_with_graph

__all__ = ["fold_extra_channels", "local_pod_distance", "plop_pod_loss", "pod_distance"]


def _check_scales(scales: Sequence[int]) -> None:
    """Raise ValueError unless ``scales`` is a non-empty sequence of positive grid sizes."""
    if not scales or any(int(s) < 1 for s in scales):
        raise ValueError(f"scales must be positive ints, got {tuple(scales)}")


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
    check_pair(f_new, f_old)
    _check_scales(scales)
    weights = pixel_weights(mask, f_new)
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
    check_pair(f_new, f_old)
    _check_scales(scales)
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
        f_new, f_old = require_entry(name, new, old, "entry", "maps")
        if f_new.shape[1] != f_old.shape[1]:
            f_new = fold_extra_channels(f_new, f_old.shape[1])
        if factor == 0:
            continue
        terms.append(float(factor) * schedule * distance(f_new, f_old).float())
    if not terms:
        return zero_with_graph(new)
    return torch.stack(terms).sum() / len(factors)
