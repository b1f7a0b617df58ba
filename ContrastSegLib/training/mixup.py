"""Mixup (Zhang et al. 2018) for segmentation: convex mixes of image pairs and of their one-hot label maps."""

from __future__ import annotations

import numpy as np
import torch


def mixup(images: torch.Tensor, targets: torch.Tensor, alpha: float, rng: np.random.Generator,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, C_img, H, W), targets (B, C, H, W) -> mixed pairs; one λ ~ Beta(α, α) per image (from ``rng``),
    partner drawn by a random permutation of the batch (from ``generator``)."""
    batch = images.shape[0]
    lam = torch.as_tensor(rng.beta(alpha, alpha, size=batch), dtype=images.dtype, device=images.device)
    lam = lam.view(batch, 1, 1, 1)
    partner = torch.randperm(batch, device=images.device, generator=generator)
    return lam * images + (1 - lam) * images[partner], lam * targets + (1 - lam) * targets[partner]
