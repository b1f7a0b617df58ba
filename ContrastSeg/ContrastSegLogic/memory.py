"""Before a job starts: which device it will use, and whether the memory is there (GPU first, falling back to the CPU
with a message that says why; a CPU without enough free RAM is refused with the fix).

The GPU's free memory is read with ``nvidia-smi``, never through torch: importing torch and touching CUDA in Slicer's
own process would create a CUDA context that holds ~0.4 GB of GPU memory until Slicer exits. Where nvidia-smi is
absent (no NVIDIA driver, or Apple silicon) ``auto`` is passed on and the job process picks its device itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, Sequence

from ContrastSegLib.settings import MAX_AUTO_CROP

from .errors import SceneInputError

GIB = 1024 ** 3
# Stored activations per pixel and channel of one UNet level during training (conv, norm and ReLU outputs of two
# convolutions, their gradients, the decoder's concatenations), in float32 values. A deliberately generous estimate.
VALUES_PER_ACTIVATION = 24
FIXED_OVERHEAD_BYTES = 1 * GIB  # framework, model, optimiser state, the job's volumes


def training_memory_bytes(batch_size: int, crop_size: int | None, channels: Sequence[int]) -> int:
    """Rough peak memory of one training step of the 2-D UNet: batch x crop² pixels at level 0, /4 per level; a
    crop still to be chosen from the data (None) counts as the largest it can be."""
    crop_size = MAX_AUTO_CROP if crop_size is None else crop_size
    pixels = batch_size * crop_size * crop_size
    activations = sum(pixels * width / 4 ** level for level, width in enumerate(channels))
    return int(activations * VALUES_PER_ACTIVATION * 4 + FIXED_OVERHEAD_BYTES)


@dataclass(frozen=True)
class DevicePlan:
    """The device the job gets, and a sentence for the user when it is not the one asked for."""

    device: str
    message: str = ""


def plan_device(requested: str, needed_bytes: int, gpu_free_bytes: Callable[[int], int | None] | None = None,
                ram_free_bytes: Callable[[], int | None] | None = None) -> DevicePlan:
    """``requested`` is auto | cuda | cuda:N | cpu. A GPU that is missing or has too little free memory falls back to
    the CPU with a message; the CPU is refused when the free RAM is known and too small."""
    gpu_free_bytes = gpu_free_bytes or _gpu_free_bytes
    ram_free_bytes = ram_free_bytes or _ram_free_bytes
    need = f"{needed_bytes / GIB:.1f} GiB"
    message = ""
    if requested != "cpu":
        free = gpu_free_bytes(_gpu_index(requested))
        if free is None:
            if requested == "auto":
                return DevicePlan("auto")  # unknown here: the job process chooses (cuda > mps > cpu)
            message = "no CUDA GPU is available; running on the CPU instead (slower)"
        elif free >= needed_bytes:
            # "auto" stays "auto": nvidia-smi sees the driver, not whether this torch was built for CUDA (a CPU-only
            # build on an old driver, Windows' PyPI wheels); the job process asks torch (cuda > mps > cpu)
            return DevicePlan(requested)
        else:
            message = (f"the GPU has {free / GIB:.1f} GiB free and this job needs about {need}; running on the CPU "
                       "instead (slower). Close other GPU programs or lower the batch size / crop to use the GPU")
    free_ram = ram_free_bytes()
    if free_ram is not None and free_ram < needed_bytes:
        raise SceneInputError(f"this job needs about {need} of memory and only {free_ram / GIB:.1f} GiB are free; "
                              "close other programs or lower the batch size / crop size (Advanced)")
    return DevicePlan("cpu", message)


def _gpu_index(requested: str) -> int:
    return int(requested.split(":", 1)[1]) if requested.startswith("cuda:") else 0


def _gpu_free_bytes(index: int = 0, run=subprocess.run) -> int | None:
    """Free memory of NVIDIA GPU ``index`` from ``nvidia-smi`` (MiB), or None when it cannot be read."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        done = run([executable, "--query-gpu=memory.free", "--format=csv,noheader,nounits", f"--id={index}"],
                   capture_output=True, text=True, timeout=10,
                   creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi_free(done.stdout) if done.returncode == 0 else None


def parse_nvidia_smi_free(text: str) -> int | None:
    """Bytes from nvidia-smi's ``memory.free`` in MiB (first line), or None."""
    try:
        return int(float(text.strip().splitlines()[0])) * 1024 ** 2
    except (IndexError, ValueError):
        return None


def _ram_free_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None  # unknown (e.g. Windows): not checked
