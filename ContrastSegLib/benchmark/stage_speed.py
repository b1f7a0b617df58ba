"""Images per second of each training stage: the model-only step on one pre-made batch against the full pipeline
(sampling, augmentation or views, and the same step), timed interleaved on the same network and optimiser.

Stages: global contrastive G^D and local contrastive L^R (Chaitanya et al. 2020), supervised-local in "stride"
mode (Hu et al. 2021), fine-tuning (Dice + CE); masked-image modelling on request (``MASKED_STAGE``). A contrastive
step is ``ContrastiveObjective.loss`` (views, embedding, loss) followed by backward and Adam; for the model-only
step its augmentations replay the views they made for one drawn batch, so the same tensors go through the same code
without sampling or augmenting again. The fine-tuning step is ``TrainingStep`` on ``workloads.fixed_batch``
(model-only) or on ``BatchPipeline.next_batch()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..preprocess import PreparedVolume
from ..sampling import LabeledSliceBank, PartitionSliceBank
from ..settings import (DEFAULT_CHANNELS, FinetuneConfig, GlobalStrategy, LocalStrategy, MaskedStrategy,
                        PretrainConfig, Stage, SupervisedLocalMode)
from ..runtime.precision import ExecutionPlan, make_grad_scaler
from ..training.finetune import BatchPipeline, TrainingStep
from ..training.pretrain import ContrastiveObjective, StageNetwork, attach_heads
from .peak_share import counted_flops
from .timing import interleaved_medians, repeat
from .workloads import NUM_CLASSES, fixed_batch, paper_unet

CONTRASTIVE_STAGES = ((Stage.GLOBAL, GlobalStrategy.GD, "global contrastive G^D"),
                      (Stage.LOCAL, LocalStrategy.LR, "local contrastive L^R"),
                      (Stage.SUPERVISED_LOCAL, SupervisedLocalMode.STRIDE, "supervised-local SLC, stride mode"))
MASKED_STAGE = (Stage.MASKED, MaskedStrategy.PATCHES, "masked-image modelling")


@dataclass(frozen=True)
class StageSizes:
    """crop: side of the slices; a contrastive batch draws volumes_per_batch × partitions slices, a fine-tuning
    batch finetune_batch; each timed round runs steps_per_round steps; phantoms: volumes in the slice banks;
    channels: the UNet's encoder widths (the paper's; smaller for quick checks)."""

    crop: int
    volumes_per_batch: int
    partitions: int
    finetune_batch: int
    warmup: int
    rounds: int
    steps_per_round: int
    phantoms: int = 4
    seed: int = 0
    channels: tuple[int, ...] = DEFAULT_CHANNELS


@dataclass(frozen=True)
class StageSpeed:
    """images: slices drawn per step; network_inputs: images through the network per step (all views);
    model_only, pipeline: images per second (median over the timed rounds); flops: of one model-only step as
    ``FlopCounterMode`` counts them (convolutions and matmuls, forward + backward), None where not counted."""

    name: str
    images: int
    network_inputs: int
    model_only: float
    pipeline: float
    flops: int | None = None

    @property
    def ratio(self) -> float:
        return self.pipeline / self.model_only


class ReplayedAugmentation:
    """Runs ``augmentation`` while recording its outputs; once ``recording`` is off, returns the recorded outputs
    in call order (cycling) whatever its arguments."""

    def __init__(self, augmentation: Callable):
        self.augmentation, self.outputs, self.recording, self.calls = augmentation, [], True, 0

    def __call__(self, *args):
        if self.recording:
            self.outputs.append(self.augmentation(*args))
            return self.outputs[-1]
        output = self.outputs[self.calls % len(self.outputs)]
        self.calls += 1
        return output


class ContrastiveStep:
    """Backward of a pre-training loss and one Adam step of the stage's trainable parameters (fp16 gradients
    scaled), as in the pre-training loop."""

    def __init__(self, trainable: list[nn.Parameter], plan: ExecutionPlan, learning_rate: float):
        self.optimizer = torch.optim.Adam(trainable, lr=learning_rate)
        self.scaler = make_grad_scaler(plan)

    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


def premade_objective(objective: ContrastiveObjective, batch, generator: torch.Generator) -> int:
    """Make ``objective`` replay the views of one loss on ``batch`` from now on; returns how many images that loss
    sent through the network."""
    for name in ("global_views", "intensity_views", "spatial", "intensity"):
        setattr(objective, name, ReplayedAugmentation(getattr(objective, name)))
    inputs: list[int] = []
    hook = objective.network.register_forward_pre_hook(lambda _, args: inputs.append(args[0].shape[0]))
    objective.loss(batch, generator)
    hook.remove()
    for name in ("global_views", "intensity_views", "spatial", "intensity"):
        getattr(objective, name).recording = False
    return sum(inputs)


def stage_network(config: PretrainConfig, plan: ExecutionPlan, crop: int, seed: int,
                  channels: tuple[int, ...] = DEFAULT_CHANNELS) -> tuple[StageNetwork, list[nn.Parameter]]:
    """The paper UNet with the stage's head on the plan's device and layout, in the stage's train/eval modes."""
    model = paper_unet(plan, seed, channels)
    trainable = attach_heads(model, config, crop)
    model.to(plan.device)  # the heads are created on the CPU
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    if config.stage == Stage.LOCAL:
        model.encoder.eval()  # frozen, as in the pre-training loop
    return StageNetwork(model, config), trainable


def contrastive_speed(stage: str, strategy: str, name: str, sizes: StageSizes, plan: ExecutionPlan,
                      volumes: Sequence[PreparedVolume], count_flops: bool = False) -> StageSpeed:
    """Model-only vs pipeline images/s of one pre-training stage on slices of ``volumes`` (and the FLOPs of one
    model-only step with ``count_flops``)."""
    config = PretrainConfig(stage=stage, strategy=strategy, partitions=sizes.partitions,
                            volumes_per_batch=sizes.volumes_per_batch, seed=sizes.seed).check()
    bank = (LabeledSliceBank(volumes, plan.device) if stage == Stage.SUPERVISED_LOCAL else
            PartitionSliceBank(volumes, sizes.partitions, plan.device))
    network, trainable = stage_network(config, plan, sizes.crop, sizes.seed, sizes.channels)
    step = ContrastiveStep(trainable, plan, config.learning_rate)
    generator = torch.Generator(device=plan.device).manual_seed(config.seed)
    pipeline, premade = ContrastiveObjective(network, config, plan), ContrastiveObjective(network, config, plan)
    batch = premade.draw(bank, generator)
    inputs = premade_objective(premade, batch, generator)
    steps = {
        "model-only": lambda: step(premade.loss(batch, generator)),
        "pipeline": lambda: step(pipeline.loss(pipeline.draw(bank, generator), generator)),
    }
    images = sizes.volumes_per_batch * sizes.partitions
    return _speed(name, images, inputs, steps, sizes, plan, count_flops)


def finetune_speed(sizes: StageSizes, plan: ExecutionPlan, volumes: Sequence[PreparedVolume],
                   count_flops: bool = False) -> StageSpeed:
    """Model-only vs pipeline images/s of fine-tuning (augmentation on, no Mixup) on the labeled ``volumes`` (and
    the FLOPs of one model-only step with ``count_flops``)."""
    step = TrainingStep(paper_unet(plan, sizes.seed, sizes.channels), plan, learning_rate=FinetuneConfig.learning_rate)
    config = FinetuneConfig(batch_size=sizes.finetune_batch, seed=sizes.seed)
    pipeline = BatchPipeline(LabeledSliceBank(volumes, plan.device), NUM_CLASSES, config, plan.device)
    batch = fixed_batch(sizes.finetune_batch, sizes.crop, sizes.seed, plan.device)
    steps = {"model-only": lambda: step(*batch), "pipeline": lambda: step(*pipeline.next_batch())}
    return _speed("fine-tuning (Dice + CE)", sizes.finetune_batch, sizes.finetune_batch, steps, sizes, plan,
                  count_flops)


def _speed(name: str, images: int, inputs: int, steps: dict[str, Callable[[], object]], sizes: StageSizes,
           plan: ExecutionPlan, count_flops: bool) -> StageSpeed:
    """Time ``steps_per_round`` calls of each step as one unit; the FLOPs of one model-only step first."""
    flops = counted_flops(steps["model-only"]) if count_flops else None
    variants = {variant: repeat(sizes.steps_per_round, run) for variant, run in steps.items()}
    seconds = interleaved_medians(variants, sizes.warmup, sizes.rounds, plan.device)
    rate = {variant: images * sizes.steps_per_round / value for variant, value in seconds.items()}
    return StageSpeed(name, images, inputs, rate["model-only"], rate["pipeline"], flops)


def stage_speeds(sizes: StageSizes, plan: ExecutionPlan, volumes: Sequence[PreparedVolume],
                 stages: Sequence[tuple[str, str, str]] = CONTRASTIVE_STAGES,
                 count_flops: bool = False) -> list[StageSpeed]:
    """One row per pre-training stage of ``stages`` ((stage, strategy, name); default G^D, L^R, supervised-local
    in stride mode), then fine-tuning."""
    rows = [contrastive_speed(stage, strategy, name, sizes, plan, volumes, count_flops)
            for stage, strategy, name in stages]
    return rows + [finetune_speed(sizes, plan, volumes, count_flops)]
