"""No structure silently dropped: after fine-tuning, each structure's Dice on the training volumes says whether it
was learned; one that was not is named in the log, recorded in the checkpoint and shown by ``contrastseg info``.
The check against its definition with a model whose predictions are set exactly, then end to end through the CLI."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
from cli_helpers import blob_arrays, events, named, run_cli, write_pair
from torch import nn

from ContrastSegLib.cli import main
from ContrastSegLib.data.labels import LabelSet
from ContrastSegLib.preprocess import PreparedVolume
from ContrastSegLib.runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.runtime.progress import ProgressReporter
from ContrastSegLib.training.structure_check import NOT_LEARNED_DICE, StructureFit, check_structures, report_structures

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FP32 = plan_execution("cpu", "fp32")
# class index -> label value: 1 "big", 2 "small" (under the threshold), 3 "absent" (in no training label)
LABELS = LabelSet.build([0, 1, 5, 7], {0: "background", 1: "big", 5: "small", 7: "absent"})


class Oracle(nn.Module):
    """Predicts, at each pixel, the class index written into the image (pixel value = index / 10): (B, 1, P, P) ->
    (B, 4, P, P) logits, so every prediction is set by the test."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 10.0 * nn.functional.one_hot((images[:, 0] * 10).round().long(), 4).movedim(-1, 1).float()


def volume(predicted: np.ndarray, label: np.ndarray) -> PreparedVolume:
    return PreparedVolume((predicted / 10).astype(np.float32), label.astype(np.uint8), record=None)


def oracle_volumes() -> list[PreparedVolume]:
    """Pooled over both volumes: "big" 12 of 20 voxels found + 4 false ones: Dice 2*12/(16+20) = 2/3 (its mean of
    per-volume Dice, (0.75 + 0) / 2, would be under the threshold); "small" 1 of 8 found: 2*1/(1+8) = 2/9; "absent"
    predicted on 3 voxels but in no label."""
    label, predicted = np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8)
    label[0, 0:4, 0:4] = 1  # 16 voxels of "big"
    predicted[0, 0:3, 0:4] = 1  # 12 of them found ...
    predicted[0, 4, 0:4] = 1  # ... and 4 false ones
    label[1, 6:8, 6:8] = 2  # 4 voxels of "small", one found
    predicted[1, 6, 6] = 2
    predicted[1, 0, 5:8] = 3  # "absent" predicted where there is background
    first = volume(predicted, label)
    label, predicted = np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 8), np.uint8)
    label[0, 0:2, 0:2] = 1  # 4 voxels of "big", none found
    label[0, 5:7, 5:7] = 2  # 4 voxels of "small", none found
    return [first, volume(predicted, label)]


def test_dice_per_structure_on_the_training_volumes_pooled():
    structures = check_structures(Oracle(), oracle_volumes(), FP32, LABELS)
    assert [(s.value, s.name) for s in structures] == [(1, "big"), (5, "small")]  # "absent" cannot be judged
    big, small = structures
    assert big.train_dice == pytest.approx(2 / 3) and big.learned
    assert small.train_dice == pytest.approx(2 / 9) and not small.learned
    assert NOT_LEARNED_DICE == 0.5
    assert small.to_json() == {"value": 5, "name": "small", "train_dice": 0.2222, "learned": False}
    assert small.warning() == ('structure 5 "small" was not learned (Dice 0.22 on the training volumes): train '
                               "longer (--time-budget/--iterations), annotate it on more slices, or check its label")


def test_the_threshold_is_inclusive():
    label = np.zeros((1, 4, 4), np.uint8)
    label[0, :2, :2] = 1  # 4 voxels

    def fit(found: int, false: int):
        predicted = np.zeros_like(label)
        predicted[0, :2, :2].flat[:found] = 1
        predicted[0, 3].flat[:false] = 1
        return check_structures(Oracle(), [volume(predicted, label)], FP32, LABELS)[0]
    assert fit(4, 0).train_dice == 1.0 and fit(4, 0).learned
    assert fit(2, 2).train_dice == 0.5 and fit(2, 2).learned  # 2*2 / (4 + 4)
    assert fit(1, 2).train_dice == pytest.approx(2 / 7) and not fit(1, 2).learned  # 2*1 / (3 + 4)


def test_the_log_names_each_structure_not_learned(capsys):
    stream = io.StringIO()
    report_structures(Oracle(), oracle_volumes(), FP32, LABELS, ProgressReporter("finetune", 1, stream, True))
    logs = named(events(stream.getvalue()), "log")
    warnings = [r["message"] for r in logs if r.get("level") == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith('structure 5 "small" was not learned (Dice 0.22')
    assert any(r["message"] == 'Dice on the training volumes: "big" 0.67, "small" 0.22' for r in logs)
    report_structures(Oracle(), oracle_volumes(), FP32, LABELS, ProgressReporter("finetune", 1, io.StringIO(), False))
    assert 'warning: structure 5 "small" was not learned' in capsys.readouterr().err  # on a terminal


def test_a_name_with_control_characters_is_cleaned_and_escaped():
    """Names are cleaned where they are read (``LabelSet``); the log line still escapes what it is given."""
    labels = LabelSet.build([0, 1, 5, 7], {1: "big", 5: "sm\x1b[2Jall\n"})
    small = check_structures(Oracle(), oracle_volumes(), FP32, labels)[1]
    assert small.name == "sm[2Jall"
    assert 'structure 5 "sm[2Jall" was not learned' in small.warning()
    raw = StructureFit(5, "sm\x1b[2Jall\n", 0.2, False)
    assert 'structure 5 "sm\\x1b[2Jall\\n" was not learned' in raw.warning()


# ---- end to end: contrastseg finetune, the checkpoint, contrastseg info ---------------------------------------------

@pytest.fixture(scope="module")
def speck_data(tmp_path_factory):
    """Two pairs whose labels hold a disc ("blob") and a 3×3 speck in every slice ("speck"), named by a manifest."""
    folder = tmp_path_factory.mktemp("structures")
    cases = []
    for case in ("alpha", "beta"):
        image, label = blob_arrays(seed=len(case))
        label[:, 10:13, 17:20] = 2  # away from the disc, inside the 32-voxel centre crop
        image_path, label_path = write_pair(folder, case, image, label)
        cases.append({"id": case, "image": str(image_path), "label": str(label_path)})
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"cases": cases, "labels": {"1": "blob", "2": "speck"}}))
    return manifest


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, speck_data):
    """Two iterations: far too few to learn the speck. (checkpoint, stdout of finetune: JSON events)."""
    out = tmp_path_factory.mktemp("short-run") / "model.pt"
    stream = io.StringIO()
    with redirect_stdout(stream):
        code = main(["finetune", "--labeled", str(speck_data), "--out", str(out), "--iterations", "2",
                     "--batch-size", "2", "--crop-size", "32", "--channels", "8,16", "--precision", "fp32",
                     "--device", "cpu"])
    assert code == 0, stream.getvalue()[-2000:]
    return out, stream.getvalue()


def test_a_structure_not_learned_is_named_in_the_log_the_checkpoint_and_info(short_run, capsys):
    path, stdout = short_run
    warnings = [r["message"] for r in named(events(stdout), "log") if r.get("level") == "warning"]
    assert any(w.startswith('structure 2 "speck" was not learned (Dice ') and "train longer" in w for w in warnings)

    structures = load_checkpoint(path).metadata["structures"]
    assert [(s["value"], s["name"]) for s in structures] == [(1, "blob"), (2, "speck")]
    speck = structures[1]
    assert speck["learned"] is False and 0 <= speck["train_dice"] < NOT_LEARNED_DICE
    assert speck["train_dice"] == round(speck["train_dice"], 4)
    assert all(s["learned"] == (s["train_dice"] >= NOT_LEARNED_DICE) for s in structures)

    code, out, err = run_cli(capsys, "info", "--model", path)
    assert code == 0, err
    line, = [l for l in out.splitlines() if l.startswith("structures")]
    assert line.startswith("structures    not learned on the training volumes (Dice < 0.5): ")
    assert f'2 "speck" (Dice {speck["train_dice"]:.2f})' in line


def test_info_says_all_learned_and_is_silent_on_an_older_checkpoint(short_run, capsys, tmp_path):
    path, _ = short_run
    checkpoint = load_checkpoint(path)
    learned = [{**s, "learned": True, "train_dice": 0.9} for s in checkpoint.metadata["structures"]]
    for name, structures in (("learned.pt", learned), ("older.pt", None)):
        metadata = {k: v for k, v in checkpoint.metadata.items() if k != "structures"}
        if structures is not None:
            metadata["structures"] = structures
        save_checkpoint(Checkpoint(checkpoint.model, metadata), tmp_path / name)
    code, out, _ = run_cli(capsys, "info", "--model", tmp_path / "learned.pt")
    assert code == 0 and "structures    all structures learned on the training volumes (Dice ≥ 0.5)" in out
    code, out, _ = run_cli(capsys, "info", "--model", tmp_path / "older.pt")
    assert code == 0 and not [line for line in out.splitlines() if line.startswith("structures")]
    assert "not learned" not in out and "structures learned" not in out
