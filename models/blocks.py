"""Single network blocks, each behind a stem convolution: what the RTL tests run whole.

A whole network simulated cycle by cycle is out of reach of an RTL simulator; one
block of it at reduced resolution is not, and exercises every hand-over between its
layers (the compiler's tiles, tokens and exchange buffers, a residual Add, a stride,
the CPU part of a squeeze-excite between two fabric segments). Each model is a 3x3
stride-2 stem (so the input is an RGB photo, as the calibration images are) and one
block with the channel counts of the network it comes from:

* ``block_mbv2_residual``: MobileNetV2's 24-channel inverted residual (1x1 expand to
  144, ReLU6; 3x3 depthwise; 1x1 project; residual Add), Sandler et al. 2018 Table 2;
* ``block_mbv2_stride2``: the first block of its 32-channel stage (depthwise stride 2,
  no residual);
* ``block_mbconv_se``: EfficientNet-B0's 24-channel MBConv6 (swish, squeeze-excite to
  ``cin / 4`` channels with a sigmoid gate, residual), Tan & Le 2019 Table 1.

They are zoo entries (``bamboo.models.zoo.EXTRA``), built, quantized and cached as the
networks are; ``width`` scales every channel count.
"""

__all__ = ["BLOCKS", "make_block"]

#: name -> (kind, stem and expand activation, input channels, output channels, stride), at
#: width 1; every block expands 6x with a 3x3 depthwise convolution.
BLOCKS = {
    "block_mbv2_residual": ("inverted_residual", "relu6", 24, 24, 1),
    "block_mbv2_stride2": ("inverted_residual", "relu6", 24, 32, 2),
    "block_mbconv_se": ("mbconv", "silu", 24, 24, 1),
}
EXPANSION = 6


def make_block(name, width=1.0):
    """The stem and block ``name`` of :data:`BLOCKS` as one ``torch.nn.Sequential``."""
    if name not in BLOCKS:
        raise ValueError(f"block must be one of {sorted(BLOCKS)}, not {name!r}")
    from torch import nn

    from .efficientnet import MBConv
    from .layers import ConvBNAct, scale_channels
    from .mobilenet import InvertedResidual

    kind, act, cin, cout, stride = BLOCKS[name]
    cin, cout = scale_channels(cin, width), scale_channels(cout, width)
    if kind == "mbconv":
        block = MBConv(cin, cout, EXPANSION, 3, stride)
    else:
        block = InvertedResidual(cin, EXPANSION * cin, cout, 3, stride, act=act)
    return nn.Sequential(ConvBNAct(3, cin, 3, 2, act=act), block)
