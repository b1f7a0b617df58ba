"""Labeled slices held as tensors on the training device, sampled in seeded random batches.

Two choices shape a batch:
- **which slices**: uniformly from all slices, except a ``structure_share`` of each batch, drawn from the slices
  that hold a structure: the structure chosen uniformly among those present (so a rare one is drawn as often as a
  common one), then one of its slices uniformly;
- **which window**: where the slices are larger than ``patch`` (scans wider than the training side), a patch of that
  side, centred on a random pixel of the slice's foreground box (``FOREGROUND_PATCHES`` of the time, when the slice
  has foreground) or anywhere in the slice; otherwise the whole slice.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..preprocess import PreparedVolume

FOREGROUND_PATCHES = 2 / 3  # share of patches centred in the labeled structures' box (the rest anywhere)


class LabeledSliceBank:
    """All slices of the labeled volumes: images (N, 1, P, P) float32, labels (N, P, P) uint8, on ``device``;
    batches of (``patch``, ``patch``) windows (None: the whole P × P slice). ``num_classes``: the classes whose
    slices a ``structure_share`` draws from (class indices 1..num_classes-1; default: up to the largest label)."""

    def __init__(self, volumes: Sequence[PreparedVolume], device: torch.device, patch: int | None = None,
                 structure_share: float = 0.0, num_classes: int | None = None):
        if not volumes or any(v.label is None for v in volumes):
            raise ValueError("a labeled slice bank needs volumes that all carry labels")
        self.images = torch.from_numpy(np.concatenate([v.image for v in volumes])).unsqueeze(1).to(device)
        self.labels = torch.from_numpy(np.concatenate([v.label for v in volumes])).to(device)
        self.num_volumes = len(volumes)
        self.side = self.images.shape[-1]
        self.structure_share = structure_share
        self._structure_slices, self._structure_count = (_slices_of_each_structure(self.labels, num_classes)
                                                         if structure_share else (None, None))
        self.patch = self.side if patch is None else min(patch, self.side)
        self._boxes = _foreground_boxes(self.labels) if self.patch < self.side else None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_slices(self) -> int:
        return len(self)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch drawn with replacement: images (B, 1, p, p), labels (B, p, p), p = ``patch``."""
        index = self._draw_slices(batch_size, generator)
        if self.patch == self.side:
            return self.images[index], self.labels[index]
        rows, cols = self._windows(index, generator)  # (B, p, 1), (B, 1, p)
        return self.images[index[:, None, None], 0, rows, cols].unsqueeze(1), self.labels[index[:, None, None],
                                                                                          rows, cols]

    def _draw_slices(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(B,) slice indices: uniform, the structure share from the slices of a uniformly chosen structure."""
        device = self.images.device
        index = torch.randint(len(self), (batch_size,), device=device, generator=generator)
        focused = round(batch_size * self.structure_share) if self._structure_count is not None else 0
        if focused:
            structure = torch.randint(len(self._structure_count), (focused,), device=device, generator=generator)
            count = self._structure_count[structure]
            position = (torch.rand(focused, device=device, generator=generator) * count).long().clamp(max=count - 1)
            index[:focused] = self._structure_slices[structure, position]
        return index

    def _windows(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column indices of each drawn slice's window: (B, p, 1) and (B, 1, p)."""
        device, count, half = index.device, index.shape[0], self.patch // 2
        low, high = self._boxes[index, :2], self._boxes[index, 2:]  # (B, 2): first and last foreground row, col
        anywhere = torch.rand((count, 2), device=device, generator=generator) * self.side
        inside = low + torch.rand((count, 2), device=device, generator=generator) * (high - low + 1)
        around = (torch.rand(count, device=device, generator=generator) < FOREGROUND_PATCHES) & (high[:, 0] >= 0)
        centre = torch.where(around[:, None], inside, anywhere).long()
        corner = (centre - half).clamp(0, self.side - self.patch)  # (B, 2)
        steps = torch.arange(self.patch, device=device)
        return (corner[:, 0, None] + steps)[:, :, None], (corner[:, 1, None] + steps)[:, None, :]


def _slices_of_each_structure(labels: torch.Tensor, num_classes: int | None
                              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(C', L) slice indices of each structure present (background and other values excluded; rows padded with
    their first entry) and (C',) their counts; (None, None) when no slice holds a structure."""
    classes = range(1, int(labels.max()) + 1 if num_classes is None else num_classes)
    holding = [torch.nonzero((labels == c).flatten(1).any(1)).flatten() for c in classes]
    holding = [h for h in holding if len(h)]
    if not holding:
        return None, None
    longest = max(len(h) for h in holding)
    table = torch.stack([torch.cat([h, h[:1].expand(longest - len(h))]) for h in holding])
    return table, torch.tensor([len(h) for h in holding], device=labels.device)


def _foreground_boxes(labels: torch.Tensor) -> torch.Tensor:
    """(N, 4) float: first row, first col, last row, last col of each slice's foreground; -1 where it has none."""
    rows, cols = (labels > 0).any(2), (labels > 0).any(1)  # (N, P) each
    side = labels.shape[-1]
    first = torch.stack([rows.float().argmax(1), cols.float().argmax(1)], 1)
    last = side - 1 - torch.stack([rows.flip(1).float().argmax(1), cols.flip(1).float().argmax(1)], 1)
    empty = ~rows.any(1)
    boxes = torch.cat([first, last], 1).float()
    boxes[empty] = -1.0
    return boxes
