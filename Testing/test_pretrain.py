"""Contrastive pre-training: losses fall on phantoms, fine-tuning starts from it, runs resume after SIGKILL with
identical results, and two DDP processes compute what one process computes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ContrastSegLib.cli import main
from ContrastSegLib.data.discovery import discover
from ContrastSegLib.data.phantom import write_phantom_dataset
from ContrastSegLib.data.splits import load_split
from ContrastSegLib.io import read_image
from ContrastSegLib.runtime.checkpoint import load_checkpoint
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig, PretrainConfig
from ContrastSegLib.training.finetune_job import run_finetune
from ContrastSegLib.training.pretrain_job import run_pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TESTING = Path(__file__).parent
TINY = PreprocessConfig(target_spacing=3.0, crop_size=32)
CHANNELS = (8, 16, 32)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    return write_phantom_dataset(tmp_path_factory.mktemp("pretrain") / "phantoms", 6, seed=1)


@pytest.fixture(scope="module")
def stages(phantoms):
    folder = phantoms.parent
    config = PretrainConfig(stage="global", strategy="GD", iterations=40, partitions=3, volumes_per_batch=3,
                            precision="fp32", checkpoint_every=20)
    global_path, global_state = run_pretrain([phantoms], folder / "global.pt", config, TINY, channels=CHANNELS)
    local = PretrainConfig(stage="local", strategy="LR", iterations=40, partitions=3, volumes_per_batch=3,
                           decoder_blocks=1, region_size=2, precision="fp32", checkpoint_every=20)
    local_path, local_state = run_pretrain([phantoms], folder / "local.pt", local, init=global_path)
    return global_path, global_state, local_path, local_state


@pytest.mark.parametrize("which", [1, 3])
def test_pretraining_lowers_its_loss(stages, which):
    losses = stages[which].losses
    assert len(losses) == 40
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10


def test_checkpoints_hold_the_trained_parts_and_lineage(stages):
    global_path, _, local_path, _ = stages
    global_meta = load_checkpoint(global_path)
    assert global_meta.metadata["stage"] == "pretrain-global"
    assert {k.split(".")[0] for k in global_meta.model} == {"encoder", "heads"}
    local_meta = load_checkpoint(local_path)
    assert local_meta.metadata["stage"] == "pretrain-local"
    assert {".".join(k.split(".")[:2]) for k in local_meta.model if k.startswith("decoder")} == {"decoder.0"}
    assert local_meta.metadata["lineage"][0]["stage"] == "pretrain-global"
    assert PreprocessConfig.from_json(local_meta.metadata["preprocessing"]) == TINY  # inherited from --init
    for key, value in global_meta.model.items():  # the local stage leaves the encoder untouched
        if key.startswith("encoder."):
            assert torch.equal(local_meta.model[key], value), key
    assert not any(p.name.endswith(".resume") for p in global_path.parent.iterdir())


def test_finetuning_starts_from_the_pretrained_parts(stages, phantoms, tmp_path):
    _, _, local_path, _ = stages
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"image,label\n{phantoms}/imagesTr/phantom_000.nii.gz,{phantoms}/labelsTr/phantom_000.nii.gz\n")
    out, result = run_finetune(manifest, tmp_path / "model.pt", FinetuneConfig(iterations=5, batch_size=4),
                               channels=CHANNELS, init=local_path)
    meta = load_checkpoint(out).metadata
    assert PreprocessConfig.from_json(meta["preprocessing"]) == TINY
    assert [entry["stage"] for entry in meta["lineage"]] == ["pretrain-global", "pretrain-local"]
    tuned, pretrained = load_checkpoint(out).model, load_checkpoint(local_path).model
    assert not torch.equal(tuned["decoder.0.convs.0.weight"], pretrained["decoder.0.convs.0.weight"])  # trained on
    assert len(result.losses) == 5


def pretrain_command(phantoms, out, iterations=30):
    return [sys.executable, "-m", "ContrastSegLib", "pretrain", "--unlabeled", str(phantoms), "--out", str(out),
            "--stage", "global", "--strategy", "GD", "--partitions", "3", "--volumes-per-batch", "2",
            "--iterations", str(iterations), "--checkpoint-every", "5", "--channels", "8,16,32", "--crop-size", "32",
            "--spacing", "3", "--precision", "fp32", "--seed", "4"]


def test_killed_run_resumes_to_the_same_result(phantoms, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    straight = tmp_path / "straight.pt"
    subprocess.run(pretrain_command(phantoms, straight), check=True, capture_output=True, env=env, timeout=300)
    resumed = tmp_path / "resumed.pt"
    resume_file = tmp_path / ".resumed.pt.resume"
    process = subprocess.Popen(pretrain_command(phantoms, resumed), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, text=True)
    for line in process.stdout:  # kill it right after its second progress checkpoint
        if '"checkpoint"' in line and '"step": 10' in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert resume_file.exists() and not resumed.exists()
    assert load_checkpoint(resume_file).metadata["step"] == 10
    finished = subprocess.run(pretrain_command(phantoms, resumed), capture_output=True, env=env, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "resuming from step 10" in finished.stdout
    first, second = load_checkpoint(straight).model, load_checkpoint(resumed).model
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert not resume_file.exists()


def test_a_run_stopped_by_ctrl_c_continues_to_the_same_result(phantoms, tmp_path, capsys):
    """Ctrl-C keeps the weights reached; the same command with ``--continue`` goes on to the planned end, with
    exactly the weights of an uninterrupted run. Nothing else is continued: a finished run, a missing output, or a
    stopped run of other settings each get one error line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    straight, stopped = tmp_path / "straight.pt", tmp_path / "stopped.pt"
    subprocess.run(pretrain_command(phantoms, straight), check=True, capture_output=True, env=env, timeout=300)
    process = subprocess.Popen(pretrain_command(phantoms, stopped), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, env=env, text=True)
    for line in process.stdout:  # Ctrl-C after the second saved progress, mid-run
        if '"checkpoint"' in line and '"step": 10' in line:
            process.send_signal(signal.SIGINT)
            break
    process.communicate(timeout=120)
    assert process.returncode == 0
    step = load_checkpoint(stopped).metadata["stopped"]["step"]
    assert 10 <= step < 30 and sorted(p.name for p in tmp_path.iterdir()) == ["stopped.pt", "straight.pt"]

    def refused(out, *extra) -> str:
        capsys.readouterr()
        assert main([str(word) for word in pretrain_command(phantoms, out)[3:]] + list(extra)) == 1
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("contrastseg: error: "), lines
        return lines[0]
    capsys.readouterr()
    assert main(["info", "--model", str(stopped)]) == 0 and "with --continue goes on" in capsys.readouterr().out
    before = stopped.read_bytes()
    assert "pass --continue" in refused(stopped)  # the same command alone: the output exists
    assert "other settings or data" in refused(stopped, "--continue", "--lr", "0.5")
    assert "finished run" in refused(straight, "--continue") and "does not exist" in refused(tmp_path / "no.pt",
                                                                                               "--continue")
    assert stopped.read_bytes() == before
    continued = subprocess.run(pretrain_command(phantoms, stopped) + ["--continue"], capture_output=True, env=env,
                               text=True, timeout=300)
    assert continued.returncode == 0, continued.stderr
    assert f"continuing from step {step}" in continued.stdout
    first, second = load_checkpoint(straight), load_checkpoint(stopped)
    assert second.metadata["step"] == 30 and "stopped" not in second.metadata
    assert first.model.keys() == second.model.keys()
    for key in first.model:
        assert torch.equal(first.model[key], second.model[key]), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.pt", "straight.pt"]


def test_two_ddp_processes_match_one(tmp_path):
    sys.path.insert(0, str(TESTING))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(TESTING))
    single_loss, single_grads = ddp_worker.step(ddp_worker.distributed.DistributedContext())
    out = tmp_path / "ddp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(TESTING / "ddp_worker.py"), str(out)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert time.monotonic() - started < 300
    result = torch.load(out, weights_only=True)
    assert float(result["loss"]) == pytest.approx(single_loss, abs=1e-6)
    assert result["grads"].keys() == single_grads.keys() and single_grads
    for name, grad in single_grads.items():
        torch.testing.assert_close(result["grads"][name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_local_stage_needs_a_global_checkpoint(phantoms, tmp_path, capsys):
    code = main(["pretrain", "--unlabeled", str(phantoms), "--out", str(tmp_path / "l.pt"), "--stage", "local",
                 "--spacing", "3", "--crop-size", "32"])
    assert code == 1
    assert "--init" in capsys.readouterr().err
    assert not (tmp_path / "l.pt").exists()


def test_pretrain_without_spacing_takes_the_median_of_its_training_volumes(phantoms, tmp_path):
    """As fine-tuning: the unlabeled volumes for the global stage, the split's labeled ones for supervised-local."""
    tiny = ["--crop-size", "32", "--channels", "8,16", "--iterations", "2", "--partitions", "2",
            "--volumes-per-batch", "2", "--device", "cpu", "--precision", "fp32"]
    finest = {case.id: min(read_image(case.image).spacing) for case in discover(phantoms).cases}
    out = tmp_path / "global.pt"
    assert main(["pretrain", "--unlabeled", str(phantoms), "--out", str(out), "--stage", "global", *tiny]) == 0
    preprocessing = load_checkpoint(out).metadata["preprocessing"]
    assert preprocessing["target_spacing"] == round(float(np.median(list(finest.values()))), 4)
    assert preprocessing["crop_size"] == 32
    split = tmp_path / "split.json"
    assert main(["split", "--data", str(phantoms), "--out", str(split), "--labeled", "2", "--test", "1"]) == 0
    supervised = tmp_path / "supervised.pt"
    assert main(["pretrain", "--stage", "supervised-local", "--labeled", str(phantoms), "--split", str(split),
                 "--init", str(out), "--out", str(supervised), *tiny]) == 0
    labeled = load_split(split).groups["train_labeled"]
    assert load_checkpoint(supervised).metadata["preprocessing"]["target_spacing"] == round(
        float(np.median([finest[case] for case in labeled])), 4)


def test_torchrun_cli_writes_one_checkpoint(phantoms, tmp_path):
    """Two ranks on gloo: the command completes, only rank 0 writes, and no resume file is left."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "ddp.pt"
    command = pretrain_command(phantoms, out, iterations=6)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "ContrastSegLib", *command[3:]], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count('"event": "finished"') == 1  # rank 0 reports, rank 1 stays quiet
    assert load_checkpoint(out).metadata["step"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.pt"]
