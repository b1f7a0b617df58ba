"""Networks: the paper's 2-D UNet with separable encoder, decoder blocks and heads."""

from .unet import DecoderBlock, UNet2D, UNetConfig, conv_block, set_trainable

__all__ = ["DecoderBlock", "UNet2D", "UNetConfig", "conv_block", "set_trainable"]
