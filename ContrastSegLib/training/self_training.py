"""Self-training: the current model labels the unlabeled slices; its most confident pixels of each class become
extra training targets, in batches that keep a fixed share of labeled slices.

Pseudo-label maps hold the class index where the model's confidence reaches its class's threshold and ``IGNORE``
(255) elsewhere. Ignored pixels get an all-zero target vector, which augmentation keeps (only pixels from outside the
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
QUANTILE_SAMPLE = 1 << 22  # torch.quantile takes at most 2^24 values; a class's quantile is taken on a sample


def pseudo_label(model: nn.Module, volumes: Sequence[PreparedVolume], plan: ExecutionPlan,
                 keep: float) -> list[PreparedVolume]:
    """The volumes with (S, P, P) uint8 pseudo-labels: the argmax class where the model is among its most
    confident ``keep`` share for that class, else ``IGNORE``.

    The threshold is relative to the model's own confidence, per class: for class c, the (1 − keep) quantile of
    the confidence over all pixels of all ``volumes`` predicted as c (``keep`` 1: the argmax everywhere, as
    Chaitanya et al. 2020). A fixed absolute threshold would keep almost nothing of a structure the model is
    still unsure of, and almost everything of the background."""
    if keep >= 1:  # the default: nothing to rank, so no confidence is kept across volumes
        return [replace(v, label=slice_probabilities(model, v.image, plan).max(1).indices.to(torch.uint8)
                        .cpu().numpy()) for v in volumes]
    predictions = []
    for volume in volumes:
        confidence, classes = slice_probabilities(model, volume.image, plan).max(1)
        predictions.append((confidence.cpu(), classes.cpu()))
    thresholds = class_thresholds(predictions, keep)
    labelled = []
    for volume, (confidence, classes) in zip(volumes, predictions):
        kept = confidence >= thresholds[classes.long()]
        labels = torch.where(kept, classes, torch.full_like(classes, IGNORE))
        labelled.append(replace(volume, label=labels.to(torch.uint8).numpy()))
    return labelled


def class_thresholds(predictions: Sequence[tuple[torch.Tensor, torch.Tensor]], keep: float) -> torch.Tensor:
    """(confidence, argmax class) pairs of equal shapes -> (C,) the (1 − keep) confidence quantile of each class
    over its pixels (on a seeded sample of ``QUANTILE_SAMPLE`` of them for a larger class; never predicted: 0)."""
    confidence = torch.cat([c.flatten() for c, _ in predictions]).float()
    classes = torch.cat([k.flatten() for _, k in predictions]).long()
    thresholds = torch.zeros(int(classes.max()) + 1)
    generator = torch.Generator().manual_seed(0)
    for c in classes.unique().tolist():
        values = confidence[classes == c]
        if len(values) > QUANTILE_SAMPLE:
            values = values[torch.randint(len(values), (QUANTILE_SAMPLE,), generator=generator)]
        thresholds[c] = torch.quantile(values, 1 - keep)
    return thresholds


def labeled_share_of(batch_size: int, share: float) -> int:
    """Slices of a self-training batch drawn from the labeled volumes: ``share`` of it, at least one, and at least
    one left for the pseudo-labeled ones (a batch of 1 stays labeled)."""
    return batch_size if batch_size == 1 else min(batch_size - 1, max(1, round(share * batch_size)))


def one_hot_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, P, P) class indices (``IGNORE`` allowed) -> (B, C, P, P) float one-hot, all-zero at ignored pixels."""
    known = labels != IGNORE
    one_hot = F.one_hot(torch.where(known, labels, torch.zeros_like(labels)).long(), num_classes)
    return (one_hot * known.unsqueeze(-1)).permute(0, 3, 1, 2).float()
