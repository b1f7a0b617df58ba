"""Shared by the benchmark scripts: side-by-side timing (variants called round-robin, medians reported) and the
machine description printed with every table."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch


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


def machine_description(device: torch.device) -> str:
    """CPU model, cores, torch threads, GPU (if used), torch and Python versions, in one line."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="ignore") if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown")
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"device {device}{gpu}; CPU {model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; "
            f"torch {torch.__version__}, Python {platform.python_version()}")
