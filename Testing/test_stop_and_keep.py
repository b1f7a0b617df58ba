"""Stop and keep: SIGTERM or SIGINT to a running ``contrastseg finetune`` / ``pretrain`` (a real subprocess) ends
training after the current step with a valid checkpoint of the weights reached, a ``stopped`` event, one line saying
so and exit status 0; the handlers themselves, and a second signal while a checkpoint is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from cli_helpers import FAST_PREDICT, events, named, run_cli, run_subprocess

from ContrastSegLib.data.phantom import write_phantom_dataset
from ContrastSegLib.runtime import checkpoint as checkpoint_module
from ContrastSegLib.runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ContrastSegLib.runtime.stop import (STOP_FILE, STOP_FILE_VARIABLE, keep_on_stop, shielded, stop_on_signals,
                                         stop_requested)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ENDLESS = ["--crop-size", "32", "--channels", "8,16", "--iterations", "100000", "--device", "cpu",
           "--precision", "fp32"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("stop") / "phantoms", 4, seed=2)


def stop_after_first_progress(argv, sig) -> tuple[int, list[dict], str]:
    """Run ``contrastseg ARGV`` until its first progress event, send ``sig``: (exit status, events, stdout)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([sys.executable, "-m", "ContrastSegLib", *map(str, argv)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith('{"event": "progress"'):
            process.send_signal(sig)
            break
    rest, err = process.communicate(timeout=120)
    stdout = "".join(seen) + rest
    assert process.returncode == 0, err[-3000:]
    return process.returncode, events(stdout), stdout


def assert_stopped(records: list[dict], metadata: dict, signal_name: str) -> int:
    """The ``stopped`` event (before ``finished``) and the checkpoint agree; returns the step."""
    order = [r["event"] for r in records]
    assert order.index("stopped") < order.index("finished") and order.count("stopped") == 1
    stopped = named(records, "stopped")[0]
    assert metadata["stopped"] == {"step": stopped["step"], "planned": stopped["total"], "signal": signal_name}
    assert metadata["step"] == stopped["step"] < stopped["total"] == 100000
    return stopped["step"]


def test_finetune_sigterm_keeps_the_best_weights(phantoms, tmp_path, capsys):
    split = tmp_path / "split.json"
    assert run_cli(capsys, "split", "--data", phantoms, "--out", split, "--labeled", "2", "--validation", "1",
                   "--test", "1")[0] == 0
    out = tmp_path / "model.pt"
    _, records, stdout = stop_after_first_progress(
        ["finetune", "--labeled", phantoms, "--split", split, "--out", out, "--validate-every", "3",
         "--batch-size", "4", *ENDLESS],
        signal.SIGTERM)
    metadata = load_checkpoint(out).metadata
    step = assert_stopped(records, metadata, "SIGTERM")
    validation = metadata["result"]["validation"]
    assert validation and all(s <= step for s, _ in validation)
    assert metadata["result"]["best_step"] == max(validation, key=lambda entry: entry[1])[0]
    assert [line for line in stdout.splitlines() if "stopped early by SIGTERM" in line] == [
        line for line in stdout.splitlines() if not line.startswith("{")]
    code, info, _ = run_cli(capsys, "info", "--model", out)
    assert code == 0 and f"stopped       early by SIGTERM at step {step} of 100000" in info
    image = sorted((phantoms / "imagesTr").iterdir())[0]
    code, _, err = run_cli(capsys, "predict", "--model", out, "--input", image, "--output", tmp_path / "seg.nii.gz",
                           *FAST_PREDICT)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "seg.nii.gz", "split.json"]


def test_pretrain_sigint_keeps_the_weights_and_removes_the_resume_file(phantoms, tmp_path, capsys):
    out = tmp_path / "global.pt"
    _, records, stdout = stop_after_first_progress(
        ["pretrain", "--unlabeled", phantoms, "--out", out, "--stage", "global", "--partitions", "2",
         "--volumes-per-batch", "2", "--checkpoint-every", "1", *ENDLESS], signal.SIGINT)
    checkpoint = load_checkpoint(out)
    assert_stopped(records, checkpoint.metadata, "SIGINT")
    assert any(r["path"].endswith(".resume") for r in named(records, "checkpoint"))  # there was one to remove
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global.pt"]
    assert "stopped early by SIGINT" in stdout
    code, _, err = run_cli(capsys, "finetune", "--labeled", phantoms, "--init", out, "--out", tmp_path / "m.pt",
                           "--channels", "8,16", "--iterations", "2", "--batch-size", "2", *FAST_PREDICT)
    assert code == 0, err
    tuned = load_checkpoint(tmp_path / "m.pt").metadata
    assert tuned["lineage"][0]["stage"] == "pretrain-global" and "stopped" not in tuned


STAGES = {"finetune": ["finetune", "--labeled", "{data}", "--batch-size", "2"],
          "pretrain": ["pretrain", "--unlabeled", "{data}", "--stage", "global", "--partitions", "2",
                       "--volumes-per-batch", "2"]}


@pytest.mark.parametrize("command", sorted(STAGES))
def test_a_stop_file_older_than_the_run_is_removed_not_obeyed(command, phantoms, tmp_path):
    """A stop file left by an earlier run would end every later run after its first step (and ``--overwrite``
    would replace a trained model by a one-step one): it is removed, with a line naming it, and the run trains
    to its end."""
    out, stop_file = tmp_path / "model.pt", tmp_path / "stop-requested"
    stop_file.touch()
    os.utime(stop_file, (time.time() - 60, time.time() - 60))  # left by a run a minute ago
    argv = [word.replace("{data}", str(phantoms)) for word in STAGES[command]]
    done = run_subprocess(*argv, "--out", out, "--crop-size", "32", "--channels", "8,16", "--iterations", "3",
                          "--device", "cpu", "--precision", "fp32", env={STOP_FILE_VARIABLE: str(stop_file)})
    assert done.returncode == 0, done.stderr[-3000:]
    metadata = load_checkpoint(out).metadata
    assert metadata["step"] == 3 and "stopped" not in metadata
    assert not named(events(done.stdout), "stopped") and not stop_file.exists()
    assert [line for line in done.stderr.splitlines() if str(stop_file) in line] == [
        f"contrastseg: warning: removed the stop file {stop_file}: it was there before this run started (left by "
        "an earlier run), so it does not stop this one"]


def test_signals_before_training_interrupt_and_after_it_ask_to_stop():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        with pytest.raises(KeyboardInterrupt):  # nothing trained yet: nothing to keep
            signal.raise_signal(signal.SIGTERM)
        keep_on_stop()
        signal.raise_signal(signal.SIGTERM)
        assert stop_requested() == "SIGTERM"
        with shielded():
            signal.raise_signal(signal.SIGINT)  # ignored while a checkpoint is written
        with pytest.raises(KeyboardInterrupt):  # a second signal outside a write interrupts
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before and stop_requested() is None


def test_the_stop_file_asks_a_running_loop_to_stop(tmp_path, monkeypatch):
    stop_file = tmp_path / "stop-requested"
    monkeypatch.setenv(STOP_FILE_VARIABLE, str(stop_file))
    with stop_on_signals():
        stop_file.touch()
        assert stop_requested() is None  # no loop running yet
        keep_on_stop()
        assert stop_requested() == STOP_FILE


def test_a_second_signal_while_writing_leaves_a_valid_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def interrupted_save(payload, path):
        signal.raise_signal(signal.SIGINT)
        real_save(payload, path)

    monkeypatch.setattr(checkpoint_module.torch, "save", interrupted_save)
    path = tmp_path / "stopped.pt"
    with stop_on_signals():
        keep_on_stop()
        signal.raise_signal(signal.SIGTERM)
        save_checkpoint(Checkpoint({"w": torch.ones(2)}, {"step": 3}), path)
    assert torch.equal(load_checkpoint(path).model["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.pt"]
