"""Batched geometric augmentation on the training device: rotation, scaling, and (when asked) flips and elastic
warping.

Images and one-hot targets are warped by the same sampling grid, so labels move with the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..settings import FinetuneConfig, Flips


@dataclass(frozen=True)
class SpatialAugmentation:
    """rotation_deg: ± range; scale: (min, max); flip_horizontal / flip_vertical: random flips along the image's
    second / first axis; elastic_strength: largest displacement as a fraction of the image side (0 = off), on a
    ``elastic_grid``² grid of control points. The defaults are fine-tuning's (``FinetuneConfig``)."""

    rotation_deg: float = FinetuneConfig.rotation
    scale: tuple[float, float] = FinetuneConfig.scale_range
    flip_horizontal: bool = False
    flip_vertical: bool = False
    elastic_strength: float = FinetuneConfig.elastic
    elastic_grid: int = 5

    @classmethod
    def of(cls, config: FinetuneConfig) -> "SpatialAugmentation":
        """The geometric augmentation a fine-tuning config asks for."""
        return cls(config.rotation, tuple(config.scale_range), config.flips in (Flips.HORIZONTAL, Flips.BOTH),
                   config.flips in (Flips.VERTICAL, Flips.BOTH), config.elastic)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C_img, H, W) float; targets (B, C, H, W) one-hot -> both warped alike.

        Target pixels sampled from outside the image become background (channel 0); all-zero target vectors
        (pixels to ignore, e.g. unconfident pseudo-labels) stay all-zero."""
        grid = self.sampling_grid(images.shape, images.device, generator)
        warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        moved = F.grid_sample(targets, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        inside = F.grid_sample(torch.ones_like(targets[:, :1]), grid, mode="nearest", padding_mode="zeros",
                               align_corners=False)
        moved[:, :1] += 1.0 - inside
        return warped, moved

    def sampling_grid(self, shape: torch.Size, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """(B, H, W, 2) normalised sampling positions: affine part plus a smooth random displacement."""
        batch, _, height, width = shape

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(batch, device=device, generator=generator)

        angle = uniform(-self.rotation_deg, self.rotation_deg) * (math.pi / 180.0)
        scale = uniform(*self.scale)
        flips = torch.ones(batch, 2, device=device)
        allowed = torch.tensor([self.flip_horizontal, self.flip_vertical], device=device)
        if allowed.any():
            drawn = (torch.rand(batch, 2, device=device, generator=generator) < 0.5) & allowed
            flips = torch.where(drawn, -flips, flips)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos * flips[:, 0], -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos * flips[:, 1], torch.zeros_like(cos)], 1)], 1)
        grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
        if self.elastic_strength > 0:
            coarse = torch.rand(batch, 2, self.elastic_grid, self.elastic_grid, device=device, generator=generator)
            field = F.interpolate((2 * coarse - 1) * (2 * self.elastic_strength), size=(height, width),
                                  mode="bicubic", align_corners=True)
            grid = grid + field.permute(0, 2, 3, 1)
        return grid
