"""The performance table of the benchmark report, smoke profile: every row present, every number finite and
positive, every ratio the quotient of the numbers printed beside it, the network inputs per step those of each
stage's views."""

from __future__ import annotations

import math

import pytest
import torch

from ContrastSegLib.benchmark.performance import performance_table
from ContrastSegLib.errors import ContrastSegError

STAGES = {"global contrastive G^D": 3, "local contrastive L^R": 2, "supervised-local SLC, stride mode": 2,
          "fine-tuning (Dice + CE)": 1}  # row -> images through the network per drawn image
KERNELS = ("supervised-local dense", "supervised-local stride", "supervised-local block", "supervised-local exact",
           "global contrastive G^D", "local contrastive L^R")


@pytest.fixture(scope="module")
def smoke(one_torch_thread) -> str:
    """The markdown of the smoke table on the CPU."""
    return performance_table("smoke", "cpu")


def tables(markdown: str) -> dict[str, dict[str, list[str]]]:
    """First header cell -> {first cell of a row: the row's other cells}."""
    found: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if current is None:
            current = found.setdefault(cells[0], {})
        elif not set(cells[0]) <= {"-"}:
            current[cells[0]] = cells[1:]
    return found


def number(cell: str) -> float:
    """A printed positive finite number (a ratio's "×" dropped)."""
    value = float(cell.rstrip("×"))
    assert math.isfinite(value) and value > 0, cell
    return value


def interval(cell: str) -> tuple[float, float]:
    """The values that print as ``cell``: ± half a unit of its last decimal."""
    text = cell.rstrip("×")
    half = 0.5 * 10 ** -(len(text.split(".")[1]) if "." in text else 0)
    return float(text) - half, float(text) + half


def assert_quotient(ratio: str, numerator: str, denominator: str) -> None:
    """``ratio`` rounds a value of numerator ÷ denominator, each taken anywhere within its printed rounding."""
    low, high = interval(ratio)
    top_low, top_high = interval(numerator)
    bottom_low, bottom_high = interval(denominator)
    assert bottom_low > 0, denominator
    assert low <= top_high / bottom_low + 1e-12 and top_low / bottom_high - 1e-12 <= high, \
        f"{ratio} is not {numerator} ÷ {denominator}"


def test_machine_line_names_cpu_torch_and_plan(smoke):
    machine = smoke.splitlines()[0]
    assert machine.startswith("Profile smoke, on cpu") and "Machine: CPU " in machine
    assert f"torch {torch.__version__}" in machine and "plan auto: cpu" in machine


def test_stage_rows_ratio_is_pipeline_over_model_only(smoke):
    rows = tables(smoke)["training stage"]
    assert set(rows) == set(STAGES)
    for name, (per_step, model_only, pipeline, ratio) in rows.items():
        images, inputs = (int(n) for n in per_step.replace("(", "").replace(")", "").split())
        assert images > 0 and inputs == STAGES[name] * images, (name, per_step)
        for cell in (model_only, pipeline, ratio):
            number(cell)
        assert_quotient(ratio, pipeline, model_only)


def test_kernel_rows_ratios_are_relative_to_dense(smoke):
    rows = tables(smoke)["loss kernel, forward + backward"]
    assert tuple(rows) == KERNELS
    dense_ms, dense_mib = rows["supervised-local dense"][1:3]
    for name in KERNELS[:4]:
        _, milliseconds, mib, time_ratio, memory_ratio = rows[name]
        for cell in (milliseconds, mib, time_ratio, memory_ratio):
            number(cell)
        assert_quotient(time_ratio, dense_ms, milliseconds)
        assert_quotient(memory_ratio, dense_mib, mib)
    assert rows["supervised-local dense"][3:] == ["1.00×", "1.00×"]
    for name in KERNELS[4:]:
        number(rows[name][1])


def test_prediction_row(smoke):
    rows = tables(smoke)["prediction"]
    assert len(rows) == 1
    (name, (volume, end_to_end, bare, ratio)), = rows.items()
    assert name.startswith("Predictor.predict") and volume.startswith("256×256×")
    for cell in (end_to_end, bare, ratio):
        number(cell)
    assert_quotient(ratio, bare, end_to_end)


def test_unknown_profile_is_refused():
    with pytest.raises(ContrastSegError, match="smoke, cpu, paper"):
        performance_table("huge", "cpu")
