"""Network over preprocessed slices: batched forward passes to class probabilities, optionally averaged over
test-time flips (only those the model was trained with: a model that never saw a flipped slice is not asked to
segment one)."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from monai.metrics import compute_dice
from torch import nn

from ..models import evaluating
from ..runtime.precision import ExecutionPlan
from ..settings import Flips

Flipped = tuple[tuple[int, ...], ...]  # the dims of a (B, C, H, W) tensor flipped in each copy; () = as is
NO_FLIPS: Flipped = ((),)
TRAINING_FLIPS: dict[str, Flipped] = {Flips.NONE: NO_FLIPS, Flips.HORIZONTAL: ((), (3,)), Flips.VERTICAL: ((), (2,)),
                                      Flips.BOTH: ((), (3,), (2,), (2, 3))}


def batched_probabilities(model: nn.Module, slices: np.ndarray, plan: ExecutionPlan, batch_size: int = 32,
                          flips: Flipped = NO_FLIPS) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (first slice index, (B, C, P, P) float32 softmax probabilities on the plan's device) for batches of the
    (S, P, P) float32 ``slices``: the mean over the ``flips`` copies. The model runs in eval mode."""
    with evaluating(model):
        for start in range(0, slices.shape[0], batch_size):
            batch = torch.from_numpy(slices[start:start + batch_size]).unsqueeze(1).to(plan.device)
            if plan.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            total = None
            for dims in flips:
                with torch.no_grad(), plan.autocast():
                    logits = model(batch.flip(dims) if dims else batch)
                probabilities = torch.softmax(logits.float(), dim=1)
                probabilities = probabilities.flip(dims) if dims else probabilities
                total = probabilities if total is None else total + probabilities
            yield start, total / len(flips)


def normalised_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) class probabilities -> (B, H, W) entropy / log C, in [0, 1] (0: one class certain)."""
    clipped = probabilities.float().clamp_min(1e-8)
    return -(clipped * clipped.log()).sum(1) / math.log(probabilities.shape[1])


def slice_probabilities(model: nn.Module, slices: np.ndarray, plan: ExecutionPlan, batch_size: int = 32,
                        flips: Flipped = NO_FLIPS) -> torch.Tensor:
    """(S, P, P) float32 images -> (S, C, P, P) float32 softmax probabilities on the plan's device."""
    return torch.cat([probabilities for _, probabilities in
                      batched_probabilities(model, slices, plan, batch_size, flips)])


def foreground_dice(prediction: np.ndarray, reference: np.ndarray, num_classes: int) -> float:
    """Mean Dice (MONAI) over the foreground classes of two class-index arrays of equal shape; a class absent
    from both counts as 1."""
    def one_hot(indices: np.ndarray) -> torch.Tensor:
        return nn.functional.one_hot(torch.from_numpy(indices.astype(np.int64)), num_classes).movedim(-1, 0)[None]

    scores = compute_dice(one_hot(prediction), one_hot(reference), include_background=False, ignore_empty=False)
    return float(scores.mean())
