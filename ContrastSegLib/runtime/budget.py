"""Schedules a user can afford: a time budget that sets the number of steps from the pace measured while the run
goes on, and a stop when the training loss has reached a plateau.

Time budget. The budget is what the user waits: the job's wall time from its start (``started_at``, the process
start for a command-line job) to the written checkpoint. After every step the pace is measured anew over the last
``PACE_WINDOW`` steps (the first step, which allocates and warms up, never counts), and the run takes as many steps
as end it at ``END_SHARE`` of the budget, less what comes after the last step (``tail_steps`` steps' worth of work,
e.g. the final check over the training slices, plus ``TAIL_S`` for writing the checkpoint and leaving the process);
never more than the configured iterations. A machine whose load changes during the run changes the pace, and so the
plan, within ``PACE_WINDOW`` steps.

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

import collections
import math
import re
import time
from dataclasses import dataclass, field

from .process_start import process_age_s

PACE_WINDOW = 20  # the most recent steps whose wall time sets the pace
END_SHARE = 0.98  # of the budget: when a budgeted job aims to have written its checkpoint
TAIL_S = 1.0  # seconds after the last step and its tail work: writing the checkpoint, leaving the process

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


def clock() -> float:
    """Now, on the budget's clock."""
    return _now()


def process_started_at() -> float:
    """When this process started, on the budget's clock (``process_start``)."""
    return _now() - process_age_s()


def iterations_for_budget(left_s: float, steps_done: int, step_s: float, max_iterations: int) -> int:
    """Total steps of a run that has done ``steps_done`` steps, has ``left_s`` seconds left for more and takes
    ``step_s`` per step: within [``steps_done``, ``max_iterations``]."""
    more = math.floor(max(0.0, left_s) / step_s) if step_s > 0 else max_iterations
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
    """How many steps one run takes: ``iterations`` (at most), re-planned after every step under a time budget;
    ``reason`` says why it ended early or is empty. ``started_at``: the job's start on the budget clock (None: when
    :meth:`start` is called); ``tail_steps``: work after the last step, in steps' time; ``fixed``: the iterations
    were planned before (a resumed run) and stay. Call :meth:`start` before the first step (``first_step``: the steps
    a resumed run had done), then :meth:`on_step` after each (``step`` counted as the loop does) to know whether to
    go on. ``pace`` is the latest measured seconds per step."""

    iterations: int
    budget_s: float | None = None
    plateau: PlateauRule | None = None
    first_step: int = 0
    reason: str = ""
    fixed: bool = False
    started_at: float | None = None
    tail_steps: float = 0.0
    pace: float | None = None
    planned: bool = False
    _limit: int = 0
    _ends: collections.deque = field(default_factory=lambda: collections.deque(maxlen=PACE_WINDOW + 1))

    def start(self) -> "StepSchedule":
        if self.started_at is None:
            self.started_at = _now()
        self._limit, self.planned = self.iterations, self.fixed
        return self

    def on_step(self, step: int, losses: list[float], start: int = 0) -> bool:
        """``losses[start:]``: this run's curve (``start`` > 0 where ``losses`` also holds earlier rounds')."""
        if self.budget_s is not None and not self.fixed:
            self._replan(step)
        if self.plateau is not None and self.plateau.plateaued(losses, start):
            self.reason, self.iterations = "the training loss reached a plateau", step
            return False
        return step < self.iterations

    def restart_pace(self) -> None:
        """Measure the pace afresh from the next step on (the step itself changed, e.g. its side)."""
        self._ends.clear()

    def _replan(self, step: int) -> None:
        now = _now()
        self._ends.append(now)  # end of each step from the warm-up step on: the differences exclude the warm-up
        if len(self._ends) < 2:
            return
        self.pace = (self._ends[-1] - self._ends[0]) / (len(self._ends) - 1)
        left = self.started_at + self.budget_s * END_SHARE - TAIL_S - self.pace * self.tail_steps - now
        self.iterations = iterations_for_budget(left, step, self.pace, self._limit)
        self.planned = True
        self.reason = (f"the time budget of {format_duration(self.budget_s)} ({self.pace:.2f} s per step)"
                       if self.iterations < self._limit else "")
