"""Canonical orientation: a volume's array axes reordered and flipped, without resampling, so that its direction
matrix becomes the one closest to identity (the LPS frame, as ITK reads it).

Two files of one scan stored with different axis orders or signs then hold the same canonical array, so the
network sees the same anatomy whatever the storage. In the canonical (K, J, I) array, k runs towards superior,
j towards posterior and i towards the patient's left (each up to the residual rotation of an oblique scan), the
same frame as ``nibabel.as_closest_canonical`` gives in RAS.

Each ITK axis is matched to the physical axis of largest |cosine|: greedily, the largest |cosine| of the matrix
first, so that the matching is a permutation even for oblique directions; exact ties go to the lower physical axis,
then to the lower ITK axis.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..io.volume import Volume


@dataclass(frozen=True)
class Orientation:
    """How a stored (K, J, I) array becomes canonical: ``axis_order[m]`` is the stored array axis behind canonical
    array axis m, and canonical axis m is reversed where ``flipped[m]``. The default changes nothing."""

    axis_order: tuple[int, int, int] = (0, 1, 2)
    flipped: tuple[bool, bool, bool] = (False, False, False)

    @property
    def identity(self) -> bool:
        return self.axis_order == (0, 1, 2) and not any(self.flipped)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Stored (..., K, J, I) -> canonical (..., K', J', I'); leading axes are kept. A view where possible."""
        lead = array.ndim - 3
        moved = array.transpose(tuple(range(lead)) + tuple(lead + a for a in self.axis_order))
        return np.flip(moved, self._flipped_axes(lead))

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Canonical (..., K', J', I') -> stored (..., K, J, I), the inverse of :meth:`apply`."""
        lead = array.ndim - 3
        unflipped = np.flip(array, self._flipped_axes(lead))
        inverse = np.argsort(self.axis_order)
        return unflipped.transpose(tuple(range(lead)) + tuple(lead + int(a) for a in inverse))

    def shape(self, stored_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Canonical (K', J', I') shape of a stored (K, J, I) shape."""
        return tuple(int(stored_shape[a]) for a in self.axis_order)

    def spacing(self, spacing_ijk: tuple[float, float, float]) -> tuple[float, float, float]:
        """Canonical (i, j, k) spacing of a stored (i, j, k) spacing."""
        spacing_kji = tuple(spacing_ijk)[::-1]
        return tuple(float(spacing_kji[a]) for a in self.axis_order)[::-1]

    def _flipped_axes(self, lead: int) -> tuple[int, ...]:
        return tuple(lead + m for m, flip in enumerate(self.flipped) if flip)


def canonical_orientation(direction: tuple[float, ...]) -> Orientation:
    """The :class:`Orientation` that brings a volume of ``direction`` (9 cosines, row-major, ITK) closest to
    identity."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)  # column a: physical direction of ITK axis a
    strength = np.round(np.abs(matrix), 6)  # rounding: float noise must not decide between equal cosines
    physical = [0, 0, 0]  # physical axis matched to each ITK axis
    for _ in range(3):
        row, column = np.unravel_index(int(np.argmax(strength)), (3, 3))
        physical[column] = int(row)
        strength[row, :] = -1.0
        strength[:, column] = -1.0
    # Canonical array axis m is canonical ITK axis 2 - m, i.e. physical axis 2 - m; stored ITK axis a is array 2 - a.
    itk_axis = [physical.index(2 - m) for m in range(3)]
    axis_order = tuple(2 - a for a in itk_axis)
    flipped = tuple(bool(matrix[2 - m, a] < 0) for m, a in enumerate(itk_axis))
    return Orientation(axis_order, flipped)


def reorient(volume: Volume, orientation: Orientation) -> Volume:
    """``volume`` with its array in ``orientation``'s canonical order and the geometry that keeps every voxel at the
    same physical point (spacing and direction columns permuted, origin at the new first voxel)."""
    if orientation.identity:
        return volume
    matrix = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)
    origin = np.asarray(volume.origin, dtype=np.float64)
    columns = []
    for m, (stored, flip) in enumerate(zip(orientation.axis_order, orientation.flipped)):
        itk = 2 - stored
        if flip:
            origin = origin + matrix[:, itk] * volume.spacing[itk] * (volume.array.shape[stored] - 1)
        columns.append(-matrix[:, itk] if flip else matrix[:, itk])
    direction = np.stack(columns[::-1], axis=1)  # canonical ITK axis b is canonical array axis 2 - b
    return replace(volume, array=np.ascontiguousarray(orientation.apply(volume.array)),
                   spacing=orientation.spacing(volume.spacing), origin=tuple(float(o) for o in origin),
                   direction=tuple(float(d) for d in direction.ravel()))


def canonical_spacing(volume: Volume) -> tuple[float, float, float]:
    """(i, j, k) spacing of ``volume`` once canonically oriented (what the default slice axis is chosen from)."""
    return canonical_orientation(volume.direction).spacing(volume.spacing)
