"""The learning rate over a fine-tuning run, as a factor of ``--lr`` at the share ``p`` (0..1) of the planned steps
done. Under a time budget the plan is re-measured while the run goes on, so the factor follows the budget.

- constant: 1 throughout (the paper's).
- cosine: 0.5 · (1 + cos(π p)), annealed to 0 at the end.
- warmup-decay: a linear warm-up from ``WARMUP_FLOOR`` over the first ``WARMUP`` share, 1 until the last ``DECAY``
  share, then a linear decay to ``DECAY_FLOOR`` at the end: the full rate for most of the run (a structure learned
  late still gets it), and the last steps settle the weights.

    >>> [round(warmup_decay(p), 3) for p in (0.0, 0.05, 0.5, 0.85, 1.0)]
    [0.1, 1.0, 1.0, 0.525, 0.05]
"""

from __future__ import annotations

import math
from typing import Callable

from ..choices import LrSchedule

WARMUP, WARMUP_FLOOR = 0.05, 0.1
DECAY, DECAY_FLOOR = 0.3, 0.05


def warmup_decay(p: float) -> float:
    if p < WARMUP:
        return WARMUP_FLOOR + (1 - WARMUP_FLOOR) * p / WARMUP
    if p <= 1 - DECAY:
        return 1.0
    return 1 - (1 - DECAY_FLOOR) * (p - (1 - DECAY)) / DECAY


LR_FACTORS: dict[LrSchedule, Callable[[float], float]] = {
    LrSchedule.CONSTANT: lambda p: 1.0,
    LrSchedule.COSINE: lambda p: 0.5 * (1 + math.cos(math.pi * p)),
    LrSchedule.WARMUP_DECAY: warmup_decay,
}
