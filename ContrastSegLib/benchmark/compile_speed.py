"""``torch.compile`` against eager: the fine-tuning step and the prediction forward pass of the paper UNet, each
variant with its own freshly initialised model, timed interleaved after the compile (the first call, reported
apart). ``backend``: "inductor" (what a user gets) or "eager" (only the graph capture: where no compiler is at
hand, it checks that the network compiles). Run by ``benchmarks/bench_compile.py`` and ``benchmarks/gpu_check.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..runtime.precision import ExecutionPlan
from ..settings import DEFAULT_CHANNELS
from ..training.finetune import TrainingStep
from .timing import interleaved_medians, synchronize
from .workloads import fixed_batch, paper_unet


@dataclass(frozen=True)
class CompileSpeed:
    """Median seconds per call of each variant and the seconds of the first compiled call."""

    name: str
    eager_s: float
    compiled_s: float
    compile_s: float

    @property
    def speedup(self) -> float:
        return self.eager_s / self.compiled_s


def _first_call_seconds(run, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def compile_speeds(plan: ExecutionPlan, crop: int, batch: int, warmup: int, rounds: int,
                   backend: str = "inductor", channels: tuple[int, ...] = DEFAULT_CHANNELS) -> list[CompileSpeed]:
    """Training step on (batch, 1, crop, crop) images with one-hot targets, and the no-grad forward of the same
    images under the plan's autocast."""
    images, targets = fixed_batch(batch, crop, 0, plan.device)
    eager_step = TrainingStep(paper_unet(plan, 0, channels), plan, 1e-3)
    compiled_step = TrainingStep(paper_unet(plan, 0, channels), plan, 1e-3)
    compiled_step.model = torch.compile(compiled_step.model, backend=backend)
    eager_net, compiled_net = paper_unet(plan, 0, channels).eval(), paper_unet(plan, 0, channels).eval()
    compiled_forward = torch.compile(compiled_net, backend=backend)
    inputs = images.contiguous(memory_format=torch.channels_last) if plan.channels_last else images

    def forward(network):
        def run() -> None:
            with torch.no_grad(), plan.autocast():
                network(inputs)
        return run

    pairs = {"training step": (lambda: eager_step(images, targets), lambda: compiled_step(images, targets)),
             "prediction forward": (forward(eager_net), forward(compiled_forward))}
    speeds = []
    for name, (eager, compiled) in pairs.items():
        compile_s = _first_call_seconds(compiled, plan.device)
        seconds = interleaved_medians({"eager": eager, "compiled": compiled}, warmup, rounds, plan.device)
        speeds.append(CompileSpeed(name, seconds["eager"], seconds["compiled"], compile_s))
    return speeds
