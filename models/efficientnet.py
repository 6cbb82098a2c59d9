"""EfficientNet B0..B7 (B0 and B4 in the zoo): MBConv blocks with SE and swish.

Ref: Tan & Le 2019, "EfficientNet", Table 1 and the compound scaling rule
(width, depth) = (1.0, 1.0) for B0 and (1.4, 1.8) for B4. Swish is written as
``x * sigmoid(x)`` (Sigmoid + Mul in ONNX), the SE gate is a Sigmoid.
"""

import math

from torch import nn

from .layers import ConvBNAct, SqueezeExcite, scale_channels

__all__ = ["COEFFICIENTS", "EfficientNet"]

# Variant: (width, depth, nominal resolution).
COEFFICIENTS = {
    "b0": (1.0, 1.0, 224),
    "b1": (1.0, 1.1, 240),
    "b2": (1.1, 1.2, 260),
    "b3": (1.2, 1.4, 300),
    "b4": (1.4, 1.8, 380),
}


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (squeeze to cin/4), swish."""

    def __init__(self, cin, cout, expand, kernel, stride):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [ConvBNAct(cin, hidden, 1, act="silu")]
        layers += [
            ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act="silu"),
            SqueezeExcite(hidden, max(1, cin // 4), act="silu", gate="sigmoid"),
            ConvBNAct(hidden, cout, 1, act=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class EfficientNet(nn.Sequential):
    """EfficientNet of the given variant; ``width`` multiplies the variant's own width."""

    # (expansion, kernel, stride, out channels, repeats) of the B0 baseline.
    STAGES = (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    )

    def __init__(self, variant="b0", width=1.0, classes=1000, in_channels=3):
        if variant not in COEFFICIENTS:
            raise ValueError(f"variant must be one of {sorted(COEFFICIENTS)}, not {variant!r}")
        w, d, _ = COEFFICIENTS[variant]
        w *= width
        c = scale_channels(32, w)
        layers = [ConvBNAct(in_channels, c, 3, 2, act="silu")]
        for t, k, s, out, n in self.STAGES:
            out = scale_channels(out, w)
            for i in range(int(math.ceil(n * d))):
                layers.append(MBConv(c, out, t, k, s if i == 0 else 1))
                c = out
        last = scale_channels(1280, w)
        layers += [
            ConvBNAct(c, last, 1, act="silu"),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(last, classes),
        ]
        super().__init__(*layers)
