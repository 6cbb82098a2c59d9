"""MobileNet V1, V2, V3 (Small, Large) and an MCUNet-style network.

Ref: Howard et al. 2017 (V1), Sandler et al. 2018 (V2), Howard et al. 2019 (V3),
Lin et al. 2020 "MCUNet" (a searched MobileNetV2 space with 3/5/7 kernels and
expansion 3/4/6). Channel tables follow the papers; ``width`` scales every layer.
"""

from torch import nn

from .layers import ConvBNAct, SqueezeExcite, make_divisible, scale_channels

__all__ = ["InvertedResidual", "MCUNet", "MobileNetV1", "MobileNetV2", "MobileNetV3"]


class Classifier(nn.Sequential):
    """Global average pool, flatten, fully connected."""

    def __init__(self, cin, classes):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, classes))


class MobileNetV1(nn.Sequential):
    """MobileNet V1: depthwise-separable convolutions, ReLU6 (Clip 0..6)."""

    # (output channels, stride) of each depthwise-separable block.
    BLOCKS = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    )

    def __init__(self, width=1.0, classes=1000, in_channels=3):
        c = scale_channels(32, width)
        layers = [ConvBNAct(in_channels, c, 3, 2, act="relu6")]
        for out, stride in self.BLOCKS:
            out = scale_channels(out, width)
            layers += [
                ConvBNAct(c, c, 3, stride, groups=c, act="relu6"),
                ConvBNAct(c, out, 1, act="relu6"),
            ]
            c = out
        super().__init__(*layers, Classifier(c, classes))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 block: 1x1 expand, kxk depthwise, optional SE, 1x1 project, residual."""

    def __init__(self, cin, hidden, cout, kernel, stride, act="relu6", se=False):
        super().__init__()
        layers = []
        if hidden != cin:
            layers.append(ConvBNAct(cin, hidden, 1, act=act))
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, make_divisible(hidden // 4, 8)))
        layers.append(ConvBNAct(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Sequential):
    """MobileNet V2: inverted residuals with linear bottlenecks, ReLU6."""

    # (expansion t, channels c, repeats n, first stride s), as in the paper's Table 2.
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, width=1.0, classes=1000, in_channels=3, settings=None, stem=32, last=1280):
        settings = self.SETTINGS if settings is None else settings
        c = scale_channels(stem, width)
        layers = [ConvBNAct(in_channels, c, 3, 2, act="relu6")]
        for t, out, n, s in settings:
            out = scale_channels(out, width)
            for i in range(n):
                layers.append(InvertedResidual(c, c * t, out, 3, s if i == 0 else 1))
                c = out
        last = scale_channels(last, max(1.0, width))
        layers.append(ConvBNAct(c, last, 1, act="relu6"))
        super().__init__(*layers, Classifier(last, classes))


class MobileNetV3(nn.Sequential):
    """MobileNet V3 Small or Large: SE blocks (HardSigmoid gate) and h-swish."""

    # (kernel, expanded, out, SE, activation, stride), as in the paper's Tables 1 and 2.
    LARGE = (
        (3, 16, 16, False, "relu", 1),
        (3, 64, 24, False, "relu", 2),
        (3, 72, 24, False, "relu", 1),
        (5, 72, 40, True, "relu", 2),
        (5, 120, 40, True, "relu", 1),
        (5, 120, 40, True, "relu", 1),
        (3, 240, 80, False, "hswish", 2),
        (3, 200, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1),
        (3, 184, 80, False, "hswish", 1),
        (3, 480, 112, True, "hswish", 1),
        (3, 672, 112, True, "hswish", 1),
        (5, 672, 160, True, "hswish", 2),
        (5, 960, 160, True, "hswish", 1),
        (5, 960, 160, True, "hswish", 1),
    )
    SMALL = (
        (3, 16, 16, True, "relu", 2),
        (3, 72, 24, False, "relu", 2),
        (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hswish", 2),
        (5, 240, 40, True, "hswish", 1),
        (5, 240, 40, True, "hswish", 1),
        (5, 120, 48, True, "hswish", 1),
        (5, 144, 48, True, "hswish", 1),
        (5, 288, 96, True, "hswish", 2),
        (5, 576, 96, True, "hswish", 1),
        (5, 576, 96, True, "hswish", 1),
    )

    def __init__(self, variant="large", width=1.0, classes=1000, in_channels=3):
        if variant not in ("large", "small"):
            raise ValueError(f"variant must be 'large' or 'small', not {variant!r}")
        table = self.LARGE if variant == "large" else self.SMALL
        c = scale_channels(16, width)
        layers = [ConvBNAct(in_channels, c, 3, 2, act="hswish")]
        for k, exp, out, se, act, s in table:
            exp, out = scale_channels(exp, width), scale_channels(out, width)
            layers.append(InvertedResidual(c, exp, out, k, s, act=act, se=se))
            c = out
        last_conv = scale_channels(table[-1][1], width)
        head = 1280 if variant == "large" else 1024
        layers.append(ConvBNAct(c, last_conv, 1, act="hswish"))
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(last_conv, head),
            nn.Hardswish(),
            nn.Linear(head, classes),
        ]
        super().__init__(*layers)


class MCUNet(nn.Sequential):
    """An MCUNet-style network: MobileNetV2 blocks with searched kernels and expansions.

    The block list is in the spirit of MCUNet's ImageNet models (mixed 3/5/7
    kernels, expansion 3/4/6, narrow early stages for a small peak memory).
    """

    # (expansion, out, kernel, stride) per block.
    BLOCKS = (
        (1, 8, 3, 1),
        (4, 16, 7, 2),
        (3, 16, 3, 1),
        (6, 24, 5, 2),
        (4, 24, 3, 1),
        (3, 24, 5, 1),
        (6, 40, 7, 2),
        (4, 40, 3, 1),
        (4, 48, 5, 1),
        (3, 48, 3, 1),
        (6, 96, 7, 2),
        (4, 96, 5, 1),
        (3, 96, 3, 1),
        (6, 160, 7, 1),
    )

    def __init__(self, width=1.0, classes=1000, in_channels=3):
        c = scale_channels(16, width)
        layers = [ConvBNAct(in_channels, c, 3, 2, act="relu6")]
        for t, out, k, s in self.BLOCKS:
            out = scale_channels(out, width)
            layers.append(InvertedResidual(c, c * t, out, k, s))
            c = out
        super().__init__(*layers, Classifier(c, classes))
