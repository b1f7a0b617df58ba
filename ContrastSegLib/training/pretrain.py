"""Pre-training stages: the contrastive ones of Chaitanya et al. 2020 and Hu et al. 2021, and masked-image
modelling, on unlabeled slices (the supervised-local stage on labeled ones).

global: encoder + g1, views x̂, x̃ by crop-and-resize + brightness/contrast; G^R contrasts x̂, x̃ of each slice,
        G^D- and G^D contrast x, x̂, x̃ with the (volume, partition) domain cue.
local:  encoder frozen (weights and BatchNorm statistics), the first ``decoder_blocks`` decoder blocks + g2 trained on
        two intensity-only views with L^R or L^D.
masked: encoder + decoder + gm reconstruct slices whose random patches were hidden (loss on the hidden pixels).
The loop is resumable: ``on_checkpoint`` receives everything needed to continue bit-identically (model, optimiser,
generator state, step), and ``resume`` puts it back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..augment import GlobalViews, IntensityAugmentation, IntensityViews, SpatialAugmentation
from ..losses import (global_contrastive_loss, local_contrastive_loss, masked_image_loss, patch_mask,
                      supervised_local_contrastive_loss)
from ..models import UNet2D, global_head, local_head, pixel_head, reconstruction_head, set_trainable
from ..runtime.budget import PlateauRule, StepSchedule
from ..runtime.precision import ExecutionPlan, make_grad_scaler
from ..runtime.progress import ProgressReporter
from ..runtime.stop import Stopped, keep_on_stop, stop_requested
from ..sampling import PartitionSliceBank, TaggedBatch
from ..settings import GlobalStrategy, PretrainConfig, Stage
from .distributed import DistributedContext, any_rank, gather_rows
from .loss_guard import check_finite_losses


@dataclass
class PretrainState:
    """What a resumed run needs: the finished step, the optimiser, the fp16 gradient scaler, the sampling
    generator's state and the steps a time budget planned; ``stopped`` is set when a stop request ended the run
    early, ``ended_early`` says why a budget or plateau ended it before the iterations."""

    step: int = 0
    optimizer: dict | None = None
    scaler: dict | None = None
    generator: torch.Tensor | None = None
    losses: list[float] = field(default_factory=list)
    stopped: Stopped | None = None
    planned: int | None = None
    ended_early: str = ""


def _agreed(going: bool, context: DistributedContext, device: torch.device) -> bool:
    """Every rank goes on only while all do (each measures its own pace under a time budget)."""
    return not any_rank(not going, context, device)


def attach_heads(model: UNet2D, config: PretrainConfig, crop_size: int) -> list[nn.Parameter]:
    """Add g1 or g2 to ``model.heads`` and freeze every part the stage does not train; returns the trainable
    parameters (global: encoder + g1; local: the first l decoder blocks + g2)."""
    if config.stage == Stage.GLOBAL:
        model.heads["g1"] = global_head(model, crop_size)
        parts = [model.encoder, model.heads["g1"]]
    elif config.stage == Stage.SUPERVISED_LOCAL:
        model.heads["gs"] = pixel_head(model)
        parts = [model.encoder, model.decoder, model.heads["gs"]]
    elif config.stage == Stage.MASKED:
        model.heads["gm"] = reconstruction_head(model)
        parts = [model.encoder, model.decoder, model.heads["gm"]]
    else:
        model.heads["g2"] = local_head(model, config.decoder_blocks)
        parts = [model.decoder[: config.decoder_blocks], model.heads["g2"]]
    set_trainable(model, False)
    for part in parts:
        set_trainable(part, True)
    return [p for part in parts for p in part.parameters()]


class StageNetwork(nn.Module):
    """What a stage trains, as one module (so DDP can wrap it): images (B, 1, P, P) -> global embeddings (B, 128)
    through encoder + g1; local feature maps (B, C, h, w) through the frozen encoder, the first l decoder blocks and
    g2; or per-pixel features (B, C, P, P) through encoder, whole decoder and the 1×1 head (supervised-local; masked:
    (B, 1, P, P) reconstructed intensities)."""

    def __init__(self, model: UNet2D, config: PretrainConfig):
        super().__init__()
        self.model, self.stage, self.decoder_blocks = model, config.stage, config.decoder_blocks

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.stage == Stage.GLOBAL:
            return self.model.heads["g1"](self.model.encode(images)[-1])
        if self.stage in (Stage.SUPERVISED_LOCAL, Stage.MASKED):
            head = self.model.heads["gs" if self.stage == Stage.SUPERVISED_LOCAL else "gm"]
            return head(self.model.decode(self.model.encode(images)))
        with torch.no_grad():
            features = self.model.encode(images)
        return self.model.heads["g2"](self.model.decode(features, self.decoder_blocks))


class ContrastiveObjective:
    """Batch -> views -> embeddings (this rank's shard, gathered) -> contrastive loss of the global batch."""

    def __init__(self, network: nn.Module, config: PretrainConfig, plan: ExecutionPlan,
                 context: DistributedContext = DistributedContext()):
        self.network, self.config, self.plan, self.context = network, config, plan, context
        self.global_views, self.intensity_views = GlobalViews(), IntensityViews()
        self.spatial, self.intensity = SpatialAugmentation(), IntensityAugmentation()

    def draw(self, bank, generator: torch.Generator) -> TaggedBatch | tuple[torch.Tensor, torch.Tensor]:
        """A tagged batch of unlabeled slices, or (images, labels) of labeled ones for the supervised-local stage."""
        if self.config.stage == Stage.SUPERVISED_LOCAL:
            return bank.sample(self.config.volumes_per_batch * self.config.partitions, generator)
        if self.config.uses_domain:
            return bank.sample(self.config.volumes_per_batch, generator)  # m volumes × S partitions
        return bank.sample_slices(self.config.volumes_per_batch * self.config.partitions, generator)

    def loss(self, batch, generator: torch.Generator) -> torch.Tensor:
        """The loss of the whole global batch (identical on every rank)."""
        if self.config.stage == Stage.SUPERVISED_LOCAL:
            return self._supervised_local_loss(*batch, generator)
        if self.config.stage == Stage.MASKED:
            mask = patch_mask(batch.images.shape, self.config.mask_patch, self.config.mask_ratio, generator)
            return masked_image_loss(self.embed(batch.images * (1 - mask)), batch.images, mask)
        if self.config.stage == Stage.GLOBAL:
            first, second = self.global_views(batch.images, generator)
            views = [first, second] if self.config.strategy == GlobalStrategy.GR else [batch.images, first, second]
            z = self.embed(torch.cat(views))
            repeat = len(views)
            return global_contrastive_loss(z, batch.image_ids.repeat(repeat), batch.volume_ids.repeat(repeat),
                                           batch.partition_ids.repeat(repeat), self.config.strategy,
                                           self.config.temperature)
        first, second = self.intensity_views(batch.images, generator)
        f1, f2 = self.embed(torch.cat([first, second])).chunk(2)
        return local_contrastive_loss(f1, f2, self.config.region_size, self.config.temperature,
                                      self.config.strategy, batch.volume_ids, batch.partition_ids)

    def _supervised_local_loss(self, images: torch.Tensor, labels: torch.Tensor,
                               generator: torch.Generator) -> torch.Tensor:
        """Two views, each with its own geometric + intensity augmentation (labels moved with the pixels)."""
        targets = F.one_hot(labels.long(), int(labels.max()) + 1).permute(0, 3, 1, 2).float()
        views, view_labels = [], []
        for _ in range(2):
            moved_images, moved_targets = self.spatial(images, targets, generator)
            views.append(self.intensity(moved_images, generator))
            view_labels.append(moved_targets.argmax(1))
        features = self.embed(torch.cat(views))
        return supervised_local_contrastive_loss(features, torch.cat(view_labels), self.config.temperature,
                                                 self.config.strategy, self.config.stride, self.config.block_size)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, P, P) global batch -> (N, ...) fp32 embeddings; each rank computes only its shard."""
        local = images[self.context.shard(images.shape[0])]
        if self.plan.channels_last:
            local = local.contiguous(memory_format=torch.channels_last)
        with self.plan.autocast():
            embedded = self.network(local)
        return gather_rows(embedded.float(), self.context)


def pretrain(model: UNet2D, bank: PartitionSliceBank, config: PretrainConfig, plan: ExecutionPlan,
             trainable: list[nn.Parameter], state: PretrainState | None = None,
             reporter: ProgressReporter | None = None,
             on_checkpoint: Callable[[PretrainState], None] | None = None,
             context: DistributedContext = DistributedContext(), started_at: float | None = None) -> PretrainState:
    """Run ``config.iterations`` steps (continuing from ``state``); ``on_checkpoint`` every ``checkpoint_every``
    steps and at the end (on the main rank). ``model`` must already carry its heads (see :func:`attach_heads`). A
    stop request (``runtime.stop``, on any rank) ends the run after the current step, without ``on_checkpoint``
    (``state`` then holds what continuing needs). A
    time budget counts from ``started_at`` (the job's start on ``runtime.budget``'s clock; None: now)."""
    reporter = reporter or ProgressReporter(f"pretrain-{config.stage}", config.iterations, enabled=False)
    state = state or PretrainState()
    model.to(plan.device)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    if config.stage == Stage.LOCAL:
        model.encoder.eval()  # frozen: its BatchNorm statistics stay as pre-trained
    optimizer = torch.optim.Adam(trainable, lr=config.learning_rate)
    generator = torch.Generator(device=plan.device).manual_seed(config.seed)
    scaler = make_grad_scaler(plan)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
    if state.scaler:
        scaler.load_state_dict(state.scaler)
    if state.generator is not None:
        generator.set_state(state.generator)
    network: nn.Module = StageNetwork(model, config)
    if context.enabled:
        network = DistributedDataParallel(network, device_ids=[plan.device.index] if plan.device.type == "cuda"
                                          else None)
    objective = ContrastiveObjective(network, config, plan, context)
    first_step = state.step
    reporter.started(first_step=state.step, strategy=config.strategy, device=plan.describe(),
                     slices=bank.num_slices, volumes=bank.num_volumes)
    start = time.perf_counter()
    keep_on_stop()
    schedule = StepSchedule(state.planned or config.iterations, config.budget_on(plan.device.type),
                            PlateauRule.for_iterations(config.iterations) if config.plateau_stop else None,
                            first_step=state.step, fixed=state.planned is not None, started_at=started_at).start()
    step, going = state.step, state.step < (state.planned or config.iterations)
    while going:
        step += 1
        loss = objective.loss(objective.draw(bank, generator), generator)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss * context.world_size).backward()  # DDP averages: × world size restores the global gradient
        scaler.step(optimizer)
        scaler.update()
        state.losses.append(float(loss.detach()))
        check_finite_losses(state.losses[-1:], step, config.learning_rate, f"pretrain-{config.stage}")
        state.step = step
        reporter.update(step, loss=state.losses[-1])
        if any_rank(stop_requested() is not None, context, plan.device):
            state.stopped = Stopped(step, config.iterations, stop_requested() or "SIGTERM")
            _keep_training_state(state, optimizer, generator, scaler)  # a stopped run can be continued
            reporter.stopped(step, state.stopped.signal)
            break
        going = schedule.on_step(step, state.losses)
        if schedule.budget_s is not None:  # each rank plans from its own clock; the plateau rule sees the same
            going = _agreed(going, context, plan.device)  # (global) loss everywhere and needs no agreement
        if schedule.planned:
            state.planned = schedule.iterations
        if on_checkpoint is not None and context.is_main and (step % config.checkpoint_every == 0 or not going):
            _keep_training_state(state, optimizer, generator, scaler)
            on_checkpoint(state)
    if schedule.reason:
        state.ended_early = schedule.reason
        reporter.log(f"{step - first_step} steps instead of {config.iterations - first_step}: {schedule.reason}")
    reporter.log(f"{config.stage} stage ({config.strategy}): {state.step - first_step} steps in "
                 f"{time.perf_counter() - start:.0f} s")
    model.to(memory_format=torch.contiguous_format)
    return state


def _keep_training_state(state: PretrainState, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                         scaler) -> None:
    """Copy into ``state`` what continuing needs besides the weights and the step."""
    state.optimizer, state.generator, state.scaler = optimizer.state_dict(), generator.get_state(), scaler.state_dict()
