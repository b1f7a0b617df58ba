"""The 2-D UNet of Chaitanya et al. 2020, built from parts that can be trained or frozen separately.

Encoder: ``len(channels)`` blocks of two (3×3 conv, BatchNorm, ReLU), 2×2 max-pooling between blocks
(paper: 16-32-64-128-128-128, so a 192² input reaches 6² at the bottom). Decoder: one block per pooling step, each
bilinear ×2 up-sampling, concatenation with the encoder skip of the same size and two conv blocks; the first ``l``
decoder blocks are what the local contrastive stage pre-trains. ``heads`` holds extra projection heads (g1, g2 of
the contrastive stages) so they live in the same state dict as the rest.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from ..settings import DEFAULT_CHANNELS, unet_divisor


@dataclass(frozen=True)
class UNetConfig:
    """in_channels: image channels; num_classes: output classes incl. background; channels: encoder widths."""

    in_channels: int = 1
    num_classes: int = 4
    channels: tuple[int, ...] = DEFAULT_CHANNELS

    @property
    def divisor(self) -> int:
        """Input sides must be multiples of this (one halving per pooling step)."""
        return unet_divisor(self.channels)

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        """Output width of each decoder block, from the bottom up: the encoder widths mirrored."""
        return tuple(reversed(self.channels[:-1]))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "UNetConfig":
        return cls(int(data["in_channels"]), int(data["num_classes"]), tuple(int(c) for c in data["channels"]))


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two (3×3 conv, BatchNorm, ReLU): (B, in, H, W) -> (B, out, H, W)."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers += [nn.Conv2d(c_in, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class DecoderBlock(nn.Module):
    """(B, C_low, h, w) and skip (B, C_skip, 2h, 2w) -> (B, C_out, 2h, 2w)."""

    def __init__(self, low_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.convs = conv_block(low_channels + skip_channels, out_channels)

    def forward(self, low: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(low), skip], dim=1))


class UNet2D(nn.Module):
    """(B, in_channels, H, W) -> logits (B, num_classes, H, W); H, W multiples of ``config.divisor``."""

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        if len(config.channels) < 2:
            raise ValueError("a UNet needs at least two encoder blocks")
        self.config = config
        widths = (config.in_channels,) + tuple(config.channels)
        self.encoder = nn.ModuleList(conv_block(widths[i], widths[i + 1]) for i in range(len(config.channels)))
        self.pool = nn.MaxPool2d(2)
        low = config.channels[-1]
        blocks = []
        for skip, out in zip(reversed(config.channels[:-1]), config.decoder_channels):
            blocks.append(DecoderBlock(low, skip, out))
            low = out
        self.decoder = nn.ModuleList(blocks)
        self.segmentation_head = nn.Conv2d(low, config.num_classes, kernel_size=1)
        self.heads = nn.ModuleDict()

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every encoder block, finest first: [(B, c0, H, W), ..., (B, c_last, H/d, W/d)]."""
        features = []
        for index, block in enumerate(self.encoder):
            x = block(x if index == 0 else self.pool(x))
            features.append(x)
        return features

    def decode(self, features: list[torch.Tensor], num_blocks: int | None = None) -> torch.Tensor:
        """Run the first ``num_blocks`` decoder blocks (all by default) on encoder ``features``."""
        x = features[-1]
        skips = features[-2::-1]
        for block, skip in list(zip(self.decoder, skips))[:num_blocks]:
            x = block(x, skip)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decode(self.encode(x)))

    def parts(self, decoder_blocks: int | None = None) -> dict[str, nn.Module]:
        """Named parts for freezing, loading and optimiser groups: encoder, decoder[:n], the rest of the decoder,
        the segmentation head, the extra heads."""
        n = len(self.decoder) if decoder_blocks is None else decoder_blocks
        return {
            "encoder": self.encoder,
            "decoder_pretrained": nn.ModuleList(self.decoder[:n]),
            "decoder_rest": nn.ModuleList(self.decoder[n:]),
            "segmentation_head": self.segmentation_head,
            "heads": self.heads,
        }


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Freeze (``False``) or unfreeze the parameters of a part."""
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block; afterwards every submodule is back in its own mode (a frozen
    part stays in eval mode)."""
    modes = [(part, part.training) for part in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for part, mode in modes:
            part.training = mode
