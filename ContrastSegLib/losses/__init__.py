"""Losses, one per module: the supervised segmentation loss (more arrive with the contrastive stages)."""

from .segmentation import DiceCrossEntropyLoss

__all__ = ["DiceCrossEntropyLoss"]
