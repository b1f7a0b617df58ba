"""Where one fine-tuning step's time goes on the CPU: data, augmentation, forward + loss + backward, Adam.

    .venv/bin/python benchmarks/bench_cpu_step.py [--sides 192,160,128] [--batches 16,8] [--precisions auto,fp32]
        [--rounds 5] [--warmup 1] [--threads N] [--peak-side 2048] [--out bench_output]
    .venv/bin/python benchmarks/bench_cpu_step.py --smoke --out /tmp/cpu_step   # a few seconds, numbers meaningless

For each training side, batch and execution plan (``plan_execution("cpu", p)`` for each of ``--precisions``, equal
plans run once), on the paper UNet freshly initialised, six variants are timed interleaved
(``interleaved_medians``: median seconds per call after warm-up):

- data: ``BatchPipeline.next_batch`` with augmentation off, i.e. ``LabeledSliceBank.sample`` (phantoms
  preprocessed at 1 mm into slices of the largest side, windows of the training side: fine-tuning's ``patch``)
  and ``one_hot_targets``;
- batch: ``BatchPipeline.next_batch`` of the default ``FinetuneConfig``; augmentation = batch − data;
- forward + loss + backward and the optimiser (Adam): the two halves of ``TrainingStep.__call__``, called on the
  step's own model, loss, optimiser and scaler;
- model-only step: ``TrainingStep`` on one ready batch; pipeline step: ``next_batch`` + ``TrainingStep``. Ratio
  model-only ÷ pipeline step, target ≥ 0.9.

FLOPs: the convolutions and matmuls of one step's forward + backward (``FlopCounterMode``; elementwise work, the
loss and Adam are not counted), divided by the model-only step time, as a share of the machine's matmul peak
measured in the same run (``--peak-side``² fp32 and bf16 matmuls, same threads). Where the CPU has no native bf16
its bf16 matmul runs at about 1 GFLOP/s, so that peak is measured at ``SLOW_BF16_SIDE``² at most. The table is
printed and written to ``OUT/bench_cpu_step.md``, the numbers to ``OUT/bench_cpu_step.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ContrastSegLib.benchmark.markdown import table_line
from ContrastSegLib.benchmark.timing import interleaved_medians, machine_with_plans
from ContrastSegLib.benchmark.workloads import NUM_CLASSES, paper_unet, phantom_volumes
from ContrastSegLib.runtime.precision import ExecutionPlan, cpu_has_native_bf16, plan_execution
from ContrastSegLib.sampling import LabeledSliceBank
from ContrastSegLib.settings import FinetuneConfig
from ContrastSegLib.training.finetune import BatchPipeline, TrainingStep

TARGET_RATIO = 0.9  # model-only ÷ pipeline step
TARGET_BF16_PEAK_SHARE = 0.30  # on CPUs with native bf16
SLOW_BF16_SIDE = 512
PHANTOMS = 4
SEED = 0
SMOKE = {"sides": [32], "batches": [2], "rounds": 2, "warmup": 1, "peak_side": 256}
HEADER = ["side", "batch", "plan", "data ms", "augmentation ms", "fwd+loss+bwd ms", "Adam ms", "parts sum ms",
          "pipeline step ms", "model-only step ms", "pipeline img/s", f"model-only ÷ pipeline (≥ {TARGET_RATIO})",
          "GFLOP/step", "GFLOP/s", "% fp32 peak", "% bf16 peak"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    numbers = lambda text: [int(n) for n in text.split(",")]  # noqa: E731
    parser.add_argument("--sides", type=numbers, default=[192, 160, 128], help="training sides (multiples of 32)")
    parser.add_argument("--batches", type=numbers, default=[16, 8])
    parser.add_argument("--precisions", default="auto,fp32", help="plans to run (equal plans run once)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds per variant")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--peak-side", type=int, default=2048, help="side of the square matmuls giving the peak")
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    parser.add_argument("--smoke", action="store_true", help="side 32, batch 2, 2 rounds: checks the script works")
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    return args


def distinct_plans(precisions: str) -> list[tuple[str, ExecutionPlan]]:
    """(precision, plan) for each of the comma-separated precisions on the CPU, leaving out repeated plans."""
    plans: dict[ExecutionPlan, str] = {}
    for precision in precisions.split(","):
        plans.setdefault(plan_execution("cpu", precision), precision)
    return [(precision, plan) for plan, precision in plans.items()]


def matmul_peaks(side: int, warmup: int, rounds: int) -> dict[str, dict[str, float]]:
    """GFLOP/s of a side² × side² matmul in fp32 and bf16 (bf16 at ``SLOW_BF16_SIDE``² at most without native
    bf16), timed interleaved."""
    sides = {"fp32": side, "bf16": side if cpu_has_native_bf16() else min(side, SLOW_BF16_SIDE)}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    generator = torch.Generator().manual_seed(SEED)
    operands = {name: [torch.randn(n, n, generator=generator).to(dtypes[name]) for _ in range(2)]
                for name, n in sides.items()}
    variants = {name: (lambda a=a, b=b: torch.mm(a, b)) for name, (a, b) in operands.items()}
    seconds = interleaved_medians(variants, warmup, rounds, torch.device("cpu"))
    return {name: {"side": n, "gflops": 2 * n ** 3 / seconds[name] / 1e9} for name, n in sides.items()}


def step_halves(step: TrainingStep, images: torch.Tensor, targets: torch.Tensor):
    """The two halves of ``TrainingStep.__call__`` on the step's own model, loss, optimiser and scaler:
    forward + loss + backward on (images, targets), and the optimiser update from the gradients left by it."""
    model, plan = step.model, step.plan

    def forward_loss_backward() -> None:
        inputs = images.contiguous(memory_format=torch.channels_last) if plan.channels_last else images
        with plan.autocast():
            logits = model(inputs)
        loss = step.loss_fn(logits, targets)
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()

    def optimiser_update() -> None:
        step.scaler.step(step.optimizer)
        step.scaler.update()
        if step.scheduler is not None:
            step.scheduler.step()

    return forward_loss_backward, optimiser_update


def step_flops(step: TrainingStep, images: torch.Tensor, targets: torch.Tensor) -> int:
    """FLOPs that ``FlopCounterMode`` counts in one training step (convolutions and matmuls, forward + backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step(images, targets)
    return counter.get_total_flops()


def profile_configuration(volumes, plan: ExecutionPlan, side: int, batch: int, args) -> dict:
    """Median seconds of each variant of one (side, batch, plan), the FLOPs of one step and the derived rates."""
    bank = LabeledSliceBank(volumes, plan.device, side, FinetuneConfig.structure_share, NUM_CLASSES)
    config = FinetuneConfig(batch_size=batch, seed=SEED)
    augmented = BatchPipeline(bank, NUM_CLASSES, config, plan.device)
    data_only = BatchPipeline(bank, NUM_CLASSES, replace(config, augment=False), plan.device)
    step = TrainingStep(paper_unet(plan, SEED), plan, config.learning_rate, config.ce_weight,
                        config.lr_schedule_on(plan.device.type).value)
    ready = augmented.next_batch()
    forward_loss_backward, optimiser_update = step_halves(step, *ready)
    flops = step_flops(step, *ready)
    variants = {
        "data": data_only.next_batch,
        "batch": augmented.next_batch,
        "forward_loss_backward": forward_loss_backward,
        "optimiser": optimiser_update,
        "model_only_step": lambda: step(*ready),
        "pipeline_step": lambda: step(*augmented.next_batch()),
    }
    seconds = interleaved_medians(variants, args.warmup, args.rounds, plan.device)
    return {"side": side, "batch": batch, "plan": plan.describe(), "seconds": seconds, "flops": flops}


def derived(row: dict, peaks: dict) -> dict:
    """The table's quantities of one measured row."""
    seconds = row["seconds"]
    parts = {"data": seconds["data"], "augmentation": seconds["batch"] - seconds["data"],
             "forward_loss_backward": seconds["forward_loss_backward"], "optimiser": seconds["optimiser"]}
    achieved = row["flops"] / seconds["model_only_step"] / 1e9
    return {"parts": parts, "parts_sum": sum(parts.values()),
            "images_per_second": row["batch"] / seconds["pipeline_step"],
            "model_only_over_pipeline": seconds["model_only_step"] / seconds["pipeline_step"],
            "gflop_per_step": row["flops"] / 1e9, "achieved_gflops": achieved,
            "share_of_peak": {name: achieved / peak["gflops"] for name, peak in peaks.items()}}


def table_row(row: dict) -> list[str]:
    ms = lambda value: f"{1e3 * value:.1f}"  # noqa: E731
    seconds, figures = row["seconds"], row["derived"]
    parts = figures["parts"]
    ratio = figures["model_only_over_pipeline"]
    return [str(row["side"]), str(row["batch"]), row["plan"], ms(parts["data"]), ms(parts["augmentation"]),
            ms(parts["forward_loss_backward"]), ms(parts["optimiser"]), ms(figures["parts_sum"]),
            ms(seconds["pipeline_step"]), ms(seconds["model_only_step"]), f"{figures['images_per_second']:.1f}",
            f"{ratio:.3f} ({'yes' if ratio >= TARGET_RATIO else 'no'})", f"{figures['gflop_per_step']:.2f}",
            f"{figures['achieved_gflops']:.1f}", f"{100 * figures['share_of_peak']['fp32']:.1f}",
            f"{100 * figures['share_of_peak']['bf16']:.1f}"]


def report(rows: list[dict], peaks: dict, loads: tuple[float, float], args) -> str:
    """The markdown: machine line with the load before and after, peaks, native bf16, the table."""
    native = cpu_has_native_bf16()
    bf16_note = ("" if native else f" (no native bf16: measured at {peaks['bf16']['side']}², "
                 f"the {TARGET_BF16_PEAK_SHARE:.0%} target is for CPUs with native bf16)")
    lines = [f"Machine: {machine_with_plans('cpu')}; 1-minute load average {loads[0]:.2f} at the start, "
             f"{loads[1]:.2f} at the end", "",
             f"Native bf16 on this CPU (`cpu_has_native_bf16()`): {'yes' if native else 'no'}. Matmul peak, "
             f"{torch.get_num_threads()} threads: fp32 {peaks['fp32']['gflops']:.1f} GFLOP/s at "
             f"{peaks['fp32']['side']}², bf16 {peaks['bf16']['gflops']:.1f} GFLOP/s{bf16_note}.", "",
             f"Paper UNet, {args.rounds} timed rounds after {args.warmup} warm-up (medians, interleaved); ms per "
             "step; augmentation = next_batch − data; GFLOP/s = counted FLOPs ÷ model-only step.", "",
             table_line(HEADER), table_line(["---"] * len(HEADER))]
    lines += [table_line(table_row(row)) for row in rows]
    return "\n".join(lines) + "\n"


def run(args) -> tuple[str, dict]:
    """Measure everything; returns the markdown and the JSON record."""
    load_at_start = os.getloadavg()[0]
    volumes = phantom_volumes(PHANTOMS, max(args.sides), SEED)
    peaks = matmul_peaks(args.peak_side, args.warmup, args.rounds)
    rows = []
    for side in args.sides:
        for batch in args.batches:
            for _, plan in distinct_plans(args.precisions):
                row = profile_configuration(volumes, plan, side, batch, args)
                rows.append({**row, "derived": derived(row, peaks)})
    loads = (load_at_start, os.getloadavg()[0])
    record = {"machine": machine_with_plans("cpu"), "native_bf16": cpu_has_native_bf16(),
              "threads": torch.get_num_threads(), "rounds": args.rounds, "warmup": args.warmup,
              "load_average": loads, "peaks": peaks, "rows": rows}
    return report(rows, peaks, loads, args), record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        markdown, record = run(args)
    finally:
        torch.set_num_threads(previous_threads)
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_cpu_step.md").write_text(markdown, encoding="utf-8")
    (args.out / "bench_cpu_step.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
