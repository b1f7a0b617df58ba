"""Options shared by several sub-commands, and their conversion to configuration objects."""

from __future__ import annotations

import argparse

from ..preprocess import PreprocessConfig
from ..training.precision import CHANNELS_LAST, DEVICES, PRECISIONS

DEFAULT_CROP = 192


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("execution")
    group.add_argument("--device", default="auto", help=f"{' | '.join(DEVICES)} or cuda:N (default: auto = "
                       "cuda > mps > cpu)")
    group.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="auto: mixed precision on CUDA, bf16 + channels_last on CPUs with AMX/AVX512-BF16; "
                            "fp32 turns it off (default: auto)")
    group.add_argument("--channels-last", default="auto", choices=CHANNELS_LAST,
                       help="channels_last memory format: auto = with mixed precision (default), on, off")


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (refused otherwise)")


def add_preprocessing_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "preprocessing (stored in the checkpoint, reused by predict; with none of these options, the --init "
        "checkpoint's preprocessing is reused)")
    group.add_argument("--spacing", type=float, default=None,
                       help="in-plane spacing in mm to resample to (default: median of the training volumes)")
    group.add_argument("--crop-size", type=int, default=None,
                       help=f"side of the square slices, a multiple of 32 (default: {DEFAULT_CROP})")
    group.add_argument("--slice-axis", type=int, choices=(0, 1, 2), default=None,
                       help="array axis to slice along, 0 = k (default: the axis with the largest spacing)")
    group.add_argument("--n4", action="store_true", help="N4 bias-field correction before normalisation")


def preprocessing_from(args: argparse.Namespace) -> PreprocessConfig | None:
    """The preprocessing asked for on the command line, or None when no option was given."""
    if args.spacing is None and args.crop_size is None and args.slice_axis is None and not args.n4:
        return None
    return PreprocessConfig(target_spacing=args.spacing, crop_size=args.crop_size or DEFAULT_CROP,
                            slice_axis=args.slice_axis, n4=args.n4)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def channel_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError("need at least two positive widths, e.g. 16,32,64,128,128,128")
    return values
