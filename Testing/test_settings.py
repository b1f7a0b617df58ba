"""The settings module: every config survives config -> flags -> the real ``contrastseg`` parser -> config, each bad
value is refused in one line naming its flag, ``--help`` states the dataclass defaults, old checkpoint metadata
still loads, and the module imports without torch."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest
from cli_helpers import TINY_TRAINING, assert_nothing_written, assert_refused, run_cli

from ContrastSegLib.cli import build_parser, finetune_command, pretrain_command
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.settings import (MAX_AUTO_CROP, SWITCH, FinetuneConfig, PreprocessConfig, PretrainConfig, Stage,
                                     command_arguments, config_from_args, option_fields)

REQUIRED = {"finetune": ["finetune", "--labeled", "data", "--out", "model.pt"],
            "pretrain": ["pretrain", "--out", "global.pt"]}

CONFIGS = [
    ("finetune", FinetuneConfig()),
    ("finetune", FinetuneConfig(iterations=7, batch_size=3, learning_rate=2.5e-4, lr_schedule="constant",
                                validate_every=3, seed=2, augment=False, mixup=True, mixup_alpha=0.25,
                                ce_weight=0.0, self_training_rounds=2, pseudo_keep=0.75, device="cuda:1",
                                precision="bf16", channels_last="on")),
    ("finetune", FinetuneConfig(self_training_rounds=1)),
    ("pretrain", PretrainConfig()),
    ("pretrain", PretrainConfig(stage="local", strategy="LD", iterations=11, partitions=3, volumes_per_batch=5,
                                learning_rate=1e-4, temperature=0.07, decoder_blocks=2, region_size=5, seed=9,
                                checkpoint_every=4, device="cpu", precision="fp32", channels_last="off")),
    ("pretrain", PretrainConfig(stage="supervised-local", strategy="block", stride=2, block_size=8)),
    ("finetune", PreprocessConfig()),
    ("pretrain", PreprocessConfig(target_spacing=1.367, crop_size=96, slice_axis=0, percentiles=(0.5, 99.5),
                                  n4=True)),
]


def subparser(command: str) -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser().add_subparsers()
    {"finetune": finetune_command, "pretrain": pretrain_command}[command].register(commands)
    return commands.choices[command]


@pytest.mark.parametrize("command, config", CONFIGS, ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_config_round_trips_through_the_real_parser(command, config):
    words = command_arguments(config)
    parsed = build_parser().parse_args(REQUIRED[command] + words)
    assert config_from_args(type(config), parsed) == config
    flags = {w for w in words if w.startswith("--")}
    assert len(flags) == sum(getattr(config, f.name) is not None for f in option_fields(type(config)))


def test_strategy_follows_the_stage_and_mode_is_its_alias():
    assert [PretrainConfig(stage=s).strategy for s in Stage.values()] == ["GD", "LR", "stride", "patches"]
    parsed = build_parser().parse_args(REQUIRED["pretrain"] + ["--stage", "supervised-local", "--mode", "exact"])
    assert config_from_args(PretrainConfig, parsed).strategy == "exact"
    parsed = build_parser().parse_args(REQUIRED["pretrain"] + ["--stage", "local"])
    assert config_from_args(PretrainConfig, parsed).strategy == "LR"


@pytest.mark.parametrize("command, cls", [("finetune", FinetuneConfig), ("finetune", PreprocessConfig),
                                          ("pretrain", PretrainConfig), ("pretrain", PreprocessConfig)])
def test_help_defaults_are_the_dataclass_defaults(command, cls):
    actions = {action.dest: action for action in subparser(command)._actions}
    default_words = command_arguments(cls())
    for item in option_fields(cls):
        action = actions[item.name]
        assert action.option_strings[0] == item.metadata["flags"][0]
        assert action.default in (item.default, argparse.SUPPRESS), item.name  # SUPPRESS: inherit from --init
        if item.metadata["shown"]:
            shown = item.metadata["shown"]
        elif item.metadata["rule"] is SWITCH:
            shown = "on" if item.default else "off"
        else:
            shown = default_words[default_words.index(item.metadata["flags"][0]) + 1]
        assert action.help.endswith(f"(default: {shown})"), (item.name, action.help)
    parsed = build_parser().parse_args(REQUIRED[command])
    assert config_from_args(cls, parsed) == cls()


def test_one_default_per_setting():
    assert PreprocessConfig().crop_size is None and MAX_AUTO_CROP == 192  # the side from the data, at most 192
    assert FinetuneConfig().iterations == 3000 and FinetuneConfig().batch_size == 16
    assert PretrainConfig().iterations == 10000


REFUSALS = [
    (FinetuneConfig(iterations=0), "--iterations 0"),
    (FinetuneConfig(batch_size=-4), "--batch-size -4"),
    (FinetuneConfig(learning_rate=0.0), "--lr 0.0"),
    (FinetuneConfig(lr_schedule="linear"), "--lr-schedule linear"),
    (FinetuneConfig(validate_every=0), "--validate-every 0"),
    (FinetuneConfig(seed=1.5), "--seed 1.5"),
    (FinetuneConfig(mixup_alpha=-1.0), "--mixup-alpha -1.0"),
    (FinetuneConfig(ce_weight=-0.5), "--ce-weight -0.5"),
    (FinetuneConfig(self_training_rounds=-1), "--self-training -1"),
    (FinetuneConfig(pseudo_keep=1.5), "--pseudo-keep 1.5"),
    (FinetuneConfig(pseudo_keep=0), "--pseudo-keep 0"),
    (FinetuneConfig(labeled_share=1.0), "--labeled-share 1.0"),
    (FinetuneConfig(flips="mirror"), "--flips mirror"),
    (FinetuneConfig(scale_range=(1.2, 0.8)), "--scale-range 1.2,0.8"),
    (FinetuneConfig(elastic=0.5), "--elastic 0.5"),
    (FinetuneConfig(device="gpu"), "--device gpu"),
    (FinetuneConfig(precision="fp8"), "--precision fp8"),
    (PretrainConfig(channels_last="yes"), "--channels-last yes"),
    (PretrainConfig(stage="middle"), "--stage middle"),
    (PretrainConfig(stage="local", strategy="GD"), "--strategy GD"),
    (PretrainConfig(iterations=-1), "--iterations -1"),
    (PretrainConfig(partitions=0), "--partitions 0"),
    (PretrainConfig(volumes_per_batch=0), "--volumes-per-batch 0"),
    (PretrainConfig(temperature=0.0), "--temperature 0.0"),
    (PretrainConfig(decoder_blocks=0), "--decoder-blocks 0"),
    (PretrainConfig(region_size=0), "--region-size 0"),
    (PretrainConfig(stride=0), "--stride 0"),
    (PretrainConfig(block_size=0), "--block-size 0"),
    (PretrainConfig(checkpoint_every=0), "--checkpoint-every 0"),
    (PreprocessConfig(target_spacing=0.0), "--spacing 0.0"),
    (PreprocessConfig(crop_size=0), "--crop-size 0"),
    (PreprocessConfig(crop_size=100), "--crop-size 100"),
    (PreprocessConfig(crop_size=16), "--crop-size 16"),
    (PreprocessConfig(slice_axis=3), "--slice-axis 3"),
    (PreprocessConfig(percentiles=(99.0, 1.0)), "--percentiles 99.0,1.0"),
    (PreprocessConfig(percentiles=(1.0, 101.0)), "--percentiles 1.0,101.0"),
    (PreprocessConfig(n4="yes"), "--n4 yes"),
]


@pytest.mark.parametrize("config, fragment", REFUSALS, ids=[fragment for _, fragment in REFUSALS])
def test_check_refuses_with_one_line_naming_the_flag_and_the_fix(config, fragment):
    with pytest.raises(ContrastSegError) as refused:
        config.check()
    message = str(refused.value)
    assert message.startswith(fragment) and "\n" not in message, message
    assert any(fix in message for fix in ("e.g.", "choose", "try", "left out")), message


def test_crop_size_fits_the_unet_of_the_given_widths():
    assert PreprocessConfig(crop_size=32).check(channels=(8, 16)).crop_size == 32
    with pytest.raises(ContrastSegError, match=r"--crop-size 30 must be a multiple of 4 .*; try 32"):
        PreprocessConfig(crop_size=30).check(channels=(8, 16, 32))
    with pytest.raises(ContrastSegError, match="multiple of 32.*try 96"):
        PreprocessConfig(crop_size=100).check()


def test_a_bad_value_on_the_command_line_is_one_error_line(capsys, tmp_path):
    out = tmp_path / "model.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", tmp_path, "--out", out, *TINY_TRAINING,
                                "--labeled-share", "1.5")
    assert_refused(code, stdout, err, "--labeled-share 1.5", "between 0 and 1")
    assert_nothing_written(out, tmp_path)


def test_old_checkpoint_metadata_still_loads():
    old = {**PretrainConfig().to_json(), "retired_option": 3}
    del old["checkpoint_every"]
    assert PretrainConfig.from_json(old) == PretrainConfig()
    recorded = {"target_spacing": 1.5, "crop_size": 128, "percentiles": [1, 99], "slice_axis": None}
    assert PreprocessConfig.from_json(recorded) == PreprocessConfig(target_spacing=1.5, crop_size=128,
                                                                    percentiles=(1, 99))
    assert FinetuneConfig.from_json({"iterations": 5, "unknown": True}) == dataclasses.replace(FinetuneConfig(),
                                                                                              iterations=5)


def test_settings_import_without_torch():
    script = ("import sys; sys.modules['torch'] = None; sys.modules['numpy'] = None\n"
              "import ContrastSegLib.settings as s, ContrastSegLib.runtime.stop\n"
              "words = s.command_arguments(s.FinetuneConfig(mixup=True))\n"
              "assert '--mixup' in words and s.PretrainConfig(stage='local').check().strategy == 'LR'\n"
              "assert not [m for m in sys.modules if m.startswith('ContrastSegLib.training')]\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
