"""The performance table of the benchmark report: images/s of each training stage (model-only step vs full
pipeline), the cost of the loss kernels, prediction seconds per volume, and the machine they were measured on.

    performance_table("cpu", "auto")  ->  markdown

Profiles: "smoke" runs in seconds to check the machinery (its numbers mean nothing), "cpu" takes a few minutes on
two CPU cores, "paper" uses the papers' sizes and is meant for a GPU. Every pair of variants is timed interleaved
(``timing.interleaved_medians``); the models run under the automatic precision plan of ``device``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ContrastSegError
from ..inference.slices import slice_probabilities
from ..preprocess import preprocess_volume
from ..runtime.precision import plan_execution
from .kernel_cost import KernelCost, KernelSizes, contrastive_costs, supervised_local_costs
from .stage_speed import StageSizes, StageSpeed, stage_speeds
from .timing import interleaved_medians, machine_with_plans
from .workloads import fresh_predictor, phantom_volumes, prediction_volume


@dataclass(frozen=True)
class PerformanceProfile:
    """Sizes of the three parts of the table; predict_slices: slices of the 256 × 256 volume to predict (at crop
    ``stages.crop``), predict_rounds: timed rounds after one warm-up."""

    stages: StageSizes
    kernels: KernelSizes
    predict_slices: int
    predict_rounds: int


PERFORMANCE_PROFILES = {
    "smoke": PerformanceProfile(
        StageSizes(crop=32, volumes_per_batch=2, partitions=2, finetune_batch=4, warmup=1, rounds=2,
                   steps_per_round=1),
        KernelSizes(slc_side=12, crop=32, volumes_per_batch=2, partitions=2, warmup=1, rounds=2),
        predict_slices=4, predict_rounds=2),
    "cpu": PerformanceProfile(
        StageSizes(crop=64, volumes_per_batch=4, partitions=4, finetune_batch=16, warmup=2, rounds=7,
                   steps_per_round=2),
        KernelSizes(slc_side=16, crop=64, volumes_per_batch=4, partitions=4, warmup=1, rounds=5),
        predict_slices=20, predict_rounds=7),
    "paper": PerformanceProfile(
        StageSizes(crop=192, volumes_per_batch=10, partitions=4, finetune_batch=40, warmup=5, rounds=15,
                   steps_per_round=5),
        KernelSizes(slc_side=40, crop=192, volumes_per_batch=10, partitions=4, warmup=2, rounds=7),
        predict_slices=20, predict_rounds=15),
}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _load_average() -> float | None:
    """Runnable processes averaged over the last minute (None where the system does not tell)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _mib(value: int) -> str:
    return f"{value / 2 ** 20:.2f}"


def stage_rows(speeds: list[StageSpeed]) -> list[str]:
    header = ["training stage", "images per step (network inputs)", "model-only images/s", "pipeline images/s",
              "ratio pipeline ÷ model-only"]
    return _table(header, [[s.name, f"{s.images} ({s.network_inputs})", f"{s.model_only:.2f}", f"{s.pipeline:.2f}",
                            f"{s.ratio:.3f}"] for s in speeds])


def kernel_rows(supervised: list[KernelCost], contrastive: list[KernelCost]) -> list[str]:
    dense = supervised[0]
    header = ["loss kernel, forward + backward", "input", "time ms", "peak memory MiB", "time dense ÷ kernel",
              "memory dense ÷ kernel"]
    rows = [[f"supervised-local {cost.name}", cost.shape, f"{cost.seconds * 1e3:.3f}", _mib(cost.peak_bytes),
             f"{dense.seconds / cost.seconds:.2f}×", f"{dense.peak_bytes / max(cost.peak_bytes, 1):.2f}×"]
            for cost in supervised]
    rows += [[cost.name, cost.shape, f"{cost.seconds * 1e3:.3f}", "–", "–", "–"] for cost in contrastive]
    return _table(header, rows)


def prediction_row(profile: PerformanceProfile, device: str) -> list[str]:
    """``Predictor.predict`` (preprocessing, forward passes, restoring onto the volume's grid) vs the forward passes
    alone on the slices preprocessed beforehand, interleaved."""
    crop = profile.stages.crop
    volume = prediction_volume(profile.predict_slices, profile.stages.seed)
    with tempfile.TemporaryDirectory() as folder:
        predictor = fresh_predictor(crop, profile.stages.finetune_batch, device, Path(folder), profile.stages.seed)
    prepared = preprocess_volume(volume, predictor.preprocess_config)
    variants = {"end to end": lambda: predictor.predict(volume),
                "bare forward": lambda: slice_probabilities(predictor.model, prepared.image, predictor.plan,
                                                            predictor.batch_size)}
    seconds = interleaved_medians(variants, 1, profile.predict_rounds, predictor.plan.device)
    shape = "×".join(str(n) for n in volume.array.shape[::-1])
    header = ["prediction", "volume", "end to end s per volume", "bare forward s", "ratio bare ÷ end to end"]
    spacing = predictor.preprocess_config.target_spacing
    row = [f"Predictor.predict, {prepared.image.shape[0]} slices of {crop}² at {spacing} mm",
           f"{shape} at {volume.spacing} mm", f"{seconds['end to end']:.4f}", f"{seconds['bare forward']:.4f}",
           f"{seconds['bare forward'] / seconds['end to end']:.3f}"]
    return _table(header, [row])


def performance_table(profile_name: str, device: str) -> str:
    """Markdown: the machine line, then the training-stage, loss-kernel and prediction tables of ``profile_name``
    ("smoke", "cpu" or "paper") measured on ``device`` ("auto", "cpu", "cuda", ...)."""
    if profile_name not in PERFORMANCE_PROFILES:
        raise ContrastSegError(f"performance profile {profile_name}: choose one of {', '.join(PERFORMANCE_PROFILES)}")
    profile = PERFORMANCE_PROFILES[profile_name]
    plan = plan_execution(device, "auto")
    load_at_start = _load_average()
    stages, kernels = profile.stages, profile.kernels
    volumes = phantom_volumes(stages.phantoms, stages.crop, stages.seed)
    speeds = stage_speeds(stages, plan, volumes)
    supervised = supervised_local_costs(kernels.slc_side, kernels.warmup, kernels.rounds, plan.device)
    contrastive = contrastive_costs(kernels, plan.device)
    prediction = prediction_row(profile, device)
    load = ("" if load_at_start is None else f" Load average (1 min, this run included) at the start "
            f"{load_at_start:.1f}, at the end {_load_average():.1f}.")
    lines = [
        f"Profile {profile_name}, on {plan.describe()}. Machine: {machine_with_plans(device)}.{load}", "",
        "### Training stages", "",
        f"Paper UNet, crop {stages.crop}, {stages.phantoms} phantoms at 1 mm; median of {stages.rounds} interleaved "
        f"rounds of {stages.steps_per_round} step(s) after {stages.warmup} warm-up. Model-only: forward, loss, "
        "backward and Adam on one pre-made batch (its views made once); pipeline: sampling, augmentation / views "
        "and the same step.", "",
        *stage_rows(speeds), "",
        "### Loss kernels", "",
        f"Forward + backward, fp32, τ = 0.1, median of {kernels.rounds} interleaved rounds after {kernels.warmup} "
        "warm-up. Supervised-local: 4 classes, stride 4, block 16; peak memory = growth of the peak "
        f"{'allocation (torch.cuda.max_memory_allocated)' if plan.device.type == 'cuda' else 'resident set'} "
        "above the inputs during one call in a fresh process. G^D / L^R: the shapes of one pre-training step.", "",
        *kernel_rows(supervised, contrastive), "",
        "### Prediction", "",
        *prediction,
    ]
    return "\n".join(lines) + "\n"
