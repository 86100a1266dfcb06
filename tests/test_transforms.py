"""Tests for geoidec.data.transforms (batched train augmentation)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from geoidec.constants import IGNORE_INDEX
from geoidec.data.transforms import AugmentationSettings, TrainAugmentation

OFF = AugmentationSettings(
    hflip=0.0,
    vflip=0.0,
    rot90=0.0,
    scale_p=0.0,
    photometric_p=0.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
)


def only(**changes: object) -> AugmentationSettings:
    """Settings with everything off except ``changes``."""
    return dataclasses.replace(OFF, **changes)


def coord_batch(batch: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image whose band 0 encodes (y, x) and band 1 the sample index; mask derived from it."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    code = (ys * width + xs).float() / (height * width)
    image = torch.stack(
        [torch.stack([code, torch.full_like(code, b / batch)]) for b in range(batch)]
    )
    mask = (ys * width + xs) % 7  # not symmetric under any flip or rotation
    return image, mask.expand(batch, -1, -1).clone()


def test_hflip_and_vflip_exact() -> None:
    image, mask = coord_batch(3, 6, 9)
    out_i, out_m = TrainAugmentation(only(hflip=1.0))(image, mask)
    assert torch.equal(out_i, image.flip(-1)) and torch.equal(out_m, mask.flip(-1))
    out_i, out_m = TrainAugmentation(only(vflip=1.0))(image, mask)
    assert torch.equal(out_i, image.flip(-2)) and torch.equal(out_m, mask.flip(-2))


def test_rot90_same_k_for_image_and_mask() -> None:
    torch.manual_seed(0)
    image, mask = coord_batch(24, 8, 8)
    out_i, out_m = TrainAugmentation(only(rot90=1.0))(image, mask)
    seen = set()
    for b in range(24):
        ks = [k for k in range(4) if torch.equal(out_i[b], image[b].rot90(k, (-2, -1)))]
        assert len(ks) == 1 and ks[0] != 0  # p=1 always rotates, exactly (no interpolation)
        assert torch.equal(out_m[b], mask[b].rot90(ks[0], (-2, -1)))
        seen.add(ks[0])
    assert seen == {1, 2, 3}


def test_rot90_non_square_keeps_shape() -> None:
    image, mask = coord_batch(4, 6, 10)
    out_i, out_m = TrainAugmentation(only(rot90=1.0))(image, mask)
    assert torch.equal(out_i, image.rot90(2, (-2, -1)))
    assert torch.equal(out_m, mask.rot90(2, (-2, -1)))


def test_zoom_out_centred_by_hand() -> None:
    """Scale 0.5 about the centre of a 9x9 tile: source pixels 0, 2, .., 8 land on 2..6."""
    image, mask = coord_batch(1, 9, 9)
    mask += 1  # no zeros at all
    aug = TrainAugmentation(only(scale=(0.5, 0.5), scale_p=1.0))
    params = aug.sample_params(1, 9, 9)
    params = dataclasses.replace(params, shift=torch.zeros(1, 2, dtype=torch.float64))
    out_i, out_m = aug.apply_params(image, mask, params)
    assert torch.equal(out_m[0, 2:7, 2:7], mask[0, ::2, ::2])
    torch.testing.assert_close(out_i[0, :, 2:7, 2:7], image[0, :, ::2, ::2])
    border = torch.ones(9, 9, dtype=torch.bool)
    border[2:7, 2:7] = False
    assert (out_m[0][border] == IGNORE_INDEX).all()
    assert (out_i[0][:, border] == 0).all()


def test_zoom_out_pads_with_ignore_never_background() -> None:
    torch.manual_seed(1)
    image = torch.rand(6, 3, 64, 64)
    mask = torch.randint(1, 5, (6, 64, 64))  # classes 1..4, no background
    out_i, out_m = TrainAugmentation(only(scale=(0.5, 0.5), scale_p=1.0))(image, mask)
    assert not (out_m == 0).any()
    assert set(out_m.unique().tolist()) <= {1, 2, 3, 4, IGNORE_INDEX}
    for b in range(6):
        valid = out_m[b] != IGNORE_INDEX
        rows = valid.any(1).nonzero().flatten()
        cols = valid.any(0).nonzero().flatten()
        # the shrunk tile is one ~32x32 rectangle; everything else is ignore
        assert 31 <= len(rows) <= 33 and 31 <= len(cols) <= 33
        assert valid[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
        assert valid.sum() == len(rows) * len(cols)
        edges = [out_m[b, 0], out_m[b, -1], out_m[b, :, 0], out_m[b, :, -1]]
        assert sum(bool((e == IGNORE_INDEX).all()) for e in edges) >= 2
        assert (out_i[b][:, ~valid] == 0).all()


def test_zoom_in_stays_inside_tile() -> None:
    torch.manual_seed(2)
    image = torch.rand(8, 3, 32, 32)
    mask = torch.randint(0, 3, (8, 32, 32))
    _, out_m = TrainAugmentation(only(scale=(1.2, 2.0), scale_p=1.0))(image, mask)
    assert not (out_m == IGNORE_INDEX).any()


def test_geometric_mask_values_are_a_subset() -> None:
    torch.manual_seed(3)
    image = torch.rand(16, 4, 40, 40)
    values = torch.tensor([0, 2, 5, IGNORE_INDEX])
    mask = values[torch.randint(0, 4, (16, 40, 40))]
    aug = TrainAugmentation(
        AugmentationSettings(hflip=0.5, vflip=0.5, rot90=0.5, scale=(0.6, 1.7), scale_p=1.0)
    )
    for _ in range(3):
        out_i, out_m = aug(image, mask)
        assert out_m.dtype == torch.int64 and out_m.shape == mask.shape
        assert set(out_m.unique().tolist()) <= set(values.tolist())
        assert out_i.shape == image.shape and out_i.dtype == image.dtype


@pytest.mark.parametrize("channels", [1, 3, 4, 6])
def test_photometric_keeps_mask_and_range(channels: int) -> None:
    torch.manual_seed(4)
    image = torch.rand(8, channels, 16, 16)
    mask = torch.randint(0, 4, (8, 16, 16))
    settings = only(
        photometric_p=1.0, brightness=0.5, contrast=0.5, saturation=0.5, hue=0.2, gamma=0.3
    )
    out_i, out_m = TrainAugmentation(settings)(image, mask)
    assert torch.equal(out_m, mask)
    assert out_i.shape == image.shape and out_i.dtype == image.dtype
    assert out_i.min() >= 0 and out_i.max() <= 1
    assert not torch.equal(out_i, image)


def test_saturation_touches_only_rgb_bands() -> None:
    torch.manual_seed(5)
    image = torch.rand(4, 6, 16, 16)
    mask = torch.zeros(4, 16, 16, dtype=torch.long)
    settings = only(photometric_p=1.0, saturation=1.0, hue=0.3)
    out_i, _ = TrainAugmentation(settings, rgb_bands=(4, 1, 2))(image, mask)
    assert torch.equal(out_i[:, [0, 3, 5]], image[:, [0, 3, 5]])
    assert not torch.equal(out_i[:, [1, 2, 4]], image[:, [1, 2, 4]])
    out_i, _ = TrainAugmentation(settings, rgb_bands=None)(image, mask)
    assert torch.equal(out_i, image)
    with pytest.raises(ValueError):
        TrainAugmentation(settings, rgb_bands=(0, 1, 6))(image, mask)


def test_photometric_gate_leaves_other_samples_exact() -> None:
    torch.manual_seed(6)
    image = torch.rand(32, 3, 8, 8)
    mask = torch.zeros(32, 8, 8, dtype=torch.long)
    out_i, _ = TrainAugmentation(only(photometric_p=0.5, brightness=0.3, contrast=0.3))(image, mask)
    same = [torch.equal(out_i[b], image[b]) for b in range(32)]
    assert 0 < sum(same) < 32


def test_identity_when_off_or_eval() -> None:
    image = torch.rand(2, 3, 16, 16)
    mask = torch.randint(0, 3, (2, 16, 16))
    out_i, out_m = TrainAugmentation(OFF)(image, mask)
    assert out_i is image and out_m is mask
    aug = TrainAugmentation(
        AugmentationSettings(hflip=1, vflip=1, rot90=1, scale_p=1, photometric_p=1)
    ).eval()
    out_i, out_m = aug(image, mask)
    assert out_i is image and out_m is mask


def test_deterministic_under_seed_and_no_inplace() -> None:
    image = torch.rand(8, 4, 32, 32)
    mask = torch.randint(0, 5, (8, 32, 32))
    image_copy, mask_copy = image.clone(), mask.clone()
    aug = TrainAugmentation(AugmentationSettings(hue=0.05, gamma=0.1), rgb_bands=(2, 1, 0))
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(aug(image, mask))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])
    assert torch.equal(image, image_copy) and torch.equal(mask, mask_copy)


def test_bad_inputs_and_settings() -> None:
    aug = TrainAugmentation()
    with pytest.raises(ValueError):
        aug(torch.rand(2, 3, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError):
        aug(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 9, dtype=torch.long))
    with pytest.raises(ValueError):
        AugmentationSettings(hflip=1.5)
    with pytest.raises(ValueError):
        AugmentationSettings(scale=(1.5, 0.75))
    with pytest.raises(ValueError):
        TrainAugmentation(rgb_bands=(0, 0, 1))


def test_module_apply_still_works() -> None:
    """``nn.Module.apply`` recurses into children; the augmentation must not shadow it."""
    parent = torch.nn.Sequential(TrainAugmentation(), torch.nn.Conv2d(3, 3, 1))
    parent.apply(lambda m: None)
