"""A training side that fits the time budget: on a slow CPU, fewer, larger steps teach less than many smaller ones.

When the training side came from the data (no ``--crop-size``) and a time budget applies, the pace of the first
``SIDE_PROBE_STEPS`` steps after the warm-up decides: if fewer than ``MIN_BUDGET_STEPS`` steps of the data's side fit
into the budget, training goes on in smaller patches (mostly around the labeled structures, ``sampling.labeled``),
the largest multiple of the UNet's divisor whose steps, costing about side², let that many fit; never smaller than
``MIN_BUDGET_SIDE``. Prediction still covers whole slices (the checkpoint records the side trained at).

    >>> budget_side(160, planned_steps=160, divisor=32)  # 160 · √(160/1000) = 64
    64
    >>> budget_side(160, planned_steps=400, divisor=32), budget_side(128, planned_steps=2000, divisor=32)
    (96, 128)
"""

from __future__ import annotations

import math

MIN_BUDGET_STEPS = 1000  # steps a budgeted model gets at least, where a smaller side allows it
MIN_BUDGET_SIDE = 64  # px: the smallest side a budget shrinks training to (96 mm of context at 1.5 mm)
SIDE_PROBE_STEPS = 5  # steps after the warm-up step whose pace decides the side


def budget_side(side: int, planned_steps: int, divisor: int, min_steps: int = MIN_BUDGET_STEPS,
                smallest: int = MIN_BUDGET_SIDE) -> int:
    """The training side for a run that fits ``planned_steps`` steps of ``side`` px into its budget: ``side`` when
    that is at least ``min_steps``, else side · √(planned_steps / min_steps) rounded down to a multiple of
    ``divisor``, at least ``smallest`` (and never above ``side``)."""
    if planned_steps >= min_steps or side <= smallest:
        return side
    fitting = int(side * math.sqrt(planned_steps / min_steps)) // divisor * divisor
    return min(side, max(smallest, fitting))
