"""Evaluation: per-structure Dice and HD95 against reference label maps, summary tables, CSV/JSON and overlays."""

from .metrics import (
    CASE_COLUMNS,
    STRUCTURE_COLUMNS,
    SUMMARY_COLUMNS,
    case_id,
    check_same_grid,
    default_labels,
    evaluate_folders,
    mask_metrics,
    match_cases,
    structure_metrics,
    summarise,
)
from .report import format_table, pick_overlay_slice, save_overlay_png, write_rows

__all__ = [
    "CASE_COLUMNS", "STRUCTURE_COLUMNS", "SUMMARY_COLUMNS", "case_id", "check_same_grid", "default_labels",
    "evaluate_folders", "format_table", "mask_metrics", "match_cases", "pick_overlay_slice", "save_overlay_png",
    "structure_metrics", "summarise", "write_rows",
]
