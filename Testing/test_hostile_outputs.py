"""Outputs under hostile conditions: --overwrite onto the other kind of path, failed writes (full disk, a writer that
fails silently or raises), outputs on inputs or on each other, and a stop signal during a folder prediction. Each
refusal: exit 1, one ``contrastseg: error:`` line naming the path and the fix, nothing new written, existing
outputs byte-identical."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from cli_helpers import (FAST_PREDICT, TINY_TRAINING, assert_refused, blob_arrays, run_cli, write_image,
                         write_pair)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tree_state(root):
    """Every file under ``root`` with its bytes and mtime, and every folder: to show nothing changed."""
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None,
                   p.stat().st_mtime_ns if p.is_file() else None) for p in root.rglob("*"))


def no_partial(root):
    assert not [p for p in root.rglob("*") if ".partial" in p.name], list(root.rglob("*"))


def test_overwrite_replaces_only_the_same_kind(capsys, tmp_path, pairs, model):
    """A folder where a file goes (finetune --out, predict --output/--probabilities) or a file where a folder goes
    (folder predict) is refused even with --overwrite, before any work."""
    folder = tmp_path / "kept.pt"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "precious.txt").write_text("do not delete")
    seg_folder = tmp_path / "seg.nii.gz"
    seg_folder.mkdir()
    (seg_folder / "keep.txt").write_text("keep")
    blocker = tmp_path / "segs"
    blocker.write_bytes(b"a file, not a folder")
    before = tree_state(tmp_path)
    image = pairs / "alpha.nii.gz"
    cases = [
        (["finetune", "--labeled", pairs, "--out", folder, *TINY_TRAINING], folder, "is a folder"),
        (["predict", "--model", model, "--input", image, "--output", seg_folder, *FAST_PREDICT], seg_folder,
         "is a folder"),
        (["predict", "--model", model, "--input", image, "--output", tmp_path / "new.nii.gz", "--probabilities",
          seg_folder, *FAST_PREDICT], seg_folder, "is a folder"),
        (["predict", "--model", model, "--input", pairs, "--output", blocker, *FAST_PREDICT], blocker, "is a file"),
    ]
    for argv, path, phrase in cases:
        code, out, err = run_cli(capsys, *argv, "--overwrite")
        assert_refused(code, out, err, str(path), phrase, "choose another")
        assert tree_state(tmp_path) == before


def _fill(folder) -> None:
    """Fill the file system holding ``folder`` until no byte is free."""
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.fixture
def full_disk(tmp_path):
    """A 512 KiB tmpfs (root on Linux only), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("a small tmpfs cannot be mounted here; the injected failures below cover the class")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _good_label_map(path):
    return write_image(path, blob_arrays()[1])


@pytest.mark.parametrize("failure", ["silent empty file", "truncated file", "writer raises"])
def test_a_failed_volume_write_leaves_the_old_output(capsys, tmp_path, pairs, model, monkeypatch, failure):
    """SimpleITK's writer failing (silently, as it does on a full disk, or raising) is one line naming the path and
    the free space; the previous label map stays byte-identical and no staging is left."""
    out = _good_label_map(tmp_path / "seg.nii.gz")
    before = tree_state(tmp_path)
    real_write = sitk.WriteImage

    def broken_write(image, path, *args, **kwargs):
        if failure == "writer raises":
            raise RuntimeError("ITK ERROR: Write: Error writing")
        real_write(image, path, *args, **kwargs)
        size = os.path.getsize(path)
        os.truncate(path, 0 if failure == "silent empty file" else size // 2)

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", pairs / "alpha.nii.gz", "--output",
                                out, "--overwrite", *FAST_PREDICT)
    assert_refused(code, stdout, err, str(out), "writing failed", "free in", "free some space")
    assert tree_state(tmp_path) == before


def test_a_failed_checkpoint_write_leaves_the_old_checkpoint(capsys, tmp_path, pairs, model, monkeypatch):
    out = tmp_path / "model.pt"
    out.write_bytes(model.read_bytes())
    before = tree_state(tmp_path)
    real_save = torch.save

    def full(obj, target, *args, **kwargs):
        real_save(obj, target, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", pairs, "--out", out, "--overwrite", *TINY_TRAINING)
    assert_refused(code, stdout, err, str(out), "No space left", "free in")
    assert tree_state(tmp_path) == before


def test_a_full_disk_keeps_the_old_label_map(capsys, full_disk, pairs, model):
    """A real full file system: the label map, probabilities and metrics do not fit; the old files stay."""
    out = _good_label_map(full_disk / "seg.nii.gz")
    metrics = full_disk / "metrics.csv"
    metrics.write_text("case,dice\nold,1\n")
    _fill(full_disk)
    before = tree_state(full_disk)
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", pairs / "alpha.nii.gz", "--output",
                                out, "--probabilities", "--overwrite", *FAST_PREDICT)
    assert_refused(code, stdout, err, "writing failed", "free in")
    assert tree_state(full_disk) == before


@pytest.mark.parametrize("clash", ["output is the input", "probabilities is the output", "folder holds the inputs",
                                   "uncertainty is the input"])
def test_outputs_never_land_on_inputs_or_each_other(capsys, tmp_path, pairs, clash):
    """Refused before the model is even read (the model path here does not exist)."""
    data = tmp_path / "data"
    image, _ = write_pair(data, "gamma")
    before = tree_state(tmp_path)
    model = tmp_path / "no_model_needed.pt"
    argv = {
        "output is the input": ["--input", image, "--output", image],
        "probabilities is the output": ["--input", image, "--output", tmp_path / "s.nii.gz", "--probabilities",
                                        tmp_path / "s.nii.gz"],
        "folder holds the inputs": ["--input", data, "--output", data],
        "uncertainty is the input": ["--input", image, "--output", tmp_path / "s.nii.gz", "--uncertainty", image],
    }[clash]
    code, out, err = run_cli(capsys, "predict", "--model", model, *argv, "--overwrite", *FAST_PREDICT)
    message = assert_refused(code, out, err, "choose another output path" if "input" in clash else "own name")
    assert str(argv[-1]) in message
    assert tree_state(tmp_path) == before


def test_output_suffixes_are_checked_first(capsys, tmp_path, pairs):
    code, out, err = run_cli(capsys, "predict", "--model", tmp_path / "absent.pt", "--input", pairs / "alpha.nii.gz",
                             "--output", tmp_path / "s.nii.gz", "--probabilities", tmp_path / "p.png", *FAST_PREDICT)
    assert_refused(code, out, err, "--probabilities", "p.png", ".nii.gz")
    assert list(tmp_path.iterdir()) == []


def _predict_folder_process(model, data, out):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "ContrastSegLib", "predict", "--model", str(model), "--input",
                             str(data), "--output", str(out), "--uncertainty", *FAST_PREDICT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM cannot be sent to a child process on Windows")
def test_a_stop_signal_during_folder_predict_leaves_no_staging(tmp_path, model):
    """SIGTERM while a folder of scans is predicted: exit 130, no output folder, no hidden staging folder; and a
    staging folder left by a killed run is removed (one line) by the next run."""
    data = tmp_path / "data"
    for index in range(40):
        write_image(data / f"case{index:02d}.nii.gz", blob_arrays(shape=(8, 64, 64), seed=index)[0])
    out = tmp_path / "segs"
    process = _predict_folder_process(model, data, out)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".segs.partial-*/segs/*_seg.nii.gz")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert not out.exists()
    no_partial(tmp_path)

    stale = tmp_path / ".segs.partial-999999999-dead"  # a process id that no system hands out
    (stale / "segs").mkdir(parents=True)
    (stale / "segs" / "case00_seg.nii.gz").write_bytes(b"half")
    for extra in (data / f"case{i:02d}.nii.gz" for i in range(2, 40)):
        extra.unlink()
    process = _predict_folder_process(model, data, out)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert [line for line in err.splitlines() if "removed" in line] == [
        f"contrastseg: removed {stale}, left by an interrupted run"]
    assert sorted(p.name for p in out.iterdir()) == [
        "case00_seg.nii.gz", "case00_seg_uncertainty.nii.gz", "case01_seg.nii.gz", "case01_seg_uncertainty.nii.gz",
        "review.csv"]
    no_partial(tmp_path)
    assert np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case00_seg.nii.gz")))).shape == (8, 64, 64)
