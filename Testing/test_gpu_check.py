"""``benchmarks/gpu_check.py --smoke``, run once as its own process on the CPU (1 torch thread, tiny sizes): every
part finishes within a CPU budget, and the JSON holds sane figures (the CPU equivalents where a part needs CUDA, and
the reason where the smoke run leaves something out)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
PARTS = ["peak", "stages", "chain", "predict", "memory", "ddp", "precision", "compile"]
PARTS_CPU_S = 60  # the parts' CPU seconds together: 34-37 on a 2-core EPYC, most of it three job start-ups
pytestmark = pytest.mark.timeout(600)  # about 1½ min on a busy 2-core machine


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def option(command: list[str], flag: str) -> str:
    """The value after ``flag`` in ``command``."""
    return command[command.index(flag) + 1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(the JSON record, the markdown, stdout, seconds) of one smoke run."""
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=560)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    return record, (out / "gpu_check.md").read_text(encoding="utf-8"), done.stdout, seconds


def test_every_part_runs_on_the_cpu_within_its_limit_and_budget(smoke):
    record, markdown, stdout, seconds = smoke
    assert record["smoke"] is True and record["device"] == "cpu" and record["gpu"] is None
    assert record["threads"] == 1 and "--smoke" in record["command"]
    assert record["sizes"]["chain_pretraining"] is False and record["sizes"]["ddp_cpu_processes"] == 1
    assert list(record["parts"]) == PARTS
    for name, part in record["parts"].items():
        assert part["status"] == "ok", (name, part.get("error"), part.get("traceback"))
        assert 0 < part["seconds"] <= part["limit_s"] + 1 and part["cpu_seconds"] >= 0
    jobs_cpu = [record["parts"][name]["cpu_seconds"] for name in ("chain", "predict", "ddp")]
    assert all(cpu > 1 for cpu in jobs_cpu)  # their job processes are counted
    assert sum(part["cpu_seconds"] for part in record["parts"].values()) < PARTS_CPU_S
    assert record["total_seconds"] <= seconds
    assert "| part | status | s | CPU s |" in markdown and markdown in stdout
    assert "no GPU" in markdown and "smoke sizes" in markdown


def test_stage_steps_and_their_share_of_the_peak(smoke):
    parts = smoke[0]["parts"]
    assert positive(parts["peak"]["bf16_gflops"])
    rows = parts["stages"]["rows"]
    assert [row["name"].split()[0] for row in rows] == ["global", "local", "supervised-local", "masked-image",
                                                       "fine-tuning"]
    for row in rows:
        assert positive(row["model_only"]) and positive(row["pipeline"])
        assert row["pipeline_over_model_only"] == pytest.approx(row["pipeline"] / row["model_only"])
        assert row["network_inputs"] >= row["images"] == (4 if row["name"] != "fine-tuning (Dice + CE)" else 2)
    *contrastive, finetuning = rows
    assert all(row["flops"] is None and row["share_of_bf16_peak"] is None for row in contrastive)
    assert positive(finetuning["flops"]) and finetuning["share_of_bf16_peak"] == pytest.approx(
        finetuning["flops"] * finetuning["model_only"] / finetuning["images"] / 1e9 / parts["peak"]["bf16_gflops"])
    assert "fine-tuning step alone" in parts["stages"]["note"]
    assert parts["stages"]["slowest_pipeline_ratio"] == min(row["pipeline_over_model_only"] for row in rows)


def test_the_panels_chain_is_built_and_its_default_job_run_and_extrapolated(smoke):
    chain = smoke[0]["parts"]["chain"]
    jobs = chain["jobs"]
    assert [job["stage"] for job in jobs] == ["global GD", "local LR", "fine-tuning"]
    assert [job["full_iterations"] for job in jobs] == [10000, 10000, 3000]
    for job, verb in zip(jobs, ["pretrain", "pretrain", "finetune"]):
        command = job["command"]
        assert command[:2] == ["contrastseg", verb] and option(command, "--iterations") == "4"
        assert job["ran"] is False and job["wall_s"] is None and job["extrapolated_s"] is None
    assert "--init" not in jobs[0]["command"]  # each later job starts from the previous one's checkpoint
    assert [option(job["command"], "--init") for job in jobs[1:]] == [option(job["command"], "--out")
                                                                      for job in jobs[:2]]
    papers = chain["papers_chain"]
    assert papers["extrapolated_s"] is None and "not run" in papers["note"]
    panel = chain["panel_default_chain"]
    job = panel["job"]
    assert panel["initialisation"] == "random" and job["ran"] is True and "--init" not in job["command"]
    assert job["command"][:2] == ["contrastseg", "finetune"] and job["steps_run"] == 4
    assert positive(job["wall_s"]) and 0 < job["seconds_per_step"] < job["wall_s"]
    assert job["full_iterations"] == 3000 and panel["extrapolated_s"] == job["extrapolated_s"]
    assert job["extrapolated_s"] == pytest.approx(job["wall_s"] + (3000 - 4) * job["seconds_per_step"])


def test_prediction_runs_from_file_to_file(smoke):
    predict = smoke[0]["parts"]["predict"]
    assert predict["volumes"] == 2 and predict["shape_ijk"] == [64, 64, 3]
    assert 0 < predict["start_up_s"] < predict["wall_s"]
    assert predict["volumes_per_minute"] == pytest.approx(60 * 2 / predict["wall_s"])
    assert predict["volumes_per_minute_after_start_up"] > predict["volumes_per_minute"]


def test_memory_rows_carry_the_planners_estimate(smoke):
    sys.path.insert(0, str(ROOT / "ContrastSeg"))
    try:
        from ContrastSegLogic.memory import training_memory_bytes
    finally:
        sys.path.remove(str(ROOT / "ContrastSeg"))
    memory = smoke[0]["parts"]["memory"]
    assert [row["batch"] for row in memory["rows"]] == [2, 4] and memory["largest_fitting_batch"] == 4
    assert memory["measured"] is False and "not measured" in memory["note"]
    for row in memory["rows"]:
        assert row["fits"] and row["process"] is None and row["planner_error"] is None
        assert row["planner_bytes"] == training_memory_bytes(row["batch"], 32, (8, 16, 16, 32))


def test_torchrun_worker_equals_the_step_in_this_process(smoke):
    ddp = smoke[0]["parts"]["ddp"]
    assert ddp["processes"] == 1 and ddp["backend"].startswith("none") and ddp["equivalent"] is True
    assert "test_pretrain.py" in ddp["note"]  # where two gloo processes are checked
    assert ddp["largest_gradient_difference"] <= 1e-6 and ddp["loss_difference"] <= 1e-6


def test_precisions_and_compile(smoke):
    parts = smoke[0]["parts"]
    precision = parts["precision"]
    assert precision["precisions"] == ["fp32", "bf16"] and "fp16" in precision["note"]
    assert len(precision["rows"]) == 2 and all(0 <= row["dice"] <= 1 for row in precision["rows"])
    assert precision["largest_difference"] == pytest.approx(abs(precision["rows"][0]["dice"]
                                                                - precision["rows"][1]["dice"]))
    assert precision["agree"] == (precision["largest_difference"] <= 0.01)
    compiled = parts["compile"]
    assert compiled["backend"] == "eager" and [row["name"] for row in compiled["rows"]] == ["training step",
                                                                                           "prediction forward"]
    assert all(positive(row["eager_s"]) and positive(row["compiled_s"]) and positive(row["compile_s"])
               for row in compiled["rows"])
