"""Side-by-side timing shared by the benchmark scripts: variants called round-robin, medians reported."""

from __future__ import annotations

import statistics
import time
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
