"""Self-training: confident pseudo-labels, ignored pixels that stay ignored through augmentation and the loss, and
fine-tuning rounds that run end to end."""

import importlib

import numpy as np
import pytest
import torch

from ContrastSegLib.augment import SpatialAugmentation
from ContrastSegLib.data.phantom import make_phantom
from ContrastSegLib.losses import DiceCrossEntropyLoss
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.preprocess import PreparedVolume, preprocess_volume
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.runtime.stop import Stopped
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
from ContrastSegLib.training.finetune import finetune
from ContrastSegLib.training.methods import parse_method
from ContrastSegLib.training.self_training import IGNORE, one_hot_targets, pseudo_label

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FP32 = plan_execution("cpu", "fp32")
PREPROCESS = PreprocessConfig(target_spacing=4.0, crop_size=32)


class Constant(torch.nn.Module):
    """A 'model' whose class-1 logit is the image itself: confident where the image is far from 0."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x * 20 - 10], dim=1)


def test_pseudo_labels_keep_only_confident_pixels():
    image = np.linspace(0, 1, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    volume = PreparedVolume(image, None, None)
    [labelled] = pseudo_label(Constant(), [volume], FP32, threshold=0.9)
    probability = 1 / (1 + np.exp(-(image * 20 - 10)))
    expected = np.where(probability >= 0.9, 1, np.where(1 - probability >= 0.9, 0, IGNORE))
    np.testing.assert_array_equal(labelled.label, expected)
    assert (labelled.label == IGNORE).any() and (labelled.label == 1).any() and (labelled.label == 0).any()


def test_ignored_pixels_have_zero_targets_and_stay_ignored_through_augmentation():
    labels = torch.tensor([[[0, 1], [IGNORE, 2]]], dtype=torch.uint8).repeat_interleave(8, 1).repeat_interleave(8, 2)
    targets = one_hot_targets(labels, 3)
    assert targets.shape == (1, 3, 16, 16)
    assert (targets.sum(1) == (labels != IGNORE).float()).all()
    images = torch.rand(1, 1, 16, 16)
    _, moved = SpatialAugmentation(rotation_deg=10.0)(images, targets, torch.Generator().manual_seed(0))
    sums = moved.sum(1)
    assert ((sums == 0) | (sums == 1)).all()
    assert (sums == 0).any()  # the ignored quarter is still ignored after the warp


def test_loss_leaves_ignored_pixels_out():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (2, 8, 8), generator=generator)
    targets = one_hot_targets(labels, 3)
    ignored = targets.clone()
    ignored[:, :, :, 4:] = 0  # right half ignored
    loss = DiceCrossEntropyLoss()
    cropped = loss(logits[..., :4], targets[..., :4])
    assert loss(logits, ignored).item() == pytest.approx(cropped.item(), abs=1e-5)
    changed = logits.clone()
    changed[..., 4:] = torch.randn(2, 3, 8, 4, generator=generator)  # what happens there does not matter
    assert loss(changed, ignored).item() == pytest.approx(loss(logits, ignored).item(), abs=1e-6)


def test_self_training_round_runs_and_is_reproducible():
    labeled = [preprocess_volume(*make_phantom(0)[:1], PREPROCESS, make_phantom(0)[1], (0, 1, 2, 3))]
    unlabeled = [preprocess_volume(make_phantom(i)[0], PREPROCESS) for i in (1, 2)]
    config = FinetuneConfig(iterations=6, batch_size=4, self_training_rounds=1, pseudo_threshold=0.5)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16)))
        result = finetune(model, labeled, config, plan=FP32, unlabeled=unlabeled)
        assert len(result.losses) == 12 and result.best_step == 12
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("stop_at", [4, 9])  # in the first round, in the second of three
def test_a_stop_ends_every_self_training_round(monkeypatch, stop_at):
    labeled = [preprocess_volume(*make_phantom(0)[:1], PREPROCESS, make_phantom(0)[1], (0, 1, 2, 3))]
    unlabeled = [preprocess_volume(make_phantom(1)[0], PREPROCESS)]
    polls = iter([None] * (stop_at - 1) + ["SIGTERM"] * 100)
    loop = importlib.import_module("ContrastSegLib.training.finetune")  # the package exports the function by that name
    monkeypatch.setattr(loop, "stop_requested", lambda: next(polls))
    config = FinetuneConfig(iterations=6, batch_size=4, self_training_rounds=2, pseudo_threshold=0.5)
    model = UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16)))
    result = finetune(model, labeled, config, plan=FP32, unlabeled=unlabeled)
    assert result.stopped == Stopped(stop_at, 18, "SIGTERM")
    assert len(result.losses) == stop_at and result.best_step == stop_at


def test_self_training_needs_unlabeled_volumes():
    labeled = [preprocess_volume(*make_phantom(0)[:1], PREPROCESS, make_phantom(0)[1], (0, 1, 2, 3))]
    model = UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16)))
    with pytest.raises(Exception, match="unlabeled"):
        finetune(model, labeled, FinetuneConfig(iterations=2, self_training_rounds=1), plan=FP32)


def test_method_suffix():
    method = parse_method("GD+LR+mixup+self-training")
    assert method.mixup and method.self_training and method.pretraining[-1] == ("local", "LR")
