"""The ``contrastseg`` command: one sub-command per job, each with ``--help``.

Errors of the input print as one line ``contrastseg: error: ...`` (and an ``error`` event on a non-terminal
stdout) and exit with status 1. Every command runs inside ``runtime.stop.stop_on_signals``: a training loop that
receives SIGINT or SIGTERM stops after its current step and its job writes the weights reached (exit status 0);
anywhere else such a signal interrupts (status 130).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .. import __version__
from ..errors import ContrastSegError
from ..runtime.stop import stop_on_signals
from . import (benchmark_command, data_commands, demo_command, evaluate_command, finetune_command, info_command,
               predict_command, pretrain_command)

REGISTRARS = (data_commands.register_phantom, data_commands.register_split, pretrain_command.register,
              finetune_command.register,
              predict_command.register, evaluate_command.register, info_command.register,
              demo_command.register, benchmark_command.register)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contrastseg",
        description="Segment 3-D scans with a 2-D UNet trained from a few labeled volumes.",
    )
    parser.add_argument("--version", action="version", version=f"contrastseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRARS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():
            return int(args.run(args) or 0)
    except ContrastSegError as error:
        if not sys.stdout.isatty():
            print(json.dumps({"event": "error", "stage": args.command, "message": str(error)}), flush=True)
        print(f"contrastseg: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("contrastseg: interrupted", file=sys.stderr)
        return 130
