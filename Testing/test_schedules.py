"""Schedules a user can afford: the time budget's arithmetic, the plateau rule on made-up loss curves, and both
ending real training runs early (no timing: the budget's clock is replaced by a counter)."""

import io
from dataclasses import replace
import itertools

import numpy as np
import pytest
import torch

from cli_helpers import TINY_TRAINING, assert_refused, run_cli
from ContrastSegLib.data.phantom import make_phantom
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.preprocess import preprocess_volume
from ContrastSegLib.runtime import budget
from ContrastSegLib.runtime.budget import (END_SHARE, PACE_WINDOW, TAIL_S, PlateauRule, StepSchedule,
                                           format_duration, iterations_for_budget, parse_duration)
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.runtime.progress import ProgressReporter
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
from ContrastSegLib.training.budget_batch import MIN_BUDGET_BATCH, MIN_BUDGET_STEPS, budget_batch
from ContrastSegLib.training.finetune import finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("text, seconds", [("10m", 600), ("90s", 90), ("1.5h", 5400), ("600", 600), ("2M", 120)])
def test_durations_read_and_write_back(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0", "10 minutes", "1e3"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_bad_time_budget_is_one_error_line(capsys, tmp_path):
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", tmp_path, "--out", tmp_path / "m.pt",
                                *TINY_TRAINING, "--time-budget", "soon")
    assert_refused(code, stdout, err, "--time-budget soon", "e.g. 10m")


def test_budget_arithmetic():
    # 558 s left at 0.5 s a step: 1116 more steps after the 11 done
    assert iterations_for_budget(558, 11, 0.5, 10_000) == 11 + 1116
    assert iterations_for_budget(558, 11, 0.5, 800) == 800  # never more than the iterations asked
    assert iterations_for_budget(-8, 11, 0.5, 800) == 11  # already over: stop now, never go back
    assert iterations_for_budget(100, 0, 0.0, 50) == 50  # an unmeasurably fast step: all the iterations


class Clock:
    """A clock the test moves: ``advance`` by a step's seconds; the budget reads ``now``."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_schedule(schedule: StepSchedule, clock: Clock, step_seconds) -> tuple[int, float]:
    """Steps until the schedule says stop, each taking ``step_seconds(step)``; (steps, the clock at the end)."""
    step = 0
    while True:
        step += 1
        clock.now += step_seconds(step)
        if not schedule.on_step(step, []):
            return step, clock.now


def test_the_schedule_plans_from_the_recent_pace_after_a_warm_up_step(monkeypatch):
    """Start at 0 (the job's start, 3 s before training: reading and preprocessing); step 1 (warm-up) takes 5 s,
    then 2 s a step: the plan after step 11 uses 2 s, not (5 + 20) / 11, and ends the job at END_SHARE of the
    budget less the tail."""
    clock = Clock()
    monkeypatch.setattr(budget, "_now", clock)
    clock.now = 3.0
    schedule = StepSchedule(iterations=1000, budget_s=100, started_at=0.0).start()
    steps, end = run_schedule(schedule, clock, lambda step: 5.0 if step == 1 else 2.0)
    assert schedule.pace == 2.0 and "time budget of 100s (2.00 s per step)" in schedule.reason
    deadline = 100 * END_SHARE - TAIL_S  # 97 s: the last step ends within one step of it, never after
    assert deadline - 2.0 < end <= deadline and steps == 1 + int((deadline - 3 - 5) // 2)


def test_a_machine_that_slows_down_mid_run_is_followed_within_the_pace_window(monkeypatch):
    """2 s a step, then 6 s a step from step 20 on (another job started): a plan fixed from the first steps would
    overrun the budget by far; the re-measured one still ends within one slow step of the deadline."""
    clock = Clock()
    monkeypatch.setattr(budget, "_now", clock)
    schedule = StepSchedule(iterations=10_000, budget_s=600, started_at=0.0).start()
    steps, end = run_schedule(schedule, clock, lambda step: 2.0 if step < 20 else 6.0)
    deadline = 600 * END_SHARE - TAIL_S
    assert deadline - 6.0 < end <= deadline
    assert 0.95 * 600 <= end + TAIL_S <= 600  # what the user waits, with the checkpoint written
    fast_then_fixed = 19 + (deadline - 38) // 2  # what the pace of the first steps alone would have planned
    assert steps < fast_then_fixed / 2
    assert len(schedule._ends) == PACE_WINDOW + 1


def test_the_tail_after_the_last_step_is_kept_free(monkeypatch):
    """``tail_steps`` steps' worth of work after the last step (the final check): the run ends that much earlier."""
    clock = Clock()
    monkeypatch.setattr(budget, "_now", clock)
    plain = StepSchedule(iterations=10_000, budget_s=300, started_at=0.0).start()
    steps_plain, _ = run_schedule(plain, clock, lambda step: 1.0)
    clock.now = 0.0
    with_tail = StepSchedule(iterations=10_000, budget_s=300, started_at=0.0, tail_steps=20).start()
    steps_tail, end = run_schedule(with_tail, clock, lambda step: 1.0)
    assert steps_plain - steps_tail == 20 and end + 20 <= 300 * END_SHARE - TAIL_S


def test_a_resumed_run_keeps_its_planned_steps(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(budget, "_now", clock)
    schedule = StepSchedule(iterations=40, budget_s=10, first_step=30, fixed=True).start()
    clock.now = 1e6  # far past any budget: a plan made before the interruption is not re-planned
    assert [schedule.on_step(step, []) for step in range(31, 41)] == [True] * 9 + [False]


def falling(steps, rate=0.002):
    return list(np.exp(-rate * np.arange(steps)))


def test_the_plateau_rule_on_made_up_curves():
    rule = PlateauRule(window=50)  # patience 3 windows, 1 % drop, at least 5 windows
    steadily_falling = falling(2000)  # 10 % per window: never a plateau
    assert not any(rule.plateaued(steadily_falling[:n]) for n in range(1, 2001))
    flat_after_400 = falling(400) + [falling(400)[-1]] * 600
    stops = [n for n in range(1, 1001) if rule.plateaued(flat_after_400[:n])]
    # window 9 (steps 401..450, all at the final value) still beats window 8's mean (falling) by 4.5 %; windows
    # 10, 11, 12 (451..600) equal window 9: the third of them ends the run
    assert stops[0] == 600
    noise = np.random.default_rng(0).normal(0, 0.002, 1000)
    assert any(rule.plateaued(list(np.asarray(flat_after_400) + noise)[:n]) for n in range(551, 701))
    short = [1.0] * 200  # 4 windows: too early to call
    assert not any(rule.plateaued(short[:n]) for n in range(1, 201))
    assert PlateauRule.for_iterations(3000).window == 150 and PlateauRule.for_iterations(200).window == 50


def phantoms(indices):
    preprocess = PreprocessConfig(target_spacing=4.0, crop_size=32)
    return [preprocess_volume(*make_phantom(i)[:1], preprocess, make_phantom(i)[1], (0, 1, 2, 3)) for i in indices]


def test_a_time_budget_ends_fine_tuning_at_the_planned_step(monkeypatch):
    """A counter clock: one second per reading, i.e. per step (start 0, step k ends at k): pace 1 s; the run keeps
    TAIL_S and the final check of its training slices (a sixth of a step each at batch 2) free at the end of 98 % of
    30 s."""
    ticks = itertools.count()
    monkeypatch.setattr(budget, "_now", lambda: float(next(ticks)))
    config = FinetuneConfig(iterations=500, batch_size=2, time_budget=30)
    train = phantoms([0])
    tail = len(train[0].image) / (3 * config.batch_size)
    result = finetune(UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16))), train, config,
                      plan=plan_execution("cpu", "fp32"))
    expected = int(30 * END_SHARE - TAIL_S - tail - 1) + 1  # the first step k with less than a step left after it
    assert len(result.losses) == expected and result.best_step == expected
    assert "time budget" in result.ended_early


def test_the_auto_learning_rate_decays_to_the_deadline_only_under_a_budget(monkeypatch):
    """"auto" is warmup-decay where a budget applies on the run's device (the deadline is where the decay ends) and
    the paper's constant rate where the iterations end the run; an explicit schedule is kept. The run's log says
    which one it trained with."""
    assert FinetuneConfig().lr_schedule == "auto"
    budgeted = FinetuneConfig(time_budget=600, budget_devices="cpu")
    assert budgeted.lr_schedule_on("cpu").value == "warmup-decay"
    assert budgeted.lr_schedule_on("cuda").value == "constant" and FinetuneConfig().lr_schedule_on("cpu").value == "constant"
    assert replace(budgeted, lr_schedule="cosine").lr_schedule_on("cpu").value == "cosine"
    ticks = itertools.count()
    monkeypatch.setattr(budget, "_now", lambda: float(next(ticks)))
    for config, expected in ((FinetuneConfig(iterations=20, batch_size=2, time_budget=30), "warmup-decay"),
                             (FinetuneConfig(iterations=3, batch_size=2), "constant")):
        stream = io.StringIO()
        finetune(UNet2D(UNetConfig(num_classes=4, channels=(4, 8))), phantoms([0]), config,
                 reporter=ProgressReporter("finetune", config.iterations, stream=stream, json_lines=True),
                 plan=plan_execution("cpu", "fp32"))
        assert f"schedule {expected} (auto" in stream.getvalue()


def test_the_plateau_stop_ends_fine_tuning_that_has_stopped_learning():
    """A learning rate too small to move the weights leaves a flat (noisy) loss: the run ends at the first window
    end the rule allows, not after all iterations."""
    config = FinetuneConfig(iterations=1000, batch_size=2, learning_rate=1e-9, plateau_stop=True, augment=False)
    torch.manual_seed(0)
    result = finetune(UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16))), phantoms([0]), config,
                      plan=plan_execution("cpu", "fp32"))
    assert 250 <= len(result.losses) < 1000 and len(result.losses) % 50 == 0
    assert result.ended_early == "the training loss reached a plateau"


def test_a_budget_for_the_cpu_only_leaves_a_gpu_run_its_iterations():
    config = FinetuneConfig(time_budget=600, budget_devices="cpu")
    assert config.budget_on("cpu") == 600 and config.budget_on("cuda") is None and config.budget_on("mps") is None
    assert FinetuneConfig(time_budget=600).budget_on("cuda") == 600


def test_a_budget_too_short_for_the_batch_trains_in_smaller_batches(monkeypatch):
    """One second a step and 30 s: about 25 steps of batch 8 fit, far fewer than MIN_BUDGET_STEPS, so after the
    probe the run goes on at the smallest budget batch, and says so; --no-budget-batch keeps the batch."""
    ticks = itertools.count()
    monkeypatch.setattr(budget, "_now", lambda: float(next(ticks)))
    config = FinetuneConfig(iterations=500, batch_size=8, time_budget=30)
    stream = io.StringIO()
    reporter = ProgressReporter("finetune", 500, stream=stream, json_lines=True)
    result = finetune(UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16))), phantoms([0]), config,
                      reporter=reporter, plan=plan_execution("cpu", "fp32"))
    assert result.batch_size == MIN_BUDGET_BATCH == 4
    assert any("batch 4 instead of 8" in line for line in stream.getvalue().splitlines())
    kept = finetune(UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16))), phantoms([0]),
                    replace(config, budget_batch=False), plan=plan_execution("cpu", "fp32"))
    assert kept.batch_size == 8


def test_the_budget_batch_gives_a_run_its_minimum_steps():
    assert MIN_BUDGET_STEPS == 1500
    assert budget_batch(16, 1500) == 16 and budget_batch(16, 5000) == 16  # enough steps: unchanged
    assert budget_batch(16, 1000) == 10  # 16 · 1000/1500: the steps fit at batch 10
    assert budget_batch(16, 180) == 4 and budget_batch(2, 10) == 2  # never below 4, never above the batch asked
