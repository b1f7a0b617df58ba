"""Few-shot fine-tuning of the UNet on labeled slices: Dice + CE, augmentation, optional Mixup, Adam.

With a validation set, Dice is measured every ``validate_every`` steps and the best weights are kept; without one
(1–3 labeled volumes and none to spare) the schedule is fixed and the last weights are kept — the log says which.
Seeded: the same seed, data and device give the same weights on the CPU.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..augment import IntensityAugmentation, SpatialAugmentation
from ..errors import ContrastSegError
from ..inference.slices import foreground_dice, slice_probabilities
from ..losses import DiceCrossEntropyLoss
from ..preprocess import PreparedVolume
from ..runtime.precision import ExecutionPlan, plan_execution
from ..runtime.progress import ProgressReporter
from ..runtime.stop import Stopped, keep_on_stop, stop_requested
from ..sampling import LabeledSliceBank
from ..settings import FinetuneConfig, LrSchedule
from .loss_guard import check_finite_losses
from .mixup import mixup
from .self_training import IGNORE, one_hot_targets, pseudo_label


@dataclass
class FinetuneResult:
    """losses: one per step; validation: (step, mean foreground Dice); best_step: step of the kept weights;
    stopped: set when a stop request ended the run early."""

    losses: list[float] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    seconds: float = 0.0
    stopped: Stopped | None = None


class TrainingStep:
    """One optimisation step on a ready batch (forward, loss, backward, Adam) under an execution plan."""

    def __init__(self, model: nn.Module, plan: ExecutionPlan, learning_rate: float,
                 ce_weight: float = FinetuneConfig.ce_weight,
                 cosine_steps: int | None = None):
        self.model, self.plan = model, plan
        self.loss_fn = DiceCrossEntropyLoss(ce_weight=ce_weight)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=learning_rate)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cosine_steps)
                          if cosine_steps else None)
        self.scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.scale_gradients)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """images (B, 1, P, P), targets (B, C, P, P) probabilities -> the loss before the update (detached)."""
        if self.plan.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with self.plan.autocast():
            logits = self.model(images)
        loss = self.loss_fn(logits, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach()


class BatchPipeline:
    """Sampling + augmentation + Mixup: the data side of a fine-tuning step, all on the training device."""

    def __init__(self, bank: LabeledSliceBank, num_classes: int, config: FinetuneConfig, device: torch.device):
        self.bank, self.num_classes, self.config = bank, num_classes, config
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.spatial, self.intensity = SpatialAugmentation(), IntensityAugmentation()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 1, P, P), targets (B, C, P, P) class probabilities."""
        images, labels = self.bank.sample(self.config.batch_size, self.generator)
        targets = one_hot_targets(labels, self.num_classes)
        if self.config.augment:
            images, targets = self.spatial(images, targets, self.generator)
            images = self.intensity(images, self.generator)
        if self.config.mixup:
            images, targets = mixup(images, targets, self.config.mixup_alpha, self.rng, self.generator)
        return images, targets


def finetune(model: nn.Module, train: Sequence[PreparedVolume], config: FinetuneConfig,
             validation: Sequence[PreparedVolume] = (), reporter: ProgressReporter | None = None,
             plan: ExecutionPlan | None = None, unlabeled: Sequence[PreparedVolume] = ()) -> FinetuneResult:
    """Train ``model`` (in place) on the labeled slices of ``train``; with ``config.self_training_rounds`` > 0,
    each further round adds pseudo-labels of ``unlabeled`` made by the current model and trains again for
    ``config.iterations`` steps. A stop request (``runtime.stop``) ends the run, all rounds, after the current
    step. Returns the loss curve and validation."""
    config.check()
    plan = plan or plan_execution(config.device, config.precision, config.channels_last)
    rounds = config.self_training_rounds
    if rounds and not unlabeled:
        raise ContrastSegError("--self-training needs unlabeled volumes: pass --unlabeled DIR or a --split with "
                               "train_unlabeled cases")
    total = config.total_iterations
    reporter = reporter or ProgressReporter("finetune", total, enabled=False)
    model.to(plan.device)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    reporter.started(device=plan.describe(), validation_volumes=len(validation), self_training_rounds=rounds)
    reporter.log(f"fine-tuning on {len(train)} volume(s); {plan.describe()}")
    if not validation:
        reporter.log(f"no validation volumes: fixed schedule of {total} iterations, keeping the last weights")
    tracker = _BestWeights()
    result, start = FinetuneResult(), time.perf_counter()
    volumes = list(train)
    keep_on_stop()
    for phase in range(rounds + 1):
        if result.stopped:
            break
        if phase:
            pseudo = pseudo_label(model, unlabeled, plan, config.pseudo_threshold)
            kept = float(np.mean([(v.label != IGNORE).mean() for v in pseudo]))
            reporter.log(f"self-training round {phase}: pseudo-labels for {len(pseudo)} volume(s), {kept:.0%} of "
                         f"pixels above confidence {config.pseudo_threshold}")
            volumes = list(train) + pseudo
        _train_phase(model, volumes, config, plan, phase * config.iterations, validation, reporter, result, tracker)
    if result.stopped:
        reporter.stopped(result.stopped.step, result.stopped.signal)
    tracker.restore(model, result, reporter, result.stopped.step if result.stopped else total)
    result.seconds = time.perf_counter() - start
    model.to(memory_format=torch.contiguous_format)
    return result


class _BestWeights:
    """The weights of the best validation Dice seen so far."""

    def __init__(self):
        self.state, self.dice, self.step = None, -1.0, None

    def offer(self, model: nn.Module, step: int, dice: float) -> None:
        if dice > self.dice:
            self.state, self.dice, self.step = copy.deepcopy(model.state_dict()), dice, step

    def restore(self, model: nn.Module, result: FinetuneResult, reporter: ProgressReporter, last: int) -> None:
        if self.state is None:
            result.best_step = last
            return
        model.load_state_dict(self.state)
        result.best_step = self.step
        reporter.log(f"kept the weights of step {self.step} (validation Dice {self.dice:.4f})")


def _train_phase(model: nn.Module, volumes: Sequence[PreparedVolume], config: FinetuneConfig, plan: ExecutionPlan,
                 offset: int, validation: Sequence[PreparedVolume], reporter: ProgressReporter,
                 result: FinetuneResult, tracker: _BestWeights) -> None:
    """``config.iterations`` steps on ``volumes`` (its own optimiser and schedule), steps counted from ``offset``;
    fewer when a stop is requested (then ``result.stopped`` is set)."""
    num_classes = model.config.num_classes
    model.train()
    seeded = replace(config, seed=config.seed + offset)  # another round draws other batches
    pipeline = BatchPipeline(LabeledSliceBank(volumes, plan.device), num_classes, seeded, plan.device)
    step_fn = TrainingStep(model, plan, config.learning_rate, config.ce_weight,
                           cosine_steps=config.iterations if config.lr_schedule == LrSchedule.COSINE else None)
    recent: list[torch.Tensor] = []
    for step in range(offset + 1, offset + config.iterations + 1):
        recent.append(step_fn(*pipeline.next_batch()))
        last, stop = step == offset + config.iterations, stop_requested()
        if len(recent) == 10 or last or stop:
            values = torch.stack(recent).float().cpu().tolist()
            check_finite_losses(values, step - len(values) + 1, config.learning_rate, "finetune")
            result.losses.extend(values)
            recent.clear()
            reporter.update(step, loss=float(np.mean(values)))
        if validation and (step % config.validate_every == 0 or last):
            dice = validation_dice(model, validation, plan, num_classes)
            result.validation.append((step, dice))
            reporter.log(f"step {step}: validation Dice {dice:.4f}")
            tracker.offer(model, step, dice)
        if stop:
            result.stopped = Stopped(step, config.total_iterations, stop)
            return


def validation_dice(model: nn.Module, volumes: Sequence[PreparedVolume], plan: ExecutionPlan,
                    num_classes: int) -> float:
    """Mean over volumes of the mean foreground Dice on the preprocessed grid."""
    scores = []
    for volume in volumes:
        prediction = slice_probabilities(model, volume.image, plan).max(1).indices.cpu().numpy()
        scores.append(foreground_dice(prediction, volume.label, num_classes))
    return float(np.mean(scores))
