"""``contrastseg benchmark --select random,suggest`` on the mixed-contrast phantoms (smoke profile): each seed's
suggested labeled volumes come from its G^D checkpoint in one nested order, the paired table and the triage section
are in report.md, and each cell records the review score beside the true Dice of its test cases."""

import csv
import json
from pathlib import Path

import pytest

from cli_helpers import assert_refused, run_cli
from ContrastSegLib.cli import main
from ContrastSegLib.triage import spearman

FAST = ["--profile", "smoke", "--precision", "fp32", "--device", "cpu", "--no-performance"]


@pytest.fixture(scope="module")
def selected(tmp_path_factory, one_torch_thread) -> Path:
    out = tmp_path_factory.mktemp("selection") / "mixed"
    assert main(["benchmark", "--dataset", "phantom-mixed", "--out", str(out), "--methods", "random",
                 "--labeled", "1,2", "--seeds", "1", "--select", "random,suggest", *FAST]) == 0
    return out


def test_suggested_cells_take_the_seed_s_nested_suggestion(selected):
    with open(selected / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["select"], r["labeled"]) for r in rows) == [("random", "1"), ("random", "2"),
                                                                 ("suggest", "1"), ("suggest", "2")]
    order = json.loads((selected / "selection" / "seed0.json").read_text())["order"]
    suggested = {r["labeled"]: r["labeled_cases"].split() for r in rows if r["select"] == "suggest"}
    assert suggested["1"] == order[:1] and sorted(suggested["2"]) == sorted(order[:2])
    assert (selected / "pretrained" / "seed0" / "GD.pt").is_file()  # the model that suggested them
    pool = json.loads((selected / "data" / "phantom" / "dataset.json").read_text())
    assert "phantom_008" in pool["contrastseg_dark_blood"] and set(order) <= set(f"phantom_{i:03d}"
                                                                                   for i in range(6, 9))


def test_report_pairs_the_selections_and_scores_the_triage(selected):
    report = (selected / "report.md").read_text()
    assert "## Suggested against random labeled volumes" in report and "| random | 2 |" in report
    assert "## Triage" in report and "Over all 24 predictions" in report  # 4 cells × 6 test cases
    result = json.loads((selected / "cells" / "random" / "suggest_labeled2_seed0" / "result.json").read_text())
    assert [t["case"] for t in sorted(result["triage"], key=lambda t: t["case"])] == [
        f"phantom_{i:03d}" for i in range(6)]
    rho = spearman([t["score"] for t in result["triage"]], [t["dice"] for t in result["triage"]])
    assert rho == result["triage_spearman"] or (rho != rho and result["triage_spearman"] is None)
    assert "--select random,suggest" in report


def test_an_unknown_selection_is_refused(capsys, tmp_path):
    assert_refused(*run_cli(capsys, "benchmark", "--dataset", "phantom", "--out", tmp_path / "b", "--select",
                            "best", *FAST), "--select best")
