"""Invertible preprocessing: volume -> normalised square slices, and predictions back onto the original grid."""

from .pipeline import (
    PreparedVolume, labels_to_indices, preprocess_volume, restore_planes, restore_probabilities, to_volume_order,
)
from .record import PreprocessConfig, PreprocessRecord

__all__ = [
    "PreparedVolume", "PreprocessConfig", "PreprocessRecord", "labels_to_indices", "preprocess_volume",
    "restore_planes", "restore_probabilities", "to_volume_order",
]
