"""The fixed benchmark splits (``splits/*.json``, documented in ``splits/README.md``): reading and checking a file,
resolving it against the cases of the user's copy, drawing a seed's labeled set, and turning it into the library's
:class:`~ContrastSegLib.data.splits.Split`, which every training stage checks.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..data.discovery import Dataset
from ..data.splits import Split, check_not_test, dataset_fingerprint
from ..errors import ContrastSegError
from ..io import write_text

SPLIT_FILE_FORMAT = "contrastseg-benchmark-split"
SPLIT_FILE_VERSION = 1


@dataclass(frozen=True)
class FixedSplit:
    """test: never read by any stage; pool: every other case, pre-training input (labels unused);
    labeled_pool: the pool cases with labels, from which the labeled sets are drawn. All sorted."""

    test: tuple[str, ...]
    pool: tuple[str, ...]
    labeled_pool: tuple[str, ...]

    def __post_init__(self):
        overlap = sorted(set(self.test) & set(self.pool))
        if overlap:
            raise ContrastSegError(f"benchmark split: case(s) {', '.join(overlap)} would be both test and training "
                                   "cases; fix the split file")
        if not set(self.labeled_pool) <= set(self.pool):
            raise ContrastSegError("benchmark split: the labeled pool must be part of the pool; fix the split file")


def packaged_split_path(dataset: str) -> Path:
    """Path of the split file shipped for a named dataset, e.g. ``splits/acdc.json``."""
    return Path(str(resources.files(__package__).joinpath("splits", f"{dataset}.json")))


def load_split_file(path: str | os.PathLike) -> dict:
    """Read and check a split file: test and pool lists (disjoint, no repeats) or a ``test_rule``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ContrastSegError(f"{path}: cannot read the benchmark split ({error}); restore the file") from None
    if not isinstance(data, dict) or data.get("format") != SPLIT_FILE_FORMAT or data.get("version") != 1:
        raise ContrastSegError(f"{path}: not a benchmark split file (format {SPLIT_FILE_FORMAT}, version 1); "
                               "restore the file")
    if "test_rule" in data:
        rule = data["test_rule"]
        if not (isinstance(rule, dict) and (_positive(rule.get("first")) or _positive(rule.get("every")))):
            raise ContrastSegError(f"{path}: \"test_rule\" needs \"first\": n or \"every\": k; fix the file")
        return data
    test, pool = data.get("test"), data.get("pool")
    for name, ids in (("test", test), ("pool", pool)):
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids) or len(set(ids)) < len(ids):
            raise ContrastSegError(f"{path}: \"{name}\" must be a non-empty list of distinct case ids; fix the file")
    overlap = sorted(set(test) & set(pool))
    if overlap:
        raise ContrastSegError(f"{path}: case(s) {', '.join(overlap)} are both test and pool cases; fix the file")
    return data


def save_split_file(data: dict, path: str | os.PathLike) -> Path:
    """Write a split file atomically (e.g. the seeded split of a ``folder:`` dataset)."""
    path = Path(path)
    return write_text(json.dumps({"format": SPLIT_FILE_FORMAT, "version": SPLIT_FILE_VERSION, **data}, indent=2)
                      + "\n", path)


def resolve_split(data: Mapping[str, Any], cases: Mapping[str, bool], source: str, fix: str,
                  pool_limit: int | None = None) -> FixedSplit:
    """Test and pool ids of the split ``data`` for a copy whose cases are ``cases`` (id -> has a label).

    Listed ids the copy lacks are refused, naming them, with ``fix`` as the remedy; ``pool_limit`` keeps the first
    n pool ids (generated datasets). Without lists, ``test_rule`` picks the test ids from the labeled ids.
    """
    labeled = sorted(case for case, has_label in cases.items() if has_label)
    if "test_rule" in data:
        test = _rule_test_ids(data["test_rule"], labeled, source, fix)
        pool = sorted(set(cases) - set(test))
    else:
        listed = list(data["pool"])[:pool_limit] if pool_limit is not None else list(data["pool"])
        missing = sorted(set(data["test"]) - set(labeled)) + sorted(set(listed) - set(cases))
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise ContrastSegError(f"{source}: the copy lacks {len(missing)} case(s) of the fixed split "
                                   f"({shown}); {fix}")
        test, pool = sorted(data["test"]), sorted(listed)
    return FixedSplit(tuple(test), tuple(pool), tuple(case for case in pool if cases[case]))


def _rule_test_ids(rule: Mapping[str, Any], labeled: list[str], source: str, fix: str) -> list[str]:
    if rule.get("id_pattern"):
        odd = [case for case in labeled if not re.fullmatch(rule["id_pattern"], case)]
        if odd:
            raise ContrastSegError(f"{source}: case(s) {', '.join(odd[:5])} are not named like the official "
                                   f"release ({rule['id_pattern']}); {fix}")
    expected = rule.get("expected_cases")
    if expected is not None and len(labeled) != expected:
        raise ContrastSegError(f"{source}: {len(labeled)} labeled training case(s), the fixed split needs the "
                               f"official {expected}; {fix}")
    if rule.get("first"):
        if len(labeled) <= rule["first"]:
            raise ContrastSegError(f"{source}: {len(labeled)} labeled case(s), the split keeps {rule['first']} for "
                                   f"testing and needs more for training; {fix}")
        return labeled[:rule["first"]]
    return labeled[::rule["every"]]


def labeled_draw(split: FixedSplit, count: int, seed: int) -> tuple[str, ...]:
    """The first ``count`` ids of the seeded permutation of the labeled pool (nested in ``count``), sorted."""
    if not 1 <= count <= len(split.labeled_pool):
        raise ContrastSegError(f"--labeled {count}: the pool holds {len(split.labeled_pool)} labeled case(s); ask "
                               f"for 1 to {len(split.labeled_pool)}")
    order = np.random.default_rng(seed).permutation(len(split.labeled_pool))
    return tuple(sorted(split.labeled_pool[i] for i in order[:count]))


def library_split(dataset: Dataset, split: FixedSplit, train_labeled: tuple[str, ...], seed: int,
                  stage: str) -> Split:
    """The library split of one run: test cases kept out, ``train_labeled`` for fine-tuning (and the
    supervised-local stage), the rest of the pool unlabeled; refuses test ids among the training cases."""
    unlabeled = tuple(sorted(set(split.pool) - set(train_labeled)))
    result = Split(seed, {"train_labeled": train_labeled, "train_unlabeled": unlabeled, "validation": (),
                          "test": split.test}, dataset_fingerprint(dataset))
    check_not_test(result, train_labeled + unlabeled, stage)
    return result


def _positive(value: Any) -> bool:
    return type(value) is int and value > 0
