"""Every bad input to ``contrastseg``: exit status 1, one ``contrastseg: error:`` line naming the file and the fix,
and nothing written — no output, no hidden ``.partial`` staging left, an existing output byte-identical."""

from __future__ import annotations

import json
import os
import shlex

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from cli_helpers import (BAD_IMAGES, FAST_PREDICT, SPACING, TINY_TRAINING, assert_nothing_written, assert_refused,
                         blob_arrays, events, file_state, four_d_image, nan_nifti, run_cli, run_subprocess,
                         vector_image, write_image, write_pair)

from ContrastSegLib.runtime.checkpoint import load_checkpoint, save_checkpoint


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def good_pairs(pairs):
    """The conftest's two labeled pairs (``model`` is fine-tuned on them)."""
    return pairs


def _bad_label(kind):
    """Builders of a case whose label map is bad: they write ``bad.nii.gz`` + ``bad_seg.nii.gz``."""
    image, label = blob_arrays()

    def build(folder):
        if kind == "spacing":
            return write_pair(folder, "bad", image, label, spacing=(1.5, 1.5, 5.0))[1]
        if kind == "origin":
            return write_pair(folder, "bad", image, label, origin=(-30.0, -28.0, 10.0))[1]
        if kind == "float":
            return write_pair(folder, "bad", image, label.astype(np.float32) * 0.5)[1]
        return write_pair(folder, "bad", image, np.zeros_like(label))[1]
    return build


BAD_PAIRS = {
    **BAD_IMAGES,
    "label spacing differs": (_bad_label("spacing"), "resample the label map"),
    "label origin differs": (_bad_label("origin"), "resample the label map"),
    "label 0.5": (_bad_label("float"), "integer voxel type"),
    "label without foreground": (_bad_label("empty"), "no foreground"),
}


@pytest.mark.parametrize("existing", [False, True], ids=["new output", "existing output --overwrite"])
@pytest.mark.parametrize("name", list(BAD_PAIRS))
def test_finetune_refuses_bad_training_data(capsys, tmp_path, name, existing):
    builder, hint = BAD_PAIRS[name]
    folder = tmp_path / "data"
    write_pair(folder, "good")
    bad = builder(folder)
    if not bad.name.startswith("bad_seg"):
        write_image(folder / "bad_seg.nii.gz", blob_arrays()[1])
    out = tmp_path / "model.pt"
    if existing:
        out.write_bytes(b"an earlier model")
        before = file_state(out)
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", folder, "--out", out, *TINY_TRAINING,
                                *(["--overwrite"] if existing else []))
    assert_refused(code, stdout, err, str(bad), hint)
    if existing:
        assert file_state(out) == before
        assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]
    else:
        assert_nothing_written(out, tmp_path)


def test_finetune_refuses_label_values_outside_the_declared_set(capsys, tmp_path):
    folder = tmp_path / "msd"
    image, label = blob_arrays()
    for case, values in (("good", label), ("bad", np.where(label > 0, 7, 0).astype(np.uint8))):
        write_image(folder / "imagesTr" / f"{case}.nii.gz", image)
        write_image(folder / "labelsTr" / f"{case}.nii.gz", values)
    (folder / "dataset.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "one", "2": "two", "3": "three"}, "modality": {"0": "MR"},
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ("bad", "good")],
    }))
    out = tmp_path / "model.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", folder, "--out", out, *TINY_TRAINING)
    assert_refused(code, stdout, err, os.path.join("labelsTr", "bad.nii.gz"), "[7]", "dataset.json")
    assert_nothing_written(out, tmp_path)


def test_finetune_output_exists_or_is_not_writable(capsys, tmp_path, good_pairs):
    out = tmp_path / "model.pt"
    out.write_bytes(b"keep me")
    before = file_state(out)
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", good_pairs, "--out", out, *TINY_TRAINING)
    assert_refused(code, stdout, err, str(out), "--overwrite")
    assert file_state(out) == before
    code, _, err = run_cli(capsys, "finetune", "--labeled", good_pairs, "--out", out, *TINY_TRAINING, "--overwrite")
    assert code == 0, err
    assert load_checkpoint(out).metadata["stage"] == "finetune"
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", good_pairs, "--out", blocker / "model.pt",
                                *TINY_TRAINING)
    assert_refused(code, stdout, err, str(blocker / "model.pt"), "not a writable folder")
    assert blocker.read_text() == "not a folder"


def test_finetune_crop_size_must_fit_the_unet(capsys, tmp_path, good_pairs):
    out = tmp_path / "model.pt"
    options = [o if o != "32" else "30" for o in TINY_TRAINING]
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", good_pairs, "--out", out, *options)
    assert_refused(code, stdout, err, "--crop-size 30", "multiple of 4", "try 32")
    assert_nothing_written(out, tmp_path)


# --- checkpoints that are not ours, damaged, hostile, or of the wrong kind ------------------------------------------

def _not_ours(path, model):
    torch.save({"weight": torch.zeros(3, 3), "bias": torch.zeros(3)}, path)


def _truncated(path, model):
    data = model.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _text_file(path, model):
    path.write_text("hello, this is a note and not a model\n")


def _pretrain_stage(path, model):
    checkpoint = load_checkpoint(model)
    checkpoint.metadata = {"stage": "pretrain", "architecture": checkpoint.metadata["architecture"]}
    save_checkpoint(checkpoint, path)


def _wrong_architecture(path, model):
    checkpoint = load_checkpoint(model)
    checkpoint.metadata["architecture"]["channels"] = [16, 32, 64]
    save_checkpoint(checkpoint, path)


BAD_CHECKPOINTS = {
    "plain dict of tensors": (_not_ours, "not a ContrastSeg checkpoint"),
    "first half of a checkpoint": (_truncated, "truncated or corrupt"),
    "text file": (_text_file, "not a readable checkpoint"),
    "pre-training stage": (_pretrain_stage, "fine-tune it first"),
    "architecture mismatch": (_wrong_architecture, "does not fit the architecture"),
}


@pytest.mark.parametrize("name", list(BAD_CHECKPOINTS))
def test_predict_refuses_bad_checkpoints(capsys, tmp_path, good_pairs, model, name):
    builder, hint = BAD_CHECKPOINTS[name]
    checkpoint = tmp_path / "given.pt"
    builder(checkpoint, model)
    out = tmp_path / "seg.nii.gz"
    code, stdout, err = run_cli(capsys, "predict", "--model", checkpoint, "--input", good_pairs / "alpha.nii.gz",
                                "--output", out, "--probabilities", *FAST_PREDICT)
    assert_refused(code, stdout, err, str(checkpoint), hint)
    assert_nothing_written(out, tmp_path)
    assert not (tmp_path / "seg_probabilities.nii.gz").exists()


class _RunsCode:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.sentinel))}",)


@pytest.mark.parametrize("command", ["predict", "finetune --init"])
def test_a_checkpoint_holding_code_is_refused_never_run(capsys, tmp_path, good_pairs, model, command):
    sentinel = tmp_path / "SENTINEL"
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "contrastseg-checkpoint", "model": {}, "payload": _RunsCode(sentinel)}, hostile)
    out = tmp_path / ("seg.nii.gz" if command == "predict" else "model.pt")
    if command == "predict":
        argv = ["predict", "--model", hostile, "--input", good_pairs / "alpha.nii.gz", "--output", out, *FAST_PREDICT]
    else:
        argv = ["finetune", "--labeled", good_pairs, "--init", hostile, "--out", out, *TINY_TRAINING]
    code, stdout, err = run_cli(capsys, *argv)
    assert_refused(code, stdout, err, str(hostile), "refused")
    assert not sentinel.exists()
    assert_nothing_written(out, tmp_path)
    torch.load(hostile, weights_only=False)  # the file is a real threat: an unguarded load runs its code
    assert sentinel.exists()


def test_finetune_init_with_other_labels_is_refused(capsys, tmp_path, good_pairs, model):
    other = tmp_path / "other_labels.pt"
    checkpoint = load_checkpoint(model)
    checkpoint.metadata["labels"] = {"values": [0, 2], "names": ["background", "b"], "colors": [[0, 0, 0], [4, 5, 6]]}
    save_checkpoint(checkpoint, other)
    out = tmp_path / "model.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", good_pairs, "--init", other, "--out", out,
                                *TINY_TRAINING)
    assert_refused(code, stdout, err, str(other), "[0, 2]", "[0, 1]")
    assert_nothing_written(out, tmp_path)


# --- predict: bad inputs and outputs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_predict_refuses_bad_images(capsys, tmp_path, model, name):
    builder, hint = BAD_IMAGES[name]
    bad = builder(tmp_path / "inputs")
    out = tmp_path / "seg.nii.gz"
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", bad, "--output", out,
                                "--probabilities", "--uncertainty", *FAST_PREDICT)
    assert_refused(code, stdout, err, str(bad), hint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]
    assert_nothing_written(out, tmp_path)


@pytest.mark.parametrize("builder", [four_d_image, vector_image])
def test_predict_multichannel_with_channel_works(capsys, tmp_path, model, builder):
    image = builder(tmp_path)
    out = tmp_path / "seg.nii.gz"
    code, _, err = run_cli(capsys, "predict", "--model", model, "--input", image, "--output", out, "--channel", "0",
                           *FAST_PREDICT)
    assert code == 0, err
    label = sitk.ReadImage(str(out))
    assert label.GetSize() == (40, 40, 6) and label.GetSpacing() == SPACING
    assert label.GetNumberOfComponentsPerPixel() == 1
    before = file_state(out)
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", image, "--output", out, "--channel",
                                "2", "--overwrite", *FAST_PREDICT)
    assert_refused(code, stdout, err, str(image), "--channel 2 is out of range")
    assert file_state(out) == before


def test_predict_folder_with_one_bad_volume_writes_no_folder(capsys, tmp_path, model):
    inputs = tmp_path / "inputs"
    for case in ("alpha", "beta"):
        write_image(inputs / f"{case}.nii.gz", blob_arrays(seed=len(case))[0])
    bad = nan_nifti(inputs)
    out = tmp_path / "predictions"
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", inputs, "--output", out,
                                "--uncertainty", *FAST_PREDICT)
    assert_refused(code, stdout, err, str(bad), "NaN")
    assert_nothing_written(out, tmp_path)


def test_predict_existing_output_refused_then_overwritten(capsys, tmp_path, good_pairs, model):
    image = good_pairs / "alpha.nii.gz"
    out = tmp_path / "seg.nii.gz"
    out.write_bytes(b"earlier result")
    before = file_state(out)
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", image, "--output", out, *FAST_PREDICT)
    assert_refused(code, stdout, err, str(out), "--overwrite")
    assert file_state(out) == before
    companion = tmp_path / "fresh_probabilities.nii.gz"
    companion.write_bytes(b"earlier probabilities")
    fresh = tmp_path / "fresh.nii.gz"
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", image, "--output", fresh,
                                "--probabilities", *FAST_PREDICT)
    assert_refused(code, stdout, err, str(companion), "--overwrite")
    assert not fresh.exists() and companion.read_bytes() == b"earlier probabilities"
    code, _, err = run_cli(capsys, "predict", "--model", model, "--input", image, "--output", out, "--overwrite",
                           *FAST_PREDICT)
    assert code == 0, err
    assert sitk.ReadImage(str(out)).GetSize() == sitk.ReadImage(str(image)).GetSize()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh_probabilities.nii.gz", "seg.nii.gz"]


def test_predict_folder_output_exists(capsys, tmp_path, good_pairs, model):
    """An existing folder is kept without --overwrite and replaced by the new folder with it; a file where the
    output folder goes is refused either way (--overwrite replaces only an output of the same kind)."""
    blocker = tmp_path / "existing_file"
    blocker.write_bytes(b"old")
    before = file_state(blocker)
    for extra in ((), ("--overwrite",)):
        code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", good_pairs, "--output", blocker,
                                    *FAST_PREDICT, *extra)
        assert_refused(code, stdout, err, str(blocker), "folder")
        assert file_state(blocker) == before
    for existing in ("folder",):
        out = tmp_path / f"existing_{existing}"
        if existing == "folder":
            out.mkdir()
            (out / "old_seg.nii.gz").write_bytes(b"old")
            before = file_state(out / "old_seg.nii.gz")
        else:
            out.write_bytes(b"old")
            before = file_state(out)
        argv = ["predict", "--model", model, "--input", good_pairs, "--output", out, *FAST_PREDICT]
        code, stdout, err = run_cli(capsys, *argv)
        assert_refused(code, stdout, err, str(out), "--overwrite")
        assert file_state(out / "old_seg.nii.gz" if existing == "folder" else out) == before
        code, _, err = run_cli(capsys, *argv, "--overwrite")
        assert code == 0, err
        assert sorted(p.name for p in out.iterdir()) == ["alpha_seg.nii.gz", "beta_seg.nii.gz", "review.csv"]
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_predict_output_parent_is_a_file(capsys, tmp_path, good_pairs, model):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "seg.nii.gz"
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", good_pairs / "alpha.nii.gz",
                                "--output", out, *FAST_PREDICT)
    assert_refused(code, stdout, err, str(out), "not a writable folder")
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("command", ["predict", "finetune"])
def test_device_cuda_without_a_gpu(capsys, tmp_path, good_pairs, model, command):
    out = tmp_path / ("seg.nii.gz" if command == "predict" else "model.pt")
    if command == "predict":
        argv = ["predict", "--model", model, "--input", good_pairs / "alpha.nii.gz", "--output", out]
    else:
        argv = ["finetune", "--labeled", good_pairs, "--out", out, *TINY_TRAINING[:-2]]
    code, stdout, err = run_cli(capsys, *argv, "--device", "cuda")
    assert_refused(code, stdout, err, "--device cuda", "--device cpu")
    assert_nothing_written(out, tmp_path)


def test_evaluate_prediction_on_another_grid(capsys, tmp_path):
    references, predictions = tmp_path / "references", tmp_path / "predictions"
    label = blob_arrays()[1]
    write_image(references / "alpha.nii.gz", label)
    write_image(references / "beta.nii.gz", label)
    write_image(predictions / "alpha_seg.nii.gz", label)
    shifted = write_image(predictions / "beta_seg.nii.gz", label, spacing=(1.5, 1.5, 4.5))
    out = tmp_path / "metrics.csv"
    code, stdout, err = run_cli(capsys, "evaluate", "--pred", predictions, "--ref", references, "--out", out)
    assert_refused(code, stdout, err, str(shifted), "resample the prediction")
    assert_nothing_written(out, tmp_path)
    assert not (tmp_path / "metrics_summary.csv").exists()


def test_subprocess_error_exit_code_and_json_event(tmp_path, good_pairs):
    checkpoint = tmp_path / "plain.pt"
    _not_ours(checkpoint, None)
    out = tmp_path / "seg.nii.gz"
    process = run_subprocess("predict", "--model", checkpoint, "--input", good_pairs / "alpha.nii.gz",
                             "--output", out, *FAST_PREDICT)
    message = assert_refused(process.returncode, process.stdout, process.stderr, str(checkpoint),
                             "not a ContrastSeg checkpoint")
    assert events(process.stdout) == [{"event": "error", "stage": "predict", "message": message}]
    assert_nothing_written(out, tmp_path)
