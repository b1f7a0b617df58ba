"""Supervised segmentation loss of fine-tuning: soft Dice over all classes (background included, as the paper's
code does) plus cross-entropy, both from MONAI, on one-hot (or Mixup-softened) targets."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import nn


class DiceCrossEntropyLoss(nn.Module):
    """logits (B, C, H, W), targets (B, C, H, W) class probabilities (one-hot or mixed) -> scalar.

    ``ce_weight`` 0 gives the paper's pure Dice loss. Computed in fp32 whatever the autocast dtype.
    """

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        if ce_weight < 0 or dice_weight <= 0:
            raise ValueError("loss weights must be non-negative, the Dice weight positive")
        self.loss = DiceCELoss(include_background=True, softmax=True, to_onehot_y=False, lambda_dice=dice_weight,
                               lambda_ce=ce_weight, smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(logits.float(), targets.float())
