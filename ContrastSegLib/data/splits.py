"""Seeded, reproducible splits of a dataset into training (labeled, unlabeled), validation and test cases.

Test and validation cases are drawn only from labeled cases, test first, from one seeded permutation of the sorted
labeled ids: asking for more labeled training cases never changes the test or validation cases. Labeled cases left
over join the unlabeled training cases, whose labels are never used for training. A split is saved as JSON with a
fingerprint of the dataset, so a saved split is never silently applied to another dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import ContrastSegError
from ..io.write_file import write_text
from .discovery import Case, Dataset

SPLIT_GROUPS = ("train_labeled", "train_unlabeled", "validation", "test")
SPLIT_FORMAT = "contrastseg-split"
SPLIT_VERSION = 1


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of the sorted case ids and which of them are labeled (paths and file contents do not count)."""
    entries = sorted([case.id, case.label is not None] for case in dataset.cases)
    return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Split:
    """Case ids of each group in :data:`SPLIT_GROUPS` (sorted), the seed and the dataset's fingerprint."""

    seed: int
    groups: dict[str, tuple[str, ...]]
    fingerprint: str

    def __post_init__(self):
        object.__setattr__(self, "groups", _checked_groups(self.groups, "split"))

    def group_of(self, case_id: str) -> str:
        group = next((name for name, ids in self.groups.items() if case_id in ids), None)
        if group is None:
            raise ContrastSegError(f"case {case_id!r} is not in the split; make a new split for this dataset")
        return group

    def to_json(self) -> dict:
        return {
            "format": SPLIT_FORMAT,
            "version": SPLIT_VERSION,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "groups": {name: list(ids) for name, ids in self.groups.items()},
        }

    @classmethod
    def from_json(cls, data: Any, source: str | os.PathLike) -> "Split":
        """Check and read what :meth:`to_json` wrote; ``source`` names the file in error messages."""
        fix = "delete it to make a new split, or fix it"
        if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
            raise ContrastSegError(f"{source}: not a ContrastSeg split file (no \"format\": \"{SPLIT_FORMAT}\"); {fix}")
        if data.get("version") != SPLIT_VERSION:
            raise ContrastSegError(f"{source}: split format version {data.get('version')!r} is not supported "
                                   f"(expected {SPLIT_VERSION}); {fix}")
        seed, fingerprint = data.get("seed"), data.get("fingerprint")
        if type(seed) is not int or seed < 0:
            raise ContrastSegError(f"{source}: \"seed\" must be a whole number ≥ 0, got {seed!r}; {fix}")
        if not isinstance(fingerprint, str) or len(fingerprint) != 64:
            raise ContrastSegError(f"{source}: \"fingerprint\" must be a sha256 hex digest; {fix}")
        return cls(seed, _checked_groups(data.get("groups"), source), fingerprint)


def _checked_groups(groups: Any, source: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    fix = "delete it to make a new split, or fix it"
    if not isinstance(groups, dict) or set(groups) != set(SPLIT_GROUPS):
        found = ", ".join(map(str, groups)) if isinstance(groups, dict) else type(groups).__name__
        raise ContrastSegError(f"{source}: \"groups\" must hold exactly {', '.join(SPLIT_GROUPS)} "
                               f"(found: {found or 'none'}); {fix}")
    checked: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for name in SPLIT_GROUPS:
        ids = groups[name]
        if not isinstance(ids, (list, tuple)) or not all(isinstance(case_id, str) for case_id in ids):
            raise ContrastSegError(f"{source}: group \"{name}\" must be a list of case ids; {fix}")
        for case_id in ids:
            if case_id in owner:
                raise ContrastSegError(f"{source}: case {case_id!r} is in both \"{owner[case_id]}\" and \"{name}\";"
                                       f" {fix}")
            owner[case_id] = name
        checked[name] = tuple(sorted(ids))
    return checked


def make_split(
    dataset: Dataset,
    n_labeled: int,
    n_validation: int = 0,
    test_fraction: float = 0.2,
    n_test: int | None = None,
    seed: int = 0,
) -> Split:
    """Draw test, then validation, then ``n_labeled`` training cases from the labeled cases of ``dataset``.

    Test size: ``n_test`` if given, else ``round(test_fraction * labeled cases)`` (at least 1 when
    ``test_fraction > 0`` and there are ≥ 2 labeled cases). Everything else goes to "train_unlabeled".
    """
    n_test, n_validation, n_labeled = _group_sizes(dataset, n_labeled, n_validation, test_fraction, n_test, seed)
    labeled = sorted(case.id for case in dataset.labeled)
    drawn = [labeled[index] for index in np.random.default_rng(seed).permutation(len(labeled))]
    first_train = n_test + n_validation
    groups = {
        "test": drawn[:n_test],
        "validation": drawn[n_test:first_train],
        "train_labeled": drawn[first_train:first_train + n_labeled],
        "train_unlabeled": drawn[first_train + n_labeled:] + [case.id for case in dataset.unlabeled],
    }
    return Split(seed, {name: tuple(sorted(groups[name])) for name in SPLIT_GROUPS}, dataset_fingerprint(dataset))


def _group_sizes(dataset, n_labeled, n_validation, test_fraction, n_test, seed) -> tuple[int, int, int]:
    """(test, validation, labeled training) counts, checked against the labeled cases available."""
    for name, value in (("n_labeled", n_labeled), ("n_validation", n_validation), ("n_test", n_test), ("seed", seed)):
        if not (value is None and name == "n_test") and (type(value) is not int or value < 0):
            raise ContrastSegError(f"split: {name} must be a whole number ≥ 0, got {value!r}; fix the option")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 <= test_fraction < 1:
        raise ContrastSegError(f"split: test_fraction must be in [0, 1), got {test_fraction!r}; fix the option")
    available = len(dataset.labeled)
    if n_test is None:
        n_test = math.floor(test_fraction * available + 0.5)
        if test_fraction > 0 and available >= 2:
            n_test = max(n_test, 1)
    if n_test + n_validation + n_labeled > available:
        raise ContrastSegError(
            f"{dataset.root}: {available} labeled case(s), but the split asks for {n_test} test + {n_validation} "
            f"validation + {n_labeled} labeled training = {n_test + n_validation + n_labeled}; "
            "lower n_labeled, n_validation or the test share, or add labeled cases"
        )
    return n_test, n_validation, n_labeled


def save_split(split: Split, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``split`` as JSON atomically; an existing file is refused unless ``overwrite``."""
    path = Path(path)
    return write_text(json.dumps(split.to_json(), indent=2) + "\n", path, overwrite)


def load_split(path: str | os.PathLike) -> Split:
    path = Path(path)
    if not path.is_file():
        raise ContrastSegError(f"{path}: no split file there; check the path, or leave it out to make a new split")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ContrastSegError(f"{path}: malformed split file ({error.msg} at line {error.lineno}); "
                               "delete it to make a new split") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ContrastSegError(f"{path}: cannot read the split file ({error}); check it or delete it") from None
    return Split.from_json(data, path)


def load_or_make_split(path: str | os.PathLike, dataset: Dataset, **make_kwargs) -> Split:
    """Reuse the split saved at ``path`` if it belongs to ``dataset`` (and matches the sizes and seed asked for
    in ``make_kwargs``); otherwise make one with :func:`make_split` and save it there."""
    path = Path(path)
    if not path.exists():
        split = make_split(dataset, **make_kwargs)
        save_split(split, path)
        return split
    split = load_split(path)
    if split.fingerprint != dataset_fingerprint(dataset):
        raise ContrastSegError(f"{path}: split was made for another dataset (its cases or labels differ from "
                               f"{dataset.root}); delete the file to make a new split, or pass another split path")
    if make_kwargs:
        _check_request(split, dataset, path, make_kwargs)
    return split


def _check_request(split: Split, dataset: Dataset, path: Path, make_kwargs: dict) -> None:
    asked = {"n_labeled": 0, "n_validation": 0, "test_fraction": 0.2, "n_test": None, "seed": 0, **make_kwargs}
    unknown = sorted(set(asked) - {"n_labeled", "n_validation", "test_fraction", "n_test", "seed"})
    if unknown:
        raise TypeError(f"make_split() got unexpected keyword argument(s): {', '.join(unknown)}")
    n_test, n_validation, n_labeled = _group_sizes(dataset, **asked)
    wanted = {"test": n_test, "validation": n_validation, "seed": asked["seed"]}
    if "n_labeled" in make_kwargs:
        wanted["train_labeled"] = n_labeled
    saved = {name: split.seed if name == "seed" else len(split.groups[name]) for name in wanted}
    differences = [f"{name} {saved[name]} (asked {wanted[name]})" for name in wanted if saved[name] != wanted[name]]
    if differences:
        raise ContrastSegError(f"{path}: saved split has {', '.join(differences)}; delete the file to make a new "
                               "split, pass another split path, or ask for the saved sizes")


def check_not_test(split: Split, case_ids: Iterable[str | Case], stage: str) -> None:
    """Refuse test cases (or cases outside the split) for ``stage``, e.g. "fine-tuning" or "pre-training"."""
    ids = {case_ids} if isinstance(case_ids, str) else {getattr(item, "id", item) for item in case_ids}
    known = {case_id for group in split.groups.values() for case_id in group}
    in_test = sorted(ids & set(split.groups["test"]))
    outside = sorted(ids - known)
    problems = ([f"test case(s) {', '.join(in_test)}"] if in_test else []) + (
        [f"case(s) {', '.join(outside)} that are not in the split"] if outside else [])
    if problems:
        raise ContrastSegError(f"{stage}: refusing {' and '.join(problems)}; test cases are kept for the final "
                               "evaluation only — use the split's training cases or make a new split")


def cases_in(dataset: Dataset, split: Split, group: str) -> Dataset:
    """``dataset`` restricted to one group; "train_unlabeled" cases come without their label files."""
    if group not in SPLIT_GROUPS:
        raise ContrastSegError(f"unknown split group {group!r}; use one of {', '.join(SPLIT_GROUPS)}")
    if split.fingerprint != dataset_fingerprint(dataset):
        raise ContrastSegError(f"{dataset.root}: the split was made for another dataset (cases or labels differ); "
                               "make a new split for this dataset")
    subset = dataset.subset(split.groups[group])
    if group == "train_unlabeled":
        subset = replace(subset, cases=tuple(replace(case, label=None) for case in subset.cases))
    return subset
