"""Benchmarks of the foundation: training pipeline overhead, prediction overhead, automatic CPU precision.

    python benchmarks/bench_foundation.py --profile smoke|cpu|paper [--device auto] [--out DIR]

Compared variants are timed interleaved (A, B, A, B, ...) after warm-up rounds and summarised by their median, so
every ratio is measured side by side in one run. The tables are printed and written to ``DIR/bench_foundation.md``.
See ``benchmarks/README.md`` for what each ratio means.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ContrastSegLib.benchmark.workloads import (
    fixed_batch, fresh_predictor, paper_unet, phantom_volumes, prediction_volume,
)
from ContrastSegLib.data.discovery import discover
from ContrastSegLib.data.phantom import LABEL_NAMES, write_phantom_dataset
from ContrastSegLib.data.splits import make_split, save_split
from ContrastSegLib.evaluation import structure_metrics, summarise
from ContrastSegLib.inference.predictor import Predictor
from ContrastSegLib.inference.slices import slice_probabilities
from ContrastSegLib.io import read_image, read_label, write_volume
from ContrastSegLib.preprocess import preprocess_volume
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.runtime.progress import ProgressReporter
from ContrastSegLib.sampling import LabeledSliceBank
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
from ContrastSegLib.training.finetune import BatchPipeline, TrainingStep
from ContrastSegLib.training.finetune_job import run_finetune
from timing import interleaved_medians, machine_with_plans, repeat

NUM_CLASSES = len(LABEL_NAMES)
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


def bench_training_pipeline(profile: Profile, device: str) -> str:
    """Table 1: images/s of BatchPipeline + TrainingStep vs TrainingStep on one fixed batch (with and without mixup)."""
    plan = plan_execution(device, "auto")
    step = TrainingStep(paper_unet(plan, profile.seed), plan, learning_rate=1e-3)
    bank = LabeledSliceBank(phantom_volumes(4, profile.crop, profile.seed), plan.device)
    config = FinetuneConfig(batch_size=profile.batch, seed=profile.seed)
    plain = BatchPipeline(bank, NUM_CLASSES, config, plan.device)
    mixed = BatchPipeline(bank, NUM_CLASSES, FinetuneConfig(**{**config.to_json(), "mixup": True}), plan.device)
    batch = fixed_batch(profile.batch, profile.crop, profile.seed, plan.device)
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


def bench_prediction(profile: Profile, device: str) -> str:
    """Table 2: seconds of Predictor.predict vs slice_probabilities on the already preprocessed slices."""
    volume = prediction_volume(profile.predict_slices, profile.seed)
    with tempfile.TemporaryDirectory() as folder:
        predictor = fresh_predictor(profile.crop, profile.batch, device, Path(folder), profile.seed)
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
    batch = fixed_batch(profile.batch, profile.crop, profile.seed, plan_execution(device, "fp32").device)
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
    sections = [f"## bench_foundation, profile {args.profile}", "", machine_with_plans(args.device)]
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
