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
from ..runtime.budget import PlateauRule, StepSchedule
from ..runtime.precision import ExecutionPlan, make_grad_scaler, plan_execution
from ..runtime.progress import ProgressReporter
from ..runtime.stop import Stopped, keep_on_stop, stop_requested
from ..sampling import LabeledSliceBank
from ..settings import FinetuneConfig, LrSchedule
from .budget_batch import BATCH_PROBE_STEPS, MIN_BUDGET_STEPS, budget_batch
from .loss_guard import check_finite_losses
from .lr_schedules import LR_FACTORS
from .mixup import mixup
from .self_training import IGNORE, labeled_share_of, one_hot_targets, pseudo_label


@dataclass
class FinetuneResult:
    """losses: one per step; validation: (step, mean foreground Dice); best_step: step of the kept weights;
    stopped: set when a stop request ended the run early; rounds: (round, labeled volumes' Dice before, after) of
    each self-training round; rejected_round: the round undone because it lowered that Dice; ended_early: why
    fewer steps than the iterations ran (time budget, plateau), or empty; batch_size: the batch at the end (a budget
    may have made it smaller, ``budget_batch``)."""

    losses: list[float] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    seconds: float = 0.0
    stopped: Stopped | None = None
    rounds: list[tuple[int, float, float]] = field(default_factory=list)
    rejected_round: int | None = None
    ended_early: str = ""
    batch_size: int | None = None


class TrainingStep:
    """One optimisation step on a ready batch (forward, loss, backward, Adam) under an execution plan; the learning
    rate follows ``lr_schedule`` over ``total_steps`` (which a time budget re-plans while the run goes on)."""

    def __init__(self, model: nn.Module, plan: ExecutionPlan, learning_rate: float,
                 ce_weight: float = FinetuneConfig.ce_weight, lr_schedule: str = LrSchedule.CONSTANT.value,
                 total_steps: int = 1):
        self.model, self.plan = model, plan
        self.loss_fn = DiceCrossEntropyLoss(ce_weight=ce_weight)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=learning_rate)
        self.total_steps = total_steps
        self.factor = LR_FACTORS[LrSchedule(lr_schedule)]
        self.scheduler = (torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._factor)
                          if lr_schedule != LrSchedule.CONSTANT else None)
        self.scaler = make_grad_scaler(plan)

    def _factor(self, step: int) -> float:
        return self.factor(min(1.0, step / max(1, self.total_steps)))

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
    """Sampling + augmentation + Mixup: the data side of a fine-tuning step, all on the training device.

    With a ``pseudo`` bank (self-training), every batch holds ``labeled_share_of(batch, config.labeled_share)``
    labeled slices and pseudo-labeled ones for the rest, however many volumes each side has."""

    def __init__(self, bank: LabeledSliceBank, num_classes: int, config: FinetuneConfig, device: torch.device,
                 pseudo: LabeledSliceBank | None = None):
        self.bank, self.pseudo, self.num_classes, self.config = bank, pseudo, num_classes, config
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.spatial, self.intensity = SpatialAugmentation.of(config), IntensityAugmentation.of(config)
        self.batch_size = self.labeled_per_batch = 0
        self.resize(config.batch_size)

    def resize(self, batch_size: int) -> None:
        """Batches of ``batch_size`` slices from now on."""
        self.batch_size = batch_size
        self.labeled_per_batch = (batch_size if self.pseudo is None else
                                  labeled_share_of(batch_size, self.config.labeled_share))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 1, P, P), targets (B, C, P, P) class probabilities."""
        images, labels = self.bank.sample(self.labeled_per_batch, self.generator)
        if self.pseudo is not None and self.labeled_per_batch < self.batch_size:
            more_images, more_labels = self.pseudo.sample(self.batch_size - self.labeled_per_batch,
                                                          self.generator)
            images, labels = torch.cat([images, more_images]), torch.cat([labels, more_labels])
        targets = one_hot_targets(labels, self.num_classes)
        if self.config.augment:
            images, targets = self.spatial(images, targets, self.generator)
            images = self.intensity(images, self.generator)
        if self.config.mixup:
            images, targets = mixup(images, targets, self.config.mixup_alpha, self.rng, self.generator)
        return images, targets


def finetune(model: nn.Module, train: Sequence[PreparedVolume], config: FinetuneConfig,
             validation: Sequence[PreparedVolume] = (), reporter: ProgressReporter | None = None,
             plan: ExecutionPlan | None = None, unlabeled: Sequence[PreparedVolume] = (),
             started_at: float | None = None, patch: int | None = None) -> FinetuneResult:
    """Train ``model`` (in place) on the labeled slices of ``train``; with ``config.self_training_rounds`` > 0,
    each further round pseudo-labels ``unlabeled`` with the current model and trains again for
    ``config.iterations`` steps on batches mixing both (one optimiser throughout). A round that lowers the Dice on
    the labeled volumes by more than ``ROUND_TOLERANCE`` is undone, and self-training ends there. A stop request
    (``runtime.stop``) ends the run, all rounds, after the current step. A time budget counts from ``started_at``
    (the job's start on ``runtime.budget``'s clock; None: now). ``patch``: the training side, where the slices of
    ``train`` are larger (None: whole slices). With ``config.budget_batch`` a time budget may make the batch
    smaller (``budget_batch``). Returns the loss curve and validation."""
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
    num_classes = model.config.num_classes
    labeled_bank = LabeledSliceBank(train, plan.device, patch, config.structure_share, num_classes)
    reporter.log(f"training side {labeled_bank.patch} px" + (f" (patches of slices up to {labeled_bank.side} px)"
                                                            if labeled_bank.patch < labeled_bank.side else ""))
    if not validation:
        reporter.log(f"no validation volumes: fixed schedule of {total} iterations, keeping the last weights")
    tracker = _BestWeights()
    result, start = FinetuneResult(), time.perf_counter()
    schedule = config.lr_schedule_on(plan.device.type)
    reporter.log(f"learning rate {config.learning_rate:g}, schedule {schedule.value}"
                 + (" (auto: a time budget ends the run)" if config.lr_schedule == LrSchedule.AUTO else ""))
    step_fn = TrainingStep(model, plan, config.learning_rate, config.ce_weight, schedule.value, total)
    keep_on_stop()
    phase = _Phase(model, config, plan, validation, reporter, result, tracker, step_fn, started_at)
    phase.run(labeled_bank, None, 0, tail_slices=labeled_bank.num_slices)
    result.batch_size = phase.batch_size
    step_fn.total_steps = phase.total
    for round_number in range(1, rounds + 1):
        if result.stopped:
            break
        fit = validation_dice(model, train, plan, num_classes)
        before = _Snapshot.of(model, step_fn)
        pseudo = pseudo_label(model, unlabeled, plan, config.pseudo_keep)
        kept = float(np.mean([(v.label != IGNORE).mean() for v in pseudo]))
        kept_how = ("every pixel labeled by its argmax" if config.pseudo_keep >= 1 else
                    f"{kept:.0%} of pixels kept (the most confident {config.pseudo_keep:.0%} of each class)")
        reporter.log(f"self-training round {round_number}: pseudo-labels for {len(pseudo)} volume(s), {kept_how}, "
                     f"{phase.labeled_share:.0%} of every batch labeled")
        phase.run(labeled_bank, LabeledSliceBank(pseudo, plan.device, labeled_bank.patch),
                  round_number * phase.iterations)
        after = validation_dice(model, train, plan, num_classes)
        result.rounds.append((round_number, fit, after))
        if not result.stopped and after < fit - ROUND_TOLERANCE:
            before.restore(model, step_fn)
            result.rejected_round = round_number
            reporter.log(f"self-training round {round_number} lowered the fit on the labeled volumes (Dice "
                         f"{fit:.3f} -> {after:.3f}): kept the weights from before it and stopped self-training")
            break
    if result.stopped:
        reporter.stopped(result.stopped.step, result.stopped.signal)
    kept_step = (result.stopped.step if result.stopped else
                 len(result.losses) - phase.last_round_steps if result.rejected_round else len(result.losses))
    tracker.restore(model, result, reporter, kept_step)
    result.seconds = time.perf_counter() - start
    model.to(memory_format=torch.contiguous_format)
    return result


FORWARD_SHARE = 3  # a training step (forward + backward + update) costs about this many forward passes
ROUND_TOLERANCE = 0.005  # a round may lower the labeled volumes' Dice by this much (noise) before it is undone


@dataclass
class _Snapshot:
    """Model weights and optimiser state, to undo a self-training round."""

    model: dict
    optimizer: dict

    @classmethod
    def of(cls, model: nn.Module, step_fn: TrainingStep) -> "_Snapshot":
        return cls(copy.deepcopy(model.state_dict()), copy.deepcopy(step_fn.optimizer.state_dict()))

    def restore(self, model: nn.Module, step_fn: TrainingStep) -> None:
        model.load_state_dict(self.model)
        step_fn.optimizer.load_state_dict(self.optimizer)


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


class _Phase:
    """Runs ``config.iterations`` steps (fewer on a stop request, which sets ``result.stopped``) on a labeled bank,
    plus a pseudo-labeled one in self-training rounds; one optimiser and schedule (``step_fn``) for all rounds."""

    def __init__(self, model: nn.Module, config: FinetuneConfig, plan: ExecutionPlan,
                 validation: Sequence[PreparedVolume], reporter: ProgressReporter, result: FinetuneResult,
                 tracker: _BestWeights, step_fn: TrainingStep, started_at: float | None = None):
        self.model, self.config, self.plan, self.validation = model, config, plan, validation
        self.started_at = started_at
        self.reporter, self.result, self.tracker, self.step_fn = reporter, result, tracker, step_fn
        self.labeled_share = labeled_share_of(config.batch_size, config.labeled_share) / config.batch_size
        self.iterations = config.iterations  # per round; a time budget sets it in the first round
        self.batch_size = config.batch_size  # a time budget may lower it in the first round (``budget_batch``)
        self.last_round_steps = 0

    @property
    def total(self) -> int:
        return self.iterations * (1 + self.config.self_training_rounds)

    def run(self, bank: LabeledSliceBank, pseudo: LabeledSliceBank | None, offset: int, tail_slices: int = 0) -> None:
        """One round, its steps counted from ``offset`` + 1; ``tail_slices``: slices predicted after the round (the
        check of the training volumes), which a time budget keeps time for."""
        config, model, num_classes = self.config, self.model, self.model.config.num_classes
        model.train()
        seeded = replace(config, seed=config.seed + offset, batch_size=self.batch_size)  # other batches
        pipeline = BatchPipeline(bank, num_classes, seeded, self.plan.device, pseudo)
        schedule = self._schedule(offset, tail_slices, bank)
        recent: list[torch.Tensor] = []
        first, step = len(self.result.losses), offset
        going = True
        while going:
            step += 1
            recent.append(self.step_fn(*pipeline.next_batch()))
            stop = stop_requested()
            if schedule.plateau is not None and (step - offset) % schedule.plateau.window == 0:
                self._flush(recent, step)  # the rule looks at the curve at the end of each window
            going = schedule.on_step(step, self.result.losses, first) and not stop
            if offset == 0 and schedule.planned:  # the rate's schedule follows the re-planned run
                if config.budget_batch and step == 1 + BATCH_PROBE_STEPS:
                    self._fit_batch(pipeline, schedule)
                self.step_fn.total_steps = schedule.iterations * (1 + config.self_training_rounds)
            if len(recent) == 10 or not going:
                self._flush(recent, step)
            if self.validation and (step % config.validate_every == 0 or not going):
                dice = validation_dice(model, self.validation, self.plan, num_classes)
                self.result.validation.append((step, dice))
                self.reporter.log(f"step {step}: validation Dice {dice:.4f}")
                self.tracker.offer(model, step, dice)
        self.last_round_steps = step - offset
        if offset == 0:
            self.iterations = schedule.iterations
        if schedule.reason and not stop:
            self.result.ended_early = schedule.reason
            self.reporter.log(f"{step - offset} steps instead of {config.iterations}: {schedule.reason}")
        if stop:
            self.result.stopped = Stopped(step, self.total, stop)

    def _fit_batch(self, pipeline: "BatchPipeline", schedule: StepSchedule) -> None:
        """A smaller batch from now on where too few steps fit into the budget (``budget_batch``)."""
        planned, batch = schedule.iterations, pipeline.batch_size
        smaller = budget_batch(batch, planned)
        if smaller == batch:
            return
        pipeline.resize(smaller)
        self.batch_size = smaller
        schedule.restart_pace()
        schedule.tail_steps *= batch / smaller  # the same tail, in cheaper steps
        self.reporter.log(f"batch {smaller} instead of {batch}: {planned} steps fit into the time budget, fewer "
                          f"than the {MIN_BUDGET_STEPS} a model needs")

    def _schedule(self, offset: int, tail_slices: int, bank: LabeledSliceBank) -> StepSchedule:
        """The first round may be shortened by the time budget (later rounds take as many steps), any round by
        the plateau rule. The work after the last step (validation, the check of ``tail_slices`` training slices:
        forward passes of whole slices, each about a third of a training image's cost, by the area of a whole slice
        over the patch's) is counted in training steps."""
        config = self.config
        budget = config.budget_on(self.plan.device.type) if offset == 0 else None
        if budget is not None:
            budget /= 1 + config.self_training_rounds
        plateau = PlateauRule.for_iterations(config.iterations) if config.plateau_stop else None
        predicted = tail_slices + sum(len(v.image) for v in self.validation)
        tail_steps = predicted * (bank.side / bank.patch) ** 2 / (FORWARD_SHARE * config.batch_size)
        return StepSchedule(offset + self.iterations, budget, plateau, first_step=offset, fixed=offset > 0,
                            started_at=self.started_at, tail_steps=tail_steps).start()

    def _flush(self, recent: list[torch.Tensor], step: int) -> None:
        if not recent:
            return
        values = torch.stack(recent).float().cpu().tolist()
        check_finite_losses(values, step - len(values) + 1, self.config.learning_rate, "finetune")
        self.result.losses.extend(values)
        recent.clear()
        self.reporter.update(step, loss=float(np.mean(values)))


def validation_dice(model: nn.Module, volumes: Sequence[PreparedVolume], plan: ExecutionPlan,
                    num_classes: int) -> float:
    """Mean over volumes of the mean foreground Dice on the preprocessed grid."""
    scores = []
    for volume in volumes:
        prediction = slice_probabilities(model, volume.image, plan).max(1).indices.cpu().numpy()
        scores.append(foreground_dice(prediction, volume.label, num_classes))
    return float(np.mean(scores))
