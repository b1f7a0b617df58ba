"""Invertible preprocessing: volume -> normalised square slices, and predictions back onto the original grid."""

from .pipeline import (
    PreparedVolume, labels_to_indices, preprocess_volume, restore_planes, restore_probabilities, to_volume_order,
)
from .record import PreprocessRecord
from .resolve import median_plane_spacing, resolve_preprocessing

__all__ = [
    "PreparedVolume", "PreprocessRecord", "labels_to_indices", "median_plane_spacing", "preprocess_volume",
    "resolve_preprocessing", "restore_planes", "restore_probabilities", "to_volume_order",
]
