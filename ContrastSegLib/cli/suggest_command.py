"""``contrastseg suggest``: which volumes to annotate next (see :mod:`ContrastSegLib.selection.suggest_job`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..selection import SuggestConfig, run_suggest
from ..settings import ExecutionConfig, add_options, config_from_args
from .common import add_execution_options, add_overwrite_option


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "suggest", help="which volumes to annotate: k-center coverage of the cohort in the model's embedding",
        description="Embed every slice of every candidate with the checkpoint's encoder and pick --count volumes "
                    "that cover the cohort's slices best (each pick holds the slice farthest from everything "
                    "labeled or picked before). With a fine-tuned model the picks come from its most uncertain "
                    "candidates. Prints the table and writes it to --out.")
    parser.add_argument("--model", required=True, help="checkpoint of contrastseg pretrain (global or masked stage, "
                                                       "or a chain built on one) or finetune")
    parser.add_argument("--unlabeled", required=True, nargs="+", type=Path, help="folder(s) of candidate volumes")
    parser.add_argument("--labeled", type=Path, default=None,
                        help="folder of the volumes already annotated: never suggested, their slices count as "
                             "covered")
    parser.add_argument("--out", required=True, type=Path, help="suggestions table, .csv or .json")
    parser.add_argument("--channel", type=int, default=None, help="modality index of 4-D multi-channel images")
    add_options(parser, SuggestConfig, exclude=[ExecutionConfig])
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_suggest(args.model, args.unlabeled, args.out, config_from_args(SuggestConfig, args), labeled=args.labeled,
                overwrite=args.overwrite, channel=args.channel)
    return 0
