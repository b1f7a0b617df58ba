"""Schedules a user can afford: the time budget's arithmetic, the plateau rule on made-up loss curves, and both
ending real training runs early (no timing: the budget's clock is replaced by a counter)."""

import itertools

import numpy as np
import pytest
import torch

from cli_helpers import TINY_TRAINING, assert_refused, run_cli
from ContrastSegLib.data.phantom import make_phantom
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.preprocess import preprocess_volume
from ContrastSegLib.runtime import budget
from ContrastSegLib.runtime.budget import (PROBE_STEPS, PlateauRule, StepSchedule, format_duration,
                                           iterations_for_budget, parse_duration)
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
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
    # 600 s, 12 s spent on 11 steps, 0.5 s a step: 95 % of 600 is 570, 558 s left = 1116 more steps
    assert iterations_for_budget(600, 12, 11, 0.5, 10_000) == 11 + 1116
    assert iterations_for_budget(600, 12, 11, 0.5, 800) == 800  # never more than the iterations asked
    assert iterations_for_budget(10, 20, 11, 0.5, 800) == 11  # already over: stop now, never go back
    assert iterations_for_budget(600, 0, 0, 0.0, 50) == 50  # an unmeasurably fast step: all the iterations


def test_the_schedule_plans_from_the_pace_after_a_warm_up_step(monkeypatch):
    """Clock readings: start 0; step 1 (warm-up) ends at 5; then 2 s a step: the pace is 2 s, not (5 + 20) / 11."""
    readings = iter([0.0, 5.0] + [5.0 + 2 * k for k in range(1, PROBE_STEPS + 1)])
    monkeypatch.setattr(budget, "_now", lambda: next(readings))
    schedule = StepSchedule(iterations=1000, budget_s=100).start()
    going = [schedule.on_step(step, []) for step in range(1, PROBE_STEPS + 2)]
    assert all(going) and schedule.planned
    elapsed = 5.0 + 2 * PROBE_STEPS
    assert schedule.iterations == PROBE_STEPS + 1 + int((95 - elapsed) // 2) == 46
    assert "time budget of 100s (2.00 s per step)" in schedule.reason
    assert all(schedule.on_step(step, []) for step in range(PROBE_STEPS + 2, 46))
    assert not schedule.on_step(46, [])


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
    """A counter clock: one second per reading, i.e. per step (start 0, step k ends at k): pace 1 s, 11 s spent,
    95 % of 30 s leaves 17 more steps: 28 in all."""
    ticks = itertools.count()
    monkeypatch.setattr(budget, "_now", lambda: float(next(ticks)))
    config = FinetuneConfig(iterations=500, batch_size=2, time_budget=30)
    result = finetune(UNet2D(UNetConfig(num_classes=4, channels=(4, 8, 16))), phantoms([0]), config,
                      plan=plan_execution("cpu", "fp32"))
    assert len(result.losses) == 28 and result.best_step == 28
    assert "time budget" in result.ended_early


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
