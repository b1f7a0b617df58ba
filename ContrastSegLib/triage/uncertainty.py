"""Uncertainty inside what a model predicted: each structure with a one-voxel border around it.

The entropy map is the predictor's (entropy / log C of the class probabilities, 0 = certain, 1 = uniform). A
structure's *region* is its predicted voxels dilated by one voxel (6-neighbourhood), so the boundary the model
hesitates over counts even where it left it out. Background far from any structure does not dilute the figure.

Shape: label (K, J, I) label values or class indices; entropy (K, J, I) float in [0, 1].

Example:
    >>> import numpy as np
    >>> label = np.zeros((1, 5, 5), np.uint8); label[0, 2, 2] = 1
    >>> entropy = np.zeros((1, 5, 5), np.float32); entropy[0, 2, 3] = 0.9
    >>> u = structure_uncertainty(label, entropy, [1])[1]
    >>> (u.voxels, u.region_voxels, u.uncertain, round(u.mean_entropy, 3))
    (1, 5, 1, 0.18)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

UNCERTAIN_ENTROPY = 0.5  # normalised entropy above which a voxel counts as uncertain (2 classes: p_max < 0.89)
_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class StructureUncertainty:
    """voxels: predicted voxels of the structure; region_voxels: with the one-voxel border; uncertain: region
    voxels above ``UNCERTAIN_ENTROPY``; mean_entropy: over the region (NaN when nothing was predicted)."""

    voxels: int
    region_voxels: int
    uncertain: int
    mean_entropy: float

    @property
    def uncertain_share(self) -> float:
        """Uncertain region voxels per predicted voxel, at most 1 (1 when nothing was predicted)."""
        return 1.0 if self.voxels == 0 else min(1.0, self.uncertain / self.voxels)


def _region(mask: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """(bounding box grown by one voxel, the dilated mask inside it), or None for an empty mask."""
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found or found[0] is None:
        return None
    box = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(found[0], mask.shape))
    return box, ndimage.binary_dilation(mask[box], _NEIGHBOURS)


def structure_uncertainty(label: np.ndarray, entropy: np.ndarray,
                          values: Sequence[int]) -> dict[int, StructureUncertainty]:
    """{value: StructureUncertainty} for each of ``values`` (the structures, background left out)."""
    if label.shape != entropy.shape:
        raise ValueError(f"label shape {label.shape} differs from the entropy map's {entropy.shape}")
    result = {}
    for value in values:
        mask = label == value
        found = _region(mask)
        if found is None:
            result[int(value)] = StructureUncertainty(0, 0, 0, float("nan"))
            continue
        box, region = found
        inside = entropy[box][region]
        result[int(value)] = StructureUncertainty(int(mask[box].sum()), int(region.sum()),
                                                  int((inside > UNCERTAIN_ENTROPY).sum()), float(inside.mean()))
    return result


def foreground_uncertainty(label: np.ndarray, entropy: np.ndarray, background: int = 0) -> float:
    """Mean entropy over every predicted structure and its one-voxel border; NaN when nothing was predicted."""
    found = _region(label != background)
    if found is None:
        return float("nan")
    box, region = found
    return float(entropy[box][region].mean())
