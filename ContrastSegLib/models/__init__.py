"""Networks: the paper's 2-D UNet with separable encoder, decoder blocks and heads (g1/g2/gs/gm for pre-training)."""

from .heads import global_head, local_head, pixel_head, reconstruction_head
from .unet import DecoderBlock, UNet2D, UNetConfig, conv_block, evaluating, set_trainable

__all__ = ["DecoderBlock", "UNet2D", "UNetConfig", "conv_block", "evaluating", "global_head", "local_head",
           "pixel_head", "reconstruction_head", "set_trainable"]
