"""``contrastseg evaluate``: per-structure Dice and HD95 of predicted label maps against references."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.discovery import dataset_label_names
from ..data.labels import LabelSet
from ..errors import ContrastSegError
from ..evaluation import CASE_COLUMNS, SUMMARY_COLUMNS, evaluate_folders, format_table, summarise, write_rows
from ..evaluation.metrics import index_folder
from ..io import check_output_path
from ..runtime.checkpoint import load_checkpoint
from ..triage import REVIEW_NAME, read_review, spearman
from ..triage.review import review_with_dice
from .common import add_overwrite_option


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate", help="Dice and HD95 per structure against reference label maps",
        description="Match predictions to references by case name (suffixes _seg/_pred/_label/_gt ignored; a "
                    "Decathlon folder's labelsTr/ is used), compute Dice and HD95 (mm, MONAI), print a table and "
                    "write one row per case and structure. When --pred holds the review.csv of contrastseg predict, "
                    "also write it with the true Dice beside the triage score (<out stem>_review.csv or .json) and "
                    "print their rank correlation.")
    parser.add_argument("--pred", required=True, help="folder of predicted label maps")
    parser.add_argument("--ref", required=True, help="folder of reference label maps (or a Decathlon folder)")
    parser.add_argument("--out", required=True, help="metrics file, .csv or .json; the summary goes beside it")
    parser.add_argument("--model", help="checkpoint whose label names to use when the reference folder has no "
                                        "dataset.json naming them")
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = check_output_path(args.out, args.overwrite)
    if out.suffix.lower() not in (".csv", ".json"):
        raise ContrastSegError(f"{out}: metrics are written as .csv or .json; choose such a file name")
    summary_path = check_output_path(summary_path_for(out), args.overwrite)
    review_source = Path(args.pred) / REVIEW_NAME
    review_path = check_output_path(review_path_for(out), args.overwrite) if review_source.is_file() else None
    labels = label_names(args.model, args.ref)
    review = read_review(review_source) if review_path else None
    if review is not None:
        check_review_cases(review, review_source, index_folder(Path(args.pred), "prediction"))
    rows = evaluate_folders(args.pred, args.ref, labels)
    summary = summarise(rows)
    if review is not None:
        review = review_with_dice(review, rows)
        rho = spearman([r["score"] for r in review], [r["dice"] for r in review])
    print(format_table(rows, CASE_COLUMNS, title="per case"))
    print()
    print(format_table(summary, SUMMARY_COLUMNS, title="summary"))
    write_rows(rows, out, overwrite=args.overwrite)
    write_rows(summary, summary_path, overwrite=args.overwrite)
    print(f"wrote {out} and {summary_path}")
    if review is not None:
        write_rows(review, review_path, overwrite=args.overwrite)
        print(f"triage: Spearman's rho of the review score and the true Dice = {rho:.3f} over {len(review)} cases "
              f"(negative: the cases it flags are the bad ones); wrote {review_path}")
    return 0


def summary_path_for(out: Path) -> Path:
    return out.with_name(f"{out.stem}_summary{out.suffix}")


def review_path_for(out: Path) -> Path:
    return out.with_name(f"{out.stem}_review{out.suffix}")


def label_names(model: str | None, reference: str) -> dict[int, str] | None:
    """Structure names from the reference folder's dataset.json (that of the folder above when --ref is a
    Decathlon ``labelsTr``), else from the checkpoint, else None (label_<v>)."""
    reference = Path(reference)
    for folder in [reference] + ([reference.parent] if reference.name == "labelsTr" else []):
        names = dataset_label_names(folder)
        if names:
            return {v: n for v, n in names.items() if v != 0}
    if model:
        return LabelSet.from_json(load_checkpoint(model).metadata["labels"], model).foreground
    return None


def check_review_cases(review: list[dict], path: Path, predictions: dict[str, Path]) -> None:
    """Every row of ``path`` (review.csv) must name a case with a label map in the prediction folder."""
    for number, row in enumerate(review, start=1):
        if row["case"] not in predictions:
            raise ContrastSegError(f"{path}: row {number} names case {row['case']!r}, which has no label map in "
                                   f"{path.parent}; remove the row, or predict the folder again")
