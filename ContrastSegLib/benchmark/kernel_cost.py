"""Cost of the loss kernels alone (forward + backward on random inputs): the supervised-local modes against "dense"
at one size (time and peak memory), and the global and local contrastive losses at the shapes a pre-training step of
the paper UNet feeds them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import global_contrastive_loss, local_contrastive_loss
from ..models import UNetConfig
from ..settings import GlobalStrategy, LocalStrategy, PretrainConfig, SupervisedLocalMode
from .supervised_local_cost import BATCH, CHANNELS, forward_backward, make_inputs, measure_memory
from .timing import interleaved_medians

SUPERVISED_LOCAL_MODES = (SupervisedLocalMode.DENSE, SupervisedLocalMode.STRIDE, SupervisedLocalMode.BLOCK,
                          SupervisedLocalMode.EXACT)  # "dense" first: the reference of the ratios
GLOBAL_VIEWS = 3  # G^D embeds x, x̂ and x̃ of every slice


@dataclass(frozen=True)
class KernelSizes:
    """slc_side: S of the (16, 64, S, S) supervised-local features; crop, volumes_per_batch and partitions: the
    pre-training batch whose embeddings (global) and feature maps (local) the contrastive kernels receive."""

    slc_side: int
    crop: int
    volumes_per_batch: int
    partitions: int
    warmup: int
    rounds: int


@dataclass(frozen=True)
class KernelCost:
    """Median seconds of one forward + backward call; peak_bytes: growth of the peak memory during the call (None
    where not measured)."""

    name: str
    shape: str
    seconds: float
    peak_bytes: int | None = None


def tag_ids(volumes: int, partitions: int, views: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Image, volume and partition ids (each (volumes·partitions·views,)) of volumes × partitions slices ordered
    volume-major, the whole list repeated ``views`` times."""
    slices = torch.arange(volumes * partitions, device=device)
    return slices.repeat(views), (slices // partitions).repeat(views), (slices % partitions).repeat(views)


def supervised_local_costs(side: int, warmup: int, rounds: int, device: torch.device) -> list[KernelCost]:
    """Each mode of ``SUPERVISED_LOCAL_MODES`` on (16, 64, S, S) features: time interleaved in this process, peak
    memory ("call": above the inputs) of one call in a fresh process with this process's torch threads."""
    features, labels = make_inputs(side, device)
    variants = {mode: (lambda mode=mode: forward_backward(features, labels, mode)) for mode in SUPERVISED_LOCAL_MODES}
    seconds = interleaved_medians(variants, warmup, rounds, device)
    shape = f"{BATCH} × {CHANNELS} × {side}²"
    return [KernelCost(mode, shape, seconds[mode],
                       measure_memory(mode, side, device.type, torch.get_num_threads())["call"])
            for mode in SUPERVISED_LOCAL_MODES]


def contrastive_costs(sizes: KernelSizes, device: torch.device) -> list[KernelCost]:
    """G^D on (m·S·3, 128) embeddings and L^R on two (m·S, C, h, w) maps of the first l decoder blocks of the paper
    UNet (stage defaults l = 3, K = 3, τ = 0.1), timed interleaved."""
    config = PretrainConfig()
    slices = sizes.volumes_per_batch * sizes.partitions
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(slices * GLOBAL_VIEWS, 128, generator=generator).to(device).requires_grad_(True)
    ids = tag_ids(sizes.volumes_per_batch, sizes.partitions, GLOBAL_VIEWS, device)
    unet = UNetConfig()
    channels = unet.decoder_channels[config.decoder_blocks - 1]
    side = sizes.crop // unet.divisor * 2 ** config.decoder_blocks
    maps = [torch.randn(slices, channels, side, side, generator=generator).to(device).requires_grad_(True)
            for _ in range(2)]
    _, volume_ids, partition_ids = tag_ids(sizes.volumes_per_batch, sizes.partitions, 1, device)

    def global_call() -> None:
        embeddings.grad = None
        global_contrastive_loss(embeddings, *ids, GlobalStrategy.GD, config.temperature).backward()

    def local_call() -> None:
        for leaf in maps:
            leaf.grad = None
        local_contrastive_loss(*maps, config.region_size, config.temperature, LocalStrategy.LR, volume_ids,
                               partition_ids).backward()

    seconds = interleaved_medians({"global": global_call, "local": local_call}, sizes.warmup, sizes.rounds, device)
    return [KernelCost("global contrastive G^D", f"{len(embeddings)} × 128", seconds["global"]),
            KernelCost("local contrastive L^R", f"2 × {slices} × {channels} × {side}², K = {config.region_size}",
                       seconds["local"])]
