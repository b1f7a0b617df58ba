"""Batched, seeded augmentation on the training device: geometric (images and labels alike) and intensity-only."""

from .intensity import IntensityAugmentation
from .spatial import SpatialAugmentation

__all__ = ["IntensityAugmentation", "SpatialAugmentation"]
