"""``contrastseg phantom`` (make the embedded default data) and ``contrastseg split`` (a seeded split file)."""

from __future__ import annotations

import argparse

from ..data.discovery import discover
from ..data.phantom import write_phantom_dataset
from ..data.splits import SPLIT_GROUPS, load_or_make_split
from ..evaluation.report import format_table
from .common import add_overwrite_option, positive_int


def register_phantom(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "phantom", help="write procedural cardiac-like phantom volumes (a Decathlon-style folder)",
        description="Write N deterministic phantom subjects (LV, myocardium, RV) as imagesTr/, labelsTr/ and "
                    "dataset.json; the folder is a valid --labeled / --unlabeled input.")
    parser.add_argument("--out", required=True, help="output folder (must not exist, or be empty)")
    parser.add_argument("--n", type=positive_int, default=10, help="number of subjects (default: 10)")
    parser.add_argument("--seed", type=int, default=0, help="phantom family (default: 0)")
    parser.add_argument("--thin-structure", action="store_true",
                        help="add a fourth structure: a thin oesophagus-like tube of 1-2 %% of the labeled voxels")
    add_overwrite_option(parser)
    parser.set_defaults(run=run_phantom)


def run_phantom(args: argparse.Namespace) -> int:
    out = write_phantom_dataset(args.out, args.n, seed=args.seed, overwrite=args.overwrite,
                                thin_structure=args.thin_structure)
    print(f"wrote {args.n} phantom subjects to {out}")
    return 0


def register_split(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "split", help="write (or show) the seeded train-labeled / train-unlabeled / validation / test split",
        description="Make a seeded split of a dataset and save it; an existing split file is reused (and checked "
                    "against the data), so a test volume can never enter training.")
    parser.add_argument("--data", required=True, help="dataset folder or manifest")
    parser.add_argument("--out", required=True, help="split file (.json) to write or reuse")
    parser.add_argument("--labeled", type=int, default=2, help="labeled training volumes (default: 2)")
    parser.add_argument("--validation", type=int, default=0, help="validation volumes (default: 0)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="fraction of the labeled volumes held out for testing (default: 0.2)")
    parser.add_argument("--test", type=int, default=None, help="number of test volumes (overrides the fraction)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    parser.set_defaults(run=run_split)


def run_split(args: argparse.Namespace) -> int:
    dataset = discover(args.data)
    split = load_or_make_split(args.out, dataset, n_labeled=args.labeled, n_validation=args.validation,
                               test_fraction=args.test_fraction, n_test=args.test, seed=args.seed)
    rows = [{"group": g, "volumes": len(split.groups[g]), "cases": ", ".join(split.groups[g][:6]) +
             (" …" if len(split.groups[g]) > 6 else "")} for g in SPLIT_GROUPS]
    print(format_table(rows, ["group", "volumes", "cases"], title=f"split {args.out} (seed {split.seed})"))
    return 0
