"""Batched, seeded augmentation on the training device: geometric (images and labels alike), intensity-only, and
paired views for the contrastive stages."""

from .intensity import IntensityAugmentation
from .spatial import SpatialAugmentation
from .views import CropResize, GlobalViews, IntensityViews

__all__ = ["CropResize", "GlobalViews", "IntensityAugmentation", "IntensityViews", "SpatialAugmentation"]
