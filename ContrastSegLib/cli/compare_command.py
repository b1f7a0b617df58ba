"""``contrastseg compare``: leave-one-out over your labeled volumes -> which initialisation to train with (see
:mod:`ContrastSegLib.benchmark.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..benchmark.compare import DEFAULT_COMPARE_METHODS, PRETRAINED, CompareRequest, run_compare
from ..option_rules import DURATION
from ..settings import ExecutionConfig, FinetuneConfig, PreprocessConfig, PretrainConfig, config_from_args
from .common import (add_channels_option, add_execution_options, add_preprocessing_options, name_list, positive_int,
                     preprocessing_from)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare", help="did pre-training help on my data? leave-one-out over the labeled volumes, a verdict and "
                        "the command that trains the best method",
        description="For each labeled volume: train every method on the other labeled volumes (pre-training on "
                    "--unlabeled only), segment the one left out and score its Dice. Prints the paired verdict "
                    "against random initialisation, the recommended method and the commands that train it on all "
                    "labeled volumes; writes OUT/compare.csv and OUT/report.md.")
    parser.add_argument("--labeled", required=True, type=Path, help="folder or manifest of 2 or more labeled volumes")
    parser.add_argument("--unlabeled", nargs="+", type=Path, default=[], help="unlabeled folder(s) for pre-training")
    parser.add_argument("--out", required=True, type=Path, help="new results folder")
    parser.add_argument("--methods", type=name_list, default=None, metavar="M,M,...",
                        help="methods as in contrastseg benchmark (random, GD, GD+LR, MIM, MIM+LR, GD+SLC, ...); "
                             f"random is always included, and {PRETRAINED} with --init (default: "
                             f"{','.join(DEFAULT_COMPARE_METHODS)}; with --init: {PRETRAINED} alone)")
    parser.add_argument("--init", type=Path, default=None, metavar="CHECKPOINT",
                        help="a checkpoint of contrastseg pretrain (or of the Slicer module's background "
                             f"pre-training) to compare as the method {PRETRAINED}: fine-tuned from it in every fold, "
                             "every method on its preprocessing and widths, nothing pre-trained again")
    parser.add_argument("--time-budget", type=DURATION.parse, default=None, metavar="DURATION",
                        help="wall-clock time for the whole comparison, e.g. 20m, shared equally by its training "
                             "runs (default: the iterations)")
    parser.add_argument("--pretrain-iterations", type=positive_int, default=PretrainConfig.iterations, metavar="N",
                        help=f"steps of each pre-training stage, at most (default: {PretrainConfig.iterations})")
    parser.add_argument("--finetune-iterations", type=positive_int, default=FinetuneConfig.iterations,
                        metavar="N", help=f"fine-tuning steps, at most (default: {FinetuneConfig.iterations})")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    group = parser.add_argument_group("model")
    add_channels_option(group, "; taken from --init when given")
    add_preprocessing_options(parser)
    add_execution_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    request = CompareRequest(
        labeled=args.labeled, unlabeled=tuple(args.unlabeled), out=args.out, init=args.init,
        methods=args.methods or ((PRETRAINED,) if args.init else DEFAULT_COMPARE_METHODS),
        time_budget=args.time_budget, pretrain_iterations=args.pretrain_iterations,
        finetune_iterations=args.finetune_iterations, preprocess=preprocessing_from(args) or PreprocessConfig(),
        channels=args.channels, execution=config_from_args(ExecutionConfig, args), seed=args.seed)
    result = run_compare(request)
    print(result["report"], flush=True)
    return 0
