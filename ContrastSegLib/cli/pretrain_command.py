"""``contrastseg pretrain``: one pre-training stage (contrastive or masked-image) on unlabeled volumes
(resumable)."""

from __future__ import annotations

import argparse

from ..runtime.budget import process_started_at
from ..settings import ExecutionConfig, PretrainConfig, add_options, config_from_args
from ..training import distributed
from ..training.pretrain_job import run_pretrain
from .common import (add_channels_option, add_execution_options, add_overwrite_option, add_preprocessing_options,
                     preprocessing_from, written_line)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pretrain", help="pre-training on unlabeled volumes (contrastive: global G^R/G^D-/G^D, local L^R/L^D; "
                         "masked-image modelling)",
        description="Pre-train the encoder (--stage global, head g1), the first decoder blocks on a frozen "
                    "encoder (--stage local, head g2, needs --init global.pt), encoder + decoder on the labels "
                    "(--stage supervised-local) or encoder + decoder by reconstructing hidden patches (--stage "
                    "masked, head gm; alone or before --stage global/local). Progress is saved regularly; "
                    "running the same command again after an interruption resumes it. SIGINT (Ctrl-C) or SIGTERM "
                    "stops the stage after the current step and writes the weights reached; the same command with "
                    "--continue then goes on to the planned end.")
    parser.add_argument("--unlabeled", nargs="+", default=[],
                        help="dataset folder(s) or manifest(s) for the global, local and masked stages; labels are "
                             "ignored")
    parser.add_argument("--labeled", help="labeled volumes for --stage supervised-local (Hu et al. 2021)")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--init", help="checkpoint of the previous stage (required for --stage local)")
    parser.add_argument("--split", help="split file: only its training cases are used (never validation/test)")
    stage = parser.add_argument_group("stage settings")
    add_options(stage, PretrainConfig, exclude=[ExecutionConfig])
    add_channels_option(stage, "; taken from --init when given")
    add_preprocessing_options(parser)
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.add_argument("--continue", dest="continue_stopped", action="store_true",
                        help="go on from --out, written by this command when a stop (Ctrl-C, SIGTERM, the stop file) "
                             "ended it early, to the planned end, with the weights an uninterrupted run ends with; "
                             "--out is replaced. Needs the options of the stopped command")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(PretrainConfig, args)
    context = distributed.start(config.device)
    try:
        out, state = run_pretrain(args.unlabeled, args.out, config, preprocessing_from(args), channels=args.channels,
                                  init=args.init, split=args.split, overwrite=args.overwrite, context=context,
                                  labeled=args.labeled, started_at=process_started_at(),
                                  continue_stopped=args.continue_stopped)
    finally:
        distributed.stop(context)
    if not context.is_main:
        return 0
    losses = state.losses
    print(written_line(out, state.stopped, f"loss {losses[0]:.4f} -> {sum(losses[-10:]) / len(losses[-10:]):.4f}"
                       if losses else "no steps to run"))
    return 0
