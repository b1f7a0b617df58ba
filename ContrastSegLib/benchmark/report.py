"""Benchmark output: results.csv (one row per cell), report.md (mean ± std over seeds in the papers' layout, per
structure, time, plots, example overlays, environment) and the PNG plots of Dice against |X_L|.

Statistics over seeds: mean and sample standard deviation (ddof 1; a single seed shows its value alone).
Figures are drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas (no display, no global backend).
"""

from __future__ import annotations

import io
import math
import re
import statistics
from pathlib import Path

from ..choices import Selection
from ..evaluation import write_rows
from ..io import write_bytes, write_text
from .cells import FULL, Cell
from .datasets import SPECS, PreparedDataset
from .markdown import MISSING, paired_difference, table_line
from .profiles import Profile
from .triage_report import selection_table, triage_table



def structure_key(name: str) -> str:
    """A structure name as part of a column name: "left ventricle" -> "left_ventricle"."""
    return re.sub(r"\W+", "_", name).strip("_")


def result_row(dataset: str, result: dict) -> dict:
    """The results.csv row of one cell: Dice and HD95 (mm) per structure and their mean over the test cases,
    train time (pre-training stages of the chain + fine-tuning) and prediction time in seconds."""
    summary = {row["structure"]: row for row in result["summary"]}
    structures = [name for name in summary if name != "mean"]
    row = {"dataset": dataset, "method": result["method"], "labeled": result["labeled"], "seed": result["seed"],
           "select": result.get("select", Selection.RANDOM), "test_cases": len(result["test_cases"])}
    row.update({f"dice_{structure_key(s)}": summary[s]["dice_mean"] for s in structures})
    row["dice_mean"] = summary["mean"]["dice_mean"]
    row.update({f"hd95_{structure_key(s)}_mm": summary[s]["hd95_mm_mean"] for s in structures})
    row["hd95_mean_mm"] = summary["mean"]["hd95_mm_mean"]
    row["train_seconds"] = round(result["pretrain_seconds"] + result["finetune_seconds"], 3)
    row.update({key: result[key] for key in ("pretrain_seconds", "finetune_seconds", "predict_seconds")})
    row["triage_spearman"] = result.get("triage_spearman")
    row["labeled_cases"] = " ".join(result["labeled_cases"])
    return row


def randomly_drawn(rows: list[dict]) -> list[dict]:
    """The rows of cells whose labeled volumes were the seeded draw (the main tables and plots)."""
    return [row for row in rows if row.get("select", Selection.RANDOM) == Selection.RANDOM]


def seed_statistics(rows: list[dict], column: str) -> dict[tuple[str, int], tuple[float, float, int]]:
    """(method, |X_L|) -> (mean, sample std or NaN, seeds) of ``column`` over the finite values."""
    groups: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        value = row.get(column)
        values = groups.setdefault((row["method"], row["labeled"]), [])
        if value is not None and math.isfinite(value):
            values.append(float(value))
    return {key: (statistics.fmean(v) if v else math.nan, statistics.stdev(v) if len(v) > 1 else math.nan, len(v))
            for key, v in groups.items()}


def write_outputs(out: Path, rows: list[dict], results: list[dict], prepared: PreparedDataset, profile: Profile,
                  environment: dict, performance: str | None) -> None:
    """Write results.csv, plots/*.png and report.md (each atomically, replacing the previous run's)."""
    write_rows(rows, out / "results.csv", overwrite=True)
    structures = list(prepared.structures.values())
    drawn = randomly_drawn(rows)
    plot_dice(drawn, ["mean"], out / "plots" / "dice_vs_labeled.png", prepared.name)
    plot_dice(drawn, structures, out / "plots" / "dice_vs_labeled_per_structure.png", prepared.name)
    text = markdown_report(rows, results, prepared, profile, environment, performance)
    write_text(text, out / "report.md", overwrite=True)


def markdown_report(rows: list[dict], results: list[dict], prepared: PreparedDataset, profile: Profile,
                    environment: dict, performance: str | None) -> str:
    """report.md: setting, mean Dice (rows = methods, columns = |X_L|), per structure, time, plots, overlays,
    the optional performance section, the command and the environment. The main tables hold the cells with
    randomly drawn labeled volumes; those with suggested ones have their own section."""
    every_row, rows = rows, randomly_drawn(rows)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    seeds = sorted({row["seed"] for row in rows})
    split = prepared.split
    description = SPECS[prepared.name].description if prepared.name in SPECS else "Your folder"
    setting = (
        f"{description[0].upper()}{description[1:]}; data: {prepared.source}.\n\n"
        f"Split: {len(split.test)} test cases (never read by any training stage), {len(split.pool)} pool cases "
        f"(pre-training, labels unused), {len(split.labeled_pool)} of them labeled (each seed draws the labeled "
        f"sets from these; `{FULL}` uses all). Preprocessing: in-plane spacing {prepared.spacing_mm:g} mm, crop "
        f"{prepared.crop}. Training: {profile.pretrain_iterations} iterations per pre-training stage, "
        f"{profile.finetune_iterations} fine-tuning iterations (batch {profile.batch_size}), UNet channels "
        f"{'-'.join(map(str, profile.channels))}. Seeds: {', '.join(map(str, seeds))} (labeled draw, initialisation "
        "and sampling). Values: mean ± sample std over seeds of the mean over the test cases.")
    if prepared.name == "brain-offline":
        setting += ("\n\n**Pseudo-subjects**: the labeled brain volumes are random deformations of a template "
                    "with bias field, blur and noise, not different people; train and test are split by "
                    "pseudo-subject.")
    sections = [
        f"# ContrastSeg benchmark: {prepared.name}, profile {profile.name}", setting,
        "## Mean Dice", dice_table(rows, methods),
        "## Against random initialisation", random_comparison_table(rows, methods),
        "Paired by seed (same labeled volumes, same fine-tuning seed): mean ± std of the difference in mean Dice, "
        "and on how many seeds the method scored higher. **beats random**: higher on every seed; **does not beat "
        "random**: not higher on average; **mixed**: higher on average, not on every seed.",
        "## Share of the random → full gap closed", gap_table(rows, methods),
        "(method − random) ÷ (full − random), from the means over seeds of the mean Dice. Chaitanya et al. 2020 "
        "close 37 % of it on ACDC at one labeled volume with G^D + L^R. Meaningful only where `full` is a "
        "ceiling, i.e. above every other row.",
        "## Per structure", structure_table(rows, methods, list(prepared.structures.values())),
        "## Suggested against random labeled volumes", selection_table(every_row),
        "Suggested: each seed's |X_L| labeled volumes are the first |X_L| that `contrastseg suggest` picks from the "
        "labeled pool with that seed's G^D checkpoint (k-center coverage of the pool's slices; the 2 contain the "
        "1); random: the seed's draw of the main tables. Paired by seed (same fine-tuning seed).",
        "## Triage: does the review score find the bad predictions?", triage_table(results),
        "Per test case, the score of `review.csv` (`contrastseg predict`) against its true mean Dice; ρ < 0 means "
        "the cases it puts first are the worst segmented.",
        "## Time", time_table(rows, methods),
        "Train time = every pre-training stage of the method's chain (a stage shared by several cells counts in "
        "each; a stage resumed after an interruption counts only its resumed part) + fine-tuning. Predict time: "
        "prediction of all test cases, from files to label maps.",
        "## Plots", "![mean Dice against labeled volumes](plots/dice_vs_labeled.png)\n\n"
                    "![Dice per structure against labeled volumes](plots/dice_vs_labeled_per_structure.png)",
        "## Example overlays", _overlays(results),
    ]
    if performance is not None:
        sections += ["## Performance", performance.strip()]
    sections += [
        "## Reproduce", f"```\n{environment['command']}\n```\n\nPer-cell results and each cell's labeled cases are "
                        "in `results.csv`; models, predictions and splits under `cells/` and `splits/`.",
        "## Environment", "\n".join(f"- {key}: {value}" for key, value in environment.items() if key != "command"),
        "## Test cases", ", ".join(split.test),
    ]
    return "\n\n".join(section.strip() for section in sections) + "\n"


def dice_table(rows: list[dict], methods: list[str]) -> str:
    """Rows = methods, columns = |X_L| (``full`` in its own last column): mean Dice ± std over seeds."""
    stats = seed_statistics(rows, "dice_mean")
    counts = sorted({row["labeled"] for row in rows if row["method"] != FULL})
    full = sorted({row["labeled"] for row in rows if row["method"] == FULL})
    header = ["method"] + [f"{n} labeled" for n in counts] + [f"all {n} labeled" for n in full]
    lines = [table_line(header), table_line(["---"] * len(header))]
    for method in methods:
        lines.append(table_line([method] + [_mean_std(stats.get((method, n))) for n in counts + full]))
    return "\n".join(lines) + "\n"


def random_comparison_table(rows: list[dict], methods: list[str], unit: str = "seeds") -> str:
    """Rows = (method, |X_L|) of every pre-trained method: its mean Dice minus random init's, paired by seed (the
    rows' "seed": a fold of ``contrastseg compare``, whose ``unit`` is "folds")."""
    by_cell = {(row["method"], row["labeled"], row["seed"]): row["dice_mean"] for row in rows}
    lines = [table_line(["method", "labeled", "Dice − random", "higher on", "verdict"]), table_line(["---"] * 5)]
    for method, count in _method_counts(rows, methods):
        if method in ("random", FULL):
            continue
        pairs = [(value, by_cell[("random", count, seed)]) for (m, n, seed), value in by_cell.items()
                 if m == method and n == count and ("random", count, seed) in by_cell]
        differences = [a - b for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
        if not differences:
            lines.append(table_line([method, str(count), MISSING, MISSING, "no random run to compare"]))
            continue
        text, wins, mean = paired_difference(differences)
        verdict = ("beats random" if wins == len(differences) else "**does not beat random**" if mean <= 0
                   else "mixed")
        lines.append(table_line([method, str(count), text, f"{wins}/{len(differences)} {unit}", verdict]))
    return "\n".join(lines) + "\n"


def gap_table(rows: list[dict], methods: list[str]) -> str:
    """Rows = (method, |X_L|) other than random and full: the share of the random → full gap the method closes."""
    stats = seed_statistics(rows, "dice_mean")
    full = [value for (method, _), (value, _, _) in stats.items() if method == FULL and math.isfinite(value)]
    if not full:
        return "No `full` run in this benchmark: add `full` to --methods.\n"
    lines = [table_line(["method", "labeled", "random", "method", "full", "gap closed"]), table_line(["---"] * 6)]
    for method, count in _method_counts(rows, methods):
        if method in ("random", FULL) or ("random", count) not in stats:
            continue
        low, value, high = stats[("random", count)][0], stats[(method, count)][0], full[0]
        share = (value - low) / (high - low) if high > low else math.nan
        lines.append(table_line([method, str(count), f"{low:.3f}", f"{value:.3f}", f"{high:.3f}",
                            MISSING if math.isnan(share) else f"{share:.0%}"]))
    return "\n".join(lines) + "\n"


def structure_table(rows: list[dict], methods: list[str], structures: list[str]) -> str:
    """Rows = (method, |X_L|), columns = Dice per structure, mean Dice, mean HD95 (mm)."""
    columns = [f"dice_{structure_key(s)}" for s in structures] + ["dice_mean", "hd95_mean_mm"]
    stats = {column: seed_statistics(rows, column) for column in columns}
    header = ["method", "labeled"] + [f"Dice {s}" for s in structures] + ["mean Dice", "HD95 mm"]
    lines = [table_line(header), table_line(["---"] * len(header))]
    for method, count in _method_counts(rows, methods):
        cells = [_mean_std(stats[c].get((method, count)), 1 if c.startswith("hd95") else 3) for c in columns]
        lines.append(table_line([method, str(count)] + cells))
    return "\n".join(lines) + "\n"


def time_table(rows: list[dict], methods: list[str]) -> str:
    stats = {c: seed_statistics(rows, c) for c in ("pretrain_seconds", "finetune_seconds", "train_seconds",
                                                    "predict_seconds")}
    header = ["method", "labeled", "pre-training s", "fine-tuning s", "train s", "predict s"]
    lines = [table_line(header), table_line(["---"] * len(header))]
    for method, count in _method_counts(rows, methods):
        lines.append(table_line([method, str(count)] + [_mean_std(s.get((method, count)), 1) for s in stats.values()]))
    return "\n".join(lines) + "\n"


def plot_dice(rows: list[dict], structures: list[str], path: Path, dataset: str) -> Path:
    """One panel per structure ("mean": the mean Dice): Dice against |X_L| per method, std over seeds as error
    bars; ``full`` as a dashed line with its std band."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = len(structures) if len(structures) <= 4 else 4
    panel_rows = math.ceil(len(structures) / columns)
    figure = Figure(figsize=(5.0 * columns + 2.0, 3.8 * panel_rows), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(panel_rows, columns, squeeze=False).ravel()
    methods = list(dict.fromkeys(row["method"] for row in rows))
    counts = sorted({row["labeled"] for row in rows if row["method"] != FULL})
    for ax, structure in zip(axes, structures):
        stats = seed_statistics(rows, "dice_mean" if structure == "mean" else f"dice_{structure_key(structure)}")
        for method in methods:
            points = [(n, *stats[(m, n)][:2]) for (m, n) in stats if m == method]
            if method == FULL:
                for _, mean, std in points:
                    ax.axhline(mean, linestyle="--", color="black", label=f"{FULL} ({points[0][0]} labeled)")
                    if math.isfinite(std):
                        ax.axhspan(mean - std, mean + std, color="black", alpha=0.1)
                continue
            points.sort()
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[p[2] if math.isfinite(p[2]) else 0.0 for p in points], marker="o", capsize=3,
                        label=method)
        if counts:
            ax.set_xscale("log", base=2)
            ax.set_xticks(counts, [str(n) for n in counts])
        low, high = ax.get_ylim()
        ax.set_ylim(*((max(low, 0.0), min(high, 1.0)) if min(high, 1.0) > max(low, 0.0) else (0.0, 1.0)))
        ax.set_xlabel("labeled volumes |X_L|")
        ax.set_ylabel("mean Dice" if structure == "mean" else f"Dice {structure}")
        ax.set_title(f"{dataset}: {'mean over structures' if structure == 'mean' else structure}", fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(structures):]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize=8)
    figure.tight_layout(rect=(0, 0, 1.0 - 2.0 / (5.0 * columns + 2.0), 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return write_bytes(buffer.getvalue(), path, overwrite=True)


def _overlays(results: list[dict]) -> str:
    """Links to the first seed's overlay of each method at its smallest |X_L|."""
    chosen: dict[str, dict] = {}
    for result in sorted(results, key=lambda r: (r["seed"], r["labeled"])):
        chosen.setdefault(result["method"], result)
    lines = []
    for method, result in chosen.items():
        cell = Cell(method, result["labeled"], result["seed"], result.get("select", Selection.RANDOM))
        folder = cell.folder.as_posix()
        lines.append(f"![{method}, {result['labeled']} labeled, seed {result['seed']}]"
                     f"(cells/{folder}/{result['overlay']})")
    return "\n".join(lines) + "\n" if lines else "(none)\n"


def _method_counts(rows: list[dict], methods: list[str]) -> list[tuple[str, int]]:
    return [(m, n) for m in methods for n in sorted({row["labeled"] for row in rows if row["method"] == m})]


def _mean_std(stat: tuple[float, float, int] | None, decimals: int = 3) -> str:
    if stat is None or not math.isfinite(stat[0]):
        return MISSING
    mean, std, _ = stat
    return f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if math.isfinite(std) else "")


