"""``contrastseg demo``: the whole pipeline on embedded phantoms, with a Dice table and a report folder."""

from __future__ import annotations

import argparse

from ..demo import DemoConfig, run_demo
from .common import add_execution_options, add_overwrite_option, positive_int


def register(commands: argparse._SubParsersAction) -> None:
    defaults = DemoConfig()
    parser = commands.add_parser(
        "demo", help="phantoms -> fine-tune on 2 labeled volumes -> predict held-out volumes -> Dice table",
        description="Run the whole pipeline on procedural phantoms (no data needed) and write a report folder "
                    "with the model, predictions, metrics, overlays and report.md.")
    parser.add_argument("--out", default="demo_output", help="report folder (default: demo_output)")
    parser.add_argument("--subjects", type=positive_int, default=defaults.subjects)
    parser.add_argument("--labeled", type=positive_int, default=defaults.labeled)
    parser.add_argument("--test", type=positive_int, default=defaults.test)
    parser.add_argument("--iterations", type=positive_int, default=defaults.iterations)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = DemoConfig(subjects=args.subjects, labeled=args.labeled, test=args.test, iterations=args.iterations,
                        seed=args.seed, device=args.device, precision=args.precision)
    run_demo(args.out, config, overwrite=args.overwrite)
    return 0
