"""The review table of a segmented cohort: one row per case, the predictions most likely wrong first.

Per structure c the *doubt* is the larger of
  - its uncertain share: region voxels above ``UNCERTAIN_ENTROPY`` per predicted voxel (1 when nothing was
    predicted), an estimate of the share of the structure that may be wrong, and
  - its volume anomaly: clip((|z| − 2) / 2, 0, 1), 0 within two spreads of the training labels' volumes, 1 from four
    (``volumes``: a structure 3× larger than in the training labels has z = ln 3 / 0.2 ≈ 5.5 with one labeled
    volume).
The case's **score** is the mean doubt over the structures, in [0, 1]: sorted worst first, the top rows are the
ones to open. ``contrastseg evaluate`` adds the true Dice beside it, and the benchmark reports how well the score
ranks the cases by Dice (Spearman's ρ; negative = the flagged cases are the bad ones).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from ..evaluation.report import read_rows, write_rows
from ..io.volume import Volume
from .uncertainty import foreground_uncertainty, structure_uncertainty
from .volumes import VolumeNorms, voxel_ml

REVIEW_NAME = "review.csv"
Z_FLAGGED = 2.0  # |z| from which a structure's volume counts as anomalous (doubt 0 -> 1 between 2 and 4)
SHARE_FLAGGED = 0.3  # uncertain share from which a structure is named in the flags


def _anomaly(z: float | None) -> float:
    return 0.0 if z is None else float(np.clip((abs(z) - Z_FLAGGED) / Z_FLAGGED, 0.0, 1.0))


def review_row(case: str, label: Volume, entropy: Volume, structures: Mapping[int, str],
               norms: VolumeNorms | None = None, paths: Mapping[str, str] | None = None) -> dict:
    """The review row of one prediction: ``label`` (K, J, I) label values and ``entropy`` (K, J, I) in [0, 1] on the
    same grid; ``structures`` {value: name}; ``norms`` from the model's training labels (None: no z-scores);
    ``paths``: extra columns (image, prediction, uncertainty files) appended at the end."""
    values = sorted(structures)
    columns = column_names(structures)
    doubt = structure_uncertainty(label.array, entropy.array, values)
    row: dict = {"rank": None, "case": case, "score": 0.0,
                 "mean_uncertainty": foreground_uncertainty(label.array, entropy.array)}
    predicted = sum(d.voxels for d in doubt.values())
    row["uncertain_fraction"] = (1.0 if predicted == 0 else
                                 min(1.0, sum(d.uncertain for d in doubt.values()) / predicted))
    terms, flags = [], []
    for value in values:
        name, ml = columns[value], doubt[value].voxels * voxel_ml(label)
        z = norms.z_score(value, ml, voxel_ml(label)) if norms else None
        row[f"{name}_ml"] = round(ml, 3)
        row[f"{name}_z"] = math.nan if z is None else round(z, 2)
        share = doubt[value].uncertain_share
        terms.append(max(share, _anomaly(z)))
        if doubt[value].voxels == 0:
            flags.append(f"{name} missing")
            continue
        if z is not None and abs(z) > Z_FLAGGED:
            flags.append(f"{name} {norms.ratio(value, ml):.2g}× the training volume")
        if share >= SHARE_FLAGGED:
            flags.append(f"{name} {share:.0%} uncertain")
    row["score"] = round(float(np.mean(terms)), 4) if terms else 0.0
    row["mean_uncertainty"] = round(row["mean_uncertainty"], 4)
    row["uncertain_fraction"] = round(row["uncertain_fraction"], 4)
    row["flags"] = "; ".join(flags)
    row.update(paths or {})
    return row


def column_names(structures: Mapping[int, str]) -> dict[int, str]:
    """{value: the name its columns carry}: the structure's name, with ``_<value>`` when two share one."""
    names = list(structures.values())
    return {v: n if names.count(n) == 1 else f"{n}_{v}" for v, n in structures.items()}


def sorted_review(rows: Sequence[dict]) -> list[dict]:
    """``rows`` worst first (highest score; ties by case name), ranked from 1."""
    ordered = sorted(rows, key=lambda r: (-r["score"], r["case"]))
    return [{**row, "rank": rank} for rank, row in enumerate(ordered, start=1)]


def write_review(rows: Sequence[dict], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the sorted review table as CSV (atomically)."""
    return write_rows(sorted_review(rows), path, overwrite=overwrite)


def read_review(path: str | os.PathLike) -> list[dict]:
    """The rows of a review.csv, numbers as floats (``rank`` as int, empty cells as NaN)."""
    return read_rows(path, {"case", "flags", "image", "prediction", "uncertainty"}, {"case", "score"},
                     "predict the folder again")


def spearman(scores: Sequence[float], dice: Sequence[float]) -> float:
    """Spearman's rank correlation of triage scores and Dice, over the cases where both are known (None or NaN:
    left out); NaN with fewer than 3 such cases or a constant side."""
    pairs = [(s, d) for s, d in zip(scores, dice)
             if s is not None and d is not None and not (math.isnan(s) or math.isnan(d))]
    if len(pairs) < 3 or len({s for s, _ in pairs}) < 2 or len({d for _, d in pairs}) < 2:
        return math.nan
    return float(stats.spearmanr(*zip(*pairs)).statistic)


def review_with_dice(review: Sequence[dict], metrics: Sequence[dict]) -> list[dict]:
    """The review rows with the true Dice beside the score: ``dice`` (mean over the structures) and
    ``<structure>_dice``, from metric rows ``{"case", "structure", "dice"}`` (``evaluation.structure_metrics``);
    NaN for a case without a reference."""
    by_case: dict[str, dict[str, float]] = {}
    for row in metrics:
        by_case.setdefault(str(row["case"]), {})[str(row["structure"])] = float(row["dice"])
    joined = []
    for row in review:
        scores = by_case.get(str(row["case"]), {})
        extra = {"dice": round(float(np.mean(list(scores.values()))), 4) if scores else math.nan}
        extra.update({f"{name}_dice": round(value, 4) for name, value in scores.items()})
        joined.append({**row, **extra})
    return joined
