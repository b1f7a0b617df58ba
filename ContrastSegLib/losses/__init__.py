"""Losses, one per module: the supervised segmentation loss and the contrastive losses of pre-training (global,
local and supervised local)."""

from .global_contrastive import global_contrastive_loss
from .local_contrastive import local_contrastive_loss
from .segmentation import DiceCrossEntropyLoss
from .supervised_local_contrastive import supervised_local_contrastive_loss

__all__ = ["DiceCrossEntropyLoss", "global_contrastive_loss", "local_contrastive_loss",
           "supervised_local_contrastive_loss"]
