"""The cells of a benchmark: one (method, |X_L|, seed) each, checked and planned before anything is trained.

A method is a name of ``training.methods`` ("random", "GD+LR+mixup", "GD+SLC", ...) or ``full``: random
initialisation fine-tuned on every labeled pool case, the ceiling of the table (one cell per seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..choices import DEFAULT_SELECTIONS, Selection
from ..errors import ContrastSegError
from ..training.methods import Method, parse_method

FULL = "full"


@dataclass(frozen=True)
class Cell:
    """One row of results.csv: ``method`` fine-tuned on ``labeled`` volumes chosen with ``seed``: drawn at random
    (``select`` "random"), or suggested by that seed's G^D model (``select`` "suggest")."""

    method: str
    labeled: int
    seed: int
    select: str = Selection.RANDOM.value

    @property
    def folder(self) -> Path:
        """Where the cell's files live under ``OUT/cells``: ``<method>/labeled<n>_seed<s>`` (suggested volumes:
        ``<method>/suggest_labeled<n>_seed<s>``)."""
        prefix = "" if self.select == Selection.RANDOM else f"{self.select}_"
        return Path(self.method) / f"{prefix}labeled{self.labeled}_seed{self.seed}"

    def describe(self) -> str:
        return f"{self.method} |X_L|={self.labeled} seed {self.seed}" + (
            "" if self.select == Selection.RANDOM else f" ({self.select}ed volumes)")


def method_of(name: str) -> Method:
    """The training recipe of a benchmark method name (``full`` = random initialisation)."""
    return Method(FULL) if name == FULL else parse_method(name)


def check_methods(names: tuple[str, ...]) -> tuple[str, ...]:
    """Distinct method names in the given order; an unknown one is refused naming --methods."""
    if not names:
        raise ContrastSegError("--methods is empty; name at least one, e.g. --methods random,GD+LR")
    for name in names:
        if name != FULL:
            try:
                parse_method(name)
            except ContrastSegError as error:
                raise ContrastSegError(f"--methods: {error}, or {FULL} (all labeled pool volumes)") from None
    return tuple(dict.fromkeys(names))


def check_counts(labeled: tuple[int, ...], seeds: int) -> tuple[int, ...]:
    """Distinct |X_L| values in increasing order; non-positive counts or seeds are refused."""
    if not labeled or any(type(n) is not int or n < 1 for n in labeled):
        shown = ",".join(map(str, labeled))
        raise ContrastSegError(f"--labeled {shown}: give whole numbers ≥ 1, e.g. --labeled 1,2,8")
    if type(seeds) is not int or seeds < 1:
        raise ContrastSegError(f"--seeds {seeds}: give the number of seeds, ≥ 1, e.g. --seeds 3")
    return tuple(sorted(set(labeled)))


def check_selections(names: tuple[str, ...]) -> tuple[str, ...]:
    """``--select`` values: each :class:`Selection` at most once, in the enum's order."""
    unknown = [name for name in names if name not in Selection.values()]
    if unknown or not names:
        raise ContrastSegError(f"--select {','.join(names)}: choose {', '.join(Selection.values())} or "
                               f"{','.join(Selection.values())}")
    return tuple(name for name in Selection.values() if name in names)


def plan_cells(methods: tuple[str, ...], labeled: tuple[int, ...], seeds: int, labeled_pool: int,
               source: str, selections: tuple[str, ...] = DEFAULT_SELECTIONS) -> list[Cell]:
    """Cells seed by seed (so every method has a result early), then by |X_L|, then method and selection;
    ``full`` once per seed with every labeled pool case. A count above ``labeled_pool`` is refused."""
    too_many = [n for n in labeled if n > labeled_pool]
    if too_many and any(m != FULL for m in methods):
        raise ContrastSegError(f"--labeled {too_many[0]}: {source} has {labeled_pool} labeled pool case(s) (test "
                               f"cases excluded); ask for at most {labeled_pool}")
    cells = []
    for seed in range(seeds):
        cells += [Cell(m, n, seed, select) for n in labeled for m in methods if m != FULL for select in selections]
        cells += [Cell(FULL, labeled_pool, seed)] if FULL in methods else []
    return cells
