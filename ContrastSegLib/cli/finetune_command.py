"""``contrastseg finetune``: train the UNet on 1–3 labeled volumes and write a checkpoint."""

from __future__ import annotations

import argparse

from ..runtime.budget import process_started_at
from ..settings import ExecutionConfig, FinetuneConfig, add_options, config_from_args
from ..training.finetune_job import run_finetune
from .common import (add_channels_option, add_execution_options, add_overwrite_option, add_preprocessing_options,
                     preprocessing_from, written_line)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finetune", help="fine-tune the UNet on a few labeled volumes",
        description="Fine-tune on the labeled volumes of a folder (ACDC, Decathlon, image/label pairs) or a CSV/JSON "
                    "manifest, optionally from a pre-trained checkpoint; writes a checkpoint for predict. SIGINT or "
                    "SIGTERM stops training after the current step and writes the weights reached.")
    parser.add_argument("--labeled", required=True, help="folder or manifest with image/label pairs")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--split", help="split file: train on its train_labeled cases, validate on its validation "
                                        "cases, refuse test cases (see contrastseg split)")
    parser.add_argument("--init", help="checkpoint to start from (encoder and decoder weights that fit are loaded)")
    parser.add_argument("--channel", type=int, default=None, help="modality index of 4-D multi-channel images")
    training = parser.add_argument_group("training")
    add_options(training, FinetuneConfig, exclude=[ExecutionConfig])
    training.add_argument("--unlabeled", nargs="+", default=(),
                          help="volumes to pseudo-label (default: the --split's train_unlabeled cases)")
    add_channels_option(training, "; taken from --init when given")
    add_preprocessing_options(parser)
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out, result = run_finetune(args.labeled, args.out, config_from_args(FinetuneConfig, args), preprocessing_from(args),
                               channels=args.channels, split=args.split, init=args.init, channel=args.channel,
                               overwrite=args.overwrite, unlabeled=args.unlabeled,
                               started_at=process_started_at())
    print(written_line(out, result.stopped, f"final loss {sum(result.losses[-10:]) / len(result.losses[-10:]):.4f}, "
                                            f"{result.seconds:.0f} s"))
    return 0
