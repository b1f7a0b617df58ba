"""Rules of the settings' values: what a value must be, how it is parsed from and written to the command line, and
the refusal that names the flag and an example. Standard library only."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .runtime.budget import format_duration, parse_duration  # standard library only, like this module


@dataclass(frozen=True)
class Rule:
    """``test`` of a value, the ``requirement`` in words, ``parse`` from and ``text`` to the command line, and the
    ``choices`` argparse offers."""

    test: Callable[[Any], bool]
    requirement: str
    parse: Callable[[str], Any] = str
    text: Callable[[Any], str] = str
    choices: tuple | None = None

    def allows(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _number(value) and math.isfinite(value)


def whole_between(low: int, high: int) -> Rule:
    """A whole number in ``low..high``."""
    return Rule(lambda v: _whole(v) and low <= v <= high, f"must be a whole number in {low}..{high}", int)


def finite_between(low: float, high: float, low_open: bool = True) -> Rule:
    """A finite number in (``low``, ``high``] (``low_open`` False: [``low``, ``high``])."""
    above = (lambda v: v > low) if low_open else (lambda v: v >= low)
    return Rule(lambda v: _finite(v) and above(v) and v <= high,
                f"must be a finite number {'>' if low_open else '≥'} {low:g} and ≤ {high:g}", float)


def _number_pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI, e.g. 1,99; got {text!r}") from None
    return low, high


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 10m, 90s or 1.5h; got {text!r}") from None


def one_of(choice: Any) -> Rule:
    """One of the values of a ``settings.Choice`` enum."""
    return Rule(lambda v: v in choice.values(), f"choose one of {', '.join(choice.values())}",
                choices=choice.values())


POSITIVE_WHOLE = Rule(lambda v: _whole(v) and v >= 1, "must be a whole number ≥ 1", int)
FRACTION = Rule(lambda v: _finite(v) and 0 < v < 1, "must lie strictly between 0 and 1", float)
SWITCH = Rule(lambda v: isinstance(v, bool), "must be on or off", text=lambda v: {True: "on", False: "off"}[v])
TEXT = Rule(lambda v: isinstance(v, str), "must be a name")
SPACING = Rule(lambda v: v is None or _finite(v) and 1e-3 <= v <= 1e3,
               "must be a spacing in mm between 0.001 and 1000 (e.g. 1.25), or left out for the median", float)
SLICE_AXIS = Rule(lambda v: v is None or _whole(v) and v in (0, 1, 2), "choose 0, 1 or 2", int, choices=(0, 1, 2))
PERCENTILES = Rule(lambda v: len(v) == 2 and all(map(_number, v)) and 0 <= v[0] < v[1] <= 100,
                   "needs 0 ≤ LO < HI ≤ 100", _number_pair, lambda v: f"{v[0]},{v[1]}")
FACTORS = Rule(lambda v: len(v) == 2 and all(map(_finite, v)) and 0 < v[0] <= v[1] <= 10,
                "needs 0 < LO ≤ HI ≤ 10", _number_pair, lambda v: f"{v[0]:g},{v[1]:g}")
DURATION = Rule(lambda v: v is None or _finite(v) and 1 <= v <= 7 * 86400,
                "must be a duration between 1s and 7 days, e.g. 10m, 90s or 1.5h", _duration, format_duration)
SEED = whole_between(0, 2 ** 63 - 1)  # what torch.manual_seed and numpy's generators accept
LEARNING_RATE = finite_between(0, 1)
SHAPE_PARAMETER = finite_between(1e-3, 100, low_open=False)  # a temperature, a Beta distribution's α
SIDE = whole_between(1, 2048)  # a side in pixels: crops, strides, blocks, regions
CROP = Rule(lambda v: v is None or SIDE.allows(v), "must be a whole number between 1 and 2048, or left out to "
            "choose it from the data", int)
BATCH = whole_between(1, 4096)


def option(default: Any, flag: str | tuple[str, ...], rule: Rule, help: str, shown: str | None = None,
           **argparse_keywords: Any) -> Any:
    """A config field with its flag(s) (the first is the one written), rule and help; ``shown``: how --help names
    the default (else the default itself); ``argparse_keywords``: more of ``add_argument`` (nargs, const, metavar)."""
    flags = (flag,) if isinstance(flag, str) else tuple(flag)
    return field(default=default, metadata={"flags": flags, "rule": rule, "help": help, "shown": shown,
                                            "argparse": argparse_keywords})


def problem(item: dataclasses.Field) -> str:
    """What a value of the field ``item`` must be, with an example of its flag."""
    flag, rule = item.metadata["flags"][0], item.metadata["rule"]
    example = (f", e.g. {flag} or --no-{flag[2:]}" if rule is SWITCH else
               "" if item.default is None else f", e.g. {flag} {text_of(rule, item.default)}")
    return f"{rule.requirement}{example}"


def checked_parse(item: dataclasses.Field) -> Callable[[str], Any]:
    """The argparse ``type`` of the field ``item``: its rule's parse, then its test; a refusal reads
    ``VALUE: what it must be, e.g. FLAG DEFAULT`` (argparse puts the flag in front)."""
    rule = item.metadata["rule"]

    def parse(text: str) -> Any:
        try:
            value = rule.parse(text)
        except (ValueError, OverflowError, argparse.ArgumentTypeError):
            value = text
        if not rule.allows(value):
            raise argparse.ArgumentTypeError(f"{text}: {problem(item)}")
        return value
    return parse


def text_of(rule: Rule, value: Any) -> str:
    """``value`` as its rule writes it, else as ``str`` does."""
    try:
        return rule.text(value)
    except (TypeError, ValueError, IndexError, KeyError):
        return str(value)
