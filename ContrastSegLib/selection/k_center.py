"""Greedy k-center coverage over slices, picking whole volumes (Sener & Savarese 2018, at the volume level).

Every slice s of every candidate volume has an embedding e_s. The *centres* are the slices of the volumes already
labeled or already picked; d(s) = min over centres c of ||e_s − e_c|| is how far slice s lies from anything a
reader has annotated. Each pick is the eligible volume holding the slice with the largest d(s) (the slice worst
covered), so the picks span the cohort's variation instead of clustering; its slices become centres.

With nothing labeled there is no centre yet: the first pick is the most typical volume, the one whose slices lie
closest (on average) to the mean embedding of all slices, and coverage continues from it.

Shape: embeddings (N, D) float (N slices of all volumes); owners (N,) int volume index of each slice.

Example (three clusters of one-slice volumes; the middle one typical):
    >>> import numpy as np
    >>> points = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5], [0, 9], [0.1, 9]], float)
    >>> [p.volume for p in greedy_k_center(points, np.arange(6), count=3)]
    [2, 0, 4]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Pick:
    """volume: index of the picked volume; distance: d of its worst-covered slice when picked (NaN for a first pick
    with nothing labeled); covered_share: share of all candidate slices that now lie nearer to it than to any
    earlier centre; radius_after: the largest d(s) left once it is a centre."""

    volume: int
    distance: float
    covered_share: float
    radius_after: float


def _distances_to(embeddings: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(N,) Euclidean distance of every row of ``embeddings`` to its nearest row of ``centres`` (M, D), in blocks
    of centres small enough that an (N, block) matrix stays near 128 MB."""
    best = np.full(embeddings.shape[0], np.inf)
    squared = (embeddings ** 2).sum(1)
    block_rows = max(1, 2 ** 24 // max(1, embeddings.shape[0]))
    for start in range(0, centres.shape[0], block_rows):
        block = centres[start:start + block_rows]
        d2 = squared[:, None] - 2.0 * embeddings @ block.T + (block ** 2).sum(1)[None, :]
        best = np.minimum(best, d2.min(1))
    return np.sqrt(np.maximum(best, 0.0))


def _per_volume(values: np.ndarray, owners: np.ndarray, volumes: int, reduce: str) -> np.ndarray:
    """(volumes,) max or mean of ``values`` (N,) over each volume's slices."""
    if reduce == "max":
        result = np.full(volumes, -np.inf)
        np.maximum.at(result, owners, values)
        return result
    slices = np.maximum(np.bincount(owners, minlength=volumes), 1)
    return np.bincount(owners, weights=values, minlength=volumes) / slices


def greedy_k_center(embeddings: np.ndarray, owners: np.ndarray, count: int,
                    labeled: np.ndarray | None = None, eligible: Sequence[int] | None = None) -> list[Pick]:
    """Pick ``count`` volumes among ``eligible`` (default: every owner not in ``labeled``).

    ``labeled`` (M, D): embeddings of the already-labeled volumes' slices (centres from the start; None or empty:
    none). Ties go to the lower volume index, so the result is deterministic."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    owners = np.asarray(owners)
    candidates = sorted(set(owners.tolist()) if eligible is None else set(eligible))
    if count > len(candidates):
        raise ValueError(f"count {count} exceeds the {len(candidates)} eligible volumes")
    has_labeled = labeled is not None and len(labeled) > 0
    distance = (_distances_to(embeddings, np.asarray(labeled, dtype=np.float64)) if has_labeled
                else np.full(owners.shape[0], np.inf))
    picks: list[Pick] = []
    volumes = int(owners.max()) + 1
    for _ in range(count):
        if not np.isfinite(distance).any():  # nothing covered yet: the most typical volume first
            closeness = _per_volume(np.linalg.norm(embeddings - embeddings.mean(0), axis=1), owners, volumes, "mean")
            volume = min(candidates, key=lambda v: (float(closeness[v]), v))
            reached = np.nan
        else:
            worst = _per_volume(distance, owners, volumes, "max")
            volume = min(candidates, key=lambda v: (-float(worst[v]), v))
            reached = float(worst[volume])
        new = _distances_to(embeddings, embeddings[owners == volume])
        covered = float((new < distance).mean())
        distance = np.minimum(distance, new)
        candidates.remove(volume)
        picks.append(Pick(volume, reached, covered, float(distance.max())))
    return picks
