"""``contrastseg finetune``: train the UNet on 1–3 labeled volumes and write a checkpoint."""

from __future__ import annotations

import argparse

from ..models import UNetConfig
from ..training.finetune import LR_SCHEDULES, FinetuneConfig
from ..training.finetune_job import run_finetune
from .common import (add_execution_options, add_overwrite_option, add_preprocessing_options, channel_list,
                     positive_int, preprocessing_from)


def register(commands: argparse._SubParsersAction) -> None:
    defaults = FinetuneConfig()
    parser = commands.add_parser(
        "finetune", help="fine-tune the UNet on a few labeled volumes",
        description="Fine-tune on the labeled volumes of a folder (ACDC, Decathlon, image/label pairs) or a CSV/JSON "
                    "manifest, optionally from a pre-trained checkpoint; writes a checkpoint for predict.")
    parser.add_argument("--labeled", required=True, help="folder or manifest with image/label pairs")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--split", help="split file: train on its train_labeled cases, validate on its validation "
                                        "cases, refuse test cases (see contrastseg split)")
    parser.add_argument("--init", help="checkpoint to start from (encoder and decoder weights that fit are loaded)")
    parser.add_argument("--channel", type=int, default=None, help="modality index of 4-D multi-channel images")
    training = parser.add_argument_group("training")
    training.add_argument("--iterations", type=positive_int, default=defaults.iterations)
    training.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    training.add_argument("--lr", type=float, default=defaults.learning_rate, help="Adam learning rate")
    training.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=defaults.lr_schedule,
                          help="cosine: anneal to 0 over the run (default); constant: the paper's setting")
    training.add_argument("--validate-every", type=positive_int, default=defaults.validate_every)
    training.add_argument("--ce-weight", type=float, default=defaults.ce_weight,
                          help="weight of cross-entropy beside Dice (0: Dice only, as the paper)")
    training.add_argument("--no-augment", action="store_true", help="turn geometric and intensity augmentation off")
    training.add_argument("--mixup", action="store_true", help="Mixup of image/label pairs")
    training.add_argument("--mixup-alpha", type=float, default=defaults.mixup_alpha)
    training.add_argument("--self-training", type=int, nargs="?", const=1, default=0, metavar="ROUNDS",
                          help="rounds of self-training (default 1 when given): the model pseudo-labels the "
                               "unlabeled volumes and trains again on labeled + confident pseudo-labeled pixels")
    training.add_argument("--pseudo-threshold", type=float, default=defaults.pseudo_threshold,
                          help="confidence a pseudo-labeled pixel needs (default 0.9); others are ignored")
    training.add_argument("--unlabeled", nargs="+", default=(),
                          help="volumes to pseudo-label (default: the --split's train_unlabeled cases)")
    training.add_argument("--seed", type=int, default=defaults.seed)
    training.add_argument("--channels", type=channel_list, default=UNetConfig().channels,
                          help="encoder widths (default: 16,32,64,128,128,128 as the paper)")
    add_preprocessing_options(parser)
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = FinetuneConfig(
        iterations=args.iterations, batch_size=args.batch_size, learning_rate=args.lr, lr_schedule=args.lr_schedule,
        validate_every=args.validate_every, seed=args.seed, device=args.device, precision=args.precision,
        channels_last=args.channels_last,
        augment=not args.no_augment, mixup=args.mixup, mixup_alpha=args.mixup_alpha, ce_weight=args.ce_weight,
        self_training_rounds=args.self_training, pseudo_threshold=args.pseudo_threshold)
    out, result = run_finetune(args.labeled, args.out, config, preprocessing_from(args), channels=args.channels,
                               split=args.split, init=args.init, channel=args.channel, overwrite=args.overwrite,
                               unlabeled=args.unlabeled)
    print(f"wrote {out} (final loss {sum(result.losses[-10:]) / len(result.losses[-10:]):.4f}, "
          f"{result.seconds:.0f} s)")
    return 0
