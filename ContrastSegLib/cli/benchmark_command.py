"""``contrastseg benchmark``: every method × |X_L| × seed on a dataset's fixed split -> results.csv, report.md and
plots (see :mod:`ContrastSegLib.benchmark.runner`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from ..benchmark.cells import FULL
from ..choices import DEFAULT_SELECTIONS
from ..benchmark.datasets import dataset_names
from ..benchmark.profiles import DEFAULT_METHODS, PROFILES
from ..benchmark.runner import BenchmarkRequest, run_benchmark
from ..errors import ContrastSegError
from ..option_rules import DURATION
from ..runtime.budget import format_duration
from ..settings import (ExecutionConfig, FinetuneConfig, ScheduleConfig, add_options, command_arguments,
                        field_names, option_fields)
from .common import OneLineParser, add_execution_options, name_list, positive_int


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "benchmark", help="compare pre-training methods at 1, 2, 8 ... labeled volumes over seeds, resumable",
        description="For each seed, |X_L| and method: pre-train on the dataset's pool (labels unused), fine-tune on "
                    "a seeded draw of |X_L| labeled pool volumes, predict the fixed test cases (never used for "
                    "training) and score Dice / HD95. Finished cells are kept: running the same command again "
                    "continues an interrupted run. Writes OUT/results.csv, OUT/report.md and OUT/plots/.")
    parser.add_argument("--dataset", required=True, metavar="NAME",
                        help=f"{dataset_names()} (fixed splits: ContrastSegLib/benchmark/splits/README.md)")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="your copy of acdc / msd-prostate / msd-hippocampus / mmwhs; for brain-offline the "
                             "folder to build it in (default ~/.cache/contrastseg/brain-offline)")
    parser.add_argument("--profile", default="smoke", choices=sorted(PROFILES),
                        help="smoke: seconds, checks the machinery; cpu: two CPU cores, meaningful phantom / "
                             "brain-offline tables; paper: the papers' sizes, for a GPU (default: smoke)")
    parser.add_argument("--labeled", type=_counts, default=None, metavar="N,N,...",
                        help="labeled volumes |X_L| (default: the profile's, 1 for smoke, 1,2,8 otherwise)")
    parser.add_argument("--methods", type=name_list, default=None, metavar="M,M,...",
                        help="random, GR, GD-, GD, GD+LR, GD+LD, GD+SLC (supervised local), each optionally "
                             f"+mixup / +self-training, and {FULL} (all labeled pool volumes) (default for cpu and "
                             f"paper: {','.join(DEFAULT_METHODS)}; smoke: random,GD+LR)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="seeds 0..N-1 (default: smoke 1, cpu 3, paper 6)")
    parser.add_argument("--out", required=True, type=Path, help="results folder; reused to resume")
    parser.add_argument("--spacing", type=float, default=None,
                        help="in-plane spacing in mm (default: the dataset's field of view / crop)")
    parser.add_argument("--crop-size", type=int, default=None,
                        help="crop side (default: the profile's; paper profile: the dataset's paper crop)")
    parser.add_argument("--pretrain-iterations", type=positive_int, default=None, metavar="N",
                        help="iterations of each pre-training stage (default: the profile's)")
    parser.add_argument("--finetune-iterations", type=positive_int, default=None, metavar="N",
                        help="fine-tuning iterations (default: the profile's)")
    parser.add_argument("--finetune", type=recipe, default={}, metavar="'FLAGS'", dest="finetune_recipe",
                        help="fine-tuning recipe flags of contrastseg finetune for every cell, quoted, e.g. "
                             f"--finetune '--flips both --lr-schedule cosine' (any of: {', '.join(RECIPE_FLAGS)})")
    parser.add_argument("--time-budget", type=DURATION.parse, default=None, metavar="DURATION",
                        help="wall-clock budget of each cell's training chain, e.g. 10m: each pre-training stage a "
                             "third, fine-tuning the rest (default: the iterations)")
    parser.add_argument("--select", type=name_list, default=DEFAULT_SELECTIONS, metavar="random|suggest|random,suggest",
                        help="how each seed's labeled volumes are chosen: a seeded random draw, or the first |X_L| "
                             "that contrastseg suggest picks with the seed's G^D checkpoint (both: paired by seed in "
                             "report.md; default: random)")
    parser.add_argument("--performance", action=argparse.BooleanOptionalAction, default=None,
                        help="add the Performance section to report.md (default: on for cpu and paper)")
    add_execution_options(parser)
    parser.set_defaults(run=run)


def _counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, e.g. 1,2,8; got {text!r}") from None


RECIPE_EXCLUDED = (ExecutionConfig, ScheduleConfig, "iterations", "batch_size", "seed", "mixup", "self_training_rounds")
RECIPE_FLAGS = [f.metadata["flags"][0] for f in option_fields(FinetuneConfig)
                if f.name not in field_names(RECIPE_EXCLUDED)]


def recipe(text: str) -> dict:
    """``'--flips both --lr 3e-4'`` -> {"flips": "both", "learning_rate": 0.0003}, checked by the fine-tuning
    options' own rules; iterations, batch, seed, Mixup and self-training come from the profile and the method, the
    time budget and plateau stop from the benchmark's own options."""
    parser = OneLineParser(prog="contrastseg benchmark --finetune", add_help=False)
    add_options(parser, FinetuneConfig, exclude=RECIPE_EXCLUDED, keep_unset=True)
    try:
        given = vars(parser.parse_args(shlex.split(text)))
    except ContrastSegError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {str(error).split('; see ')[0]}") from None
    return {name: list(value) if isinstance(value, tuple) else value for name, value in given.items()}


def run(args: argparse.Namespace) -> int:
    request = BenchmarkRequest(
        dataset=args.dataset, out=args.out, profile=args.profile, data=args.data, labeled=args.labeled,
        methods=args.methods, seeds=args.seeds, spacing=args.spacing, crop=args.crop_size,
        pretrain_iterations=args.pretrain_iterations, finetune_iterations=args.finetune_iterations,
        device=args.device, precision=args.precision, channels_last=args.channels_last,
        performance=args.performance, finetune_recipe=args.finetune_recipe, time_budget=args.time_budget,
        select=args.select, command=command_line(args))
    run_benchmark(request)
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The command as typed when run from a shell, else the equivalent one rebuilt from the parsed options."""
    if Path(sys.argv[0]).name in ("contrastseg", "__main__.py") and "benchmark" in sys.argv[1:]:
        return shlex.join(["contrastseg"] + sys.argv[1:])
    options = {"--dataset": args.dataset, "--data": args.data, "--profile": args.profile,
               "--labeled": ",".join(map(str, args.labeled)) if args.labeled else None,
               "--methods": ",".join(args.methods) if args.methods else None, "--seeds": args.seeds,
               "--out": args.out, "--spacing": args.spacing, "--crop-size": args.crop_size,
               "--pretrain-iterations": args.pretrain_iterations, "--finetune-iterations": args.finetune_iterations,
               "--finetune": shlex.join(command_arguments(replace(FinetuneConfig(), **args.finetune_recipe),
                                                               RECIPE_EXCLUDED)) if args.finetune_recipe else None,
               "--time-budget": format_duration(args.time_budget) if args.time_budget else None,
               "--select": ",".join(args.select) if tuple(args.select) != DEFAULT_SELECTIONS else None,
               "--device": args.device, "--precision": args.precision, "--channels-last": args.channels_last}
    words = ["contrastseg", "benchmark"] + [str(w) for key, value in options.items() if value is not None
                                            for w in (key, value)]
    if args.performance is not None:
        words.append("--performance" if args.performance else "--no-performance")
    return shlex.join(words)
