"""Pieces of the benchmark's Markdown tables: a table line, the empty cell, and a paired difference summarised."""

from __future__ import annotations

import statistics
from typing import Sequence

MISSING = "—"


def table_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def paired_difference(differences: Sequence[float]) -> tuple[str, int, float]:
    """("+0.012 ± 0.030", how many are > 0, their mean) of paired differences (± only with two or more)."""
    mean = statistics.fmean(differences)
    spread = f" ± {statistics.stdev(differences):.3f}" if len(differences) > 1 else ""
    return f"{mean:+.3f}{spread}", sum(d > 0 for d in differences), mean
