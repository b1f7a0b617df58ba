"""Schedules a user can afford: a time budget that sets the number of steps from the measured step time, and a
stop when the training loss has reached a plateau.

Time budget. The first ``PROBE_STEPS`` steps after one warm-up step are timed; the run then takes as many steps as
fit into ``BUDGET_SHARE`` of what is left of the budget at that pace, never more than the configured iterations
(the rest of the budget is for reading, pseudo-labelling and writing).

A chain's budget (pre-training stages, then fine-tuning, as in ``contrastseg benchmark --time-budget`` and the
Slicer module's "Pre-train now"): each pre-training stage gets a third of it (``STAGE_SHARE``), fine-tuning what is
left, and at least a third; so a chain of up to two stages fits in the budget.

Plateau rule. The loss curve is cut into windows of ``window`` steps (default: a twentieth of the iterations, at
least 50). After each full window its mean is compared with the lowest mean of the earlier windows; when
``patience`` windows in a row fail to lower it by at least ``min_drop`` (relative), training stops. Nothing stops
before ``min_windows`` windows.

    >>> rule = PlateauRule(window=2, patience=2, min_drop=0.01, min_windows=3)
    >>> [rule.plateaued([1.0, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5][:n]) for n in (4, 6, 8)]
    [False, False, True]
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

PROBE_STEPS = 10  # timed steps that set the pace
BUDGET_SHARE = 0.95  # of the budget left after the probe, spent on training steps

STAGE_SHARE = 1 / 3  # of a chain's budget, for each pre-training stage

_UNITS = {"s": 1, "m": 60, "h": 3600}
_now = time.perf_counter  # the clock of the budget (tests replace it)


def parse_duration(text: str) -> float:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or plain seconds ``"600"`` -> seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text).lower())
    if not match or float(match[1]) <= 0:
        raise ValueError(f"not a duration: {text!r}")
    return float(match[1]) * _UNITS[match[2] or "s"]


def format_duration(seconds: float) -> str:
    """The shortest exact text :func:`parse_duration` reads back: 600 -> "10m", 90 -> "90s"."""
    for unit in ("h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def iterations_for_budget(budget_s: float, elapsed_s: float, steps_done: int, step_s: float,
                          max_iterations: int) -> int:
    """Total steps of a run that has spent ``elapsed_s`` of ``budget_s`` on ``steps_done`` steps and takes
    ``step_s`` per step: the steps done, plus those that fit into ``BUDGET_SHARE`` of the rest; within
    [``steps_done``, ``max_iterations``]."""
    left = max(0.0, budget_s * BUDGET_SHARE - elapsed_s)
    more = math.floor(left / step_s) if step_s > 0 else max_iterations
    return max(steps_done, min(max_iterations, steps_done + more))


def stage_budget(chain_budget_s: float | None) -> float | None:
    """The budget of one pre-training stage of a chain."""
    return None if chain_budget_s is None else chain_budget_s * STAGE_SHARE


def finetune_budget(chain_budget_s: float | None, spent_s: float) -> float | None:
    """Fine-tuning's budget after the chain's pre-training stages took ``spent_s``: the rest, at least a third."""
    if chain_budget_s is None:
        return None
    return max(chain_budget_s * STAGE_SHARE, chain_budget_s - spent_s)


@dataclass(frozen=True)
class PlateauRule:
    """See the module docstring; :meth:`for_iterations` gives the default window for a run length."""

    window: int
    patience: int = 3
    min_drop: float = 0.01
    min_windows: int = 5

    @classmethod
    def for_iterations(cls, iterations: int) -> "PlateauRule":
        return cls(window=max(50, iterations // 20))

    def plateaued(self, losses: list[float], start: int = 0) -> bool:
        """Whether the curve ``losses[start:]`` (one per step so far) has reached the plateau: only at a window's
        end, so between window ends nothing is computed (or copied)."""
        steps = len(losses) - start
        count = steps // self.window
        if count < max(self.min_windows, self.patience + 1) or steps % self.window:
            return False
        means = [sum(losses[start + i * self.window:start + (i + 1) * self.window]) / self.window
                 for i in range(count)]
        best = min(means[:count - self.patience])
        return all(mean > best * (1 - self.min_drop) for mean in means[count - self.patience:])


@dataclass
class StepSchedule:
    """How many steps one run takes: ``iterations`` until a time budget replaces it after the probe; ``reason``
    says why it ended early or is empty. Call :meth:`start` before the first step (``first_step``: the steps a
    resumed run had done), then :meth:`on_step` after each (``step`` counted as the loop does) to know whether to
    go on."""

    iterations: int
    budget_s: float | None = None
    plateau: PlateauRule | None = None
    first_step: int = 0
    reason: str = ""
    planned: bool = False
    started_at: float = 0.0
    probe_started_at: float = 0.0

    def start(self) -> "StepSchedule":
        self.started_at = _now()
        return self

    def on_step(self, step: int, losses: list[float], start: int = 0) -> bool:
        """``losses[start:]``: this run's curve (``start`` > 0 where ``losses`` also holds earlier rounds')."""
        if self.budget_s is not None and not self.planned:
            self._probe(step)
        if self.plateau is not None and self.plateau.plateaued(losses, start):
            self.reason, self.iterations = "the training loss reached a plateau", step
            return False
        return step < self.iterations

    def _probe(self, step: int) -> None:
        now, done = _now(), step - self.first_step
        if done == 1:  # the warm-up step (allocation, first kernels) does not set the pace
            self.probe_started_at = now
        elif done == 1 + PROBE_STEPS:
            pace = (now - self.probe_started_at) / PROBE_STEPS
            planned = iterations_for_budget(self.budget_s, now - self.started_at, step, pace, self.iterations)
            if planned < self.iterations:
                self.reason = f"the time budget of {format_duration(self.budget_s)} ({pace:.2f} s per step)"
            self.iterations, self.planned = planned, True
