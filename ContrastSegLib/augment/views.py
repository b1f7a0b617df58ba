"""Pairs of augmented views for the contrastive stages, batched on the training device and seeded.

The global stage compares whole-image embeddings, so its views may differ geometrically (crop and resize). The local
stage compares feature-map regions location by location, so its views change intensities only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .intensity import IntensityAugmentation


def _uniform(shape: tuple[int, ...], low: float, high: float, device: torch.device,
             generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


@dataclass(frozen=True)
class CropResize:
    """Random square crop whose side is a fraction in ``scale`` of the image side (e.g. (0.7, 1.0)), at a random
    position inside the image, resized back to the full size with bilinear interpolation."""

    scale: tuple[float, float] = (0.7, 1.0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W); one crop per image."""
        theta = self.crop_transform(images.shape[0], images.device, generator)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def crop_transform(self, batch: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """(B, 2, 3) affine maps from output to input normalised coordinates: x_in = f·x_out + centre."""
        fraction = _uniform((batch,), *self.scale, device, generator)  # side of the crop / side of the image
        # Normalised coordinates span [-1, 1]; a crop of half-width f stays inside when |centre| <= 1 - f.
        centre = (2 * torch.rand(batch, 2, device=device, generator=generator) - 1) * (1 - fraction)[:, None]
        zero = torch.zeros_like(fraction)
        return torch.stack([torch.stack([fraction, zero, centre[:, 0]], 1),
                            torch.stack([zero, fraction, centre[:, 1]], 1)], 1)


@dataclass(frozen=True)
class GlobalViews:
    """Two views x̂, x̃ of each image for the global stage: an independent crop-resize, then brightness/contrast."""

    crop: CropResize = CropResize()
    intensity: IntensityAugmentation = IntensityAugmentation(brightness=0.2, contrast=(0.7, 1.3))

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> two (B, C, H, W) views."""
        first = self.intensity(self.crop(images, generator), generator)
        second = self.intensity(self.crop(images, generator), generator)
        return first, second


@dataclass(frozen=True)
class IntensityViews:
    """Two intensity-only views for the local stage (pixel u corresponds in both views).

    Each view applies a random gamma x ** γ with γ uniform in ``gamma`` (on images in [0, 1], clamped to ≥ 0 first),
    then brightness/contrast, then optional Gaussian noise of standard deviation ``noise_std`` (0 = off). Without
    noise the transform is monotone per image, so the rank order of the pixels is kept.
    """

    gamma: tuple[float, float] = (0.7, 1.5)
    intensity: IntensityAugmentation = IntensityAugmentation(brightness=0.1, contrast=(0.8, 1.2))
    noise_std: float = 0.0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> two (B, C, H, W) views of unchanged geometry."""
        return self.view(images, generator), self.view(images, generator)

    def view(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) -> one augmented view; one γ, shift and factor per image."""
        gamma = _uniform((images.shape[0], 1, 1, 1), *self.gamma, images.device, generator)
        view = self.intensity(images.clamp(min=0.0) ** gamma, generator)
        if self.noise_std > 0:
            view = view + self.noise_std * torch.randn(images.shape, device=images.device, generator=generator)
        return view
