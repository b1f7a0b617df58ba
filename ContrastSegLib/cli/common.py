"""Options shared by several sub-commands, and their conversion to configuration objects."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import ContrastSegError
from ..runtime.stop import Stopped
from ..settings import (DEFAULT_CHANNELS, MAX_BLOCKS, MAX_WIDTH, ExecutionConfig, PreprocessConfig, ReadConfig,
                        add_options, config_from_args, options_given)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are a :class:`ContrastSegError` of one line, ``--flag VALUE: the fix``,
    instead of the usage block and exit status 2 (``--help`` and ``--version`` still print and exit 0)."""

    def error(self, message: str):
        raise ContrastSegError(self.one_line(message))

    def one_line(self, message: str) -> str:
        """argparse's ``argument --x: ...`` -> ``--x VALUE: ...``, with where to read more when no fix is given."""
        text = " ".join(message.split())
        about = re.fullmatch(r"argument ([^:]+): (.*)", text)
        if about:
            flag, rest = about[1].split("/")[0], about[2]
            rest = re.sub(r"^invalid (\w+) value: '(.*)'$", r"\2: not a valid \1", rest)
            choice = re.fullmatch(r"invalid choice: '(.*)' \(choose from (.*)\)", rest)
            if choice:
                rest = f"{choice[1]}: choose one of {choice[2].replace(chr(39), '')}"
            text = f"{flag}: {rest}" if rest.startswith(("expected", "not allowed", "ignored")) else f"{flag} {rest}"
        return text if "e.g." in text or "choose" in text else f"{text}; see {self.prog} --help"


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Device and precision, and the bound on what reading an image may allocate (``--max-voxels``)."""
    group = parser.add_argument_group("execution")
    add_options(group, ExecutionConfig)
    add_options(group, ReadConfig)


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


def name_list(text: str) -> tuple[str, ...]:
    """``"random, GD+LR"`` -> ("random", "GD+LR")."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be a whole number ≥ 1, e.g. 2")
    return value


def channel_list(text: str) -> tuple[int, ...]:
    """``16,32,64`` -> encoder widths: 2..8 blocks (a divisor of at most 128), each 1..1024 wide."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not 2 <= len(values) <= MAX_BLOCKS or not all(1 <= v <= MAX_WIDTH for v in values):
        raise argparse.ArgumentTypeError(f"{text}: need 2..{MAX_BLOCKS} comma-separated widths in 1..{MAX_WIDTH}, "
                                         f"e.g. {_widths(DEFAULT_CHANNELS)}")
    return values


def _widths(channels: tuple[int, ...]) -> str:
    return ",".join(map(str, channels))
