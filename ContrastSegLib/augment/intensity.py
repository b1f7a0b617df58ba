"""Batched intensity augmentation: per-image brightness shift and contrast scaling (geometry untouched)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import FinetuneConfig


@dataclass(frozen=True)
class IntensityAugmentation:
    """brightness: ± additive shift; contrast: (min, max) factor applied around each image's mean."""

    brightness: float = FinetuneConfig.brightness
    contrast: tuple[float, float] = FinetuneConfig.contrast_range

    @classmethod
    def of(cls, config: FinetuneConfig) -> "IntensityAugmentation":
        """The intensity augmentation a fine-tuning config asks for."""
        return cls(config.brightness, tuple(config.contrast_range))

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, C, H, W) -> same shape; one random shift and factor per image."""
        batch = images.shape[0]
        shape = (batch, 1, 1, 1)
        shift = (2 * torch.rand(shape, device=images.device, generator=generator) - 1) * self.brightness
        low, high = self.contrast
        factor = low + (high - low) * torch.rand(shape, device=images.device, generator=generator)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return (images - mean) * factor + mean + shift
