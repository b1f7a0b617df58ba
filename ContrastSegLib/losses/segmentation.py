"""Supervised segmentation loss of fine-tuning: soft Dice over all classes (background included, as the paper's
code does) plus cross-entropy, on one-hot, Mixup-softened or partly ignored targets.

Pixel weights are the target sums: 1 for a labeled pixel, 0 for an ignored one (an all-zero target vector, e.g. an
unconfident pseudo-label), in between after Mixup with an ignored pixel. Dice is MONAI's masked Dice on the softmax
probabilities; cross-entropy is −Σ_c t_c log p_c averaged with the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss
from torch import nn


class DiceCrossEntropyLoss(nn.Module):
    """logits (B, C, H, W), targets (B, C, H, W) class probabilities (one-hot, mixed, or all-zero = ignore) ->
    scalar. ``ce_weight`` 0 gives the paper's pure Dice loss. Computed in fp32 whatever the autocast dtype."""

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0):
        super().__init__()
        if ce_weight < 0 or dice_weight <= 0:
            raise ValueError("loss weights must be non-negative, the Dice weight positive")
        self.ce_weight, self.dice_weight = ce_weight, dice_weight
        self.dice = MaskedDiceLoss(include_background=True, softmax=False, smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits, targets = logits.float(), targets.float()
        weights = targets.sum(1, keepdim=True)  # (B, 1, H, W)
        log_probabilities = F.log_softmax(logits, dim=1)
        dice = self.dice(log_probabilities.exp(), targets, mask=weights)
        cross_entropy = -(targets * log_probabilities).sum() / weights.sum().clamp_min(1e-6)
        return self.dice_weight * dice + self.ce_weight * cross_entropy
