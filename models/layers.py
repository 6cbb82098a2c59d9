"""Building blocks shared by the zoo's networks.

Every activation is one that onnxruntime's static quantizer places between
QuantizeLinear/DequantizeLinear pairs: ReLU, ReLU6 (exported as Clip 0..6),
HardSigmoid, HardSwish (exported at opset 13 as HardSigmoid + Mul), Sigmoid,
LeakyReLU, and SiLU written out as ``x * sigmoid(x)`` (onnxruntime has no
quantized SiLU/Swish kernel, but has QLinearSigmoid and QLinearMul).
"""

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "ConvBNAct",
    "SiLU",
    "SqueezeExcite",
    "channel_shuffle",
    "make_divisible",
    "scale_channels",
]


class SiLU(nn.Module):
    """SiLU (swish) as ``x * sigmoid(x)``, so the export is Sigmoid + Mul."""

    def forward(self, x):
        return x * torch.sigmoid(x)


def _leaky():
    return nn.LeakyReLU(0.1)


ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "hsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "silu": SiLU,
    "leaky": _leaky,
    None: nn.Identity,
}


def make_divisible(value, divisor=8, min_value=None):
    """Round ``value`` to a multiple of ``divisor`` without losing more than 10 %.

    The rule of the MobileNet reference code (TF-slim ``_make_divisible``).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_channels(channels, width, divisor=8):
    """Channels of a layer under the width multiplier ``width``."""
    return make_divisible(channels * width, divisor)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + activation; the export folds BN into the Conv."""

    def __init__(self, cin, cout, kernel=3, stride=1, groups=1, act="relu", padding=None):
        if padding is None:
            padding = (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            ACTIVATIONS[act](),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool, 1x1 reduce, act, 1x1 expand, gate, multiply."""

    def __init__(self, channels, squeezed, act="relu", gate="hsigmoid"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)  # exported as GlobalAveragePool
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = ACTIVATIONS[act]()
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = ACTIVATIONS[gate]()

    def forward(self, x):
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


def channel_shuffle(x, groups):
    """ShuffleNet's channel shuffle: Reshape, Transpose, Reshape."""
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(n, c, h, w)
