"""``contrastseg demo``: the whole pipeline on embedded phantoms, with a Dice table and a report folder."""

from __future__ import annotations

import argparse

from ..demo import DemoConfig, run_demo
from ..errors import ContrastSegError
from ..option_rules import DURATION
from ..settings import config_from_args
from ..training.methods import parse_method
from .common import add_execution_options, add_overwrite_option, positive_int


def register(commands: argparse._SubParsersAction) -> None:
    defaults = DemoConfig()
    parser = commands.add_parser(
        "demo", help="phantoms -> pre-train / fine-tune on 2 labeled volumes -> predict held-out volumes -> Dice table",
        description="Run the whole pipeline on procedural phantoms (no data needed): each method (default: random "
                    "init and G^D + L^R pre-training) is fine-tuned on the same labeled volumes and tested on the "
                    "same held-out ones; writes a report folder with models, predictions, metrics, overlays and "
                    "report.md.")
    parser.add_argument("--out", default="demo_output", help="report folder (default: demo_output)")
    parser.add_argument("--subjects", type=positive_int, default=defaults.subjects)
    parser.add_argument("--labeled", type=positive_int, default=defaults.labeled)
    parser.add_argument("--test", type=positive_int, default=defaults.test)
    parser.add_argument("--iterations", type=positive_int, default=defaults.iterations,
                        help="fine-tuning iterations")
    parser.add_argument("--pretrain-iterations", type=positive_int, default=defaults.pretrain_iterations,
                        help="iterations of each pre-training stage")
    parser.add_argument("--methods", type=method_list, default=defaults.methods,
                        help="comma-separated: random, GR, GD-, GD, GD+LR, GD+LD, GD+supervised-local, MIM, "
                             "MIM+LR, ... (each +mixup); default "
                             + ",".join(defaults.methods))
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--time-budget", type=DURATION.parse, default=None, metavar="DURATION",
                        help="wall-clock budget of each method's training, e.g. 2m: each pre-training stage a third, "
                             "fine-tuning the rest (default: the iterations)")
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def method_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    try:
        for name in names:
            parse_method(name)
    except ContrastSegError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, config_from_args(DemoConfig, args), overwrite=args.overwrite)
    return 0
