"""Shared pytest set-up: quiet, deterministic, CPU-only and small."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from a second thread, and two spinning threads slow to a crawl when another job
    shares the cores; the previous setting comes back afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, request):
    """A folder shared by the tests of one module."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def pairs(workspace):
    """Two small labeled image/label pairs (alpha, beta) in a folder."""
    from cli_helpers import write_pair
    folder = workspace / "pairs"
    for case in ("alpha", "beta"):
        write_pair(folder, case)
    return folder


@pytest.fixture(scope="module")
def model(workspace, pairs):
    """A tiny model fine-tuned on ``pairs`` through the real CLI."""
    from cli_helpers import TINY_TRAINING
    from ContrastSegLib.cli import main
    path = workspace / "model.pt"
    assert main(["finetune", "--labeled", str(pairs), "--out", str(path), *TINY_TRAINING]) == 0
    return path
