"""Hostile options and checkpoint metadata through the real ``contrastseg`` command: exit status 1, one
``contrastseg: error:`` line naming the option or file and the fix, no traceback, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import (FAST_PREDICT, TINY_TRAINING, assert_nothing_written, assert_refused, blob_arrays, file_state,
                         run_cli, write_image, write_pair)

from ContrastSegLib.cli import main
from ContrastSegLib.runtime.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PRETRAIN = ["--channels", "8,16,32", "--crop-size", "32", "--spacing", "4", "--iterations", "2", "--partitions", "2",
            "--volumes-per-batch", "2", "--precision", "fp32", "--device", "cpu"]


def _refused_without_output(capsys, tmp_path, argv, *fragments):
    code, out, err = run_cli(capsys, *argv)
    assert "Traceback" not in err
    return assert_refused(code, out, err, *fragments)


# Class 1: every option's value is checked once, by its rule, including argparse's own errors (one line, exit 1).
BAD_OPTIONS = [
    (["--lr", "nan"], "--lr nan"), (["--lr", "inf"], "--lr inf"), (["--spacing", "0"], "--spacing 0"),
    (["--spacing", "-1.6"], "--spacing -1.6"), (["--spacing", "1e-9"], "--spacing 1e-9"),
    (["--crop-size", "1000000"], "--crop-size 1000000"), (["--mixup-alpha", "0"], "--mixup-alpha 0"),
    (["--seed", str(2 ** 64)], f"--seed {2 ** 64}"), (["--pseudo-keep", "2"], "--pseudo-keep 2"),
    (["--iterations", "0"], "--iterations 0"), (["--iterations", "x"], "--iterations x"),
    (["--precision", "fp8"], "--precision fp8"), (["--channels", "8,x"], "--channels 8,x"),
    (["--no-such-option"], "--no-such-option"),
]


@pytest.mark.parametrize("words, fragment", BAD_OPTIONS, ids=[f for _, f in BAD_OPTIONS])
def test_a_bad_option_is_one_line_naming_it_and_the_fix(capsys, tmp_path, pairs, words, fragment):
    out = tmp_path / "model.pt"
    message = _refused_without_output(capsys, tmp_path, ["finetune", "--labeled", pairs, "--out", out,
                                                         *TINY_TRAINING, *words], fragment)
    assert any(fix in message for fix in ("e.g.", "choose", "--help")), message
    assert_nothing_written(out, tmp_path)


@pytest.mark.parametrize("words, fragments", [
    (["--temperature", "nan"], ("--temperature nan", "e.g.")),
    (["--stage", "local", "--decoder-blocks", "5"], ("--decoder-blocks 5", "choose 1..2")),
    (["--stage", "local", "--decoder-blocks", "2", "--region-size", "1000"], ("--region-size 1000", "choose 1..32")),
    (["--stage", "supervised-local", "--stride", "64"], ("--stride 64", "choose 1..31")),
])
def test_pretraining_options_that_depend_on_the_unet_are_refused_before_reading(capsys, tmp_path, pairs, model,
                                                                                words, fragments):
    out = tmp_path / "stage.pt"
    argv = ["pretrain", "--unlabeled", pairs, "--labeled", pairs, "--init", model, "--out", out, *PRETRAIN, *words]
    _refused_without_output(capsys, tmp_path, argv, *fragments)
    assert_nothing_written(out, tmp_path)


# Class 2: a non-finite loss stops training with one line and writes nothing.
def test_a_non_finite_loss_stops_training_and_writes_nothing(capsys, tmp_path, pairs, monkeypatch):
    from ContrastSegLib.losses import DiceCrossEntropyLoss

    monkeypatch.setattr(DiceCrossEntropyLoss, "forward", lambda self, logits, targets: logits.sum() * float("nan"))
    out = tmp_path / "model.pt"
    _refused_without_output(capsys, tmp_path, ["finetune", "--labeled", pairs, "--out", out, *TINY_TRAINING],
                            "loss became nan at step 1", "lower --lr")
    assert_nothing_written(out, tmp_path)


# Class 3: checkpoint metadata is checked against its weights and the ranges on load.
def _rewrite(source, target, change):
    payload = torch.load(source, weights_only=True)
    metadata = json.loads(payload["metadata"])
    change(metadata, payload["model"])
    payload["metadata"] = json.dumps(metadata)
    torch.save(payload, target)
    return target


def _labels_disagree(meta, weights):
    meta["labels"] = {"values": [0, 1, 2], "names": ["b", "x", "y"], "colors": [[0, 0, 0]] * 3}


BAD_METADATA = {
    "labels vs head": (_labels_disagree, "segmentation head of 2 classes"),
    "spacing 0": (lambda m, w: m["preprocessing"].update(target_spacing=0), "--spacing 0"),
    "crop -32": (lambda m, w: m["preprocessing"].update(crop_size=-32), "--crop-size -32"),
    "slice axis 7": (lambda m, w: m["preprocessing"].update(slice_axis=7), "--slice-axis 7"),
    "label 70000": (lambda m, w: m["labels"].update(values=[0, 70000]), "≤ 65535"),
    "huge widths": (lambda m, w: m["architecture"].update(channels=[100000] * 6), "outside what contrastseg builds"),
    "widths vs weights": (lambda m, w: m["architecture"].update(channels=[8, 16, 64]), "does not fit"),
}


@pytest.mark.parametrize("name", BAD_METADATA)
def test_checkpoint_metadata_is_checked_on_load(capsys, tmp_path, model, name):
    change, fragment = BAD_METADATA[name]
    bad = _rewrite(model, tmp_path / "bad.pt", change)
    image = write_image(tmp_path / "scan.nii.gz", blob_arrays()[0])
    out = tmp_path / "seg.nii.gz"
    _refused_without_output(capsys, tmp_path, ["predict", "--model", bad, "--input", image, "--output", out,
                                               *FAST_PREDICT], str(bad), fragment, "train it again")
    assert_nothing_written(out, tmp_path)


# Class 4: a resume file carries its run's fingerprint; a foreign, finished or damaged one is refused.
def test_a_resume_file_that_is_not_this_runs_is_refused(capsys, tmp_path, pairs, model):
    out = tmp_path / "global.pt"
    resume = tmp_path / ".global.pt.resume"
    argv = ["pretrain", "--unlabeled", pairs, "--out", out, *PRETRAIN]
    resume.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _refused_without_output(capsys, tmp_path, argv, str(resume), "delete it")
    resume.write_bytes(model.read_bytes())  # a finished checkpoint: no resume marker
    _refused_without_output(capsys, tmp_path, argv, str(resume), "delete it")
    assert not out.exists()


def test_a_resume_file_left_by_a_finished_run_is_refused(capsys, tmp_path, pairs, monkeypatch):
    from ContrastSegLib.training import pretrain_job

    out = tmp_path / "global.pt"
    argv = ["pretrain", "--unlabeled", pairs, "--out", out, *PRETRAIN]
    resume = tmp_path / ".global.pt.resume"
    kept, save = {}, pretrain_job.save_checkpoint

    def save_and_keep(checkpoint, path, overwrite=True):  # keeps the last resume file the run removes at its end
        written = save(checkpoint, path, overwrite=overwrite)
        if path == resume:
            kept["bytes"] = resume.read_bytes()
        return written
    monkeypatch.setattr(pretrain_job, "save_checkpoint", save_and_keep)
    assert main([str(a) for a in argv]) == 0
    assert out.exists() and not resume.exists()
    resume.write_bytes(kept["bytes"])
    before = file_state(out)
    _refused_without_output(capsys, tmp_path, argv + ["--overwrite"], str(resume), "finished run", "delete it")
    assert file_state(out) == before


# Class 5: label value 255 is a class like any other; a manifest's labels may leave background out.
def test_label_value_255_and_a_manifest_without_background(capsys, tmp_path):
    image, label = blob_arrays()
    folder = tmp_path / "data"
    write_pair(folder, "alpha", image, label * 255)
    write_pair(folder, "beta", image, label * 255)
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps({"labels": {"255": "LV"}, "cases": [
        {"image": str(folder / f"{c}.nii.gz"), "label": str(folder / f"{c}_seg.nii.gz")} for c in ("alpha", "beta")]}))
    out = tmp_path / "model.pt"
    assert main(["finetune", "--labeled", str(manifest), "--out", str(out), *TINY_TRAINING]) == 0
    labels = load_checkpoint(out).metadata["labels"]
    assert labels["values"] == [0, 255] and labels["names"] == ["background", "LV"]
