"""Self-training: the current model labels the unlabeled slices; confident pixels become extra training targets.

Pseudo-label maps hold the class index where the model's probability reaches the threshold and ``IGNORE`` (255)
elsewhere. Ignored pixels get an all-zero target vector, which augmentation keeps (only pixels from outside the
image become background) and the loss leaves out (its pixel weights are the target sums).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..inference.slices import slice_probabilities
from ..preprocess import PreparedVolume
from ..runtime.precision import ExecutionPlan

IGNORE = 255


def pseudo_label(model: nn.Module, volumes: Sequence[PreparedVolume], plan: ExecutionPlan,
                 threshold: float) -> list[PreparedVolume]:
    """The volumes with (S, P, P) uint8 pseudo-labels: argmax class where its probability ≥ ``threshold``, else
    ``IGNORE``."""
    labelled = []
    for volume in volumes:
        confidence, classes = slice_probabilities(model, volume.image, plan).max(1)
        labels = torch.where(confidence >= threshold, classes, torch.full_like(classes, IGNORE))
        labelled.append(replace(volume, label=labels.to(torch.uint8).cpu().numpy()))
    return labelled


def one_hot_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, P, P) class indices (``IGNORE`` allowed) -> (B, C, P, P) float one-hot, all-zero at ignored pixels."""
    known = labels != IGNORE
    one_hot = F.one_hot(torch.where(known, labels, torch.zeros_like(labels)).long(), num_classes)
    return (one_hot * known.unsqueeze(-1)).permute(0, 3, 1, 2).float()
