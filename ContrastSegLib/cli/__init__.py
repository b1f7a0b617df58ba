"""The ``contrastseg`` command: one sub-command per job, each with ``--help``.

Errors of the input, those of the options included, print as one line ``contrastseg: error: ...`` (and an
``error`` event on a non-terminal stdout) and exit with status 1. Every command runs inside
``runtime.stop.stop_on_signals``: a training loop that receives SIGINT or SIGTERM stops after its current step and
its job writes the weights reached (exit status 0); anywhere else such a signal interrupts (status 130).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Sequence

from ..runtime.stop import stop_on_signals  # first: where /proc is missing, its import time is the process start

from .. import __version__
from ..errors import ContrastSegError
from ..io import reading
from ..settings import ReadConfig, config_from_args
from . import (benchmark_command, compare_command, data_commands, demo_command, evaluate_command, finetune_command,
               info_command, predict_command, pretrain_command, suggest_command)
from .common import OneLineParser

REGISTRARS = (data_commands.register_phantom, data_commands.register_split, pretrain_command.register,
              finetune_command.register,
              predict_command.register, evaluate_command.register, info_command.register,
              demo_command.register, benchmark_command.register, compare_command.register,
              suggest_command.register)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="contrastseg",
        description="Segment 3-D scans with a 2-D UNet trained from a few labeled volumes.",
    )
    parser.add_argument("--version", action="version", version=f"contrastseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(commands)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings (e.g. a NIfTI whose qform and sform disagree) as one ``contrastseg: warning:`` line."""
    return f"contrastseg: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    words = list(sys.argv[1:] if argv is None else argv)
    stage = next((word for word in words if not word.startswith("-")), None)  # the sub-command, if any
    try:
        args = build_parser().parse_args(words)
        stage = args.command
        read_options = config_from_args(ReadConfig, args) if hasattr(args, "max_voxels") else None
        with stop_on_signals(), reading(read_options):
            return int(args.run(args) or 0)
    except ContrastSegError as error:
        if not sys.stdout.isatty():
            print(json.dumps({"event": "error", "stage": stage, "message": str(error)}), flush=True)
        print(f"contrastseg: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("contrastseg: interrupted", file=sys.stderr)
        return 130
