"""One forward + backward call of ``supervised_local_contrastive_loss`` on random inputs, and its peak memory
measured in a fresh process.

Inputs: features (N, C, S, S) = (16, 64, S, S) fp32 standard normal, labels (N, S, S) of 4 classes: each pixel
foreground with probability 0.4, then of class 1, 2 or 3 uniformly; τ = 0.1 (stride 4 and block 16: the loss's
defaults). Memory: the call runs in a new Python process after a warm-up call of the same mode on a (16, 64, 8, 8)
input, which loads the kernels. On CPU it reports the growth of that process's peak resident set (VmHWM of
/proc/self/status; ``ru_maxrss`` where /proc is missing: after a fork and exec ru_maxrss starts at the parent's
peak, which would hide the growth); on CUDA ``torch.cuda.max_memory_allocated``. "call" is the growth above the peak
with the inputs allocated, "total" the growth above the peak before they were created.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from ..losses import supervised_local_contrastive_loss
from .timing import synchronize

BATCH, CHANNELS, FOREGROUND, TEMPERATURE = 16, 64, 0.4, 0.1
WORKER = "from ContrastSegLib.benchmark.supervised_local_cost import worker_main; worker_main()"


def make_inputs(side: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded by ``side``: features (16, 64, S, S) requiring grad, labels (16, S, S) long."""
    generator = torch.Generator().manual_seed(side)
    features = torch.randn(BATCH, CHANNELS, side, side, generator=generator)
    foreground = torch.rand(BATCH, side, side, generator=generator) < FOREGROUND
    labels = torch.where(foreground, torch.randint(1, 4, (BATCH, side, side), generator=generator), 0)
    return features.to(device).requires_grad_(True), labels.to(device)


def forward_backward(features: torch.Tensor, labels: torch.Tensor, mode: str) -> float:
    """The loss value of one forward + backward call in ``mode``."""
    features.grad = None
    loss = supervised_local_contrastive_loss(features, labels, TEMPERATURE, mode)
    loss.backward()
    return loss.item()


def peak_bytes(device: torch.device) -> int:
    """CUDA: peak allocated bytes. CPU: peak resident set of this process (VmHWM where /proc exists, else
    ru_maxrss)."""
    if device.type == "cuda":
        synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def worker(mode: str, side: int, device: torch.device) -> dict:
    """In a fresh process: a warm-up call on a (16, 64, 8, 8) input, then one measured call; returns
    {"value", "call", "total"} (loss value, bytes)."""
    forward_backward(*make_inputs(8, device), mode)
    cuda = device.type == "cuda"
    before_inputs = torch.cuda.memory_allocated(device) if cuda else peak_bytes(device)
    features, labels = make_inputs(side, device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with_inputs = torch.cuda.memory_allocated(device) if cuda else peak_bytes(device)
    value = forward_backward(features, labels, mode)
    after = peak_bytes(device)
    return {"value": value, "call": after - with_inputs, "total": after - before_inputs}


def worker_main(argv: list[str] | None = None) -> None:
    """Entry of the measuring process: arguments MODE SIDE DEVICE THREADS (0: torch's default); prints one JSON
    line."""
    mode, side, device, threads = argv if argv is not None else sys.argv[1:]
    if int(threads) > 0:
        torch.set_num_threads(int(threads))
    print(json.dumps(worker(mode, int(side), torch.device(device))))


def measure_memory(mode: str, side: int, device: str, threads: int) -> dict:
    """{"value", "call", "total"} of one call in ``mode`` on S = ``side``, measured in a fresh process on ``device``
    ("cpu" or "cuda") with ``threads`` torch threads."""
    command = [sys.executable, "-c", WORKER, mode, str(side), device, str(threads)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"memory worker {mode} S = {side} failed with exit code {result.returncode}:\n"
                           f"{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
