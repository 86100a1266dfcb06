"""Loss terms checked against numbers worked out by hand on 1-4 pixel examples."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from geoidec.losses import (
    FEATURE_DISTANCES,
    IDEC_LAYER_WEIGHTS,
    DynamicThresholds,
    EntropyMedians,
    arcl_infonce,
    arcl_triplet,
    channel_softmax_distillation,
    entropy_pseudo_label,
    feature_distillation,
    fold_extra_channels,
    local_pod_distance,
    normalized_entropy,
    normalized_l2_distance,
    plop_pod_loss,
    pod_distance,
    pseudo_label,
    region_embeddings,
    unbiased_cross_entropy,
    unbiased_distillation,
)


def pixels(*vectors: tuple[float, ...]) -> torch.Tensor:
    """Logits / features of one image, one row, one column per vector: (1, C, 1, N)."""
    return torch.tensor(vectors, dtype=torch.float32).t()[None, :, None, :].contiguous()


def log_probs(*probs: tuple[float, ...]) -> torch.Tensor:
    """Logits whose softmax is exactly ``probs`` (one pixel per tuple)."""
    return pixels(*[tuple(math.log(p) for p in ps) for ps in probs])


# ------------------------------------------------------------------------------ UNCE
def test_unbiased_cross_entropy_hand_value() -> None:
    # K = 3 (bg, old 1, new 2), K_old = 2; pixels: label 0, label 2, ignored
    logits = pixels((1.0, 2.0, 0.0), (0.0, 0.0, 1.0), (5.0, -5.0, 0.0))
    target = torch.tensor([[[0, 2, 255]]])
    e = math.e
    log_bg = math.log((e + e**2) / (e + e**2 + 1))  # bg absorbs the old class 1
    log_new = math.log(e / (2 + e))
    expected = -(log_bg + log_new) / 2
    loss = unbiased_cross_entropy(logits, target, num_old=2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_unbiased_cross_entropy_degenerate_cases() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3, 3)
    target = torch.randint(0, 4, (2, 3, 3))
    target[0, 0, 0] = 255
    # no old foreground class: plain cross-entropy
    plain = F.cross_entropy(logits, target, ignore_index=255)
    assert unbiased_cross_entropy(logits, target, 1).item() == pytest.approx(plain.item(), 1e-6)
    # every channel old: background pixels cost log(1) = 0, the others plain CE
    full = unbiased_cross_entropy(logits, target, 4)
    ce = F.cross_entropy(logits, target, ignore_index=255, reduction="none")
    valid = target != 255
    expected = ce[valid & (target != 0)].sum() / valid.sum()
    assert full.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="num_old"):
        unbiased_cross_entropy(logits, target, 5)


# ------------------------------------------------------------------------------ UNKD
def test_unbiased_distillation_hand_value_and_mask() -> None:
    # K = 3, K_old = 2; second pixel is masked out
    new = pixels((0.0, 1.0, 2.0), (9.0, 0.0, 0.0))
    old = pixels((1.0, 0.0), (0.0, 9.0))
    e = math.e
    q0, q1 = e / (e + 1), 1 / (e + 1)
    den = 1 + e + e**2
    log_bg = math.log((1 + e**2) / den)  # background + new class 2
    log_1 = math.log(e / den)
    expected = -(q0 * log_bg + q1 * log_1)
    mask = torch.tensor([[[True, False]]])
    assert unbiased_distillation(new, old, mask=mask).item() == pytest.approx(expected, 1e-6)
    # temperature divides both sides, no T^2 factor
    t = 2.0
    q0t, q1t = math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)
    dent = 1 + math.exp(0.5) + e
    expected_t = -(q0t * math.log((1 + e) / dent) + q1t * math.log(math.exp(0.5) / dent))
    got = unbiased_distillation(new, old, temperature=t, mask=mask)
    assert got.item() == pytest.approx(expected_t, 1e-6)


def test_unbiased_distillation_is_standard_kd_without_new_classes() -> None:
    torch.manual_seed(1)
    new, old = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    kd = -(old.softmax(1) * new.log_softmax(1)).sum(1).mean()
    assert unbiased_distillation(new, old).item() == pytest.approx(kd.item(), rel=1e-6)


# ------------------------------------------------------------------------------ features
def test_pod_distance_hand_values() -> None:
    # one channel, a 1 x 2 map: strips = [row sum | column sums]
    f_new = torch.tensor([[[[1.0, 2.0]]]])
    f_old = torch.tensor([[[[2.0, 1.0]]]])
    # no squaring: (3, 1, 2)/sqrt(14) vs (3, 2, 1)/sqrt(14) -> ||(0, -1, 1)|| / sqrt(14)
    raw = pod_distance(f_new, f_old, scales=(1,), square=False)
    assert raw.item() == pytest.approx(math.sqrt(2 / 14), rel=1e-6)
    # squared (PLOP): (5, 1, 4)/sqrt(42) vs (5, 4, 1)/sqrt(42)
    sq = pod_distance(f_new, f_old, scales=(1,))
    assert sq.item() == pytest.approx(math.sqrt(18 / 42), rel=1e-6)
    # scale 2: two single-pixel cells whose normalised strips agree -> 0; scales averaged
    two = pod_distance(f_new, f_old, scales=(1, 2), square=False)
    assert two.item() == pytest.approx(math.sqrt(2 / 14) / 2, rel=1e-6)


def test_pod_distance_zero_cases_and_mask() -> None:
    torch.manual_seed(2)
    f = torch.randn(2, 3, 8, 8, requires_grad=True)
    same = pod_distance(f, f.detach().clone())
    same.backward()
    assert same.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(f.grad).all()
    other = torch.randn(2, 3, 8, 8)
    assert pod_distance(f, other).item() > 0.01
    assert pod_distance(f, other, mask=torch.zeros(2, 8, 8)).item() == 0.0
    # a mask that hides the only differing pixel makes the distance 0
    g = f.detach().clone()
    g[:, :, 5, 6] += 3.0
    keep = torch.ones(2, 8, 8, dtype=torch.bool)
    keep[:, 5, 6] = False
    assert pod_distance(f, g).item() > 0.0
    assert pod_distance(f, g, mask=keep).item() == pytest.approx(0.0, abs=1e-6)


def _plop_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """Features (2, 2, 4, 4). Image 0: new has f = 1 at ch0 (0, 0) and f = -2 at ch1 (2, 3),
    old has f = 3 at ch0 (0, 0); zero elsewhere. Image 1: new == old."""
    f_new = torch.zeros(2, 2, 4, 4)
    f_old = torch.zeros(2, 2, 4, 4)
    f_new[0, 0, 0, 0], f_new[0, 1, 2, 3] = 1.0, -2.0
    f_old[0, 0, 0, 0] = 3.0
    f_new[1] = f_old[1] = torch.arange(32.0).reshape(2, 4, 4) / 10
    return f_new, f_old


def test_local_pod_distance_hand_value() -> None:
    """PLOP's local POD: squared maps, mean-pooled strips of every cell at scales 1, 2, 4,
    concatenated without normalisation, L2 norm per image, mean over the batch."""
    f_new, f_old = _plop_pair()
    # image 0 after squaring: new X = 1 at ch0 (0,0), 4 at ch1 (2,3); old X = 9 at ch0 (0,0).
    # Each strip is written as (new) - (old); strips that agree (all-zero) are left out.
    scale1 = [  # one 4 x 4 cell: means over 4 pixels
        (1 / 4) - (9 / 4),  # ch0, width-pooled strip, row 0
        (1 / 4) - (9 / 4),  # ch0, height-pooled strip, column 0
        (4 / 4) - 0.0,      # ch1, width-pooled strip, row 2
        (4 / 4) - 0.0,      # ch1, height-pooled strip, column 3
    ]
    scale2 = [  # 2 x 2 cells: means over 2 pixels
        (1 / 2) - (9 / 2), (1 / 2) - (9 / 2),  # cell (0, 0), ch0: row 0, column 0
        (4 / 2) - 0.0, (4 / 2) - 0.0,          # cell (1, 1), ch1: row 2, column 3
    ]
    scale4 = [  # 1 x 1 cells: the pixel itself
        1.0 - 9.0, 1.0 - 9.0,  # cell (0, 0), ch0
        4.0 - 0.0, 4.0 - 0.0,  # cell (2, 3), ch1
    ]
    norm0 = math.sqrt(sum(d * d for d in scale1 + scale2 + scale4))  # sqrt(10 + 40 + 160)
    assert norm0 == pytest.approx(math.sqrt(210))
    expected = (norm0 + 0.0) / 2  # image 1 is identical: mean over the batch
    assert local_pod_distance(f_new, f_old).item() == pytest.approx(expected, rel=1e-6)
    # scale 1 alone, no squaring: ch0 strips 1/4 - 3/4 twice, ch1 strips -2/4 twice
    raw = math.sqrt(2 * 0.5**2 + 2 * 0.5**2) / 2
    assert local_pod_distance(f_new, f_old, scales=(1,), square=False).item() == pytest.approx(
        raw, rel=1e-6)
    # no normalisation: scaling both maps by 2 scales the (squared) distance by 4
    assert local_pod_distance(2 * f_new, 2 * f_old).item() == pytest.approx(4 * expected, 1e-6)


def test_local_pod_distance_non_square_zero_and_gradient() -> None:
    # 2 x 3 map, difference of the squares 1 everywhere: scale 1 has 2 + 3 strip values;
    # scale 2 has 1 x 1 cells (k_h = 2 // 2, k_w = 3 // 2; column 2 left out): 4 cells x 2;
    # scale 4 is skipped (4 > h): sqrt(5 + 8) per image
    ones = torch.ones(1, 1, 2, 3)
    assert local_pod_distance(ones, torch.zeros_like(ones)).item() == pytest.approx(
        math.sqrt(13), rel=1e-6)
    torch.manual_seed(7)
    f = torch.randn(2, 3, 8, 8, requires_grad=True)
    same = local_pod_distance(f, f.detach().clone())
    same.backward()
    assert same.item() == 0.0 and torch.isfinite(f.grad).all()
    half = torch.randn(1, 4, 4, 4, dtype=torch.float16)
    value = local_pod_distance(half, torch.zeros_like(half))
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_plop_pod_loss_folds_logits_schedule_and_mean_over_entries() -> None:
    f_new, f_old = _plop_pair()
    # logits: new model (bg, old 1, new 2, new 3), old model (bg, old 1), constant maps
    z_new = torch.empty(2, 4, 4, 4)
    z_new[:, 0], z_new[:, 1], z_new[:, 2], z_new[:, 3] = 0.5, 1.0, 0.25, 0.25
    z_old = torch.empty(2, 2, 4, 4)
    z_old[:, 0], z_old[:, 1] = 2.0, 1.0
    folded = fold_extra_channels(z_new, 2)  # bg: 0.5 + 0.25 + 0.25 = 1; class 1 kept
    assert torch.equal(folded, torch.stack([torch.ones(2, 4, 4), torch.ones(2, 4, 4)], 1))
    # POD of the folded logits: ch0 squares 1 vs 4, a constant difference -3 in every strip
    # value of ch0: scale 1 has 4 + 4 values, scale 2 has 4 cells x (2 + 2), scale 4 16 x 2
    d_logits = math.sqrt((8 + 16 + 32) * 3.0**2)  # = sqrt(504), both images
    d_feat = math.sqrt(210) / 2
    schedule = math.sqrt(4 / 2)  # K = 4 classes seen, K_new = 2 new
    expected = (0.01 * d_feat * schedule + 0.0005 * d_logits * schedule) / 2  # mean of 2
    got = plop_pod_loss({"layer": f_new, "logits": z_new}, {"layer": f_old, "logits": z_old},
                        {"layer": 0.01, "logits": 0.0005}, num_classes=4, num_new=2)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.0591720, rel=1e-5)
    # an entry with factor 0 adds nothing but still counts in the mean (as PLOP's code)
    zero = plop_pod_loss({"layer": f_new, "logits": z_new}, {"layer": f_old, "logits": z_old},
                         {"layer": 0.01, "logits": 0.0}, num_classes=4, num_new=2)
    assert zero.item() == pytest.approx(0.01 * d_feat * schedule / 2, rel=1e-6)
    with pytest.raises(KeyError, match="aspp"):
        plop_pod_loss({"layer": f_new}, {"layer": f_old}, {"aspp": 1.0}, 4, 2)
    with pytest.raises(ValueError, match="num_new"):
        plop_pod_loss({"layer": f_new}, {"layer": f_old}, {"layer": 1.0}, 4, 0)


def test_normalized_l2_distance_hand_values() -> None:
    f_new = pixels((1.0, 0.0), (3.0, 4.0))
    f_old = pixels((0.0, 2.0), (6.0, 8.0))  # second pixel: same direction
    assert normalized_l2_distance(f_new, f_old).item() == pytest.approx(math.sqrt(2) / 2, 1e-6)
    first = torch.tensor([[[True, False]]])
    assert normalized_l2_distance(f_new, f_old, first).item() == pytest.approx(math.sqrt(2), 1e-6)
    half = torch.tensor([[[0.25, 0.75]]])
    assert normalized_l2_distance(f_new, f_old, half).item() == pytest.approx(
        0.25 * math.sqrt(2), rel=1e-6
    )


def test_channel_softmax_distillation_hand_value() -> None:
    f_new = pixels((0.0, 1.0))
    f_old = pixels((1.0, 0.0))
    e = math.e
    target = (e**2 / (e**2 + 1), 1 / (e**2 + 1))  # softmax(2 * old)
    log_p = (-math.log(1 + e), 1 - math.log(1 + e))  # log softmax(new)
    expected = -(target[0] * log_p[0] + target[1] * log_p[1]) / (1 * 2)  # N = 1, C = 2
    assert channel_softmax_distillation(f_new, f_old, alpha=2.0).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_feature_distillation_weighted_sum_and_errors() -> None:
    torch.manual_seed(3)
    new = {"a": torch.randn(1, 2, 4, 4), "b": torch.randn(1, 3, 2, 2)}
    old = {"a": torch.randn(1, 2, 4, 4), "b": torch.randn(1, 3, 2, 2)}
    weights = {"a": 0.5, "b": 2.0}
    for name in FEATURE_DISTANCES:
        total = feature_distillation(new, old, weights, distance=name, alpha=3.0)
        fn = {
            "pod": pod_distance,
            "l2": normalized_l2_distance,
            "channel_softmax": lambda x, y: channel_softmax_distillation(x, y, alpha=3.0),
        }[name]
        expected = 0.5 * fn(new["a"], old["a"]) + 2.0 * fn(new["b"], old["b"])
        assert total.item() == pytest.approx(expected.item(), rel=1e-6), name
    # the input-resolution mask is resized per layer (nearest for bool)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :4, :4] = True  # top-left quarter
    got = feature_distillation(new, old, {"b": 1.0}, distance="l2", mask=mask)
    small = torch.tensor([[[True, False], [False, False]]])
    assert got.item() == pytest.approx(
        normalized_l2_distance(new["b"], old["b"], small).item(), rel=1e-6
    )
    assert dict(IDEC_LAYER_WEIGHTS) == {"layer1": 0.5, "layer2": 1.0, "layer3": 2.0, "aspp": 1.0}
    with pytest.raises(ValueError, match="pod, l2, channel_softmax"):
        feature_distillation(new, old, weights, distance="cosine")
    with pytest.raises(KeyError, match="layer1"):
        feature_distillation(new, old)  # default IDEC layer names are absent


# ------------------------------------------------------------------------------ ARCL
def test_region_embeddings_hand_example() -> None:
    # (1, 2, 2, 2): pixel vectors (1,0) (3,4) / (0,2) (7,7)
    features = torch.tensor([[[[1.0, 3.0], [0.0, 7.0]], [[0.0, 4.0], [2.0, 7.0]]]])
    labels = torch.tensor([[[0, 0], [2, 255]]])
    emb, img, cls = region_embeddings(features, labels)
    s = 1 / math.sqrt(2)
    assert torch.allclose(emb, torch.tensor([[s, s], [0.0, 1.0]]), atol=1e-6)  # mean (2, 2)
    assert img.tolist() == [0, 0] and cls.tolist() == [0, 2]
    # labels at twice the feature resolution: each cell counts by the pixels it holds
    big = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)
    emb2, _, cls2 = region_embeddings(features, big)
    assert torch.allclose(emb2, emb) and cls2.tolist() == [0, 2]


def test_region_embeddings_weight_cells_by_area() -> None:
    # features (1, 2, 2, 2): cells (1,0) (3,4) / (0,2) (7,7); labels 4 x 4 (stride 2)
    features = torch.tensor([[[[1.0, 3.0], [0.0, 7.0]], [[0.0, 4.0], [2.0, 7.0]]]])
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 1, 1] = 5  # one pixel of class 5 in cell (0, 0), never a cell's top-left
    labels[0, 2:4, 3] = 5  # two pixels in cell (1, 1)
    labels[0, 3, 2] = 255  # an ignored pixel of cell (1, 1)
    emb, img, cls = region_embeddings(features, labels)
    assert cls.tolist() == [0, 5] and img.tolist() == [0, 0]
    # class 5: (1 * (1, 0) + 2 * (7, 7)) / 3 = (5, 14/3); normalised
    u5 = torch.tensor([5.0, 14.0 / 3.0])
    # background: 3 px of cell (0,0), 4 of (0,1), 4 of (1,0), 1 of (1,1)
    u0 = (3 * torch.tensor([1.0, 0.0]) + 4 * torch.tensor([3.0, 4.0])
          + 4 * torch.tensor([0.0, 2.0]) + 1 * torch.tensor([7.0, 7.0])) / 12
    expected = torch.stack([u0 / u0.norm(), u5 / u5.norm()])
    assert torch.allclose(emb, expected, atol=1e-6)


def _two_image_regions() -> tuple[torch.Tensor, ...]:
    """New: img0 cls1 (1,0), img0 cls2 (0,1), img1 cls2 (0.6,0.8); old: img0 cls1 (0.6,0.8),
    img1 cls1 (1,0) (no new counterpart: skipped)."""
    new_emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], requires_grad=True)
    new_img, new_cls = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2])
    old_emb = torch.tensor([[0.6, 0.8], [1.0, 0.0]], requires_grad=True)
    old_img, old_cls = torch.tensor([0, 1]), torch.tensor([1, 1])
    return new_emb, new_img, new_cls, old_emb, old_img, old_cls


def test_arcl_infonce_hand_value() -> None:
    new_emb, new_img, new_cls, old_emb, old_img, old_cls = _two_image_regions()
    tau = 0.1

    def nce(pos: float, negs: list[float]) -> float:
        return -math.log(
            math.exp(pos / tau) / (math.exp(pos / tau) + sum(math.exp(n / tau) for n in negs))
        )

    # old anchor (0.6, 0.8): positive (1, 0) -> 0.6; negatives: class-2 regions -> 0.8, 1.0
    l_old = nce(0.6, [0.8, 1.0])
    # new class 2: anchor = normalise(mean((0,1), (0.6,0.8))) = (0.3, 0.9) / sqrt(0.9)
    n = math.sqrt(0.9)
    a = (0.3 / n, 0.9 / n)
    l_p1 = nce(a[1], [a[0]])  # positive (0,1), negative (1,0)
    l_p2 = nce(0.6 * a[0] + 0.8 * a[1], [a[0]])
    expected = (l_old + l_p1 + l_p2) / 3
    loss = arcl_infonce(new_emb, new_img, new_cls, old_emb, old_img, old_cls, [1], tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_arcl_triplet_hand_value() -> None:
    new_emb, new_img, new_cls, old_emb, old_img, old_cls = _two_image_regions()
    # old anchor (0.6,0.8): d(a,p) = |(-0.4, 0.8)| = sqrt(0.8); hardest negative (0.6, 0.8): 0
    l_old = math.sqrt(0.8) - 0.0 + 1.0
    # new anchor a = (0.3, 0.9)/sqrt(0.9); its only negative is (1, 0)
    n = math.sqrt(0.9)
    a = (0.3 / n, 0.9 / n)
    d_neg = math.dist(a, (1.0, 0.0))
    l_p1 = max(math.dist(a, (0.0, 1.0)) - d_neg + 1.0, 0.0)
    l_p2 = max(math.dist(a, (0.6, 0.8)) - d_neg + 1.0, 0.0)
    expected = (l_old + l_p1 + l_p2) / 3
    loss = arcl_triplet(new_emb, new_img, new_cls, old_emb, old_img, old_cls, [1], margin=1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    # mean over negatives: old anchor's two negatives at 0 and |(0.6,0.8)-(0,1)| = sqrt(0.4)
    mean_old = (l_old + max(math.sqrt(0.8) - math.sqrt(0.4) + 1.0, 0.0)) / 2
    got = arcl_triplet(new_emb, new_img, new_cls, old_emb, old_img, old_cls, [1], negative="mean")
    assert got.item() == pytest.approx((mean_old + l_p1 + l_p2) / 3, abs=1e-5)


# ------------------------------------------------------------------------------ asymmetry
def test_gradient_flows_only_through_the_new_side() -> None:
    torch.manual_seed(4)
    new_logits = torch.randn(2, 4, 4, 4, requires_grad=True)
    old_logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    new_feat = torch.randn(2, 5, 4, 4, requires_grad=True)
    old_feat = torch.randn(2, 5, 4, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 3, 2]).repeat(2, 4, 1)  # every image: classes 0..3

    terms = {
        "unkd": lambda: unbiased_distillation(new_logits, old_logits, temperature=2.0),
        **{
            name: (
                lambda name=name: feature_distillation(
                    {"x": new_feat}, {"x": old_feat}, {"x": 1.0}, distance=name
                )
            )
            for name in FEATURE_DISTANCES
        },
    }

    def arcl(fn: Callable[..., torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            new = region_embeddings(new_feat, labels)
            old = region_embeddings(old_feat, labels)
            return fn(*new, *old, [0, 1, 2])

        return run

    terms["arcl_infonce"] = arcl(arcl_infonce)
    terms["arcl_triplet"] = arcl(lambda *a: arcl_triplet(*a, margin=3.0))
    for name, term in terms.items():
        for t in (new_logits, old_logits, new_feat, old_feat):
            t.grad = None
        term().backward()
        assert old_logits.grad is None and old_feat.grad is None, name
        new = new_logits if name == "unkd" else new_feat
        assert new.grad is not None and new.grad.abs().sum() > 0, name


# ------------------------------------------------------------------------------ pseudo-labels
def _confidence_logits(conf: torch.Tensor, cls: int, num_old: int = 3) -> torch.Tensor:
    """(1, num_old, 1, N) logits whose softmax gives ``conf`` to ``cls``, the rest shared."""
    rest = (1 - conf) / (num_old - 1)
    probs = rest[None].repeat(num_old, 1)
    probs[cls] = conf
    return probs.log()[None, :, None, :]


def test_dynamic_thresholds_quantile_cap_empty_and_state() -> None:
    conf = torch.linspace(0.55, 0.95, 801)  # uniform: median 0.75, 0.9-quantile 0.91
    logits = _confidence_logits(conf, cls=1)
    dt = DynamicThresholds(3)
    dt.update(logits)
    tau = dt.thresholds()
    assert abs(tau[1].item() - 0.75) <= 1 / 200
    assert tau[[0, 2]].tolist() == pytest.approx([0.9, 0.9])  # never predicted -> max_threshold
    assert dt.counts().tolist() == [0, 801, 0]
    high = DynamicThresholds(3, quantile=0.9, max_threshold=0.85)
    high.update(logits)
    assert high.thresholds()[1].item() == pytest.approx(0.85)  # capped
    low = DynamicThresholds(3, quantile=0.1, min_threshold=0.7)
    low.update(logits)
    assert low.thresholds()[1].item() == pytest.approx(0.7)  # 0.59 raised to the floor
    # the mask selects the counted pixels: only the first half (0.55 .. 0.75) -> median 0.65
    half = DynamicThresholds(3)
    half.update(logits, mask=(conf <= 0.75)[None, None, :])
    assert abs(half.thresholds()[1].item() - 0.65) <= 1 / 200
    copy = DynamicThresholds(3)
    copy.load_state_dict(dt.state_dict())
    assert torch.equal(copy.thresholds(), dt.thresholds())
    dt.reset()
    assert dt.counts().sum().item() == 0 and dt.thresholds().tolist() == pytest.approx([0.9] * 3)


def test_pseudo_label_hand_example() -> None:
    # K_old = 3 (bg, 1, 2); the last pixel is a new class (3) and is never changed
    old = log_probs((0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.2, 0.2, 0.6), (0.1, 0.8, 0.1))
    target = torch.tensor([[[0, 0, 0, 3]]])
    taus = torch.tensor([0.99, 0.7, 0.65])
    out, stats = pseudo_label(target, old, taus)
    assert out.tolist() == [[[0, 1, 255, 3]]]  # kept bg, 0.8 >= 0.7, 0.6 < 0.65, new class
    assert stats["pseudo"].tolist() == [0, 1, 0] and stats["uncertain"] == 1
    assert target.tolist() == [[[0, 0, 0, 3]]]  # input untouched
    fixed, _ = pseudo_label(target, old, 0.5, uncertain_label=0)
    assert fixed.tolist() == [[[0, 1, 2, 3]]]
    strict, stats = pseudo_label(target, old, 0.9, uncertain_label=0)
    assert strict.tolist() == [[[0, 0, 0, 3]]] and stats["uncertain"] == 2


def test_entropy_pseudo_label_hand_example() -> None:
    old = log_probs((0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.2, 0.2, 0.6), (0.1, 0.8, 0.1))
    h1 = -(2 * 0.1 * math.log(0.1) + 0.8 * math.log(0.8)) / math.log(3)  # ~0.582
    h2 = -(2 * 0.2 * math.log(0.2) + 0.6 * math.log(0.6)) / math.log(3)  # ~0.865
    ent = normalized_entropy(old)[0, 0]
    assert ent[1].item() == pytest.approx(h1, rel=1e-5)
    assert ent[2].item() == pytest.approx(h2, rel=1e-5)
    target = torch.tensor([[[0, 0, 0, 3]]])
    out, stats = entropy_pseudo_label(target, old, torch.tensor([0.1, 0.7, 0.8]))
    assert out.tolist() == [[[0, 1, 255, 3]]]  # c=0 kept, 0.58 < 0.7, 0.865 >= 0.8
    assert stats["pseudo"].tolist() == [0, 1, 0] and stats["uncertain"] == 1
    medians = EntropyMedians(3)
    assert medians.thresholds().tolist() == pytest.approx([0.001] * 3)  # no data: strictest
    medians.update(old)
    tau = medians.thresholds()
    assert abs(tau[1].item() - h1) <= 1 / 100  # median of the two identical pixels
    assert abs(tau[2].item() - h2) <= 1 / 100


# ------------------------------------------------------------------------------ robustness
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_finite_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(5)
    logits = (torch.randn(1, 4, 4, 4) * 30).to(dtype)
    old = (torch.randn(1, 3, 4, 4) * 30).to(dtype)
    feat_new, feat_old = torch.randn(1, 6, 4, 4).to(dtype), torch.randn(1, 6, 4, 4).to(dtype)
    target = torch.randint(0, 4, (1, 4, 4))
    labels = torch.tensor([0, 1, 2, 3]).repeat(1, 4, 1)
    new_r, old_r = region_embeddings(feat_new, labels), region_embeddings(feat_old, labels)
    values = [
        unbiased_cross_entropy(logits, target, 3),
        unbiased_distillation(logits, old, temperature=0.5),
        *(
            feature_distillation({"x": feat_new}, {"x": feat_old}, {"x": 1.0}, distance=d)
            for d in FEATURE_DISTANCES
        ),
        arcl_infonce(*new_r, *old_r, [0, 1], temperature=0.01),
        arcl_triplet(*new_r, *old_r, [0, 1]),
    ]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values.append(arcl_infonce(*new_r, *old_r, [0, 1]))
    for v in values:
        assert v.dtype == torch.float32 and v.ndim == 0 and torch.isfinite(v)
    out, _ = pseudo_label(target, old, DynamicThresholds(3).thresholds())
    assert out.dtype == target.dtype


def test_nothing_contributes_gives_zero_with_graph() -> None:
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    feat = torch.randn(1, 4, 2, 2, requires_grad=True)
    ignored = torch.full((1, 2, 2), 255)
    losses = [
        unbiased_cross_entropy(logits, ignored, 2),
        unbiased_distillation(logits, torch.randn(1, 2, 2, 2), mask=torch.zeros(1, 2, 2).bool()),
        *(
            feature_distillation(
                {"x": feat}, {"x": feat.detach()}, {"x": 1.0}, distance=d, mask=torch.zeros(1, 2, 2)
            )
            for d in FEATURE_DISTANCES
        ),
    ]
    emb, img, cls = region_embeddings(feat, ignored)
    assert emb.shape == (0, 4) and img.numel() == 0
    losses += [
        arcl_infonce(emb, img, cls, emb, img, cls, [0]),
        arcl_triplet(emb, img, cls, emb, img, cls, [0]),
    ]
    for loss in losses:
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward(retain_graph=True)
    assert torch.isfinite(logits.grad).all() and torch.isfinite(feat.grad).all()
    out, stats = pseudo_label(ignored, torch.randn(1, 2, 2, 2), torch.tensor([0.5, 0.5]))
    assert torch.equal(out, ignored) and stats["uncertain"] == 0


def test_pod_grid_path_matches_cell_by_cell_reference() -> None:
    """The vectorised path (grid divides the map) equals an explicit loop over cells."""
    torch.manual_seed(3)
    new, old = torch.rand(2, 3, 8, 12), torch.rand(2, 3, 8, 12)

    def reference(s: int) -> torch.Tensor:
        dists = []
        for i in range(s):
            for j in range(s):
                rows = slice(i * 8 // s, (i + 1) * 8 // s)
                cols = slice(j * 12 // s, (j + 1) * 12 // s)

                def emb(x: torch.Tensor, rows: slice = rows, cols: slice = cols) -> torch.Tensor:
                    cell = (x * x)[:, :, rows, cols]
                    v = torch.cat([cell.sum(3).flatten(1), cell.sum(2).flatten(1)], 1)
                    return torch.nn.functional.normalize(v, dim=1)

                dists.append((emb(new) - emb(old)).norm(dim=1))
        return torch.stack(dists).mean(0)

    expected = torch.stack([reference(1), reference(2), reference(4)]).mean(0).mean()
    assert torch.allclose(pod_distance(new, old, scales=(1, 2, 4)), expected, atol=1e-6)


def test_mib_logit_distillation_averages_over_the_old_classes() -> None:
    """MiB's scaling: the one-pixel UNKD value of the example above, divided by K_old = 2."""
    from geoidec.losses import mib_logit_distillation

    new = pixels((0.0, 1.0, 2.0))
    old = pixels((1.0, 0.0))
    e = math.e
    q0, q1 = e / (e + 1), 1 / (e + 1)
    den = 1 + e + e**2
    expected = -(q0 * math.log((1 + e**2) / den) + q1 * math.log(e / den)) / 2
    assert mib_logit_distillation(new, old).item() == pytest.approx(expected, 1e-6)


def test_binary_cross_entropy_hand_value_and_ignore() -> None:
    """Per-class sigmoid BCE, mean over classes then over the non-ignored pixels:
    pixel 1 (class 1, logits 0 and 2): (log 2 + log(1 + e^-2)) / 2; pixel 2 ignored."""
    from geoidec.losses import binary_cross_entropy

    logits = pixels((0.0, 2.0), (5.0, -5.0))
    target = torch.tensor([[[1, 255]]])
    expected = (math.log(2.0) + math.log(1 + math.exp(-2.0))) / 2
    assert binary_cross_entropy(logits, target).item() == pytest.approx(expected, 1e-6)
    nothing = binary_cross_entropy(logits.requires_grad_(), torch.full((1, 1, 2), 255))
    assert nothing.item() == 0.0 and nothing.requires_grad
