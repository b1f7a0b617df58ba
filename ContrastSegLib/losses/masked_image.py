"""Masked-image modelling loss: hide random square patches of each slice, reconstruct the slice, and score the
reconstruction on the hidden pixels only.

    L = Σ_{b,u} m_{b,u} (x̂_{b,u} − x_{b,u})² / Σ_{b,u} m_{b,u}

where x is the original slice, x̂ the network's reconstruction from the masked slice (1 − m) ⊙ x, and m = 1 on
hidden pixels. Visible pixels do not count: copying them through the skip connections teaches nothing.

Shape:
    patch_mask: (B, 1, H, W) float in {0, 1}, H and W multiples of ``patch``.
    masked_image_loss: reconstruction (B, 1, H, W), target (B, 1, H, W), mask (B, 1, H, W) -> scalar.

Example:
    >>> import torch
    >>> images = torch.rand(2, 1, 32, 32)
    >>> mask = patch_mask(images.shape, 8, 0.5, torch.Generator().manual_seed(0))
    >>> float(mask.mean())  # 8 of each slice's 16 patches hidden
    0.5
    >>> float(masked_image_loss(images, images, mask))  # a perfect reconstruction
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def patch_mask(shape: torch.Size, patch: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) mask hiding round(ratio × patches) randomly chosen ``patch`` × ``patch`` squares per slice (at
    least one, at least one left visible)."""
    batch, _, height, width = shape
    if height % patch or width % patch:
        raise ValueError(f"slices of {height}×{width} cannot be cut into {patch}×{patch} patches")
    rows, cols = height // patch, width // patch
    count = min(rows * cols - 1, max(1, round(ratio * rows * cols)))
    scores = torch.rand(batch, rows * cols, generator=generator, device=generator.device)
    hidden = torch.zeros_like(scores).scatter_(1, scores.argsort(1)[:, :count], 1.0)
    return F.interpolate(hidden.view(batch, 1, rows, cols), scale_factor=patch, mode="nearest")


def masked_image_loss(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden pixels (fp32 whatever the autocast dtype)."""
    squared = (reconstruction.float() - target.float()) ** 2
    return (squared * mask).sum() / mask.sum().clamp_min(1.0)
