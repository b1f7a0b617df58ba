"""Invertible preprocessing: volume -> normalised square slices, and predictions back onto the original grid."""

from .pipeline import (
    PreparedVolume, labels_to_indices, preprocess_volume, restore_planes, restore_probabilities, to_volume_order,
)
from .orientation import Orientation, canonical_orientation, canonical_spacing, reorient
from .record import PreprocessRecord
from .resolve import (
    CROP_FROM_DATA, inherited_preprocessing, median_plane_spacing, resolve_preprocessing, whole_slice_side,
)

__all__ = [
    "CROP_FROM_DATA", "Orientation", "PreparedVolume", "PreprocessRecord", "canonical_orientation",
    "canonical_spacing", "inherited_preprocessing", "labels_to_indices", "median_plane_spacing", "preprocess_volume", "reorient", "resolve_preprocessing",
    "restore_planes", "restore_probabilities", "to_volume_order", "whole_slice_side",
]
