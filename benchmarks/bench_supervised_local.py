"""Benchmark of ``supervised_local_contrastive_loss``: forward + backward time and peak memory of its four modes.

    python benchmarks/bench_supervised_local.py [--quick] [--device auto|cpu|cuda] [--threads 1]

Inputs: features N × C × S × S = 16 × 64 × S × S (fp32, standard normal) with labels of 4 classes, each pixel
foreground with probability 0.4 and then of class 1, 2 or 3 uniformly; τ = 0.1, stride 4, block 16.
- Sizes where "dense" fits (M = N·S² pixels; it holds about 5.8 M × M fp32 matrices at its peak, 14 GiB at S = 40,
  so S = 48 would need about 29 GiB): S = 24, 32, 40 (``--quick``: 16, 20); all four modes, values compared with
  "dense" ("stride" and "block" are approximations over other pixel sets, so only their costs compare).
- Target size S = 128 (``--quick``: 48): M = 262144, whose M × M fp32 matrix alone is 256 GiB, so no "dense".
Times: median wall clock of forward + backward, the modes of one size called round-robin by
``timing.interleaved_medians`` (warm-up and rounds in the table title; the largest sizes run once, unwarmed).
Memory: each (mode, size) runs once more in a fresh subprocess, after a tiny warm-up call of the same mode that loads
the kernels. On CPU it reports the growth of that process's peak resident set: VmHWM of /proc/self/status, the
quantity ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` reports too, except that ru_maxrss of a child starts at the
peak of the (large) parent that forked it; ru_maxrss is the fallback where /proc is missing. "call" is the growth
above the peak with the inputs allocated, "total" the growth above the peak before they were created (inputs, their
gradient and the call). On CUDA the same two numbers come from ``torch.cuda.max_memory_allocated``.
The largest square S that "exact" handles within 8 GiB is extrapolated from a least-squares line
total = a + b·M through the measured "exact" totals (its memory is linear in M); running it would take hours on
a few CPU cores, as the time grows with M².
Duration with one thread on 2 shared CPU cores: ``--quick`` about 1 min, the full run about 12 min (3 of them for
the two "exact" calls at S = 128, 3 for the two "dense" calls at S = 40).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import interleaved_medians, machine_description  # noqa: E402

from ContrastSegLib.benchmark.supervised_local_cost import (  # noqa: E402
    BATCH, CHANNELS, FOREGROUND, TEMPERATURE, forward_backward, make_inputs, measure_memory,
)

MODES = ("dense", "exact", "stride", "block")
SIZES = {"full": ((24, 32, 40), 128), "quick": ((16, 20), 48)}  # (sizes with "dense", target size)
BUDGET = 8 * 2 ** 30


def mib(value: float) -> str:
    return f"{value / 2 ** 20:,.0f}" if value >= 2 ** 24 else f"{value / 2 ** 20:.1f}"


def run_size(side: int, modes: tuple[str, ...], warmup: int, rounds: int, args: argparse.Namespace,
             device: torch.device) -> list[dict]:
    features, labels = make_inputs(side, device)
    values: dict[str, float] = {}

    def variant(mode: str):
        def run() -> None:
            values[mode] = forward_backward(features, labels, mode)
        return run

    seconds = interleaved_medians({mode: variant(mode) for mode in modes}, warmup, rounds, device)
    rows = []
    for mode in modes:
        memory = measure_memory(mode, side, args.device, args.threads)
        rows.append({"side": side, "mode": mode, "value": values[mode], "seconds": seconds[mode], **memory})
        print(f"  measured S = {side} {mode}: {seconds[mode]:.3f} s, {mib(memory['call'])} MiB", file=sys.stderr,
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="S = 16, 20 with dense and 48 without: about a minute")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, 0 for torch's default (default 1: on a shared machine every "
                             "parallel region of a second thread can wait a whole time slice for a busy core)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    args.device = device.type

    profile = "quick" if args.quick else "full"
    dense_sizes, target = SIZES[profile]
    warmup, rounds = (1, 2) if args.quick else (1, 3)
    rows = []
    for side in dense_sizes:
        last = side == dense_sizes[-1]
        rows += run_size(side, MODES, 0 if last else warmup, 1 if last else rounds, args, device)
    rows += run_size(target, MODES[1:], 0, 1, args, device)

    memory_method = ("torch.cuda.max_memory_allocated" if device.type == "cuda" else
                     "growth of the peak resident set (VmHWM, as ru_maxrss) of a fresh subprocess per row")
    print(f"### Supervised local contrastive loss, forward + backward ({profile} run; N = {BATCH}, C = {CHANNELS}, "
          f"4 classes, {FOREGROUND:.0%} foreground, τ = {TEMPERATURE}, stride 4, block 16)\n")
    print(machine_description(device) + "\n")
    warmed = ", ".join(map(str, dense_sizes[:-1]))
    print(f"Time: median of {rounds} interleaved rounds after {warmup} warm-up for S = {warmed}; "
          f"one unwarmed call for S = {dense_sizes[-1]} and {target}. Memory: {memory_method}; \"call\" = peak above "
          "the inputs, \"total\" = inputs + gradient + call.\n")
    header = ["S", "M = N·S²", "mode", "loss", "|loss − dense|", "time s", "dense ÷ mode (time)", "call MiB",
              "total MiB", "dense ÷ mode (call memory)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        if row["side"] == target and row["mode"] == MODES[1]:
            m = BATCH * target ** 2
            print(f"| {target} | {m:,} | dense | – | – | – | – | not run: its M × M fp32 matrix alone is "
                  f"{m * m * 4 / 2 ** 30:,.0f} GiB (about 5.8 of them at its peak) | – | – |")
        dense = next((r for r in rows if r["side"] == row["side"] and r["mode"] == "dense"), None)
        same_pixels = row["mode"] in ("dense", "exact")
        print("| " + " | ".join([
            str(row["side"]), f"{BATCH * row['side'] ** 2:,}", row["mode"], f"{row['value']:.6f}",
            f"{abs(row['value'] - dense['value']):.1e}" if dense and same_pixels else "–",
            f"{row['seconds']:.3f}", f"{dense['seconds'] / row['seconds']:.1f}×" if dense else "–",
            mib(row["call"]), mib(row["total"]),
            f"{dense['call'] / max(row['call'], 1):.1f}×" if dense else "–"]) + " |")

    exact = [(BATCH * r["side"] ** 2, r["total"]) for r in rows if r["mode"] == "exact"]
    mean_m = sum(m for m, _ in exact) / len(exact)
    mean_b = sum(b for _, b in exact) / len(exact)
    slope = sum((m - mean_m) * (b - mean_b) for m, b in exact) / sum((m - mean_m) ** 2 for m, _ in exact)
    intercept = mean_b - slope * mean_m
    largest_m = (BUDGET - intercept) / slope
    largest_side = math.isqrt(int(largest_m // BATCH))
    target_row = next(r for r in rows if r["side"] == target and r["mode"] == "exact")
    hours = target_row["seconds"] * (BATCH * largest_side ** 2 / (BATCH * target ** 2)) ** 2 / 3600
    print(f"\n\"exact\" total memory ≈ {intercept / 2 ** 20:.0f} MiB + {slope:.0f} B × M (least squares over "
          f"S = {', '.join(str(r['side']) for r in rows if r['mode'] == 'exact')}), so within 8 GiB: "
          f"M ≈ {largest_m:,.0f}, i.e. the largest square is S = {largest_side} at N = {BATCH} "
          f"({BATCH} × {CHANNELS} × {largest_side} × {largest_side}). Estimated, not run: its time scales with M² "
          f"(|Ω| ∝ M anchors × M pixels), ≈ {hours:.1f} h from the S = {target} time on this machine.")


if __name__ == "__main__":
    main()
