"""Peak GPU memory of one fine-tuning step of the paper UNet for growing batches, up to the largest that fits.

Each batch size gets a fresh model and optimiser; after two steps (Adam's state exists from the first) the peak of
the third is read. "process" adds the CUDA context (the device's used memory right after that step, less what
torch's allocator holds then: context, cuDNN and cuBLAS handles) to the peak that the allocator reserved: what
``nvidia-smi`` would show for the job, which is what the Slicer module's memory planner compares with the free memory.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch

from ..runtime.precision import ExecutionPlan
from ..settings import DEFAULT_CHANNELS
from ..training.finetune import TrainingStep
from .timing import synchronize
from .workloads import fixed_batch, paper_unet

STEPS_BEFORE_PEAK = 2


@dataclass(frozen=True)
class StepMemory:
    """Bytes at one batch size; None where not measured (the CPU), ``fits`` False where the step ran out of
    memory."""

    batch: int
    fits: bool
    allocated: int | None = None
    reserved: int | None = None
    process: int | None = None


def cuda_context_bytes(device: torch.device) -> int:
    """Memory the device holds beyond torch's allocator (the CUDA context, cuDNN and cuBLAS handles; other processes
    on the same GPU would count too)."""
    free, total = torch.cuda.mem_get_info(device)
    return total - free - torch.cuda.memory_reserved(device)


def step_memory(plan: ExecutionPlan, crop: int, batch: int, channels: tuple[int, ...] = DEFAULT_CHANNELS
                ) -> StepMemory:
    """Run ``STEPS_BEFORE_PEAK`` + 1 fine-tuning steps on (batch, 1, crop, crop) images; the last one's peaks."""
    on_cuda = plan.device.type == "cuda"
    try:
        step = TrainingStep(paper_unet(plan, 0, channels), plan, learning_rate=1e-3)
        images, targets = fixed_batch(batch, crop, 0, plan.device)
        for _ in range(STEPS_BEFORE_PEAK):
            step(images, targets)
        synchronize(plan.device)
        if on_cuda:
            torch.cuda.reset_peak_memory_stats(plan.device)
        step(images, targets)
        synchronize(plan.device)
        if not on_cuda:
            return StepMemory(batch, True)
        reserved = torch.cuda.max_memory_reserved(plan.device)
        return StepMemory(batch, True, torch.cuda.max_memory_allocated(plan.device), reserved,
                          reserved + cuda_context_bytes(plan.device))
    except torch.cuda.OutOfMemoryError:
        return StepMemory(batch, False)
    finally:
        step = images = targets = None
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()


def memory_sweep(plan: ExecutionPlan, crop: int, first_batch: int, largest_batch: int,
                 channels: tuple[int, ...] = DEFAULT_CHANNELS) -> list[StepMemory]:
    """``step_memory`` at first_batch, doubled each time, until a batch does not fit or ``largest_batch`` ran."""
    rows, batch = [], first_batch
    while batch <= largest_batch:
        rows.append(step_memory(plan, crop, batch, channels))
        if not rows[-1].fits:
            break
        batch *= 2
    return rows
