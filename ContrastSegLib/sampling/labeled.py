"""Labeled slices held as tensors on the training device, sampled uniformly in seeded random batches."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..preprocess import PreparedVolume


class LabeledSliceBank:
    """All slices of the labeled volumes: images (N, 1, P, P) float32, labels (N, P, P) uint8, on ``device``."""

    def __init__(self, volumes: Sequence[PreparedVolume], device: torch.device):
        if not volumes or any(v.label is None for v in volumes):
            raise ValueError("a labeled slice bank needs volumes that all carry labels")
        self.images = torch.from_numpy(np.concatenate([v.image for v in volumes])).unsqueeze(1).to(device)
        self.labels = torch.from_numpy(np.concatenate([v.label for v in volumes])).to(device)
        self.num_volumes = len(volumes)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_slices(self) -> int:
        return len(self)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch drawn with replacement: images (B, 1, P, P), labels (B, P, P)."""
        index = torch.randint(len(self), (batch_size,), device=self.images.device, generator=generator)
        return self.images[index], self.labels[index]
