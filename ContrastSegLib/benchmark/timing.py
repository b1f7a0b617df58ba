"""Side-by-side timing for benchmarks (variants called round-robin, medians reported) and the one-line description
of the machine printed with every benchmark table."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from ..runtime.precision import plan_execution


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(variants: dict[str, Callable[[], None]], warmup: int, rounds: int,
                        device: torch.device) -> dict[str, float]:
    """Median seconds per call of each variant, called round-robin (A, B, A, B, ...) after untimed warm-up, so that
    a slow-down from other work on a shared machine hits every variant alike."""
    for _ in range(warmup):
        for run in variants.values():
            run()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def repeat(steps: int, run: Callable[[], object]) -> Callable[[], None]:
    """``run`` called ``steps`` times in a row, as one timed unit."""
    def repeated() -> None:
        for _ in range(steps):
            run()
    return repeated


def _cpuinfo() -> str:
    path = Path("/proc/cpuinfo")
    return path.read_text(errors="ignore") if path.exists() else ""


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (from /proc/cpuinfo where it exists)."""
    cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                platform.processor() or "unknown")


def machine_description(device: torch.device) -> str:
    """CPU model, cores, torch threads, GPU (if used), torch and Python versions, in one line."""
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"device {device}{gpu}; CPU {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch "
            f"threads; torch {torch.__version__}, Python {platform.python_version()}")


def machine_with_plans(device: str) -> str:
    """CPU model with its native bf16 flags, cores, threads, GPU (if any), versions, and the execution plans that
    ``plan_execution(device, "auto")`` and ``"fp32"`` choose, in one line."""
    cpuinfo = _cpuinfo()
    flags = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in cpuinfo]
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"CPU {cpu_model(cpuinfo)} ({', '.join(flags) or 'no native bf16'}), {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads{gpu}; torch {torch.__version__}, Python "
            f"{platform.python_version()}; plan auto: {plan_execution(device, 'auto').describe()}, "
            f"plan fp32: {plan_execution(device, 'fp32').describe()}")
