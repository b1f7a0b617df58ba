"""The jobs' code on the oldest torch the Slicer module accepts (2.2, the newest pip offers for Slicer on an Intel
Mac). Installing torch 2.2 here means a 2.5 GB CUDA build, so each job runs in a subprocess on the installed torch
with what 2.2 lacks taken away first: ``torch.amp.GradScaler`` (new in 2.3; ``torch/amp/__init__.py`` of v2.2.2
exports only ``autocast``, ``autocast_mode`` and ``custom_fwd``/``custom_bwd`` helpers). A pre-training, a fine-tuning
from it and a prediction must all run to their files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import write_pair

ROOT = Path(__file__).resolve().parent.parent
# Runs the CLI as torch 2.2 would see the library: the attributes it lacks are removed before the library imports.
AS_TORCH_22 = """
import sys, torch, torch.amp
del torch.amp.GradScaler
assert not hasattr(torch.amp, "GradScaler")
from ContrastSegLib.cli import main
sys.exit(main(sys.argv[1:]))
"""


TINY_PRETRAIN = ["--channels", "8,16,32", "--crop-size", "32", "--spacing", "4", "--iterations", "2",
                 "--partitions", "2", "--volumes-per-batch", "2", "--precision", "fp32", "--device", "cpu"]
# --init brings the preprocessing; the widths are given again
TINY_FINETUNE = ["--channels", "8,16,32", "--iterations", "5", "--batch-size", "4", "--precision", "fp32",
                 "--device", "cpu"]


def run_as_torch_22(*argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", AS_TORCH_22, *map(str, argv)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_pretraining_fine_tuning_and_prediction_run_without_torch_23_apis(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    images = [write_pair(data, f"case{i}")[0] for i in range(2)]
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for image in images:
        (unlabeled / image.name).write_bytes(image.read_bytes())
    pretrained, model = tmp_path / "gd.pt", tmp_path / "model.pt"
    steps = [("pretrain", "--unlabeled", unlabeled, "--out", pretrained, "--stage", "global", *TINY_PRETRAIN),
             ("finetune", "--labeled", data, "--out", model, "--init", pretrained, *TINY_FINETUNE),
             ("predict", "--model", model, "--input", images[0], "--output", tmp_path / "pred", "--device", "cpu")]
    for argv in steps:
        done = run_as_torch_22(*argv)
        assert done.returncode == 0, (argv[0], done.stderr[-2000:])
    assert pretrained.is_file() and model.is_file() and any((tmp_path / "pred").iterdir())
