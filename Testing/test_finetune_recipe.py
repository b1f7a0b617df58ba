"""The fine-tuning recipe's defaults: every class is learned, also a small one seen in few slices of many volumes,
and a structure told apart from its mirror image only by its side keeps its own label (no flips by default)."""

import numpy as np
import pytest
import torch

from ContrastSegLib.inference.slices import slice_probabilities
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.preprocess import PreparedVolume
from ContrastSegLib.runtime import precision
from ContrastSegLib.settings import FinetuneConfig
from ContrastSegLib.training.finetune import finetune

SIDE = 32
FP32 = precision.plan_execution("cpu", "fp32")


def disc(centre, radius, side=SIDE):
    rows, cols = np.mgrid[:side, :side]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def volume(image: np.ndarray, label: np.ndarray) -> PreparedVolume:
    noisy = image + np.random.default_rng(int(label.sum())).normal(0, 0.05, image.shape)
    return PreparedVolume(np.clip(noisy, 0, 1).astype(np.float32), label.astype(np.uint8), None)


def many_volumes_one_small_structure(count=12, slices=8):
    """``count`` volumes: a large disc (class 1) in every slice; a small bright ring-shaped structure (class 2, about
    1 % of a slice) in 2 of the ``slices`` slices of each volume, at a jittered place."""
    rng = np.random.default_rng(7)
    volumes = []
    for _ in range(count):
        image, label = np.zeros((slices, SIDE, SIDE)), np.zeros((slices, SIDE, SIDE))
        for s in range(slices):
            big = disc((16 + rng.integers(-2, 3), 11 + rng.integers(-2, 3)), 7)
            image[s][big], label[s][big] = 0.45, 1
        for s in rng.choice(slices, 2, replace=False):
            centre = (10 + rng.integers(-2, 3), 24 + rng.integers(-2, 3))
            small, core = disc(centre, 2), disc(centre, 1)
            image[s][small & ~core], label[s][small] = 0.9, 2
            image[s][core] = 0.6
        volumes.append(volume(image, label))
    return volumes


def mirrored_twins(count=4, slices=6):
    """Two identical discs, one on each side: the left one is class 1, the right one class 2 (as the left and right
    ventricles, or the two halves of a structure labeled per side)."""
    rng = np.random.default_rng(3)
    volumes = []
    for _ in range(count):
        image, label = np.zeros((slices, SIDE, SIDE)), np.zeros((slices, SIDE, SIDE))
        for s in range(slices):
            row = 16 + rng.integers(-3, 4)
            for value, col in ((1, 8 + rng.integers(-1, 2)), (2, 24 + rng.integers(-1, 2))):
                twin = disc((row, col), 4)
                image[s][twin], label[s][twin] = 0.7, value
        volumes.append(volume(image, label))
    return volumes


def class_dice(model, volumes, classes):
    """Dice of each foreground class over all slices of ``volumes``."""
    predictions = [slice_probabilities(model, v.image, FP32).argmax(1).numpy() for v in volumes]
    scores = []
    for k in range(1, classes):
        found = sum(int(((p == k) & (v.label == k)).sum()) for p, v in zip(predictions, volumes))
        sizes = sum(int((p == k).sum() + (v.label == k).sum()) for p, v in zip(predictions, volumes))
        scores.append(2 * found / max(sizes, 1))
    return scores


def trained(volumes, classes, iterations, **settings):
    torch.manual_seed(0)
    model = UNet2D(UNetConfig(num_classes=classes, channels=(8, 16, 32)))
    config = FinetuneConfig(iterations=iterations, batch_size=8, seed=0, **settings)
    result = finetune(model, volumes, config, plan=FP32)
    return model, result


def test_a_small_structure_in_few_slices_of_many_volumes_is_learned(one_torch_thread):
    volumes = many_volumes_one_small_structure()
    share = np.mean([(v.label == 2).mean() for v in volumes])
    assert share < 0.005  # the structure is rare: about 0.3 % of the pixels
    model, result = trained(volumes, 3, 250)
    assert np.mean(result.losses[-20:]) < 0.5 * np.mean(result.losses[:10])
    large, small = class_dice(model, volumes, 3)
    assert large > 0.9
    assert small > 0.6, f"the small structure was not learned on the training volumes (Dice {small:.2f})"


def test_the_default_keeps_a_structure_and_its_mirror_image_apart(one_torch_thread):
    """Without flips (the default) the side tells the twins apart; with left-right flips the same picture carries
    both labels, so the model cannot: the test shows why flips are off unless the anatomy is symmetric."""
    volumes = mirrored_twins()
    default, _ = trained(volumes, 3, 120)
    flipped, _ = trained(volumes, 3, 120, flips="horizontal")
    kept = class_dice(default, volumes, 3)
    assert min(kept) > 0.8
    assert np.mean(class_dice(flipped, volumes, 3)) < np.mean(kept) - 0.2
