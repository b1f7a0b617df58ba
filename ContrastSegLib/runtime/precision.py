"""Where and in which precision a job runs: device ``auto`` (cuda > mps > cpu), mixed precision when it pays.

On CUDA: bf16 autocast where supported, else fp16 with a gradient scaler. On CPUs with native bf16 (AMX or
AVX512-BF16): bf16 autocast plus channels_last memory format, about 2.9× faster than fp32 on the paper UNet.
``precision="fp32"`` turns all of it off.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import ContrastSegError
from ..settings import ChannelsLast, Device, ExecutionConfig, Precision


@dataclass(frozen=True)
class ExecutionPlan:
    """device; autocast_dtype (None = fp32); channels_last memory format; grad scaling (fp16 only)."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    scale_gradients: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def describe(self) -> str:
        dtype = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.autocast_dtype]
        return f"{self.device.type}, {dtype}" + (", channels_last" if self.channels_last else "")


def make_grad_scaler(plan: ExecutionPlan):
    """The gradient scaler of ``plan`` (active for fp16 only). ``torch.amp.GradScaler`` first shipped in torch 2.3;
    on older torch the CUDA scaler, which fp16 (CUDA only) needs, and which disabled is a no-op on any device."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(plan.device.type, enabled=plan.scale_gradients)
    return torch.cuda.amp.GradScaler(enabled=plan.scale_gradients)


def resolve_device(name: str = ExecutionConfig.device) -> torch.device:
    """``auto``: cuda, else mps, else cpu; an explicit device that is not available is an error."""
    ExecutionConfig(device=name).check()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == Device.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ContrastSegError(f"--device {name}: no CUDA GPU is available here; use --device cpu (or auto)")
    if name == Device.MPS and not has_mps:
        raise ContrastSegError("--device mps: Apple MPS is not available here; use --device cpu (or auto)")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16 instructions (where bf16 matmuls/convolutions are fast)."""
    capability = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()).upper()
    if "AMX" in capability:
        return True
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = cpuinfo.read_text(errors="ignore")
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return False


def plan_execution(device: str = ExecutionConfig.device, precision: str = ExecutionConfig.precision,
                   channels_last: str = ExecutionConfig.channels_last) -> ExecutionPlan:
    """Choose device, autocast dtype and memory format for ``device`` and ``precision`` (see module doc);
    ``channels_last`` "on"/"off" overrides the automatic choice (on with mixed precision)."""
    ExecutionConfig(device, precision, channels_last).check()
    target = resolve_device(device)
    dtype: torch.dtype | None = None
    if target.type == "cuda":
        if precision == Precision.AUTO:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif precision in (Precision.BF16, Precision.FP16):
            dtype = torch.bfloat16 if precision == Precision.BF16 else torch.float16
    elif target.type == "cpu":
        if precision == Precision.BF16 or (precision == Precision.AUTO and cpu_has_native_bf16()):
            dtype = torch.bfloat16
        elif precision == Precision.FP16:
            raise ContrastSegError("--precision fp16 is for CUDA GPUs; on the CPU use bf16 or fp32")
    layout = dtype is not None if channels_last == ChannelsLast.AUTO else channels_last == ChannelsLast.ON
    return ExecutionPlan(target, dtype, layout, scale_gradients=dtype == torch.float16)
