"""Does contrastive pre-training help on the phantoms? A shortcut for ``contrastseg benchmark --dataset phantom``.

    python benchmarks/bench_pretraining.py --profile smoke|cpu|paper [--labeled 1] [--seeds 3] [--out DIR]
        [--methods random,GR,GD,GD+LR] [--device auto]

runs ``contrastseg benchmark --dataset phantom`` with these options (and without the performance section), then
prints the mean-Dice table of its report. Everything else (per-structure table, times, plots, overlays,
results.csv) is in ``DIR``; running the same command again continues an interrupted run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ContrastSegLib.benchmark.profiles import PROFILES
from ContrastSegLib.cli import main as contrastseg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--methods", default="random,GR,GD,GD+LR")
    parser.add_argument("--labeled", default="1", help="comma-separated |X_L| values")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench_output/pretraining"))
    args = parser.parse_args(argv)
    out = args.out / args.profile
    status = contrastseg(["benchmark", "--dataset", "phantom", "--profile", args.profile, "--methods", args.methods,
                          "--labeled", args.labeled, "--seeds", str(args.seeds), "--device", args.device,
                          "--out", str(out), "--no-performance"])
    if status == 0:
        report = (out / "report.md").read_text(encoding="utf-8")
        print("\n" + report.split("## Mean Dice", 1)[1].split("\n## ", 1)[0].strip())
    return status


if __name__ == "__main__":
    raise SystemExit(main())
