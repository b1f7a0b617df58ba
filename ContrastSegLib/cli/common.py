"""Options shared by several sub-commands, and their conversion to configuration objects."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..runtime.stop import Stopped
from ..settings import (DEFAULT_CHANNELS, ExecutionConfig, PreprocessConfig, add_options, config_from_args,
                        options_given)


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    add_options(parser.add_argument_group("execution"), ExecutionConfig)


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (refused otherwise)")


def add_preprocessing_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "preprocessing (stored in the checkpoint, reused by predict; with none of these options, the --init "
        "checkpoint's preprocessing is reused)")
    add_options(group, PreprocessConfig, keep_unset=True)


def preprocessing_from(args: argparse.Namespace) -> PreprocessConfig | None:
    """The preprocessing asked for on the command line, or None when no option was given."""
    return config_from_args(PreprocessConfig, args) if options_given(PreprocessConfig, args) else None


def add_channels_option(group: argparse._ArgumentGroup, note: str = "") -> None:
    group.add_argument("--channels", type=channel_list, default=DEFAULT_CHANNELS,
                       help=f"encoder widths (default: {_widths(DEFAULT_CHANNELS)} as the paper{note})")


def written_line(out: Path, stopped: Stopped | None, losses: str) -> str:
    """The command's last line: what it wrote, and whether a stop request ended training early."""
    early = (f"stopped early by {stopped.signal} at step {stopped.step} of {stopped.planned}, keeping the weights "
             "reached; " if stopped else "")
    return f"{early}wrote {out} ({losses})"


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
        raise argparse.ArgumentTypeError(f"need at least two positive widths, e.g. {_widths(DEFAULT_CHANNELS)}")
    return values


def _widths(channels: tuple[int, ...]) -> str:
    return ",".join(map(str, channels))
