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
from ContrastSegLib.runtime.progress import ProgressReporter
from ContrastSegLib.runtime.stop import Stopped
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
from ContrastSegLib.sampling import LabeledSliceBank
from ContrastSegLib.training.finetune import BatchPipeline, finetune
from ContrastSegLib.training.methods import parse_method
from ContrastSegLib.training.self_training import IGNORE, labeled_share_of, one_hot_targets, pseudo_label

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FP32 = plan_execution("cpu", "fp32")
PREPROCESS = PreprocessConfig(target_spacing=4.0, crop_size=32)


class Constant(torch.nn.Module):
    """A 'model' whose class-1 logit is the image itself: confident where the image is far from 0."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), x * 20 - 10], dim=1)


def test_pseudo_labels_keep_the_most_confident_share_of_each_class():
    """Class thresholds are quantiles of the model's own confidence: half of each class's pixels stay, whatever
    the absolute confidence (a fixed 0.9 would keep 11 of these 32 pixels, all far from the boundary)."""
    image = np.linspace(0, 1, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    volume = PreparedVolume(image, None, None)
    [labelled] = pseudo_label(Constant(), [volume], FP32, keep=0.5)
    probability = 1 / (1 + np.exp(-(image * 20 - 10)))
    classes, confidence = (probability >= 0.5).astype(int), np.maximum(probability, 1 - probability)
    expected = np.full(image.shape, IGNORE)
    for c in (0, 1):
        threshold = np.quantile(confidence[classes == c], 0.5)
        expected[(classes == c) & (confidence >= threshold - 1e-6)] = c
    np.testing.assert_array_equal(labelled.label, expected)
    for c in (0, 1):
        assert (labelled.label == c).sum() == (classes == c).sum() // 2
    [everything] = pseudo_label(Constant(), [volume], FP32, keep=1.0)
    np.testing.assert_array_equal(everything.label, classes)  # keep 1: the argmax, as Chaitanya et al.


@pytest.mark.parametrize("batch, share, labeled", [(16, 0.5, 8), (16, 0.25, 4), (4, 0.01, 1), (4, 0.99, 3),
                                                   (1, 0.5, 1)])
def test_self_training_batches_hold_a_fixed_labeled_share(batch, share, labeled):
    """However many pseudo-labeled volumes there are (11 here, against 1 labeled), every batch has its share."""
    assert labeled_share_of(batch, share) == labeled
    marked = lambda value, count: PreparedVolume(np.full((3, 8, 8), value, np.float32), np.zeros((3, 8, 8),
                                                                                                   np.uint8), None)
    config = FinetuneConfig(batch_size=batch, labeled_share=share, augment=False)
    pipeline = BatchPipeline(LabeledSliceBank([marked(0.0, 1)], torch.device("cpu")), 2, config,
                             torch.device("cpu"), LabeledSliceBank([marked(1.0, 1)] * 11, torch.device("cpu")))
    for _ in range(5):
        images, _ = pipeline.next_batch()
        assert images.shape[0] == batch
        assert int((images.flatten(1)[:, 0] == 0).sum()) == labeled


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
    config = FinetuneConfig(iterations=6, batch_size=4, self_training_rounds=1, pseudo_keep=0.5)
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
    config = FinetuneConfig(iterations=6, batch_size=4, self_training_rounds=2, pseudo_keep=0.5)
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


def test_one_optimiser_serves_every_round(monkeypatch):
    """Adam's moments carry over from one round to the next: one optimiser, whose step count is the whole run's."""
    loop = importlib.import_module("ContrastSegLib.training.finetune")
    made = []

    class Recorded(loop.TrainingStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(loop, "TrainingStep", Recorded)
    labeled = [preprocess_volume(*make_phantom(0)[:1], PREPROCESS, make_phantom(0)[1], (0, 1, 2, 3))]
    unlabeled = [preprocess_volume(make_phantom(1)[0], PREPROCESS)]
    config = FinetuneConfig(iterations=5, batch_size=4, self_training_rounds=2)
    finetune(UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16))), labeled, config, plan=FP32, unlabeled=unlabeled)
    assert len(made) == 1
    steps = {int(state["step"]) for state in made[0].optimizer.state_dict()["state"].values()}
    assert steps <= {15, 10}  # 15 unless a round was undone (then its optimiser state went back too)


def test_a_round_that_lowers_the_fit_on_the_labeled_volumes_is_undone(monkeypatch):
    """Pseudo-labels that call everything background pull the model away from the labeled volume: the round's
    weights are dropped, the ones from before it kept, and the log says so."""
    loop = importlib.import_module("ContrastSegLib.training.finetune")
    labeled = [preprocess_volume(*make_phantom(0)[:1], PREPROCESS, make_phantom(0)[1], (0, 1, 2, 3))]
    unlabeled = [preprocess_volume(make_phantom(i)[0], PREPROCESS) for i in (1, 2)]
    wrong = lambda model, volumes, plan, keep: [
        PreparedVolume(v.image, np.zeros(v.image.shape, np.uint8), v.record) for v in volumes]
    monkeypatch.setattr(loop, "pseudo_label", wrong)
    config = FinetuneConfig(iterations=40, batch_size=8, self_training_rounds=2, labeled_share=0.125)
    torch.manual_seed(0)
    model = UNet2D(UNetConfig(num_classes=4, channels=(8, 16, 32)))
    finetune(model, labeled, FinetuneConfig(iterations=40, batch_size=8), plan=FP32)  # round 0 alone
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    model = UNet2D(UNetConfig(num_classes=4, channels=(8, 16, 32)))
    messages = []
    reporter = ProgressReporter("finetune", config.total_iterations, enabled=False)
    monkeypatch.setattr(reporter, "log", messages.append)
    result = finetune(model, labeled, config, plan=FP32, unlabeled=unlabeled, reporter=reporter)
    assert result.rejected_round == 1
    [(round_number, fit, after)] = result.rounds
    assert round_number == 1 and after < fit - loop.ROUND_TOLERANCE
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.best_step == 40 and len(result.losses) == 80
    assert any("lowered the fit on the labeled volumes" in m for m in messages)
