"""Does contrastive pre-training help on the phantoms? Test Dice at |X_L| labeled volumes for each method, over seeds.

    python benchmarks/bench_pretraining.py --profile smoke|cpu|paper [--labeled 1] [--seeds 3] [--out DIR]
        [--methods random,GR,GD,GD+LR]

Each seed draws its own phantom family, split and initialisation, and runs the demo's chain for every method on
it: pre-training on the split's training volumes (labels unused), fine-tuning on |X_L| labeled volumes, prediction of
the held-out test volumes on their own grids. The table reports the mean foreground Dice (LV, myocardium, RV) per
method as mean ± std over seeds, and per structure; the runs are kept under ``--out`` (report.md of each).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ContrastSegLib.demo import DemoConfig, run_demo


@dataclass(frozen=True)
class Profile:
    subjects: int
    test: int
    iterations: int
    pretrain_iterations: int
    crop_size: int
    spacing: float


PROFILES = {
    "smoke": Profile(subjects=5, test=2, iterations=5, pretrain_iterations=5, crop_size=32, spacing=4.0),
    "cpu": Profile(subjects=10, test=4, iterations=300, pretrain_iterations=300, crop_size=64, spacing=2.0),
    "paper": Profile(subjects=40, test=10, iterations=10000, pretrain_iterations=10000, crop_size=192,
                     spacing=0.8),
}


def run(profile: Profile, methods: tuple[str, ...], labeled: int, seeds: int, out: Path,
        device: str) -> dict[str, list[dict]]:
    """{method: [summary rows of each seed]} from one demo run per seed."""
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in range(seeds):
        config = DemoConfig(subjects=profile.subjects, labeled=labeled, test=profile.test,
                            iterations=profile.iterations, pretrain_iterations=profile.pretrain_iterations,
                            methods=methods, seed=seed, crop_size=profile.crop_size, spacing=profile.spacing,
                            device=device)
        summary = run_demo(out / f"seed_{seed}", config, overwrite=True)
        for row in summary:
            results[row["method"]].append(row)
    return results


def table(results: dict[str, list[dict]], labeled: int, seeds: int) -> str:
    """Markdown: method | mean Dice ± std over seeds | per structure | difference to random."""
    structures = [row["structure"] for row in next(iter(results.values())) if row["structure"] != "mean"]
    structures = list(dict.fromkeys(structures))

    def stats(method: str, structure: str) -> tuple[float, float]:
        values = [r["dice_mean"] for r in results[method] if r["structure"] == structure]
        return statistics.mean(values), statistics.pstdev(values)

    baseline = stats("random", "mean")[0] if "random" in results else None
    header = ["method", f"mean Dice ({labeled} labeled, {seeds} seeds)"] + structures + ["vs random"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in results:
        mean, std = stats(method, "mean")
        cells = [method, f"{mean:.3f} ± {std:.3f}"] + [f"{stats(method, s)[0]:.3f}" for s in structures]
        cells.append("—" if baseline is None or method == "random" else f"{mean - baseline:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    parser.add_argument("--methods", default="random,GR,GD,GD+LR")
    parser.add_argument("--labeled", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench_output/pretraining"))
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    started = time.perf_counter()
    results = run(profile, tuple(args.methods.split(",")), args.labeled, args.seeds, args.out, args.device)
    text = (f"## bench_pretraining, profile {args.profile}\n\n{profile}\n\ntorch {torch.__version__}, "
            f"Python {sys.version.split()[0]}, {platform.processor() or platform.machine()}\n\n"
            f"{table(results, args.labeled, args.seeds)}\n\ntotal {time.perf_counter() - started:.0f} s\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_pretraining.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
