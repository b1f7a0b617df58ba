"""The benchmark report's sections on choosing and checking: suggested against random labeled volumes (paired by
seed), and how well the review score of ``contrastseg predict`` ranks the test cases by their true Dice."""

from __future__ import annotations

import math
import statistics

from ..choices import Selection
from ..triage import spearman
from .markdown import MISSING, paired_difference, table_line


def selection_table(rows: list[dict]) -> str:
    """Rows = (method, |X_L|) run with both selections: mean Dice with suggested volumes minus with the seed's
    random draw, paired by seed, and the verdict."""
    by_cell = {(row["method"], row["labeled"], row["seed"], row.get("select", Selection.RANDOM)): row["dice_mean"]
               for row in rows}
    keys = sorted({(m, n) for m, n, _, select in by_cell if select == Selection.SUGGEST})
    if not keys:
        return "No cell ran with suggested volumes: add `--select random,suggest`.\n"
    header = ["method", "labeled", "random draw", "suggested", "suggested − random", "higher on", "verdict"]
    lines = [table_line(header), table_line(["---"] * len(header))]
    for method, count in keys:
        random = Selection.RANDOM
        pairs = [(value, by_cell[(method, count, seed, random)]) for (m, n, seed, select), value in by_cell.items()
                 if (m, n, select) == (method, count, Selection.SUGGEST) and (method, count, seed, random) in by_cell]
        pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
        if not pairs:
            lines.append(table_line([method, str(count)] + [MISSING] * 4 + ["no random draw to compare"]))
            continue
        differences = [a - b for a, b in pairs]
        text, wins, mean = paired_difference(differences)
        verdict = ("suggestion better on every seed" if wins == len(differences) else
                   "**no gain from the suggestion**" if mean <= 0 else "mixed")
        lines.append(table_line([method, str(count), f"{statistics.fmean(b for _, b in pairs):.3f}",
                            f"{statistics.fmean(a for a, _ in pairs):.3f}", text,
                            f"{wins}/{len(differences)} seeds", verdict]))
    return "\n".join(lines) + "\n"


def triage_table(results: list[dict]) -> str:
    """Spearman's ρ of the review score and the true mean Dice of the test cases: per cell (mean over the cells
    of each method and |X_L|), and over every prediction of the benchmark at once."""
    groups: dict[tuple[str, int], list[float]] = {}
    scores, dice = [], []
    for result in results:
        triage = result.get("triage") or []
        scores += [t["score"] for t in triage]
        dice += [t["dice"] for t in triage]
        rho = result.get("triage_spearman")
        groups.setdefault((result["method"], result["labeled"]), []).append(
            math.nan if rho is None else float(rho))
    if not scores:
        return "No cell recorded triage scores (cells computed before the review table existed).\n"
    lines = [table_line(["method", "labeled", "cells", "mean ρ per cell"]), table_line(["---"] * 4)]
    for (method, count), values in sorted(groups.items()):
        finite = [v for v in values if math.isfinite(v)]
        lines.append(table_line([method, str(count), str(len(values)),
                            f"{statistics.fmean(finite):+.2f}" if finite else MISSING]))
    pooled = spearman(scores, dice)
    lines.append("")
    lines.append(f"Over all {len(scores)} predictions of the benchmark: ρ = "
                 f"{MISSING if math.isnan(pooled) else f'{pooled:+.2f}'} (goal ≤ −0.5: the cases flagged first are "
                 "the ones with the lowest Dice).")
    return "\n".join(lines) + "\n"
