"""Losses, one per module: the supervised segmentation loss and the global and local contrastive losses of
pre-training."""

from .global_contrastive import global_contrastive_loss
from .local_contrastive import local_contrastive_loss
from .segmentation import DiceCrossEntropyLoss

__all__ = ["DiceCrossEntropyLoss", "global_contrastive_loss", "local_contrastive_loss"]
