"""Greedy k-center coverage over slices, picking whole volumes (Sener & Savarese 2018, at the volume level).

Every slice s of every candidate volume has an embedding e_s. The *centres* are the slices of the volumes already
labeled or already picked; d(s) = min over centres c of ||e_s − e_c|| is how far slice s lies from anything a
reader has annotated. Each pick is the eligible volume holding the slice with the largest d(s) (the slice worst
covered), so the picks span the cohort's variation instead of clustering; its slices become centres.

With nothing labeled there is no centre yet: the first pick is the most representative volume, the 1-median of the
slices (the volume whose slices leave the smallest mean distance from every slice to its nearest one; measured on
at most ``PROBES`` evenly spaced slices), so in a cohort of two kinds of scan it is one of the majority; coverage
continues from it.

Shape: embeddings (N, D) float (N slices of all volumes); owners (N,) int volume index of each slice.

Example (three clusters of one-slice volumes; the middle one the most representative):
    >>> import numpy as np
    >>> points = np.array([[0, 0], [0.1, 0], [5, 5], [5.1, 5], [0, 9], [0.1, 9]], float)
    >>> [p.volume for p in greedy_k_center(points, np.arange(6), count=3)]
    [2, 0, 4]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

PROBES = 4096  # slices the first pick's mean distance is measured on


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


def _worst_per_volume(distance: np.ndarray, owners: np.ndarray, volumes: int) -> np.ndarray:
    """(volumes,) the largest ``distance`` (N,) among each volume's slices."""
    result = np.full(volumes, -np.inf)
    np.maximum.at(result, owners, distance)
    return result


def most_representative(embeddings: np.ndarray, owners: np.ndarray, candidates: Sequence[int]) -> int:
    """The candidate volume whose slices leave the smallest mean distance from the (probe) slices to their nearest
    slice in it (ties: the lower index)."""
    probes = embeddings[::max(1, embeddings.shape[0] // PROBES)]
    cost = {v: float(_distances_to(probes, embeddings[owners == v]).mean()) for v in candidates}
    return min(candidates, key=lambda v: (cost[v], v))


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
        if not np.isfinite(distance).any():  # nothing covered yet: the most representative volume first
            volume, reached = most_representative(embeddings, owners, candidates), np.nan
        else:
            worst = _worst_per_volume(distance, owners, volumes)
            volume = min(candidates, key=lambda v: (-float(worst[v]), v))
            reached = float(worst[volume])
        new = _distances_to(embeddings, embeddings[owners == volume])
        covered = float((new < distance).mean())
        distance = np.minimum(distance, new)
        candidates.remove(volume)
        picks.append(Pick(volume, reached, covered, float(distance.max())))
    return picks
