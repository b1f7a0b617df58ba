"""``contrastseg pretrain``: one contrastive pre-training stage on unlabeled volumes (resumable)."""

from __future__ import annotations

import argparse

from ..models import UNetConfig
from ..training import distributed
from ..training.pretrain import STRATEGIES, PretrainConfig
from ..training.pretrain_job import run_pretrain
from .common import (add_execution_options, add_overwrite_option, add_preprocessing_options, channel_list,
                     positive_int, preprocessing_from)


DEFAULT_STRATEGY = {"global": "GD", "local": "LR", "supervised-local": "stride"}  # the papers' choices


def register(commands: argparse._SubParsersAction) -> None:
    defaults = PretrainConfig()
    parser = commands.add_parser(
        "pretrain", help="contrastive pre-training on unlabeled volumes (global G^R/G^D-/G^D, local L^R/L^D)",
        description="Pre-train the encoder (--stage global, head g1) or the first decoder blocks on a frozen "
                    "encoder (--stage local, head g2, needs --init global.pt). Progress is saved regularly; "
                    "running the same command again after an interruption resumes it.")
    parser.add_argument("--unlabeled", nargs="+", default=[],
                        help="dataset folder(s) or manifest(s) for the global and local stages; labels are ignored")
    parser.add_argument("--labeled", help="labeled volumes for --stage supervised-local (Hu et al. 2021)")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--stage", choices=tuple(STRATEGIES), default=defaults.stage)
    parser.add_argument("--strategy", default=None,
                        help="global: GR | GD- | GD (default GD); local: LR | LD (default LR)")
    parser.add_argument("--mode", choices=STRATEGIES["supervised-local"], default=None,
                        help="supervised-local loss: stride (every s-th pixel, default), block (b × b blocks), exact "
                             "(all pixels, chunked), dense (all pixels at once; small inputs only)")
    parser.add_argument("--init", help="checkpoint of the previous stage (required for --stage local)")
    parser.add_argument("--split", help="split file: only its training cases are used (never validation/test)")
    stage = parser.add_argument_group("contrastive settings")
    stage.add_argument("--partitions", type=positive_int, default=defaults.partitions,
                       help="S: equal partitions of each volume by relative slice position (default 4)")
    stage.add_argument("--volumes-per-batch", type=positive_int, default=defaults.volumes_per_batch,
                       help="m: volumes per batch; a batch holds m × S slices (default 4)")
    stage.add_argument("--temperature", type=float, default=defaults.temperature)
    stage.add_argument("--decoder-blocks", type=positive_int, default=defaults.decoder_blocks,
                       help="l: decoder blocks trained by the local stage (default 3)")
    stage.add_argument("--region-size", type=positive_int, default=defaults.region_size,
                       help="K: local regions of K × K features (default 3)")
    stage.add_argument("--stride", type=positive_int, default=defaults.stride,
                       help="supervised-local --mode stride: keep every s-th pixel (default 4)")
    stage.add_argument("--block-size", type=positive_int, default=defaults.block_size,
                       help="supervised-local --mode block: block side b (default 16)")
    stage.add_argument("--iterations", type=positive_int, default=defaults.iterations)
    stage.add_argument("--lr", type=float, default=defaults.learning_rate)
    stage.add_argument("--checkpoint-every", type=positive_int, default=defaults.checkpoint_every)
    stage.add_argument("--seed", type=int, default=defaults.seed)
    stage.add_argument("--channels", type=channel_list, default=UNetConfig().channels,
                       help="encoder widths (default: 16,32,64,128,128,128; taken from --init when given)")
    add_preprocessing_options(parser)
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = PretrainConfig(
        stage=args.stage, strategy=args.mode or args.strategy or DEFAULT_STRATEGY[args.stage],
        stride=args.stride, block_size=args.block_size,
        iterations=args.iterations, partitions=args.partitions, volumes_per_batch=args.volumes_per_batch,
        learning_rate=args.lr, temperature=args.temperature, decoder_blocks=args.decoder_blocks,
        region_size=args.region_size, seed=args.seed, device=args.device, precision=args.precision,
        channels_last=args.channels_last,
        checkpoint_every=args.checkpoint_every)
    context = distributed.start(args.device)
    try:
        out, state = run_pretrain(args.unlabeled, args.out, config, preprocessing_from(args), channels=args.channels,
                                  init=args.init, split=args.split, overwrite=args.overwrite, context=context,
                                  labeled=args.labeled)
    finally:
        distributed.stop(context)
    if not context.is_main:
        return 0
    print(f"wrote {out} (loss {state.losses[0]:.4f} -> {sum(state.losses[-10:]) / len(state.losses[-10:]):.4f})"
          if state.losses else f"wrote {out}")
    return 0
