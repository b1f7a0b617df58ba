"""``contrastseg benchmark``: the smoke profile on phantoms end to end (results.csv, report.md whose tables are the
means of results.csv, plots), resuming (nothing recomputed, a killed run finishes only its missing cells), refused
settings and inputs, the dataset adapters on synthetic copies, and the fixed split files."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_nothing_written, assert_refused, run_cli
from test_discovery import make_acdc_patient, touch

from ContrastSegLib.benchmark import runner
from ContrastSegLib.benchmark.datasets import prepare_dataset
from ContrastSegLib.benchmark.profiles import PROFILES
from ContrastSegLib.cli import main
from ContrastSegLib.benchmark.split_files import (FixedSplit, labeled_draw, library_split, load_split_file,
                                                  packaged_split_path, resolve_split)
from ContrastSegLib.data.phantom import write_phantom_dataset
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.runtime.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--profile", "smoke", "--precision", "fp32", "--device", "cpu", "--no-performance"]
SMOKE_METHODS = ("random", "GD+LR")
SEEDS = 2
PHANTOM_TEST = ("phantom_000", "phantom_001", "phantom_002", "phantom_003")


def benchmark(capsys, out: Path, *extra) -> tuple[int, str, str]:
    return run_cli(capsys, "benchmark", "--dataset", "phantom", "--out", out, *FAST, *extra)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, one_torch_thread) -> Path:
    """One smoke run: random and GD+LR × |X_L| = 1 × 2 seeds on the phantoms (4 cells)."""
    out = tmp_path_factory.mktemp("benchmark") / "smoke"
    assert main(["benchmark", "--dataset", "phantom", "--out", str(out), "--methods", ",".join(SMOKE_METHODS),
                 "--labeled", "1", "--seeds", str(SEEDS), *FAST]) == 0
    return out


def read_results(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def cell_files(out: Path) -> dict[Path, int]:
    """Every file of the cells and pre-training checkpoints with its modification time."""
    return {p: p.stat().st_mtime_ns for folder in ("cells", "pretrained") for p in (out / folder).rglob("*")
            if p.is_file()}


def counting(monkeypatch, name: str, fail_on_call: int | None = None) -> list:
    """Replace ``runner.<name>`` by a wrapper that records each call (and raises on call ``fail_on_call``)."""
    calls, original = [], getattr(runner, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        if len(calls) == fail_on_call:
            raise RuntimeError(f"simulated kill inside {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, name, wrapper)
    return calls


def training_case_ids(out: Path) -> set[str]:
    """Case ids every pre-training and fine-tuning checkpoint under ``out`` says it trained on."""
    ids = set()
    for path in list((out / "pretrained").rglob("*.pt")) + list((out / "cells").rglob("model.pt")):
        data = load_checkpoint(path).metadata["data"]
        ids |= set(data.get("cases", [])) | set(data.get("train_cases", []))
    return ids


def markdown_table(text: str, heading: str) -> list[list[str]]:
    """Rows (cells stripped) of the first markdown table after ``## heading``, header included, rule excluded."""
    section = text.split(f"## {heading}\n", 1)[1]
    lines = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if "---" not in line]


def test_smoke_run_writes_one_row_per_cell_with_finite_scores(smoke):
    rows = read_results(smoke)
    assert sorted((r["method"], r["labeled"], r["seed"]) for r in rows) == sorted(
        (m, "1", str(s)) for m in SMOKE_METHODS for s in range(SEEDS))
    structures = ("LV", "myocardium", "RV")
    for column in [f"dice_{s}" for s in structures] + ["dice_mean", "hd95_mean_mm", "train_seconds",
                                                        "predict_seconds", "pretrain_seconds", "finetune_seconds"]:
        assert column in rows[0], column
    for row in rows:
        dice = [float(row[f"dice_{s}"]) for s in structures]
        assert all(0.0 <= d <= 1.0 for d in dice) and math.isclose(float(row["dice_mean"]), np.mean(dice))
        assert float(row["train_seconds"]) > 0 and float(row["predict_seconds"]) > 0
        assert row["test_cases"] == "4" and row["labeled_cases"] not in PHANTOM_TEST
        assert (float(row["pretrain_seconds"]) > 0) == (row["method"] == "GD+LR")
    for seed in range(SEEDS):  # every method of a seed fine-tunes on the same draw
        assert len({r["labeled_cases"] for r in rows if r["seed"] == str(seed)}) == 1


def test_report_tables_are_the_means_of_results_csv(smoke):
    rows, report = read_results(smoke), (smoke / "report.md").read_text(encoding="utf-8")
    table = markdown_table(report, "Mean Dice")
    assert table[0] == ["method", "1 labeled"] and [line[0] for line in table[1:]] == list(SMOKE_METHODS)
    for method, cell in table[1:]:
        values = [float(r["dice_mean"]) for r in rows if r["method"] == method]
        mean, std = (float(v) for v in re.fullmatch(r"([\d.]+) ± ([\d.]+)", cell).groups())
        assert mean == round(statistics.fmean(values), 3) and std == round(statistics.stdev(values), 3)
    per_structure = markdown_table(report, "Per structure")
    assert per_structure[0][:5] == ["method", "labeled", "Dice LV", "Dice myocardium", "Dice RV"]
    for line in per_structure[1:]:
        values = [float(r["dice_RV"]) for r in rows if r["method"] == line[0]]
        assert float(line[4].split(" ± ")[0]) == round(statistics.fmean(values), 3)
    assert "contrastseg benchmark --dataset phantom" in report and "torch" in report and "cpu" in report


def test_plots_and_overlays_are_images(smoke):
    from matplotlib.image import imread

    report = (smoke / "report.md").read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert {"plots/dice_vs_labeled.png", "plots/dice_vs_labeled_per_structure.png"} <= set(pictures)
    assert any(p.startswith("cells/GD+LR/labeled1_seed0/") for p in pictures)
    for picture in pictures:
        height, width = imread(smoke / picture).shape[:2]
        assert height > 100 and width > 100, picture


def test_test_cases_never_enter_a_training_stage(smoke):
    trained = training_case_ids(smoke)
    assert trained and not trained & set(PHANTOM_TEST)
    assert trained <= {f"phantom_{i:03d}" for i in range(4, 7)}
    for path in (smoke / "splits").glob("*.json"):
        groups = json.loads(path.read_text(encoding="utf-8"))["groups"]
        assert sorted(groups["test"]) == list(PHANTOM_TEST)
        assert not set(groups["train_labeled"] + groups["train_unlabeled"]) & set(PHANTOM_TEST)


def test_rerun_recomputes_nothing_and_adds_the_performance_section(smoke, capsys, monkeypatch):
    before = cell_files(smoke)
    calls = [counting(monkeypatch, name) for name in ("pretrain_stage", "finetune_method", "predict_cases")]
    from ContrastSegLib.benchmark import performance

    monkeypatch.setattr(performance, "performance_table", lambda profile, device: f"PERF {profile} {device}")
    code, out, err = run_cli(capsys, "benchmark", "--dataset", "phantom", "--out", smoke, "--methods",
                             ",".join(SMOKE_METHODS), "--labeled", "1", "--seeds", str(SEEDS), "--profile", "smoke",
                             "--precision", "fp32", "--device", "cpu", "--performance")
    assert code == 0, err
    assert calls == [[], [], []] and cell_files(smoke) == before
    assert out.count("finished earlier, kept") == len(SMOKE_METHODS) * SEEDS
    report = (smoke / "report.md").read_text(encoding="utf-8")
    assert "## Performance\n\nPERF smoke cpu" in report


def test_changed_settings_on_the_same_out_are_refused(smoke, capsys):
    state = {p: p.stat().st_mtime_ns for p in smoke.rglob("*") if p.is_file()}
    code, out, err = run_cli(capsys, "benchmark", "--dataset", "phantom", "--out", smoke, "--profile", "cpu",
                             "--precision", "fp32", "--device", "cpu", "--no-performance")
    assert_refused(code, out, err, "profile smoke (asked cpu)", "--out")
    code, out, err = benchmark(capsys, smoke, "--precision", "auto", "--methods", "random")
    assert_refused(code, out, err, "precision fp32 (asked auto)")
    recorded = PROFILES["smoke"].finetune_iterations
    code, out, err = benchmark(capsys, smoke, "--finetune-iterations", str(recorded + 1))
    assert_refused(code, out, err, f"finetune_iterations={recorded}", f"finetune_iterations={recorded + 1}")
    assert {p: p.stat().st_mtime_ns for p in smoke.rglob("*") if p.is_file()} == state


def test_killed_run_resumes_with_only_the_missing_cells(tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    request = runner.BenchmarkRequest("phantom", out, methods=("random", "GD+SLC"), labeled=(1,), seeds=1,
                                      device="cpu", precision="fp32", performance=False)
    counting(monkeypatch, "finetune_method", fail_on_call=2)  # dies inside the 2nd cell, after its pre-training
    with pytest.raises(RuntimeError, match="simulated kill"):
        runner.run_benchmark(request)
    first = out / "cells" / "random" / "labeled1_seed0" / "result.json"
    assert first.is_file() and not (out / "results.csv").exists()
    assert_nothing_written(out / "cells" / "GD+SLC" / "labeled1_seed0", out / "cells")
    first_state = first.stat().st_mtime_ns
    pretrain_calls = counting(monkeypatch, "pretrain_stage")
    finetune_calls = counting(monkeypatch, "finetune_method")
    rows = runner.run_benchmark(request)
    assert pretrain_calls == [] and len(finetune_calls) == 1  # GD and GD+SLC were kept, only one cell was missing
    assert first.stat().st_mtime_ns == first_state and [r["method"] for r in rows] == ["random", "GD+SLC"]
    supervised = load_checkpoint(out / "pretrained" / "seed0" / "labeled1" / "GD+SLC.pt").metadata["data"]["cases"]
    assert supervised == [rows[1]["labeled_cases"]]  # the supervised stage read the cell's labeled volume only
    assert not training_case_ids(out) & set(PHANTOM_TEST)


@pytest.mark.parametrize("options, fragments", [
    (["--dataset", "nosuch"], ["--dataset nosuch", "phantom"]),
    (["--dataset", "acdc"], ["--dataset acdc", "--data PATH"]),
    (["--dataset", "acdc", "--data", "{tmp}/missing"], ["--data", "missing", "no such folder"]),
    (["--dataset", "phantom", "--data", "{tmp}"], ["--data is not used"]),
    (["--dataset", "folder:"], ["folder:PATH"]),
    (["--dataset", "phantom", "--methods", "random,SimCLR"], ["--methods", "SimCLR"]),
    (["--dataset", "phantom", "--labeled", "5"], ["--labeled 5", "3 labeled pool case(s)"]),
    (["--dataset", "phantom", "--labeled", "0"], ["--labeled 0"]),
    (["--dataset", "phantom", "--seeds", "0"], ["--seeds 0"]),
    (["--dataset", "phantom", "--crop-size", "36"], ["--crop-size 36", "multiple of 8"]),
    (["--dataset", "phantom", "--finetune", "--flips sideways"], ["--finetune", "--flips sideways", "choose"]),
    (["--dataset", "phantom", "--finetune", "--iterations 3"], ["--finetune", "--iterations 3"]),
    (["--dataset", "phantom", "--time-budget", "soon"], ["--time-budget", "soon", "10m"]),
])
def test_bad_input_is_one_line_before_anything_is_written(tmp_path, capsys, options, fragments):
    out = tmp_path / "out"
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    code, stdout, err = run_cli(capsys, "benchmark", "--out", out, *options, *FAST)
    assert_refused(code, stdout, err, *fragments)
    assert_nothing_written(out, tmp_path)


def test_a_folder_that_is_not_a_benchmark_is_refused_as_out(tmp_path, capsys):
    out = tmp_path / "scans"
    note = touch(out / "notes.txt", "mine")
    code, stdout, err = benchmark(capsys, out)
    assert_refused(code, stdout, err, "not a benchmark folder", "--out")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and note.read_text(encoding="utf-8") == "mine"


def test_acdc_adapter_reads_end_diastole_frames_and_applies_the_fixed_test_list(tmp_path):
    copy = tmp_path / "ACDC" / "training"
    for number in range(1, 101):
        make_acdc_patient(copy, number, ed=1 + number % 3, es=12)
    prepared = prepare_dataset("acdc", str(tmp_path / "ACDC"), tmp_path / "out" / "data", PROFILES["smoke"])
    fixed = load_split_file(packaged_split_path("acdc"))
    assert prepared.split.test == tuple(fixed["test"]) and len(prepared.split.pool) == 80
    cases = {case.id: case for case in prepared.dataset.cases}
    assert sorted(cases) == [f"patient{n:03d}" for n in range(1, 101)]
    for number in (1, 2, 50, 100):
        case = cases[f"patient{number:03d}"]
        assert case.image.name == f"patient{number:03d}_frame{1 + number % 3:02d}.nii.gz"
        assert case.label.name == f"patient{number:03d}_frame{1 + number % 3:02d}_gt.nii.gz"
    assert prepared.structures == {1: "RV", 2: "myocardium", 3: "LV"}
    assert prepared.crop == 32 and prepared.spacing_mm == 160 / 32  # the heart's 160 mm stay in view
    for missing in ("patient050", "patient051"):
        for item in (copy / missing).iterdir():
            item.unlink()
        (copy / missing).rmdir()
    with pytest.raises(ContrastSegError, match="lacks 2 case.*patient050, patient051.*--data") as error:
        prepare_dataset("acdc", str(tmp_path / "ACDC"), tmp_path / "out2" / "data", PROFILES["smoke"])
    assert "\n" not in str(error.value) and not (tmp_path / "out2").exists()


def test_named_msd_and_mmwhs_adapters_use_the_official_case_ids(tmp_path):
    prostate = tmp_path / "Task05_Prostate"
    ids = load_split_file(packaged_split_path("msd-prostate"))
    cases = ids["test"] + ids["pool"]
    for case in cases:
        touch(prostate / "imagesTr" / f"{case}.nii.gz")
        touch(prostate / "labelsTr" / f"{case}.nii.gz")
    touch(prostate / "imagesTs" / "prostate_03.nii.gz")
    (prostate / "dataset.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "PZ", "2": "TZ"}, "modality": {"0": "T2", "1": "ADC"},
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases],
        "test": ["./imagesTs/prostate_03.nii.gz"]}))
    prepared = prepare_dataset("msd-prostate", str(tmp_path), tmp_path / "out" / "data", PROFILES["smoke"])
    assert len(prepared.split.test) == 15 and len(prepared.split.labeled_pool) == 17
    assert "prostate_03" not in prepared.dataset.ids and {c.channel for c in prepared.dataset.cases} == {0}
    assert prepared.structures == {1: "PZ", 2: "TZ"}
    mmwhs = tmp_path / "MMWHS" / "mr_train"
    for number in range(1001, 1020):  # mr_train_1020 is missing
        touch(mmwhs / f"mr_train_{number}_image.nii.gz")
        touch(mmwhs / f"mr_train_{number}_label.nii.gz")
    with pytest.raises(ContrastSegError, match="lacks 1 case.*mr_train_1020"):
        prepare_dataset("mmwhs", str(tmp_path / "MMWHS"), tmp_path / "out3" / "data", PROFILES["smoke"])
    touch(mmwhs / "mr_train_1020_image.nii.gz")
    touch(mmwhs / "mr_train_1020_label.nii.gz")
    prepared = prepare_dataset("mmwhs", str(tmp_path / "MMWHS"), tmp_path / "out3" / "data", PROFILES["smoke"])
    assert len(prepared.split.test) == 10 and prepared.structures[500] == "LV" and len(prepared.structures) == 7


def test_hippocampus_rule_needs_the_official_260_cases(tmp_path):
    rule = load_split_file(packaged_split_path("msd-hippocampus"))
    ids = [f"hippocampus_{i:03d}" for i in range(1, 395) if i % 3]  # 262 ids; the first 260 stand in
    split = resolve_split(rule, {case: True for case in ids[:260]}, "copy", "fix")
    assert len(split.test) == 52 and len(split.labeled_pool) == 208 and split.test[:2] == (ids[0], ids[5])
    with pytest.raises(ContrastSegError, match="259 labeled training case.*official 260"):
        resolve_split(rule, {case: True for case in ids[:259]}, "copy", "fix")


def test_folder_dataset_gets_a_seeded_split_saved_under_out(tmp_path):
    data = write_phantom_dataset(tmp_path / "scans", 6, seed=3)
    folder = tmp_path / "out" / "data"
    prepared = prepare_dataset(f"folder:{data}", None, folder, PROFILES["smoke"])
    saved = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    assert prepared.split.test == tuple(saved["test"]) and len(saved["test"]) == 1 and len(saved["pool"]) == 5
    assert saved["median_spacing_mm"] > 1.0 and prepared.structures == {1: "LV", 2: "myocardium", 3: "RV"}
    again = prepare_dataset(f"folder:{data}", None, folder, PROFILES["smoke"])
    assert again.split == prepared.split


def test_brain_offline_adapter_keeps_the_first_four_subjects_for_testing(tmp_path):
    brain_offline = pytest.importorskip("ContrastSegLib.data.brain_offline")
    if not list(brain_offline.DEFAULT_CACHE.expanduser().glob("*.whl")):
        pytest.skip("the brain-offline package wheels are not cached on this machine (no download in tests)")
    prepared = prepare_dataset("brain-offline", str(tmp_path / "brain"), tmp_path / "out" / "data", PROFILES["smoke"])
    assert prepared.split.test == ("brain_000", "brain_001", "brain_002", "brain_003")
    assert prepared.split.labeled_pool == ("brain_004", "brain_005")
    unlabeled = prepared.dataset.subset(set(prepared.split.pool) - set(prepared.split.labeled_pool)).cases
    assert unlabeled and all(case.label is None for case in unlabeled)  # pre-training only
    assert prepared.crop == 32 and prepared.spacing_mm == 96 / 32


def test_labeled_sets_are_nested_and_test_cases_are_refused():
    split = FixedSplit(("t1", "t2"), tuple(f"p{i}" for i in range(8)), tuple(f"p{i}" for i in range(6)))
    one, two, six = (labeled_draw(split, n, seed=4) for n in (1, 2, 6))
    assert set(one) < set(two) < set(six) == set(split.labeled_pool)
    assert labeled_draw(split, 2, seed=5) != two or labeled_draw(split, 2, seed=6) != two
    dataset = discover_stub(("t1", "t2") + split.pool)
    library = library_split(dataset, split, two, seed=4, stage="fine-tuning")
    assert set(library.groups["train_unlabeled"]) == set(split.pool) - set(two)
    with pytest.raises(ContrastSegError, match="'t1'.*test"):  # a test case can never be drawn for training
        library_split(dataset, split, ("t1",), seed=4, stage="fine-tuning")
    with pytest.raises(ContrastSegError, match="--labeled 7"):
        labeled_draw(split, 7, seed=0)


def discover_stub(ids):
    """A Dataset of labeled cases named ``ids`` (files never opened)."""
    from ContrastSegLib.data.discovery import Case, Dataset

    return Dataset(Path("/stub"), "manifest", tuple(Case(i, Path(f"/stub/{i}.nii.gz"), Path(f"/stub/{i}_seg.nii.gz"))
                                                    for i in sorted(ids)))


@pytest.mark.parametrize("name, test, pool", [("acdc", 20, 80), ("msd-prostate", 15, 17), ("mmwhs", 10, 10),
                                              ("phantom", 4, 32)])
def test_split_files_are_disjoint_with_the_documented_counts(name, test, pool):
    data = load_split_file(packaged_split_path(name))
    assert len(data["test"]) == test and len(data["pool"]) == pool and not set(data["test"]) & set(data["pool"])
    everything = sorted(data["test"] + data["pool"])
    expected = {
        "acdc": [f"patient{i:03d}" for i in range(1, 101)],
        "msd-prostate": [f"prostate_{i:02d}" for i in (0, 1, 2, 4, 6, 7, 10, 13, 14, 16, 17, 18, 20, 21, 24, 25, 28,
                                                        29, 31, 32, 34, 35, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47)],
        "mmwhs": [f"mr_train_{i}" for i in range(1001, 1021)],
        "phantom": [f"phantom_{i:03d}" for i in range(36)],
    }[name]
    assert everything == expected
    if name == "acdc":
        for group, members in data["strata"].items():
            assert len(members) == 20 and len(set(members) & set(data["test"])) == 4, group
        assert sorted(sum(data["strata"].values(), [])) == expected


def test_rule_based_split_files_state_their_rule():
    assert load_split_file(packaged_split_path("msd-hippocampus"))["test_rule"]["every"] == 5
    assert load_split_file(packaged_split_path("brain-offline"))["test_rule"] == {"first": 4}


def test_comparison_with_random_is_paired_by_seed_and_says_when_a_method_does_not_beat_it():
    from ContrastSegLib.benchmark.report import random_comparison_table
    dice = {("random", 0): 0.50, ("random", 1): 0.60, ("GD", 0): 0.55, ("GD", 1): 0.70,
            ("GR", 0): 0.45, ("GR", 1): 0.58, ("GD+LR", 0): 0.40, ("GD+LR", 1): 0.75}
    rows = [{"method": m, "labeled": 1, "seed": s, "dice_mean": v} for (m, s), v in dice.items()]
    rows.append({"method": "full", "labeled": 5, "seed": 0, "dice_mean": 0.9})
    lines = {line.split(" | ")[0].strip("| "): line
             for line in random_comparison_table(rows, ["random", "GD", "GR", "GD+LR", "full"]).splitlines()[2:]}
    assert set(lines) == {"GD", "GR", "GD+LR"}
    assert "+0.075 ± 0.035" in lines["GD"] and "2/2 seeds" in lines["GD"] and "beats random" in lines["GD"]
    assert "-0.035 ± 0.021" in lines["GR"] and "**does not beat random**" in lines["GR"]
    assert "+0.025" in lines["GD+LR"] and "1/2 seeds" in lines["GD+LR"] and "mixed" in lines["GD+LR"]


def test_recipe_budget_and_full_reach_every_stage_through_the_real_parsers(tmp_path, monkeypatch):
    """--finetune flags and --time-budget end up in the configs of each stage (pre-training stages a third of
    the chain's budget each, fine-tuning the rest); ``full`` trains longer with more volumes, to a plateau."""
    from ContrastSegLib.benchmark import pipeline
    seen = {"finetune": [], "pretrain": []}
    original_finetune, original_pretrain = pipeline.RunSettings.finetune_config, pipeline.RunSettings.pretrain_config
    monkeypatch.setattr(pipeline.RunSettings, "finetune_config", lambda self, *a: seen["finetune"].append(
        original_finetune(self, *a)) or seen["finetune"][-1])
    monkeypatch.setattr(pipeline.RunSettings, "pretrain_config", lambda self, *a: seen["pretrain"].append(
        original_pretrain(self, *a)) or seen["pretrain"][-1])
    out = tmp_path / "recipe"
    assert main(["benchmark", "--dataset", "phantom", "--out", str(out), "--methods", "random,GD,full", "--labeled", "1",
                 "--seeds", "1", "--finetune", "--flips horizontal --ce-weight 0.5", "--time-budget", "90s",
                 *FAST]) == 0
    [stage] = seen["pretrain"]
    assert stage.time_budget == 30 and stage.plateau_stop is False
    random, tuned, full = seen["finetune"]
    assert random.time_budget == 90  # no pre-training: the whole budget
    assert (tuned.flips, tuned.ce_weight, full.flips) == ("horizontal", 0.5, "horizontal")
    assert 60 <= tuned.time_budget <= 90  # the rest after the stage, at least a third
    assert full.plateau_stop and full.iterations == runner.full_iterations(PROFILES["smoke"].finetune_iterations, 3)
    assert runner.full_iterations(600, 14) == 4200 and runner.full_iterations(600, 1) == 600
    assert runner.full_iterations(100, 40) == 800  # at most 8 times
    record = json.loads((out / "benchmark.json").read_text())["settings"]
    assert record["finetune_recipe"] == {"flips": "horizontal", "ce_weight": 0.5} and record["time_budget"] == 90
    report = (out / "report.md").read_text()
    header, row = markdown_table(report, "Share of the random → full gap closed")
    assert header[-1] == "gap closed" and row[:2] == ["GD", "1"]


def test_the_gap_table_is_the_share_of_the_distance_to_full():
    from ContrastSegLib.benchmark.report import gap_table
    rows = [dict(method=m, labeled=n, seed=s, dice_mean=v) for m, n, s, v in [
        ("random", 1, 0, 0.4), ("random", 1, 1, 0.6), ("GD+LR", 1, 0, 0.6), ("GD+LR", 1, 1, 0.8),
        ("full", 14, 0, 0.9), ("full", 14, 1, 0.9)]]
    table = gap_table(rows, ["random", "GD+LR", "full"])
    assert "| GD+LR | 1 | 0.500 | 0.700 | 0.900 | 50% |" in table  # (0.7 − 0.5) / (0.9 − 0.5)
    assert "add `full`" in gap_table(rows[:4], ["random", "GD+LR"])


def test_a_stop_during_a_cell_ends_the_run_and_records_no_stopped_cell(tmp_path, monkeypatch, capsys):
    """The stop file (as SIGTERM would) appears while the second cell fine-tunes: that training stops and keeps
    its weights, but the run ends there as an interruption (exit 130) — the stopped cell is not scored, and the
    next run computes exactly it."""
    from ContrastSegLib.benchmark import pipeline
    stop_file = tmp_path / "stop"
    monkeypatch.setenv("CONTRASTSEG_STOP_FILE", str(stop_file))
    calls, original = [], pipeline.run_finetune

    def stopping(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            stop_file.touch()
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run_finetune", stopping)
    out = tmp_path / "stopped"
    code, _, _ = benchmark(capsys, out, "--methods", "random", "--labeled", "1", "--seeds", "2")
    assert code == 130
    assert (out / "cells" / "random" / "labeled1_seed0" / "result.json").is_file()
    assert_nothing_written(out / "cells" / "random" / "labeled1_seed1", out / "cells")
    assert not (out / "results.csv").exists()
    stop_file.unlink()
    code, _, _ = benchmark(capsys, out, "--methods", "random", "--labeled", "1", "--seeds", "2")
    assert code == 0 and len(calls) == 3  # only the stopped cell again
    assert [r["seed"] for r in read_results(out)] == ["0", "1"]


def test_the_thin_structure_phantoms_are_a_dataset_of_their_own(tmp_path):
    prepared = prepare_dataset("phantom-thin", None, tmp_path / "data", PROFILES["smoke"])
    assert prepared.structures == {1: "LV", 2: "myocardium", 3: "RV", 4: "oesophagus"}
    assert prepared.split.test == tuple(load_split_file(packaged_split_path("phantom-thin"))["test"])
    assert (tmp_path / "data" / "phantom-thin" / "dataset.json").is_file()
    plain = prepare_dataset("phantom", None, tmp_path / "data", PROFILES["smoke"])  # beside it, not instead
    assert plain.structures == {1: "LV", 2: "myocardium", 3: "RV"}
