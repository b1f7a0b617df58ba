"""Data-parallel pre-training under ``torchrun`` with torch.distributed (NCCL on GPUs, gloo on CPUs).

Every rank draws the same global batch (same seed), embeds its own contiguous shard through the DDP-wrapped
network, and gathers all embeddings, so the contrastive loss sees the whole global batch. The gathered copy of a
rank's own rows is replaced by its local tensor, so gradients flow to them; since every rank computes the same loss
and DDP averages gradients, the loss is scaled by the world size to give exactly the single-process gradient.
BatchNorm statistics are per rank, as with any DDP training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """rank and world_size of this process (0 and 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: int) -> slice:
        """This rank's contiguous share of ``rows`` (which the world size must divide)."""
        if rows % self.world_size:
            raise ValueError(f"a global batch of {rows} cannot be split evenly over {self.world_size} processes; "
                             "choose --volumes-per-batch so that it can")
        size = rows // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)


def start(device: str = "auto") -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment (a no-op without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world_size, local_rank)


def stop(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_rows(local: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """(n, ...) rows of every rank -> (world_size · n, ...) in rank order; gradients flow to this rank's rows."""
    if not context.enabled:
        return local
    copies = [torch.empty_like(local) for _ in range(context.world_size)]
    dist.all_gather(copies, local.detach().contiguous())
    copies[context.rank] = local
    return torch.cat(copies)


def any_rank(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank (every rank must ask at the same point); ``flag`` itself when alone."""
    if not context.enabled:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def local_device(context: DistributedContext, device: str) -> str:
    """The device name for this rank: its own GPU under NCCL, else ``device``."""
    if context.enabled and torch.cuda.is_available() and device in ("auto", "cuda"):
        return f"cuda:{context.local_rank}"
    return device
