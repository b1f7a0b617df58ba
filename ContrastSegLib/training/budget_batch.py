"""A batch that fits the time budget: on a slow CPU, many small steps teach more than a few large ones.

Measured on brain-offline (one labeled volume, ``benchmarks/RESULTS.md`` §5), the loss fell by the step, nearly
alike at batch 4 and batch 16 (0.895 and 0.897 after 490 steps): the number of steps, not of images, set how soon
the structures appeared, and 661 steps of batch 4 learned two structures in the five minutes in which 58 steps of
batch 16 learned none. So when a
time budget applies, the pace of the first ``BATCH_PROBE_STEPS`` steps after the warm-up decides: if fewer than
``MIN_BUDGET_STEPS`` steps fit, the batch shrinks by planned / needed, down to ``MIN_BUDGET_BATCH``, a step costing
about its batch. (Smaller patches instead were worse: patches of 64 px drawn around the structures, 300 steps,
learned none, where the same steps on a fixed window did.) The checkpoint records the batch trained with.

    >>> budget_batch(16, planned_steps=1500), budget_batch(16, planned_steps=750), budget_batch(16, planned_steps=90)
    (16, 8, 4)
"""

from __future__ import annotations

import math

MIN_BUDGET_STEPS = 1500  # steps a budgeted model gets at least, where a smaller batch allows it
MIN_BUDGET_BATCH = 4  # slices: the smallest batch a budget shrinks to (BatchNorm statistics stay usable)
BATCH_PROBE_STEPS = 5  # steps after the warm-up step whose pace decides


def budget_batch(batch: int, planned_steps: int, min_steps: int = MIN_BUDGET_STEPS) -> int:
    """The batch for a run that fits ``planned_steps`` steps of ``batch`` into its budget: unchanged when that is at
    least ``min_steps``, else scaled down by planned / needed, at least ``MIN_BUDGET_BATCH``, never larger."""
    if planned_steps >= min_steps:
        return batch
    return min(batch, max(MIN_BUDGET_BATCH, math.floor(batch * planned_steps / min_steps)))
