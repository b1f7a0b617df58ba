"""Benchmarks of the foundation: training pipeline overhead, prediction overhead, automatic CPU precision.

    python benchmarks/bench_foundation.py --profile smoke|cpu|paper [--device auto] [--out DIR]

Compared variants are timed interleaved (A, B, A, B, ...) after warm-up rounds and summarised by their median, so
every ratio is measured side by side in one run. The tables are printed and written to ``DIR/bench_foundation.md``.
See ``benchmarks/README.md`` for what each ratio means.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ContrastSegLib.data.discovery import discover
from ContrastSegLib.data.labels import LabelSet
from ContrastSegLib.data.phantom import LABEL_COLORS, LABEL_NAMES, make_phantom, write_phantom_dataset
from ContrastSegLib.data.splits import make_split, save_split
from ContrastSegLib.evaluation import structure_metrics, summarise
from ContrastSegLib.inference.predictor import Predictor
from ContrastSegLib.inference.slices import slice_probabilities
from ContrastSegLib.io import Volume, read_image, read_label, write_volume
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.preprocess import PreprocessConfig, preprocess_volume
from ContrastSegLib.preprocess.geometry import resample_planes
from ContrastSegLib.sampling import LabeledSliceBank
from ContrastSegLib.training import Checkpoint, ExecutionPlan, ProgressReporter, plan_execution, save_checkpoint
from ContrastSegLib.training.finetune import BatchPipeline, FinetuneConfig, TrainingStep
from ContrastSegLib.training.finetune_job import run_finetune
from timing import interleaved_medians

NUM_CLASSES = len(LABEL_NAMES)
CLASS_VALUES = tuple(sorted(LABEL_NAMES))
TARGET_PIPELINE_RATIO = 0.90
TARGET_PREDICTION_RATIO = 0.70
TARGET_PRECISION_SPEEDUP = 2.5
TARGET_DICE_DIFFERENCE = -0.02


@dataclass(frozen=True)
class Profile:
    """Sizes and repeats of one benchmark run."""

    crop: int  # training crop (tables 1 and 3) and prediction crop (table 2)
    batch: int
    warmup: int  # untimed rounds per variant
    rounds: int  # timed rounds per variant (median reported)
    steps_per_round: int  # training steps in one timed round
    predict_slices: int  # slices of the 256 x 256 prediction volume
    dice_iterations: int
    dice_batch: int
    phantoms: int = 10
    labeled: int = 2
    test: int = 4
    dice_crop: int = 64
    dice_spacing: float = 2.0
    seed: int = 0


PROFILES = {
    "smoke": Profile(crop=64, batch=4, warmup=1, rounds=3, steps_per_round=1, predict_slices=6,
                     dice_iterations=4, dice_batch=4, phantoms=5, labeled=1, test=1),
    "cpu": Profile(crop=128, batch=16, warmup=3, rounds=15, steps_per_round=2, predict_slices=20,
                   dice_iterations=500, dice_batch=16),
    "paper": Profile(crop=192, batch=16, warmup=10, rounds=15, steps_per_round=10, predict_slices=20,
                     dice_iterations=2000, dice_batch=16),
}


def verdict(value: float, target: float) -> str:
    """"yes" when ``value`` meets the (lower-bound) ``target``, else "no"."""
    return "yes" if value >= target else "no"


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A titled markdown table."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_description(device: str) -> str:
    """CPU model, cores, torch version and the automatic execution plan."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="ignore") if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown")
    flags = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in cpuinfo]
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"CPU {model} ({', '.join(flags) or 'no native bf16'}), {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads{gpu}; torch {torch.__version__}, Python "
            f"{platform.python_version()}; plan auto: {plan_execution(device, 'auto').describe()}, "
            f"plan fp32: {plan_execution(device, 'fp32').describe()}")


def paper_unet(plan: ExecutionPlan, seed: int) -> UNet2D:
    """A freshly initialised paper UNet (16-32-64-128-128-128, 4 classes), in training mode, laid out for ``plan``."""
    torch.manual_seed(seed)
    model = UNet2D(UNetConfig(num_classes=NUM_CLASSES)).to(plan.device).train()
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def phantom_slice_bank(profile: Profile, device: torch.device, count: int = 4) -> LabeledSliceBank:
    """Labeled slices of ``count`` phantoms preprocessed at 1 mm into ``profile.crop`` squares."""
    config = PreprocessConfig(target_spacing=1.0, crop_size=profile.crop)
    prepared = []
    for index in range(count):
        image, label = make_phantom(index, profile.seed)
        prepared.append(preprocess_volume(image, config, label, CLASS_VALUES))
    return LabeledSliceBank(prepared, device)


def fixed_batch(profile: Profile, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One ready batch: random images (B, 1, P, P) and one-hot targets (B, C, P, P)."""
    generator = torch.Generator().manual_seed(profile.seed)
    images = torch.rand(profile.batch, 1, profile.crop, profile.crop, generator=generator)
    labels = torch.randint(NUM_CLASSES, (profile.batch, profile.crop, profile.crop), generator=generator)
    targets = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
    return images.to(device), targets.to(device)


def repeat(steps: int, run: Callable[[], object]) -> Callable[[], None]:
    """``run`` called ``steps`` times in a row, as one timed unit."""
    def repeated() -> None:
        for _ in range(steps):
            run()
    return repeated


def bench_training_pipeline(profile: Profile, device: str) -> str:
    """Table 1: images/s of BatchPipeline + TrainingStep vs TrainingStep on one fixed batch (with and without mixup)."""
    plan = plan_execution(device, "auto")
    step = TrainingStep(paper_unet(plan, profile.seed), plan, learning_rate=1e-3)
    bank = phantom_slice_bank(profile, plan.device)
    config = FinetuneConfig(batch_size=profile.batch, seed=profile.seed)
    plain = BatchPipeline(bank, NUM_CLASSES, config, plan.device)
    mixed = BatchPipeline(bank, NUM_CLASSES, FinetuneConfig(**{**config.to_json(), "mixup": True}), plan.device)
    batch = fixed_batch(profile, plan.device)
    variants = {
        "model-only": repeat(profile.steps_per_round, lambda: step(*batch)),
        "pipeline": repeat(profile.steps_per_round, lambda: step(*plain.next_batch())),
        "pipeline + mixup": repeat(profile.steps_per_round, lambda: step(*mixed.next_batch())),
    }
    seconds = interleaved_medians(variants, profile.warmup, profile.rounds, plan.device)
    rate = {name: profile.batch * profile.steps_per_round / value for name, value in seconds.items()}
    rows = []
    for name in ("pipeline", "pipeline + mixup"):
        ratio = rate[name] / rate["model-only"]
        rows.append([f"{name} vs model-only", f"{rate['model-only']:.2f}", f"{rate[name]:.2f}", f"{ratio:.3f}",
                     f"≥ {TARGET_PIPELINE_RATIO:.2f}", verdict(ratio, TARGET_PIPELINE_RATIO)])
    title = (f"1. Training pipeline vs model-only step (paper UNet, batch {profile.batch}, crop {profile.crop}, "
             f"{plan.describe()}, {len(bank)} bank slices)")
    header = ["comparison", "model-only img/s", "pipeline img/s", "ratio pipeline ÷ model-only", "target",
              "meets target"]
    return markdown_table(title, header, rows)


def prediction_volume(profile: Profile, shape_ji: tuple[int, int] = (256, 256), pixel_mm: float = 1.0) -> Volume:
    """Phantom 0 resampled to ``pixel_mm`` in plane, stretched to ``profile.predict_slices`` slices of 8 mm and
    centred on a ``shape_ji`` grid of zeros."""
    image, _ = make_phantom(0, profile.seed)
    rows, cols = (round(n * s / pixel_mm) for n, s in zip(image.array.shape[1:], image.spacing[1::-1]))
    plane = resample_planes(torch.from_numpy(image.array).unsqueeze(1), (rows, cols))[:, 0].numpy()
    picks = np.linspace(0, plane.shape[0] - 1, profile.predict_slices).round().astype(int)
    array = np.zeros((profile.predict_slices,) + shape_ji, dtype=np.float32)
    top, left = (shape_ji[0] - rows) // 2, (shape_ji[1] - cols) // 2
    array[:, top:top + rows, left:left + cols] = plane[picks]
    return Volume(array, (pixel_mm, pixel_mm, 8.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
                  source="prediction phantom")


def fresh_predictor(profile: Profile, device: str, folder: Path) -> Predictor:
    """A Predictor loaded from a checkpoint of a freshly initialised paper UNet with fine-tuning metadata."""
    plan = plan_execution(device, "auto")
    torch.manual_seed(profile.seed)
    model = UNet2D(UNetConfig(num_classes=NUM_CLASSES))
    metadata = {
        "stage": "finetune",
        "architecture": model.config.to_json(),
        "labels": LabelSet.build(CLASS_VALUES, LABEL_NAMES, LABEL_COLORS).to_json(),
        "preprocessing": PreprocessConfig(target_spacing=1.5, crop_size=profile.crop).to_json(),
        "config": FinetuneConfig(batch_size=profile.batch).to_json(),
        "step": 0,
    }
    path = save_checkpoint(Checkpoint(model.state_dict(), metadata), folder / "fresh.pt")
    return Predictor.from_file(path, plan=plan)


def bench_prediction(profile: Profile, device: str) -> str:
    """Table 2: seconds of Predictor.predict vs slice_probabilities on the already preprocessed slices."""
    volume = prediction_volume(profile)
    with tempfile.TemporaryDirectory() as folder:
        predictor = fresh_predictor(profile, device, Path(folder))
        prepared = preprocess_volume(volume, predictor.preprocess_config)
        source, target = Path(folder) / "volume.nii.gz", Path(folder) / "volume_seg.nii.gz"
        write_volume(volume, source)

        def with_files() -> None:
            prediction = predictor.predict(read_image(source))
            write_volume(prediction.label, target, overwrite=True, label=True)

        variants = {
            "end to end": lambda: predictor.predict(volume),
            "bare forward": lambda: slice_probabilities(predictor.model, prepared.image, predictor.plan,
                                                        predictor.batch_size),
            "with files": with_files,
        }
        seconds = interleaved_medians(variants, profile.warmup, profile.rounds, predictor.plan.device)
    ratio = seconds["bare forward"] / seconds["end to end"]
    shape = "×".join(str(n) for n in volume.array.shape[::-1])
    rows = [["bare forward vs end to end", f"{seconds['end to end']:.3f}", f"{seconds['bare forward']:.3f}",
             f"{ratio:.3f}", f"≥ {TARGET_PREDICTION_RATIO:.2f}", verdict(ratio, TARGET_PREDICTION_RATIO),
             f"{seconds['with files']:.3f}"]]
    title = (f"2. Prediction end to end vs bare forward ({shape} volume, spacing {volume.spacing} mm -> "
             f"{prepared.image.shape[0]} slices of {profile.crop}² at 1.5 mm, {predictor.plan.describe()})")
    header = ["comparison", "end to end s", "bare forward s", "ratio bare ÷ end to end", "target", "meets target",
              "end to end + NIfTI read/write s"]
    return markdown_table(title, header, rows)


def precision_speed(profile: Profile, device: str) -> dict[str, float]:
    """Images/s of one training step under the "auto" and the "fp32" plan, timed interleaved."""
    batch = fixed_batch(profile, plan_execution(device, "fp32").device)
    variants = {}
    for precision in ("auto", "fp32"):
        plan = plan_execution(device, precision)
        step = TrainingStep(paper_unet(plan, profile.seed), plan, learning_rate=1e-3)
        variants[precision] = repeat(profile.steps_per_round, lambda step=step: step(*batch))
    seconds = interleaved_medians(variants, profile.warmup, profile.rounds, plan.device)
    return {name: profile.batch * profile.steps_per_round / value for name, value in seconds.items()}


def phantom_dice(profile: Profile, device: str, precisions: tuple[str, ...]) -> dict[str, tuple[float, float, float]]:
    """Per precision: (mean, std) over test volumes of the mean foreground Dice after fine-tuning from random init
    on the same seeded phantom split, and the training seconds."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = write_phantom_dataset(folder / "phantoms", profile.phantoms, seed=profile.seed)
        dataset = discover(data)
        split = make_split(dataset, n_labeled=profile.labeled, n_test=profile.test, seed=profile.seed)
        save_split(split, folder / "split.json")
        preprocess = PreprocessConfig(target_spacing=profile.dice_spacing, crop_size=profile.dice_crop)
        test_cases = dataset.subset(split.groups["test"]).cases
        for precision in precisions:
            config = FinetuneConfig(iterations=profile.dice_iterations, batch_size=profile.dice_batch,
                                    seed=profile.seed, device=device, precision=precision)
            model, trained = run_finetune(data, folder / f"model_{precision}.pt", config, preprocess,
                                          split=folder / "split.json",
                                          reporter=ProgressReporter("finetune", config.iterations, enabled=False))
            predictor = Predictor.from_file(model, device=device, precision=precision)
            rows = []
            for case in test_cases:
                image = read_image(case.image)
                reference = read_label(case.label, image=image)
                prediction = predictor.predict(image).label
                foreground = {value: name for value, name in LABEL_NAMES.items() if value}
                rows += [{"case": case.id, **row} for row in structure_metrics(prediction, reference, foreground)]
            mean_row = summarise(rows)[-1]
            results[precision] = (mean_row["dice_mean"], mean_row["dice_std"], trained.seconds)
    return results


def bench_precision(profile: Profile, device: str) -> str:
    """Table 3: training speed and phantom test Dice under the automatic plan vs plain fp32."""
    rate = precision_speed(profile, device)
    speedup = rate["auto"] / rate["fp32"]
    dice = phantom_dice(profile, device, ("auto", "fp32"))
    difference = dice["auto"][0] - dice["fp32"][0]
    rows = [
        [f"training step img/s (batch {profile.batch}, crop {profile.crop})", f"{rate['fp32']:.2f}",
         f"{rate['auto']:.2f}", f"{speedup:.2f}× (auto ÷ fp32)", f"≥ {TARGET_PRECISION_SPEEDUP:.1f}×",
         verdict(speedup, TARGET_PRECISION_SPEEDUP)],
        [f"phantom test Dice, mean ± std over {profile.test} volumes",
         f"{dice['fp32'][0]:.3f} ± {dice['fp32'][1]:.3f}", f"{dice['auto'][0]:.3f} ± {dice['auto'][1]:.3f}",
         f"{difference:+.3f} (auto − fp32)", f"≥ {TARGET_DICE_DIFFERENCE:+.2f}",
         verdict(difference, TARGET_DICE_DIFFERENCE)],
    ]
    title = (f"3. Automatic precision ({plan_execution(device, 'auto').describe()}) vs fp32 — Dice: "
             f"{profile.phantoms} phantoms, {profile.labeled} labeled, {profile.test} test, crop "
             f"{profile.dice_crop}, spacing {profile.dice_spacing} mm, {profile.dice_iterations} iterations of batch "
             f"{profile.dice_batch} from random init, seed {profile.seed}; fine-tuning took {dice['fp32'][2]:.0f} s "
             f"(fp32) and {dice['auto'][2]:.0f} s (auto)")
    header = ["measurement", "fp32", "auto", "ratio / difference", "target", "meets target"]
    return markdown_table(title, header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="bench_output")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    start = time.perf_counter()
    sections = [f"## bench_foundation, profile {args.profile}", "", machine_description(args.device)]
    print("\n".join(sections), flush=True)
    for bench in (bench_training_pipeline, bench_prediction, bench_precision):
        table = bench(profile, args.device)
        print("\n" + table, flush=True)
        sections += ["", table]
    sections += ["", f"total {time.perf_counter() - start:.0f} s"]
    print("\n" + sections[-1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_foundation.md").write_text("\n".join(sections) + "\n", encoding="utf-8")
    print(f"written: {out / 'bench_foundation.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
