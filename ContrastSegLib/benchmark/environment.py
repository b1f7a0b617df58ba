"""Where and how a benchmark ran: versions, device, CPU model, the command line."""

from __future__ import annotations

import os
import platform
import sys
import time

import torch

from .. import __version__
from ..runtime.precision import plan_execution
from .timing import cpu_model


def describe_environment(device: str, precision: str, channels_last: str, command: str | None) -> dict:
    """Versions, the execution plan the stages use on ``device``, CPU and GPU, and the command line."""
    plan = plan_execution(device, precision, channels_last)
    gpu = torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else None
    return {
        "command": command or "(called from Python)",
        "contrastseg": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": plan.describe() + (f" ({gpu})" if gpu else ""),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
