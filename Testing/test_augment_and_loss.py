"""Augmentation moves labels with pixels; Mixup mixes pairs convexly; the loss matches its equation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ContrastSegLib.augment import IntensityAugmentation, SpatialAugmentation
from ContrastSegLib.losses import DiceCrossEntropyLoss
from ContrastSegLib.settings import FinetuneConfig
from ContrastSegLib.training.mixup import mixup


def random_labels(batch=6, classes=4, side=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, classes, (batch, side // 4, side // 4), generator=generator)
    labels = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)
    return labels, F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


FLIP_DIMS = {"none": {()}, "horizontal": {(), (1,)}, "vertical": {(), (0,)}, "both": {(), (0,), (1,), (0, 1)}}


@pytest.mark.parametrize("flips", sorted(FLIP_DIMS))
def test_flips_move_image_and_label_alike_and_only_along_the_axes_asked(flips):
    labels, targets = random_labels(batch=24)
    images = labels.unsqueeze(1).float() * 10 + torch.rand(labels.shape).unsqueeze(1)
    config = FinetuneConfig(flips=flips, rotation=0.0, scale_range=(1.0, 1.0), elastic=0.0)
    warped, moved = SpatialAugmentation.of(config)(images, targets, torch.Generator().manual_seed(3))
    flips_seen = set()
    for b in range(images.shape[0]):
        for dims in ((), (0,), (1,), (0, 1)):  # dims of an (H, W) slice
            if torch.allclose(warped[b, 0], images[b, 0].flip(dims) if dims else images[b, 0], atol=1e-3):
                flips_seen.add(dims)
                expected = targets[b].flip([d + 1 for d in dims]) if dims else targets[b]
                assert torch.equal(moved[b], expected)
                break
        else:
            pytest.fail(f"image {b} is not a flip of its input")
    assert flips_seen == FLIP_DIMS[flips]  # random among the allowed flips, never another


def test_the_default_fine_tuning_augmentation_never_flips():
    assert FinetuneConfig().flips == "none"
    augment = SpatialAugmentation.of(FinetuneConfig())
    assert not augment.flip_horizontal and not augment.flip_vertical and augment.elastic_strength == 0


def test_rotation_and_elastic_use_one_grid_for_both():
    labels, targets = random_labels(side=32)
    augment = SpatialAugmentation(rotation_deg=15.0, elastic_strength=0.05)
    images = labels.unsqueeze(1).float()
    warped, moved = augment(images, targets, torch.Generator().manual_seed(5))
    grid = augment.sampling_grid(images.shape, images.device, torch.Generator().manual_seed(5))
    nearest = F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    assert torch.equal(moved.argmax(1), nearest[:, 0].long())
    assert not torch.equal(moved, targets)  # something did move
    assert torch.allclose(moved.sum(1), torch.ones_like(moved[:, 0]))  # still one-hot, outside = background
    assert ((moved == 0) | (moved == 1)).all()
    assert warped.shape == images.shape


def test_augmentation_is_seeded():
    labels, targets = random_labels()
    images = torch.rand(labels.shape).unsqueeze(1)
    first = SpatialAugmentation()(images, targets, torch.Generator().manual_seed(1))
    again = SpatialAugmentation()(images, targets, torch.Generator().manual_seed(1))
    other = SpatialAugmentation()(images, targets, torch.Generator().manual_seed(2))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


def test_intensity_augmentation_is_a_per_image_affine_map():
    images = torch.rand(4, 1, 8, 8)
    out = IntensityAugmentation(brightness=0.1, contrast=(0.9, 1.1))(images, torch.Generator().manual_seed(0))
    for b in range(4):
        x, y = images[b].flatten(), out[b].flatten()
        slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
        assert 0.9 - 1e-4 <= slope <= 1.1 + 1e-4
        assert torch.allclose(y, slope * x + (y.mean() - slope * x.mean()), atol=1e-5)


def test_mixup_is_a_convex_mix_of_two_batch_members():
    labels, targets = random_labels(batch=5)
    images = torch.rand(5, 1, 24, 24)
    mixed_images, mixed_targets = mixup(images, targets, 0.4, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert torch.allclose(mixed_targets.sum(1), torch.ones(5, 24, 24))
    for b in range(5):
        found = False
        for partner in range(5):
            # solve mixed = lam * a + (1 - lam) * b for lam on the images, check it on the targets too
            a, p = images[b].flatten(), images[partner].flatten()
            if torch.allclose(a, p):
                lam = torch.tensor(1.0)
            else:
                lam = ((mixed_images[b].flatten() - p) @ (a - p)) / ((a - p) @ (a - p))
            if 0 <= lam <= 1 and torch.allclose(mixed_images[b], lam * images[b] + (1 - lam) * images[partner], atol=1e-5):
                assert torch.allclose(mixed_targets[b], lam * targets[b] + (1 - lam) * targets[partner], atol=1e-5)
                found = True
                break
        assert found


def test_dice_only_loss_matches_hand_computation():
    """Two pixels, two classes, probabilities p; soft Dice per class 2Σpt/(Σp+Σt), loss = 1 − mean."""
    probabilities = torch.tensor([[0.8, 0.3], [0.2, 0.7]])  # (C=2, pixels=2)
    logits = torch.log(probabilities).reshape(1, 2, 1, 2)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    dice_0 = 2 * 0.8 / (0.8 + 0.3 + 1)
    dice_1 = 2 * 0.7 / (0.2 + 0.7 + 1)
    expected = 1 - (dice_0 + dice_1) / 2
    assert DiceCrossEntropyLoss(ce_weight=0.0)(logits, targets).item() == pytest.approx(expected, abs=1e-4)
    ce = -(np.log(0.8) + np.log(0.7)) / 2
    assert DiceCrossEntropyLoss(ce_weight=1.0)(logits, targets).item() == pytest.approx(expected + ce, abs=1e-4)


def test_perfect_prediction_has_near_zero_dice_loss():
    labels, targets = random_labels()
    logits = (targets * 40 - 20)
    assert DiceCrossEntropyLoss(ce_weight=0.0)(logits, targets).item() < 1e-4
