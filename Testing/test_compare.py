"""``contrastseg compare``: leave-one-out over the user's labeled volumes through the real CLI — folds that never
train on their test volume, a paired verdict, a recommendation whose training commands the real parser accepts,
a time budget shared by every run, and bad input refused before anything is written."""

import csv
import shlex

import pytest

from cli_helpers import assert_nothing_written, assert_refused, run_cli
from ContrastSegLib.benchmark import compare
from ContrastSegLib.cli import build_parser
from ContrastSegLib.data.phantom import write_phantom_dataset
from ContrastSegLib.settings import FinetuneConfig, PretrainConfig, config_from_args

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["--channels", "8,16,32", "--crop-size", "32", "--spacing", "4", "--precision", "fp32", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    return write_phantom_dataset(folder / "labeled", 3, seed=0), write_phantom_dataset(folder / "unlabeled", 3,
                                                                                      seed=4)


@pytest.fixture(scope="module")
def compared(data, tmp_path_factory):
    labeled, unlabeled = data
    out = tmp_path_factory.mktemp("compared") / "out"
    from ContrastSegLib.cli import main
    assert main(["compare", "--labeled", str(labeled), "--unlabeled", str(unlabeled), "--out", str(out),
                 "--methods", "MIM", "--pretrain-iterations", "20", "--finetune-iterations", "40", *TINY]) == 0
    return out


def test_every_fold_leaves_its_volume_out_of_training(compared, data):
    labeled, _ = data
    with open(compared / "compare.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["case"], r["method"]) for r in rows] == [(c, m) for c in ("phantom_000", "phantom_001", "phantom_002")
                                                        for m in ("random", "MIM")]  # random always compared
    assert all(0 <= float(r["dice_mean"]) <= 1 for r in rows)
    for case in ("phantom_000", "phantom_001", "phantom_002"):
        trained_on = (compared / "folds" / case / "train.csv").read_text()
        assert case not in trained_on and trained_on.count("phantom_") == 4  # 2 pairs, image + label each
        assert (compared / "folds" / case / "MIM" / f"{case}_seg.nii.gz").is_file()
    assert [p.name for p in (compared / "pretrained").iterdir()] == ["MIM.pt"]  # made once, shared by the folds


def test_the_report_recommends_a_method_and_its_commands_pass_the_real_parser(compared, data):
    report = (compared / "report.md").read_text()
    assert "| MIM | 2 |" in report and "/3 folds" in report
    recommended = report.split("**Recommended: ")[1].split("**")[0]
    assert recommended in ("random", "MIM")
    commands = report.split("```\n")[1].split("\n```")[0].splitlines()
    assert len(commands) == (2 if recommended == "MIM" else 1)
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "contrastseg"
        args = build_parser().parse_args(words[1:])
        config = config_from_args(PretrainConfig if words[1] == "pretrain" else FinetuneConfig, args).check()
        assert config.seed == 0
    assert shlex.split(commands[-1])[1] == "finetune" and str(data[0]) in commands[-1]


def test_the_time_budget_is_shared_by_every_training_run():
    # 3 folds × (random, GD+LR, MIM+SLC) fine-tunings, GD and GD+LR and MIM once, MIM+SLC's supervised stage per fold
    assert compare._count_runs(("random", "GD+LR", "MIM+SLC"), 3) == 9 + 3 + 3


def test_one_labeled_volume_is_refused_before_anything_is_written(data, tmp_path, capsys):
    labeled, unlabeled = data
    single = write_phantom_dataset(tmp_path / "one", 1, seed=0)
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "compare", "--labeled", single, "--unlabeled", unlabeled, "--out", out, *TINY)
    assert_refused(code, stdout, err, str(single), "at least 2", "annotate one more")
    assert_nothing_written(out, tmp_path)
    code, stdout, err = run_cli(capsys, "compare", "--labeled", labeled, "--out", out, "--methods", "GD+LR", *TINY)
    assert_refused(code, stdout, err, "--unlabeled")
    code, stdout, err = run_cli(capsys, "compare", "--labeled", labeled, "--unlabeled", unlabeled, "--out", out,
                                "--methods", "GD+SimCLR", *TINY)
    assert_refused(code, stdout, err, "--methods", "SimCLR")
    code, stdout, err = run_cli(capsys, "compare", "--labeled", labeled, "--unlabeled", unlabeled, "--out", out,
                                "--methods", "GD+LR", "--channels", "8,16,32", "--crop-size", "32", "--spacing", "4",
                                "--time-budget", "soon")
    assert_refused(code, stdout, err, "--time-budget", "soon")
    assert_nothing_written(out, tmp_path)


def test_a_pretrained_checkpoint_is_compared_on_its_own_grid_without_pretraining_again(data, tmp_path, capsys):
    """--init (the background pre-training's weights in Slicer): every fold fine-tunes from it as "pretrained",
    beside random initialisation on the checkpoint's preprocessing and widths; nothing is pre-trained again."""
    from ContrastSegLib.cli import main
    from ContrastSegLib.runtime.checkpoint import load_checkpoint
    labeled, unlabeled = data
    checkpoint = tmp_path / "GD.pt"
    assert main(["pretrain", "--unlabeled", str(unlabeled), "--out", str(checkpoint), "--iterations", "3",
                 "--volumes-per-batch", "2", "--channels", "8,16", "--crop-size", "32", "--spacing", "3",
                 "--precision", "fp32", "--device", "cpu"]) == 0
    out = tmp_path / "out"
    assert main(["compare", "--labeled", str(labeled), "--init", str(checkpoint), "--out", str(out),
                 "--finetune-iterations", "4", "--precision", "fp32", "--device", "cpu"]) == 0
    with open(out / "compare.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == ["random", "pretrained"] * 3
    assert not (out / "pretrained").exists()
    for method in ("random", "pretrained"):
        model = load_checkpoint(out / "folds" / "phantom_000" / method / "model.pt").metadata
        assert model["architecture"]["channels"] == [8, 16]  # the checkpoint's widths, not the default
        assert model["preprocessing"]["crop_size"] == 32 and model["preprocessing"]["target_spacing"] == 3
    commands = (out / "report.md").read_text().split("```\n")[1].split("\n```")[0].splitlines()
    if "**Recommended: pretrained**" in (out / "report.md").read_text():
        assert commands == [c for c in commands if "--init" in c] and str(checkpoint) in commands[0]
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])

    finetuned = out / "folds" / "phantom_000" / "pretrained" / "model.pt"
    code, stdout, err = run_cli(capsys, "compare", "--labeled", labeled, "--init", finetuned, "--out",
                                tmp_path / "again", "--finetune-iterations", "4", "--device", "cpu")
    assert_refused(code, stdout, err, str(finetuned), "finetune", "unlabeled")
    code, stdout, err = run_cli(capsys, "compare", "--labeled", labeled, "--methods", "pretrained", "--out",
                                tmp_path / "again", "--device", "cpu")
    assert_refused(code, stdout, err, "--methods pretrained", "--init")
    assert_nothing_written(tmp_path / "again", tmp_path)
