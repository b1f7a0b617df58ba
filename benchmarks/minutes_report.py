"""The report of ``bench_minutes.py``: results.csv (a row per run), results.md (mean ± std over seeds, lowest
structure Dice, budget share, steps; Dice per structure) and dice_vs_minutes.png (mean Dice against budget minutes, a
line per dataset × |X_L| × initialisation)."""

from __future__ import annotations

import io
import math
import statistics
from pathlib import Path

from ContrastSegLib.benchmark.markdown import MISSING, table_line
from ContrastSegLib.benchmark.report import structure_key
from ContrastSegLib.evaluation import write_rows
from ContrastSegLib.io import write_bytes, write_text
from ContrastSegLib.runtime.budget import format_duration


def grouped(rows: list[dict]) -> dict[tuple, list[dict]]:
    """(dataset, labeled, init, budget_s) -> the rows of its seeds, in that order."""
    groups: dict[tuple, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["dataset"], r["labeled"], r["init"], r["budget_s"], r["seed"])):
        groups.setdefault((row["dataset"], row["labeled"], row["init"], row["budget_s"]), []).append(row)
    return groups


def mean_std(values: list[float], decimals: int = 3) -> str:
    """Mean ± sample std of the finite values (a single value alone)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return MISSING
    spread = f" ± {statistics.stdev(values):.{decimals}f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.{decimals}f}{spread}"


def lowest_structure(rows: list[dict], structures: list[str]) -> str:
    value, name = min((row[f"dice_{structure_key(s)}"], s) for row in rows for s in structures)
    return f"{value:.3f} ({name})"


def markdown(rows: list[dict], structures: dict[str, list[str]], header: str) -> str:
    columns = ["dataset", "|X_L|", "init", "budget", "seeds", "mean Dice", "lowest structure Dice",
               "budget share", "steps", "s per step"]
    lines = ["# Dice against minutes", "", header, "", "## Mean Dice (mean ± std over seeds)", "",
             table_line(columns), table_line(["---"] * len(columns))]
    for (dataset, labeled, init, budget), group in grouped(rows).items():
        shares = [100 * row["share_of_budget"] for row in group]
        lines.append(table_line([dataset, str(labeled), init, format_duration(budget), str(len(group)),
                                 mean_std([row["mean_dice"] for row in group]),
                                 lowest_structure(group, structures[dataset]),
                                 f"{min(shares):.0f}–{max(shares):.0f} %",
                                 mean_std([row["steps"] for row in group], 0),
                                 mean_std([row["seconds_per_step"] for row in group], 3)]))
    for dataset, names in structures.items():
        columns = ["|X_L|", "init", "budget", *names]
        lines += ["", f"## Dice per structure, {dataset} (mean ± std over seeds)", "", table_line(columns),
                  table_line(["---"] * len(columns))]
        for (name, labeled, init, budget), group in grouped(rows).items():
            if name == dataset:
                lines.append(table_line([str(labeled), init, format_duration(budget),
                                         *(mean_std([row[f"dice_{structure_key(s)}"] for row in group])
                                           for s in names)]))
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> Path:
    """Mean Dice against budget minutes, a line per dataset × |X_L| × init, std over seeds as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    lines: dict[tuple, list[tuple[float, float, float]]] = {}
    for (dataset, labeled, init, budget), group in grouped(rows).items():
        dice = [row["mean_dice"] for row in group]
        spread = statistics.stdev(dice) if len(dice) > 1 else 0.0
        lines.setdefault((dataset, labeled, init), []).append((budget / 60, statistics.fmean(dice), spread))
    for (dataset, labeled, init), points in lines.items():
        points.sort()
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                    capsize=3, label=f"{dataset}, {labeled} labeled, {init}")
    budgets = sorted({row["budget_s"] for row in rows})
    ax.set_xscale("log")
    ax.set_xticks([b / 60 for b in budgets], [format_duration(b) for b in budgets])
    ax.minorticks_off()
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("time budget on the CPU (minutes, log scale)")
    ax.set_ylabel("mean Dice on the test volumes")
    ax.set_title("The panel's default fine-tuning: Dice against minutes", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return write_bytes(buffer.getvalue(), path, overwrite=True)


def write_outputs(out: Path, records: list[dict], header: str) -> None:
    rows = [record["row"] for record in records]
    structures = {record["row"]["dataset"]: record["structures"] for record in records}
    write_rows(rows, out / "results.csv", overwrite=True)
    write_text(markdown(rows, structures, header), out / "results.md", overwrite=True)
    plot(rows, out / "dice_vs_minutes.png")
