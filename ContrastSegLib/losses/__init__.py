"""Losses, one per module: the supervised segmentation loss, the contrastive losses of pre-training (global,
local and supervised local) and the masked-image reconstruction loss."""

from .global_contrastive import global_contrastive_loss
from .local_contrastive import local_contrastive_loss
from .masked_image import masked_image_loss, patch_mask
from .segmentation import DiceCrossEntropyLoss
from .supervised_local_contrastive import supervised_local_contrastive_loss

__all__ = ["DiceCrossEntropyLoss", "global_contrastive_loss", "local_contrastive_loss", "masked_image_loss",
           "patch_mask", "supervised_local_contrastive_loss"]
