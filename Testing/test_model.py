"""The paper's 2-D UNet: shapes, separable parts, freezing."""

import pytest
import torch

from ContrastSegLib.models import UNet2D, UNetConfig, set_trainable


def test_paper_unet_shapes():
    model = UNet2D(UNetConfig(num_classes=4))
    x = torch.randn(2, 1, 64, 64)
    features = model.encode(x)
    assert [f.shape[1] for f in features] == [16, 32, 64, 128, 128, 128]
    assert [f.shape[-1] for f in features] == [64, 32, 16, 8, 4, 2]
    assert len(model.decoder) == 5
    assert model(x).shape == (2, 4, 64, 64)


@pytest.mark.parametrize("blocks, side, width", [(1, 4, 128), (3, 16, 64), (5, 64, 16)])
def test_first_decoder_blocks(blocks, side, width):
    """The local stage's feature map: for a 192² input the first 3 blocks give 48² (here 64² -> 16²)."""
    model = UNet2D(UNetConfig(num_classes=3))
    out = model.decode(model.encode(torch.randn(1, 1, 64, 64)), num_blocks=blocks)
    assert out.shape == (1, width, side, side)


def test_configurable_widths_and_divisor():
    config = UNetConfig(in_channels=2, num_classes=5, channels=(8, 16, 32))
    assert config.divisor == 4 and config.decoder_channels == (16, 8)
    assert UNet2D(config)(torch.randn(1, 2, 12, 20)).shape == (1, 5, 12, 20)
    assert UNetConfig.from_json(config.to_json()) == config


def test_parts_cover_every_parameter_once():
    model = UNet2D(UNetConfig(num_classes=4))
    model.heads["g2"] = torch.nn.Conv2d(64, 16, 1)
    parts = model.parts(decoder_blocks=3)
    counted = sum(p.numel() for part in parts.values() for p in part.parameters())
    assert counted == sum(p.numel() for p in model.parameters())
    assert len(parts["decoder_pretrained"]) == 3 and len(parts["decoder_rest"]) == 2


def test_frozen_encoder_gets_no_gradient():
    model = UNet2D(UNetConfig(num_classes=2, channels=(4, 8, 16)))
    set_trainable(model.encoder, False)
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())
    set_trainable(model.encoder, True)
    assert all(p.requires_grad for p in model.encoder.parameters())
