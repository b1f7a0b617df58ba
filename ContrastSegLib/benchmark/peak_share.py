"""Share of the machine's matmul peak that a training step reaches: the FLOPs of one step as ``FlopCounterMode``
counts them (convolutions and matmuls, forward + backward; elementwise work, losses and Adam are not counted) and
the peak of a large square matmul measured in the same run."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from .timing import interleaved_medians, repeat


def counted_flops(run: Callable[[], object]) -> int:
    """FLOPs that ``FlopCounterMode`` counts in one call of ``run``."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops()


def matmul_peak_gflops(side: int, dtype: torch.dtype, device: torch.device, warmup: int = 2, rounds: int = 5,
                       calls_per_round: int = 10) -> float:
    """GFLOP/s of a (side, side) × (side, side) matmul in ``dtype`` on ``device``: median of ``rounds`` timed rounds
    of ``calls_per_round`` calls."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(side, side, generator=generator).to(device=device, dtype=dtype) for _ in range(2))
    seconds = interleaved_medians({"matmul": repeat(calls_per_round, lambda: torch.mm(a, b))}, warmup, rounds,
                                  device)["matmul"]
    return 2 * side ** 3 * calls_per_round / seconds / 1e9


def share_of_peak(flops_per_step: int | None, seconds_per_step: float, peak_gflops: float | None) -> float | None:
    """Counted FLOPs per second of a step as a share of the peak (None where either is unknown)."""
    if not flops_per_step or not peak_gflops:
        return None
    return flops_per_step / seconds_per_step / 1e9 / peak_gflops
