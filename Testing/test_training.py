"""Fine-tuning: the loss falls and the test Dice rises on phantoms; runs are reproducible; precision and progress."""

import io
import json

import numpy as np
import pytest
import torch

from ContrastSegLib.data.phantom import make_phantom
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.evaluation import structure_metrics
from ContrastSegLib.inference.predictor import Predictor
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.preprocess import preprocess_volume
from ContrastSegLib.runtime import precision
from ContrastSegLib.runtime.checkpoint import Checkpoint
from ContrastSegLib.runtime.progress import ProgressReporter
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
from ContrastSegLib.training.finetune import finetune

CLASSES = (0, 1, 2, 3)
PREPROCESS = PreprocessConfig(target_spacing=2.0, crop_size=64)
SMALL = UNetConfig(num_classes=4, channels=(8, 16, 32, 64))
FP32 = precision.plan_execution("cpu", "fp32")


def prepared_phantoms(indices):
    return [preprocess_volume(*make_phantom(i)[:1], PREPROCESS, make_phantom(i)[1], CLASSES) for i in indices]


def checkpoint_of(model: UNet2D) -> Checkpoint:
    return Checkpoint(model.state_dict(), {
        "stage": "finetune", "architecture": model.config.to_json(), "preprocessing": PREPROCESS.to_json(),
        "labels": {"values": list(CLASSES), "names": ["background", "LV", "myocardium", "RV"],
                   "colors": [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]}})


def mean_test_dice(model: UNet2D, indices=(6, 7, 8)) -> float:
    """Mean foreground Dice on held-out phantoms, predicted on their original grids."""
    predictor = Predictor(checkpoint_of(model), plan=FP32)
    scores = []
    for index in indices:
        image, label = make_phantom(index)
        rows = structure_metrics(predictor.predict(image).label, label, {1: "LV", 2: "myocardium", 3: "RV"})
        scores += [row["dice"] for row in rows]
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = UNet2D(SMALL)
    before = mean_test_dice(model)
    # constant rate: 150 steps are too few for a cosine decay to leave the model time to learn
    config = FinetuneConfig(iterations=150, batch_size=8, seed=0, validate_every=50, lr_schedule="constant")
    result = finetune(model, prepared_phantoms([0, 1]), config, validation=prepared_phantoms([4]),
                      plan=precision.plan_execution("cpu", "auto"))
    return model, result, before, mean_test_dice(model)


def test_loss_falls(trained):
    _, result, _, _ = trained
    assert len(result.losses) == 150
    assert np.mean(result.losses[-20:]) < 0.6 * np.mean(result.losses[:10])


def test_test_dice_rises_on_held_out_phantoms(trained):
    """Random init scores ~0.02; 150 steps on 2 labeled phantoms reach ~0.8. The bar of 0.6 is well above what
    intensity alone gives (LV and RV share the blood intensity with the unlabeled aorta), so it needs shape."""
    _, _, before, after = trained
    assert before < 0.2
    assert after > 0.6
    assert after > before + 0.4


def test_best_validation_weights_are_kept(trained):
    _, result, _, _ = trained
    steps = [step for step, _ in result.validation]
    assert steps == [50, 100, 150]
    best = max(result.validation, key=lambda item: item[1])
    assert result.best_step == best[0]


def test_fine_tuning_is_reproducible_on_cpu():
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        model = UNet2D(UNetConfig(num_classes=4, channels=(4, 8)))
        finetune(model, prepared_phantoms([0]), FinetuneConfig(iterations=4, batch_size=4, seed=7, mixup=True),
                 plan=FP32)
        weights.append(model.state_dict())
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_precision_plans(monkeypatch):
    assert FP32.autocast_dtype is None and not FP32.channels_last
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    plan = precision.plan_execution("cpu", "auto")
    assert plan.autocast_dtype == torch.bfloat16 and plan.channels_last and not plan.scale_gradients
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.plan_execution("cpu", "auto").autocast_dtype is None
    assert not precision.plan_execution("cpu", "bf16", channels_last="off").channels_last
    assert precision.plan_execution("cpu", "fp32", channels_last="on").channels_last
    with pytest.raises(ContrastSegError, match="channels-last"):
        precision.plan_execution("cpu", "auto", channels_last="maybe")
    with pytest.raises(ContrastSegError, match="fp16"):
        precision.plan_execution("cpu", "fp16")
    with pytest.raises(ContrastSegError, match="unknown"):
        precision.plan_execution("tpu", "auto")
    if not torch.cuda.is_available():
        with pytest.raises(ContrastSegError, match="no CUDA"):
            precision.plan_execution("cuda", "auto")


def test_progress_events_are_json_lines():
    stream = io.StringIO()
    reporter = ProgressReporter("finetune", 20, stream=stream, min_interval_s=0.0)
    reporter.started(device="cpu")
    for step in range(1, 21):
        reporter.update(step, loss=1.0 / step)
    reporter.log("hello")
    reporter.checkpoint("m.pt", 20)
    reporter.finished(checkpoint="m.pt")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events][:2] == ["started", "progress"]
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) == 20 and progress[-1]["step"] == 20 and progress[-1]["eta_s"] == 0.0
    assert progress[4]["loss"] == pytest.approx(0.2) and progress[4]["total"] == 20
    assert {"log", "checkpoint", "finished"} <= {e["event"] for e in events}
    assert all(e["stage"] == "finetune" for e in events)


def test_progress_events_are_throttled():
    stream = io.StringIO()
    reporter = ProgressReporter("predict", 1000, stream=stream, min_interval_s=60.0)
    reporter.started()
    for step in range(1, 1001):
        reporter.update(step)
    steps = [json.loads(line)["step"] for line in stream.getvalue().splitlines()
             if json.loads(line)["event"] == "progress"]
    assert steps == [1000]  # only the last step within the interval


def test_cosine_schedule_anneals_the_learning_rate_to_zero():
    from ContrastSegLib.training.finetune import TrainingStep

    model = UNet2D(UNetConfig(num_classes=2, channels=(4, 8)))
    step = TrainingStep(model, FP32, learning_rate=1e-3, lr_schedule="cosine", total_steps=4)
    images, targets = torch.rand(2, 1, 8, 8), torch.nn.functional.one_hot(torch.randint(0, 2, (2, 8, 8)), 2)
    rates = []
    for _ in range(4):
        step(images, targets.permute(0, 3, 1, 2).float())
        rates.append(step.optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(1e-3 * (1 + np.cos(np.pi / 4)) / 2)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert rates == sorted(rates, reverse=True)


def test_warmup_decay_follows_a_run_re_planned_while_it_goes():
    """Warm-up over the first 5 % of the planned steps, the full rate, a linear decay over the last 30 % to 5 %;
    a time budget that shortens the plan mid-run (``total_steps`` changed) moves the decay to the new end."""
    from ContrastSegLib.training.finetune import TrainingStep

    model = UNet2D(UNetConfig(num_classes=2, channels=(4, 8)))
    step = TrainingStep(model, FP32, learning_rate=1e-3, lr_schedule="warmup-decay", total_steps=100)
    images, targets = torch.rand(2, 1, 8, 8), torch.nn.functional.one_hot(torch.randint(0, 2, (2, 8, 8)), 2)
    targets = targets.permute(0, 3, 1, 2).float()
    rates = [step.optimizer.param_groups[0]["lr"]]
    for _ in range(40):
        step(images, targets)
        rates.append(step.optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(1e-4) and rates[5] == pytest.approx(1e-3) and rates[40] == pytest.approx(1e-3)
    step.total_steps = 50  # re-planned: the run now ends at step 50, its decay starts at 35
    for _ in range(10):
        step(images, targets)
        rates.append(step.optimizer.param_groups[0]["lr"])
    assert rates[35] == pytest.approx(1e-3) and rates[50] == pytest.approx(5e-5)
    assert rates[40:51] == sorted(rates[40:51], reverse=True)
