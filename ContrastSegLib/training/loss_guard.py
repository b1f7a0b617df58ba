"""The stop of a training run whose loss is no longer a finite number: nothing is written from it."""

from __future__ import annotations

import math
from typing import Iterable

from ..errors import ContrastSegError


def check_finite_losses(losses: Iterable[float], first_step: int, learning_rate: float, stage: str) -> None:
    """Refuse the first non-finite value of ``losses`` (those of steps ``first_step``, ``first_step + 1``, ...)."""
    for step, value in enumerate(losses, first_step):
        if not math.isfinite(value):
            raise ContrastSegError(
                f"--lr {learning_rate:g}: the {stage} loss became {value} at step {step}, so training stopped and "
                f"wrote nothing; lower --lr (e.g. {learning_rate / 10:g}) or use --precision fp32")
