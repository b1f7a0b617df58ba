"""Is ``torch.compile`` worth adopting? The fine-tuning training step and the prediction forward pass, eager against
compiled, side by side in one run (``ContrastSegLib.benchmark.compile_speed``, which ``gpu_check.py`` runs too).

    python benchmarks/bench_compile.py [--device auto|cpu|cuda] [--crop 128] [--batch 16] [--rounds 8]

Both variants use the automatic precision plan (CPU with AMX: bf16 autocast + channels_last) on the paper UNet
(4 classes), each with its own freshly initialised model; rounds are interleaved after 2 warm-up rounds. The compile
time (the first call of each compiled function) is reported apart. The project adopts compilation where the
compiled step is at least 1.3× the eager one (and the Dice equal); it prints whether that holds.
"""

from __future__ import annotations

import argparse

from ContrastSegLib.benchmark.compile_speed import compile_speeds
from ContrastSegLib.benchmark.timing import machine_with_plans
from ContrastSegLib.runtime.precision import plan_execution

ADOPT_AT = 1.3
WARMUP_ROUNDS = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (eager: graph capture only)")
    args = parser.parse_args(argv)
    plan = plan_execution(args.device, "auto")
    speeds = compile_speeds(plan, args.crop, args.batch, WARMUP_ROUNDS, args.rounds, backend=args.backend)
    print(f"{machine_with_plans(str(plan.device))}; crop {args.crop}, batch {args.batch}, {args.rounds} rounds, "
          f"backend {args.backend}\n")
    print(f"| step | eager s | compiled s | speed-up | compile s | adopt (≥ {ADOPT_AT}×) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for speed in speeds:
        print(f"| {speed.name} | {speed.eager_s:.3f} | {speed.compiled_s:.3f} | {speed.speedup:.2f}× | "
              f"{speed.compile_s:.0f} | {'yes' if speed.speedup >= ADOPT_AT else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
