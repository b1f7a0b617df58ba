"""``benchmarks/bench_minutes.py --smoke``: the panel's fine-tuning command run as real processes within a time
budget, scored, reported, and not run again when the command is repeated (about 40 s on 2 shared cores)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_minutes.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_minutes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    yield module
    torch.set_num_threads(threads)  # --threads sets this process's too


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.timeout(300)
def test_smoke_runs_scores_reports_and_resumes(tmp_path, bench):
    argv = ["--smoke", "--threads", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = read_rows(tmp_path / "results.csv")
    assert [(r["dataset"], r["labeled"], r["seed"], r["init"], float(r["budget_s"])) for r in rows] == [
        ("phantom", "1", "0", "random", 5.0), ("phantom", "1", "0", "random", 10.0)]
    for row in rows:
        dice = [float(row[key]) for key in ("mean_dice", "dice_LV", "dice_myocardium", "dice_RV")]
        assert all(math.isfinite(d) and 0.0 <= d <= 1.0 for d in dice), row
        assert float(row["share_of_budget"]) > 0 and float(row["wall_s"]) > 0 and int(row["steps"]) >= 1
        assert row["threads"] == "1"
    report = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| phantom | 1 | random | 5s | 1 |" in report and "| LV | myocardium | RV |" in report
    assert (tmp_path / "dice_vs_minutes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records = sorted((tmp_path / "runs").glob("*/run.json"))
    assert len(records) == 2
    record = records[0].read_text(encoding="utf-8")
    assert '"finetune"' in record and '"--time-budget"' in record and '"--channels"' in record
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "runs").glob("*/*") if path.is_file()}
    assert bench.main(argv) == 0  # every run finished: nothing is trained or predicted again
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert read_rows(tmp_path / "results.csv") == rows


def test_a_later_call_must_measure_the_same_way(tmp_path, bench, capsys):
    (tmp_path / "bench.json").write_text('{"smoke": false, "threads": 2}\n', encoding="utf-8")
    assert bench.main(["--smoke", "--threads", "1", "--out", str(tmp_path)]) == 1
    assert "repeat those options or choose another --out" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_a_background_start_is_the_panel_chain_stopped_after_the_annotation_time(tmp_path, bench):
    """``--inits background``: the panel's background pre-training runs on the pool for the annotation time (10 s
    per labeled volume in smoke), is stopped, and every budget's fine-tune starts from the checkpoint it kept,
    timed alone."""
    assert bench.main(["--smoke", "--threads", "1", "--inits", "background", "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path / "results.csv")
    assert [(r["init"], float(r["budget_s"])) for r in rows] == [("background", 5.0), ("background", 10.0)]
    start = tmp_path / "annotation" / "phantom" / "after-1-labeled.pt"
    from ContrastSegLib.runtime.checkpoint import load_checkpoint
    kept = load_checkpoint(start).metadata
    assert kept["stage"] == "pretrain-global" and kept["stopped"]["planned"] == 10000  # the panel's, stopped
    for row in rows:
        assert 10.0 <= float(row["pretraining_s"]) < 60.0  # the annotation time, not in the budget
    for record in (tmp_path / "runs").glob("*/run.json"):
        command = json.loads(record.read_text(encoding="utf-8"))["command"]
        assert command[command.index("--init") + 1] == str(start) and "--time-budget" in command
