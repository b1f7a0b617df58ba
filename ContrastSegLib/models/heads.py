"""Projection heads of the contrastive stages (Chaitanya et al. 2020), attached as ``UNet2D.heads["g1"/"g2"]``.

g1 (global stage): encoder output (B, C, h, w) -> flatten -> dense -> ReLU -> dense -> (B, 128).
g2 (local stage): decoder features (B, C, H, W) -> 1×1 conv -> ReLU -> 1×1 conv -> (B, C, H, W).
gs (supervised-local stage): top decoder features (B, C, H, W) -> 1×1 conv -> (B, C, H, W).
gm (masked stage): top decoder features (B, C, H, W) -> 1×1 conv -> (B, 1, H, W), the reconstructed slice.
Both are dropped before fine-tuning (the fine-tuning model has no heads, so their weights are never loaded).
"""

from __future__ import annotations

from torch import nn

from .unet import UNet2D


def global_head(model: UNet2D, crop_size: int, hidden: int = 1024, embedding: int = 128) -> nn.Sequential:
    """g1 for encoder outputs of a ``crop_size``² input."""
    side = crop_size // model.config.divisor
    return nn.Sequential(nn.Flatten(), nn.Linear(model.config.channels[-1] * side * side, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, embedding))


def pixel_head(model: UNet2D) -> nn.Conv2d:
    """The supervised-local stage's 1×1 head on the top decoder block (Hu et al. 2021): (B, C, H, W) -> same."""
    width = model.config.decoder_channels[-1]
    return nn.Conv2d(width, width, 1)


def reconstruction_head(model: UNet2D) -> nn.Conv2d:
    """gm, the masked stage's 1×1 head on the top decoder block: (B, C, H, W) -> (B, 1, H, W) intensities."""
    return nn.Conv2d(model.config.decoder_channels[-1], 1, 1)


def local_head(model: UNet2D, decoder_blocks: int) -> nn.Sequential:
    """g2 for the output of the first ``decoder_blocks`` decoder blocks."""
    if not 1 <= decoder_blocks <= len(model.decoder):
        raise ValueError(f"decoder_blocks must be in 1..{len(model.decoder)}, got {decoder_blocks}")
    width = model.config.decoder_channels[decoder_blocks - 1]
    return nn.Sequential(nn.Conv2d(width, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1))
