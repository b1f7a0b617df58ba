"""Pools of training volumes for the stages that read images without their labels (pre-training, self-training)."""

from __future__ import annotations

import os
from typing import Sequence

from ..errors import ContrastSegError
from .discovery import Case, discover
from .splits import cases_in, check_not_test, load_split


def unlabeled_cases(sources: Sequence[str | os.PathLike], split: str | os.PathLike | None = None,
                    channel: int | None = None) -> list[Case]:
    """Every volume of ``sources`` (labels ignored); with ``split``, only its training cases (labeled and
    unlabeled) — validation and test volumes never enter pre-training. ``channel``: as in ``discover``."""
    cases: list[Case] = []
    loaded = load_split(split) if split is not None else None
    for source in sources:
        dataset = discover(source, channel=channel)
        if loaded is not None:
            training = cases_in(dataset, loaded, "train_labeled").cases + cases_in(dataset, loaded,
                                                                                    "train_unlabeled").cases
            check_not_test(loaded, training, stage="pre-training")
            cases += list(training)
        else:
            cases += list(dataset.cases)
    ids = [case.id for case in cases]
    if len(set(ids)) != len(ids):
        raise ContrastSegError(f"{', '.join(map(str, sources))}: two volumes share a case name; rename one")
    return cases
