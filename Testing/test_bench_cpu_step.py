"""``benchmarks/bench_cpu_step.py --smoke``: one fine-tuning step profiled on the CPU at side 32, batch 2 (a few
seconds): the table's rows, positive finite times, parts adding up to about the pipeline step, the JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_cpu_step.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_cpu_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the table's data rows (header and rule left out)."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.timeout(120)
def test_smoke_profiles_one_step(tmp_path, bench, one_torch_thread):
    assert bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    plans = [plan.describe() for _, plan in bench.distinct_plans("auto,fp32")]
    rows = table_rows((tmp_path / "bench_cpu_step.md").read_text(encoding="utf-8"))
    assert [row[:3] for row in rows] == [["32", "2", plan] for plan in plans]
    assert all(len(row) == len(bench.HEADER) for row in rows)
    record = json.loads((tmp_path / "bench_cpu_step.json").read_text(encoding="utf-8"))
    assert set(record["peaks"]) == {"fp32", "bf16"} and all(p["gflops"] > 0 for p in record["peaks"].values())
    for row in record["rows"]:
        assert all(math.isfinite(t) and t > 0 for t in row["seconds"].values()), row["seconds"]
        # augmentation is a difference of two medians: at 32 px it is near 0 and may come out below it
        assert all(math.isfinite(t) for t in row["derived"]["parts"].values()), row["derived"]
        assert 0.33 < row["derived"]["parts_sum"] / row["seconds"]["pipeline_step"] < 3
        assert row["flops"] > 0 and math.isfinite(row["derived"]["achieved_gflops"])
