"""IDEC's asymmetric region-wise contrastive learning (ARCL).

A *region* is the set of pixels of one class in one image. :func:`region_embeddings` turns a
projected feature map and a (pseudo-labelled) target into one L2-normalised embedding per
region. :func:`arcl_infonce` (the paper's loss, default) and :func:`arcl_triplet` (the authors'
code) pull the new model's region embeddings towards anchors given by the frozen old model and
push them away from the other classes' regions.

Asymmetric: the old model's embeddings (and the new-class anchors, batch means of the new
model's embeddings) are detached inside the functions, so gradient flows only through the new
model's side. Similarities are computed in float32 with autocast disabled (AMP-safe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from geoidec.constants import IGNORE_INDEX

__all__ = ["arcl_infonce", "arcl_triplet", "region_embeddings"]

# Region key = image * _KEY_STRIDE + class: unique over (image, class), sorted by (image, class).
_KEY_STRIDE = 1 << 32


def region_embeddings(
    features: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Area-weighted average pooling of a feature map into one embedding per (image, class)
    region.

    Every label pixel i of image b falls in one feature cell g(i) (row ``y * h // H``, column
    ``x * w // W``; exactly the cell covering it when the feature stride divides the image).
    For every image b and class k present among its non-ignored pixels Omega_{b,k}::

        u = (1 / |Omega_{b,k}|) * sum_{i in Omega_{b,k}} F_b(:, g(i))
          = sum_cells a_{b,k}(cell) F_b(:, cell) / sum_cells a_{b,k}(cell)
        e_{b,k} = u / || u ||_2

    with a_{b,k}(cell) the number of the region's pixels in that cell: each cell counts by
    the share of its area the class covers (average-pooled one-hot masks), so a class too
    small to own any cell still has a region.

    Args:
        features: ``(B, D, h, w)`` feature map (e.g. the projection head's output).
        labels: ``(B, H, W)`` int labels; ``ignore_index`` and negative labels are skipped.
        ignore_index: label of pixels that belong to no region.

    Returns:
        ``(embeddings, image_index, class_index)``: float32 ``(N, D)`` L2-normalised
        embeddings, int64 ``(N,)`` image indices and int64 ``(N,)`` classes, ordered by
        (image, class). N may be 0 (the embeddings then still carry the graph of ``features``).
    """
    if features.ndim != 4 or labels.ndim != 3:
        raise ValueError(
            f"features must be (B, D, h, w) and labels (B, H, W); got {tuple(features.shape)} "
            f"and {tuple(labels.shape)}"
        )
    batch, dim, height, width = features.shape
    if labels.shape[0] != batch:
        raise ValueError(f"labels batch {labels.shape[0]} differs from features batch {batch}")
    device = features.device
    labels = labels.to(device).long()
    big_h, big_w = labels.shape[-2:]
    rows = torch.arange(big_h, device=device) * height // big_h
    cols = torch.arange(big_w, device=device) * width // big_w
    cells_per_image = height * width
    cell = (torch.arange(batch, device=device)[:, None, None] * cells_per_image
            + rows[None, :, None] * width + cols[None, None, :]).reshape(-1)
    image = torch.arange(batch, device=device).repeat_interleave(big_h * big_w)
    flat_labels = labels.reshape(-1)
    valid = (flat_labels != ignore_index) & (flat_labels >= 0)
    keys = image[valid] * _KEY_STRIDE + flat_labels[valid]
    region_keys, region = torch.unique(keys, sorted=True, return_inverse=True)
    # pixels per (region, cell): the area each region covers in each feature cell
    total_cells = batch * cells_per_image
    pairs, area = torch.unique(region * total_cells + cell[valid], return_counts=True)
    pair_region, pair_cell = pairs // total_cells, pairs % total_cells
    flat = features.float().permute(0, 2, 3, 1).reshape(-1, dim)
    weights = area.to(flat.dtype)[:, None]
    sums = flat.new_zeros(region_keys.numel(), dim).index_add(
        0, pair_region, flat[pair_cell] * weights
    )
    counts = flat.new_zeros(region_keys.numel()).index_add(0, pair_region, weights[:, 0])
    embeddings = F.normalize(sums / counts.clamp_min(1.0)[:, None], p=2.0, dim=1)
    if embeddings.numel() == 0:
        embeddings = embeddings + flat.sum() * 0  # keep the graph of ``features``
    return embeddings, region_keys // _KEY_STRIDE, region_keys % _KEY_STRIDE


def _pairs(
    new_emb: Tensor,
    new_img: Tensor,
    new_cls: Tensor,
    old_emb: Tensor,
    old_img: Tensor,
    old_cls: Tensor,
    old_classes: Sequence[int] | Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Anchors (P, D) float32 detached, positive indices into ``new_emb`` (P,), anchor classes.

    Old-class anchors: the old embedding of every region (b, k), k in ``old_classes``, that has
    a new-model region (b, k). New-class anchors: for every class of ``new_cls`` not in
    ``old_classes``, the re-normalised mean of its new embeddings, paired with each of them.
    """
    device = new_emb.device
    if new_emb.ndim != 2 or old_emb.ndim != 2:
        raise ValueError("embeddings must be (N, D)")
    if old_emb.shape[0] and new_emb.shape[0] and old_emb.shape[1] != new_emb.shape[1]:
        raise ValueError(
            f"old and new embeddings differ in size: {old_emb.shape[1]} vs {new_emb.shape[1]}"
        )
    new_img, new_cls = new_img.to(device).long(), new_cls.to(device).long()
    old_img, old_cls = old_img.to(device).long(), old_cls.to(device).long()
    old_set = torch.as_tensor(old_classes, dtype=torch.long, device=device).reshape(-1)
    detached = new_emb.detach().float()

    same_region = (old_img[:, None] == new_img[None, :]) & (old_cls[:, None] == new_cls[None, :])
    keep = same_region.any(dim=1) & torch.isin(old_cls, old_set)
    old_anchor = old_emb.detach().float().to(device)[keep]
    if same_region.shape[1]:
        old_pos = same_region.to(torch.uint8).argmax(dim=1)[keep]  # first matching new region
    else:
        old_pos = torch.zeros(0, dtype=torch.long, device=device)
    old_anchor_cls = old_cls[keep]

    is_new_class = ~torch.isin(new_cls, old_set)
    new_pos = torch.nonzero(is_new_class).reshape(-1)
    new_anchor_cls = new_cls[new_pos]
    classes, inverse = torch.unique(new_anchor_cls, return_inverse=True)
    sums = detached.new_zeros(classes.numel(), detached.shape[1]).index_add(
        0, inverse, detached[new_pos]
    )
    prototypes = F.normalize(sums, p=2.0, dim=1)  # the mean's direction = the sum's
    new_anchor = prototypes[inverse]

    anchors = torch.cat([old_anchor.reshape(-1, detached.shape[1]), new_anchor], dim=0)
    return anchors, torch.cat([old_pos, new_pos]), torch.cat([old_anchor_cls, new_anchor_cls])


def arcl_infonce(
    new_emb: Tensor,
    new_img: Tensor,
    new_cls: Tensor,
    old_emb: Tensor,
    old_img: Tensor,
    old_cls: Tensor,
    old_classes: Sequence[int] | Tensor,
    temperature: float = 0.1,
) -> Tensor:
    r"""Asymmetric region-wise InfoNCE (IDEC's ARCL, the paper's form).

    Anchor-positive pairs (a, p), with a always detached:

    * old classes: for every old-model region (b, k) with k in ``old_classes`` and a new-model
      region (b, k): a = e^old_{b,k}, p = e^new_{b,k} (old regions without a new counterpart
      are skipped);
    * classes of ``new_cls`` not in ``old_classes`` (new classes; also background if 0 is not
      listed): a = normalise(mean_b e^new_{b,k}) over the batch, paired with every region
      e^new_{b,k} of that class as p.

    Negatives N(a) = every new-model region embedding whose class differs from the anchor's
    (any image; same-class regions of other images are neither positive nor negative)::

        l(a, p) = -log( exp(a.p / tau) / ( exp(a.p / tau) + sum_{n in N(a)} exp(a.n / tau) ) )
        L = mean over all pairs (a, p)

    Args:
        new_emb, new_img, new_cls: new-model regions, from :func:`region_embeddings`.
        old_emb, old_img, old_cls: old-model regions, from :func:`region_embeddings`.
        old_classes: classes learnt before this step (include 0 to anchor background on the
            old model).
        temperature: tau > 0.

    Returns:
        Scalar float32 tensor; 0 (graph of ``new_emb`` attached) when there is no pair.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    anchors, pos_idx, anchor_cls = _pairs(
        new_emb, new_img, new_cls, old_emb, old_img, old_cls, old_classes
    )
    if anchors.shape[0] == 0:
        return new_emb.float().sum() * 0
    new_cls = new_cls.to(new_emb.device).long()
    with torch.autocast(device_type=new_emb.device.type, enabled=False):
        sim = anchors @ new_emb.float().t() / temperature  # (P, N_new)
    positive = sim.gather(1, pos_idx[:, None])  # (P, 1)
    negatives = sim.masked_fill(new_cls[None, :] == anchor_cls[:, None], float("-inf"))
    log_den = torch.logsumexp(torch.cat([positive, negatives], dim=1), dim=1)
    return (log_den - positive[:, 0]).mean()


def arcl_triplet(
    new_emb: Tensor,
    new_img: Tensor,
    new_cls: Tensor,
    old_emb: Tensor,
    old_img: Tensor,
    old_cls: Tensor,
    old_classes: Sequence[int] | Tensor,
    margin: float = 1.0,
    negative: Literal["hardest", "mean"] = "hardest",
) -> Tensor:
    r"""Asymmetric region-wise triplet margin loss (the IDEC authors' code variant).

    Same anchor-positive pairs and negatives as :func:`arcl_infonce`, with the L2 distance
    ``d(x, y) = || x - y + 1e-6 ||_2`` (torch's ``pairwise_distance`` convention, finite
    gradient at x == y)::

        hardest (default): l(a, p) = max( d(a, p) - min_{n in N(a)} d(a, n) + margin, 0 )
        mean:              l(a, p) = mean_{n in N(a)} max( d(a, p) - d(a, n) + margin, 0 )
        L = mean over the pairs with at least one negative

    Args:
        new_emb, new_img, new_cls, old_emb, old_img, old_cls, old_classes: as in
            :func:`arcl_infonce`.
        margin: triplet margin (the authors use 1).
        negative: ``"hardest"`` (batch-hard: closest negative) or ``"mean"`` (every negative).

    Returns:
        Scalar float32 tensor; 0 (graph of ``new_emb`` attached) when no pair has a negative.
    """
    if negative not in ("hardest", "mean"):
        raise ValueError(f"negative must be 'hardest' or 'mean', got {negative!r}")
    anchors, pos_idx, anchor_cls = _pairs(
        new_emb, new_img, new_cls, old_emb, old_img, old_cls, old_classes
    )
    zero = new_emb.float().sum() * 0
    if anchors.shape[0] == 0:
        return zero
    new_cls = new_cls.to(new_emb.device).long()
    emb = new_emb.float()
    dist = torch.linalg.vector_norm(anchors[:, None, :] - emb[None, :, :] + 1e-6, dim=2)
    d_pos = dist.gather(1, pos_idx[:, None])[:, 0]  # (P,)
    is_neg = new_cls[None, :] != anchor_cls[:, None]  # (P, N_new)
    has_neg = is_neg.any(dim=1)
    if not bool(has_neg.any()):
        return zero
    if negative == "hardest":
        d_neg = dist.masked_fill(~is_neg, float("inf")).amin(dim=1)
        hinge = F.relu(d_pos - d_neg + margin)[has_neg]
    else:
        per_neg = F.relu(d_pos[:, None] - dist + margin) * is_neg
        hinge = (per_neg.sum(dim=1) / is_neg.sum(dim=1).clamp_min(1))[has_neg]
    return hinge.mean()
