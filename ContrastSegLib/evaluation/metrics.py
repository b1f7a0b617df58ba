"""Per-structure Dice and 95th-percentile Hausdorff distance (HD95) between label maps, computed with MONAI.

Conventions for a structure (one label value) in one case:

* both prediction and reference empty: Dice 1.0, HD95 0.0 mm (nothing to find, nothing found);
* exactly one of them empty: Dice 0.0, HD95 NaN (no surface to measure; tables show it as empty);
* otherwise MONAI's Dice and symmetric HD95 in mm, using the voxel spacing of the reference.

Prediction and reference must lie on the same voxel grid (shape, spacing, origin, direction).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from ..errors import ContrastSegError
from ..io.read import case_stem, image_suffix, read_label
from ..io.read_checks import list_folder
from ..io.volume import Volume

CASE_SUFFIXES = ("_seg", "_pred", "_prediction", "_label", "_gt")
CASE_COLUMNS = ["case", "structure", "label", "dice", "hd95_mm"]
STRUCTURE_COLUMNS = CASE_COLUMNS[1:]
SUMMARY_COLUMNS = [
    "structure", "label", "cases", "dice_mean", "dice_std", "hd95_mm_mean", "hd95_mm_std", "hd95_cases",
]
MEAN_ROW_NAME = "mean"


def structure_metrics(prediction: Volume, reference: Volume, labels: dict[int, str] | None = None) -> list[dict]:
    """One row per structure (label value != 0 in ``labels``), in label order:
    ``{"structure": name, "label": value, "dice": float, "hd95_mm": float}``.

    ``prediction.array`` and ``reference.array``: (K, J, I) label maps on the same grid. ``labels`` None: the
    non-zero values present in either map, named ``label_<v>``. Empty-structure conventions: see the module docstring.
    """
    check_same_grid(prediction, reference)
    if labels is None:
        labels = default_labels(prediction.array, reference.array)
    spacing_kji = [float(s) for s in reversed(reference.spacing)]  # spacing is (i, j, k); the array is (k, j, i)
    rows = []
    for value, name in sorted((int(v), str(n)) for v, n in labels.items()):
        if value == 0:
            continue
        dice, hd95 = mask_metrics(prediction.array == value, reference.array == value, spacing_kji)
        rows.append({"structure": name, "label": value, "dice": dice, "hd95_mm": hd95})
    return rows


def mask_metrics(prediction: np.ndarray, reference: np.ndarray, spacing_kji) -> tuple[float, float]:
    """(Dice, HD95 in mm) of two boolean (K, J, I) masks; ``spacing_kji``: mm per voxel in array-axis order."""
    predicted_any, reference_any = bool(prediction.any()), bool(reference.any())
    if not predicted_any and not reference_any:
        return 1.0, 0.0
    if not (predicted_any and reference_any):
        return 0.0, math.nan
    box = _bounding_box(prediction | reference, margin=1)
    prediction_onehot = _one_hot(prediction[box])
    reference_onehot = _one_hot(reference[box])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"monai\..*")
        dice = compute_dice(prediction_onehot, reference_onehot, include_background=True, ignore_empty=False)
        hd95 = compute_hausdorff_distance(
            prediction_onehot, reference_onehot, include_background=True, percentile=95, spacing=list(spacing_kji)
        )
    return float(dice[0, 0]), float(hd95[0, 0])


def check_same_grid(prediction: Volume, reference: Volume) -> None:
    """Raise :class:`ContrastSegError` naming both volumes unless they share shape, spacing, origin and direction."""
    if prediction.same_grid(reference):
        return
    raise ContrastSegError(
        f"{prediction.name}: prediction grid ({_describe_grid(prediction)}) differs from the reference "
        f"{reference.name} ({_describe_grid(reference)}); resample the prediction onto the reference grid "
        "(nearest neighbour), or predict with `contrastseg predict`, which writes on the input grid"
    )


def default_labels(*label_arrays: np.ndarray) -> dict[int, str]:
    """``{v: "label_<v>"}`` for every non-zero value present in any of the arrays."""
    values = set()
    for array in label_arrays:
        values.update(int(v) for v in np.unique(array))
    return {v: f"label_{v}" for v in sorted(values - {0})}


def case_id(path: str | os.PathLike) -> str:
    """Case id of a label file: its stem without one trailing ``_seg``/``_pred``/``_prediction``/``_label``/``_gt``
    (case-insensitive): ``case_01_seg.nii.gz`` -> ``case_01``."""
    stem = case_stem(path)
    for suffix in CASE_SUFFIXES:
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def match_cases(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """``(case, prediction_path, reference_path)`` for every case id in both folders, sorted by case.

    A reference folder holding ``labelsTr/`` (Medical Segmentation Decathlon layout) is read from ``labelsTr/``.
    Cases found in one folder only are reported with :func:`warnings.warn`; no common case is an error.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    if (ref_dir / "labelsTr").is_dir():
        ref_dir = ref_dir / "labelsTr"
    predictions, references = index_folder(pred_dir, "prediction"), index_folder(ref_dir, "reference")
    common = sorted(set(predictions) & set(references))
    if not common:
        raise ContrastSegError(
            f"no case is in both the prediction folder {pred_dir} ({_describe_ids(predictions)}) and the reference "
            f"folder {ref_dir} ({_describe_ids(references)}); name files by case id, e.g. case_01.nii.gz or "
            f"case_01_seg.nii.gz (suffixes {', '.join(CASE_SUFFIXES)} are ignored)"
        )
    for folder, only in ((pred_dir, set(predictions) - set(references)), (ref_dir, set(references) - set(predictions))):
        if only:
            warnings.warn(f"{folder}: {len(only)} case(s) without a counterpart are skipped: {_shorten(sorted(only))}")
    return [(case, predictions[case], references[case]) for case in common]


def evaluate_folders(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, labels: dict[int, str] | None = None
) -> list[dict]:
    """Rows ``{"case", "structure", "label", "dice", "hd95_mm"}`` for every case present in both folders.

    Files are matched by :func:`case_id` (see :func:`match_cases`). With ``labels`` None every case gets a row for
    every label value seen in any case (a value absent from both maps of a case counts as Dice 1.0, HD95 0.0).
    """
    rows = []
    for case, prediction_path, reference_path in match_cases(pred_dir, ref_dir):
        reference = read_label(reference_path)
        prediction = read_label(prediction_path)
        rows.extend({"case": case, **row} for row in structure_metrics(prediction, reference, labels))
    return rows if labels is not None else _add_absent_structures(rows)


def summarise(rows: list[dict]) -> list[dict]:
    """Per structure: ``cases``, ``dice_mean``/``dice_std``, ``hd95_mm_mean``/``hd95_mm_std`` and ``hd95_cases``
    (how many HD95 values were finite), ignoring NaN; std is the population std (ddof 0).

    A last row named ``"mean"`` (label None) gives the same statistics over cases of each case's mean over its
    structures (rows without a ``"case"`` key form one case).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["label"], row["structure"]), []).append(row)
    summary = [
        {"structure": structure, "label": label, **_statistics(group)} for (label, structure), group in groups.items()
    ]
    if not summary:
        return summary
    per_case: dict[object, list[dict]] = {}
    for row in rows:
        per_case.setdefault(row.get("case"), []).append(row)
    case_means = [
        {"dice": _nan_stats([r["dice"] for r in group])[0], "hd95_mm": _nan_stats([r["hd95_mm"] for r in group])[0]}
        for group in per_case.values()
    ]
    summary.append({"structure": MEAN_ROW_NAME, "label": None, **_statistics(case_means)})
    return summary


def _statistics(rows: list[dict]) -> dict:
    dice_mean, dice_std, _ = _nan_stats([row["dice"] for row in rows])
    hd_mean, hd_std, hd_count = _nan_stats([row["hd95_mm"] for row in rows])
    return {
        "cases": len(rows), "dice_mean": dice_mean, "dice_std": dice_std,
        "hd95_mm_mean": hd_mean, "hd95_mm_std": hd_std, "hd95_cases": hd_count,
    }


def _nan_stats(values) -> tuple[float, float, int]:
    """(mean, std, count) of the finite values; NaN, NaN, 0 when there are none."""
    array = np.asarray([math.nan if v is None else v for v in values], dtype=float)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std()), int(finite.size)


def _add_absent_structures(rows: list[dict]) -> list[dict]:
    """Give every case a row for every (label, structure) seen anywhere; an absent one was empty in both maps."""
    structures = sorted({(row["label"], row["structure"]) for row in rows})
    by_case: dict[str, dict[int, dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["label"]] = row
    completed = []
    for case, case_rows in by_case.items():
        for label, structure in structures:
            completed.append(
                case_rows.get(label, {"case": case, "structure": structure, "label": label, "dice": 1.0, "hd95_mm": 0.0})
            )
    return completed


def index_folder(folder: Path, role: str) -> dict[str, Path]:
    """{case id: label file} of the label maps directly in ``folder`` (``role``: "prediction" or "reference")."""
    if not folder.is_dir():
        raise ContrastSegError(f"{folder}: {role} folder does not exist or is not a folder; check the path")
    index: dict[str, Path] = {}
    for path in list_folder(folder):
        if path.name.startswith(".") or not path.is_file() or image_suffix(path) is None:
            continue
        case = case_id(path)
        if case in index:
            raise ContrastSegError(
                f"{path}: has the same case id '{case}' as {index[case]}; keep one label file per case in {folder}"
            )
        index[case] = path
    return index


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices around the non-zero voxels of ``mask``, widened by ``margin`` voxels and clipped to the array."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + margin + 1, mask.shape[axis])))
    return tuple(box)


def _one_hot(mask: np.ndarray) -> torch.Tensor:
    """(K, J, I) boolean mask -> (1, 1, K, J, I) float tensor, the one-hot layout MONAI's metrics take."""
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None, None])


def _describe_grid(volume: Volume) -> str:
    def fmt(values):
        return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

    text = f"shape {volume.array.shape[::-1]}, spacing {fmt(volume.spacing)}, origin {fmt(volume.origin)}"
    return text + f", direction {fmt(volume.direction)}"


def _describe_ids(index: dict[str, Path]) -> str:
    if not index:
        return "no label files"
    return f"{len(index)} label file(s), e.g. {_shorten(sorted(index), limit=3)}"


def _shorten(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
