"""``contrastseg predict``: label maps on each input's own grid, optionally probabilities and uncertainty."""

from __future__ import annotations

import argparse

from ..inference.predict_job import run_predict
from .common import add_execution_options, add_overwrite_option


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict", help="segment volumes with a fine-tuned checkpoint",
        description="One input -> --output is a label-map file; several inputs or a dataset folder -> --output is a "
                    "folder of <case>_seg.nii.gz and review.csv (one row per case, the predictions most likely "
                    "wrong first: uncertainty in each structure, its volume against the training labels'). Outputs "
                    "keep the input's shape, spacing, origin and direction.")
    parser.add_argument("--model", required=True, help="checkpoint written by contrastseg finetune")
    parser.add_argument("--input", required=True, nargs="+", help="image file(s), DICOM folder, or dataset folder")
    parser.add_argument("--output", required=True, help="label-map file (one input) or output folder")
    parser.add_argument("--probabilities", nargs="?", const=True, default=False, metavar="PATH",
                        help="also write class probabilities (a C-component image); PATH for one input")
    parser.add_argument("--uncertainty", nargs="?", const=True, default=False, metavar="PATH",
                        help="also write an uncertainty map: entropy of the mean over test-time flips, 0..1")
    parser.add_argument("--channel", type=int, default=None, help="modality index of 4-D multi-channel images")
    add_execution_options(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    written = run_predict(args.model, args.input, args.output, probabilities=args.probabilities,
                          uncertainty=args.uncertainty, overwrite=args.overwrite, device=args.device,
                          precision=args.precision, channel=args.channel, channels_last=args.channels_last)
    print(f"wrote {len(written)} label map(s): {written[0] if len(written) == 1 else args.output}")
    return 0
