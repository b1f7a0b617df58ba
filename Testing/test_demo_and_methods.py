"""The demo runs end to end with its method comparison; method names parse as the papers write them."""

import csv

import pytest

from ContrastSegLib.demo import DemoConfig, run_demo
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.training.methods import parse_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name, stages, mixup", [
    ("random", (), False),
    ("GR", (("global", "GR"),), False),
    ("GD-", (("global", "GD-"),), False),
    ("GD+LR", (("global", "GD"), ("local", "LR")), False),
    ("GD+LD+mixup", (("global", "GD"), ("local", "LD")), True),
    ("GD+supervised-local", (("global", "GD"), ("supervised-local", "stride")), False),
    ("GD+SLC+mixup", (("global", "GD"), ("supervised-local", "stride")), True),
    ("random+mixup", (), True),
])
def test_method_names(name, stages, mixup):
    method = parse_method(name)
    assert method.pretraining == stages and method.mixup == mixup and method.name == name


@pytest.mark.parametrize("name", ["", "LR", "GD+GR", "GD+LR+LD", "random+LR", "SimCLR", "GD+LR+SLC", "SLC"])
def test_unknown_method_names_are_refused(name):
    with pytest.raises(ContrastSegError, match="method"):
        parse_method(name)


def test_demo_compares_methods_end_to_end(tmp_path, capsys):
    config = DemoConfig(subjects=4, labeled=1, test=1, iterations=3, pretrain_iterations=3, crop_size=32,
                        spacing=4.0, methods=("random", "GD+LR", "GD+SLC+mixup", "random+self-training"), precision="fp32")
    summary = run_demo(tmp_path / "demo", config)
    printed = capsys.readouterr().out
    assert "random" in printed and "GD+LR" in printed
    assert {row["method"] for row in summary} == {"random", "GD+LR", "GD+SLC+mixup", "random+self-training"}
    out = tmp_path / "demo"
    for item in ("report.md", "split.json", "metrics.csv", "summary.csv", "models/random.pt", "models/GD+LR.pt",
                 "pretrained/GD.pt", "pretrained/GD+LR.pt", "pretrained/GD+SLC.pt", "models/GD+SLC+mixup.pt"):
        assert (out / item).exists(), item
    assert len(list((out / "overlays" / "GD+LR").glob("*.png"))) == 1
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} == {"random", "GD+LR", "GD+SLC+mixup", "random+self-training"} and len(rows) == 4 * 3  # × 3 structures
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind


def test_the_demo_takes_a_time_budget_through_the_real_parser():
    from ContrastSegLib.cli import build_parser
    from ContrastSegLib.demo import _run_settings
    from ContrastSegLib.settings import config_from_args
    config = config_from_args(DemoConfig, build_parser().parse_args(["demo", "--time-budget", "2m"]))
    settings = _run_settings(config, pool=4)
    assert config.time_budget == 120 and settings.pretrain_config("global", "GD").time_budget == 40
    assert settings.finetune_config(parse_method("GD+LR"), pretrain_seconds=50).time_budget == 70
