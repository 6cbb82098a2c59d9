"""ShuffleNet V1 and V2, SqueezeNet 1.1, GhostNet and Tiny-YOLOv3.

Ref: Zhang et al. 2018 (ShuffleNet), Ma et al. 2018 (ShuffleNet V2), Iandola et
al. 2016 and the SqueezeNet v1.1 release notes, Han et al. 2020 (GhostNet),
Redmon & Farhadi 2018 with Darknet's ``yolov3-tiny.cfg``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNAct, SqueezeExcite, channel_shuffle, make_divisible, scale_channels
from .mobilenet import Classifier

__all__ = ["GhostNet", "ShuffleNetV1", "ShuffleNetV2", "SqueezeNet", "TinyYOLOv3"]


class ShuffleUnitV1(nn.Module):
    """ShuffleNet unit: grouped 1x1, shuffle, depthwise 3x3, grouped 1x1; add or concat."""

    def __init__(self, cin, cout, stride, groups, first_grouped=True):
        super().__init__()
        self.stride, self.groups = stride, groups
        branch = cout - cin if stride == 2 else cout
        # Bottleneck of a quarter of the unit's full output (the reference code's choice).
        mid = max(groups, cout // 4 // groups * groups)
        self.compress = ConvBNAct(cin, mid, 1, groups=groups if first_grouped else 1)
        self.depthwise = ConvBNAct(mid, mid, 3, stride, groups=mid, act=None)
        self.expand = ConvBNAct(mid, branch, 1, groups=groups, act=None)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.relu = nn.ReLU()

    def forward(self, x):
        y = channel_shuffle(self.compress(x), self.groups)
        y = self.expand(self.depthwise(y))
        if self.pool is None:
            return self.relu(x + y)
        return self.relu(torch.cat([self.pool(x), y], 1))


class ShuffleNetV1(nn.Sequential):
    """ShuffleNet V1 with ``groups`` (default 3: stage widths 240, 480, 960)."""

    STAGES = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}

    def __init__(self, width=1.0, classes=1000, in_channels=3, groups=3):
        if groups not in self.STAGES:
            raise ValueError(f"groups must be one of {sorted(self.STAGES)}, not {groups!r}")
        stem = scale_channels(24, width, groups)  # so that every branch splits into groups
        layers = [ConvBNAct(in_channels, stem, 3, 2), nn.MaxPool2d(3, 2, 1)]
        c = stem
        for stage, repeats in enumerate((4, 8, 4)):
            # Multiple of 4 * groups so the bottleneck splits evenly into groups.
            out = make_divisible(self.STAGES[groups] * 2**stage * width, 4 * groups)
            for i in range(repeats):
                layers.append(
                    ShuffleUnitV1(
                        c,
                        out,
                        2 if i == 0 else 1,
                        groups,
                        first_grouped=not (stage == 0 and i == 0),
                    )
                )
                c = out
        super().__init__(*layers, Classifier(c, classes))


class ShuffleUnitV2(nn.Module):
    """ShuffleNet V2 unit: channel split (or two strided branches), concat, shuffle."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        src = cin if stride == 2 else half
        self.split = half
        if stride == 2:
            self.left = nn.Sequential(
                ConvBNAct(cin, cin, 3, 2, groups=cin, act=None), ConvBNAct(cin, half, 1)
            )
        self.right = nn.Sequential(
            ConvBNAct(src, half, 1),
            ConvBNAct(half, half, 3, stride, groups=half, act=None),
            ConvBNAct(half, half, 1),
        )

    def forward(self, x):
        if self.stride == 1:
            a, b = x[:, : self.split], x[:, self.split :]
            out = torch.cat([a, self.right(b)], 1)
        else:
            out = torch.cat([self.left(x), self.right(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Sequential):
    """ShuffleNet V2 (1.0x: stages of 116, 232, 464 channels, 1024 last)."""

    def __init__(self, width=1.0, classes=1000, in_channels=3):
        layers = [ConvBNAct(in_channels, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
        c = 24
        for out, repeats in ((116, 4), (232, 8), (464, 4)):
            out = make_divisible(out * width, 4)
            for i in range(repeats):
                layers.append(ShuffleUnitV2(c, out, 2 if i == 0 else 1))
                c = out
        last = scale_channels(1024, max(1.0, width))
        layers.append(ConvBNAct(c, last, 1))
        super().__init__(*layers, Classifier(last, classes))


class Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


class SqueezeNet(nn.Sequential):
    """SqueezeNet 1.1: fire modules, ceil-mode max pools, conv classifier (no BN)."""

    FIRES = (
        (16, 64),
        (16, 64),
        "pool",
        (32, 128),
        (32, 128),
        "pool",
        (48, 192),
        (48, 192),
        (64, 256),
        (64, 256),
    )

    def __init__(self, width=1.0, classes=1000, in_channels=3):
        c = scale_channels(64, width)
        layers = [nn.Conv2d(in_channels, c, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True)]
        for fire in self.FIRES:
            if fire == "pool":
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
                continue
            s, e = (scale_channels(v, width) for v in fire)
            layers.append(Fire(c, s, e))
            c = 2 * e
        layers += [nn.Conv2d(c, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        super().__init__(*layers)


class GhostModule(nn.Module):
    """Ghost module: a 1x1 primary conv plus cheap depthwise 'ghost' features, concatenated."""

    def __init__(self, cin, cout, relu=True):
        super().__init__()
        init = (cout + 1) // 2
        self.trim = cout if 2 * init != cout else None  # odd widths: drop one ghost
        act = "relu" if relu else None
        self.primary = ConvBNAct(cin, init, 1, act=act)
        self.cheap = ConvBNAct(init, init, 3, groups=init, act=act)

    def forward(self, x):
        y = self.primary(x)
        out = torch.cat([y, self.cheap(y)], 1)
        return out if self.trim is None else out[:, : self.trim]


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: ghost expand, strided depthwise, SE, ghost project, shortcut."""

    def __init__(self, cin, hidden, cout, kernel, stride, se):
        super().__init__()
        layers = [GhostModule(cin, hidden)]
        if stride > 1:
            layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=None))
        if se:
            layers.append(SqueezeExcite(hidden, make_divisible(hidden // 4, 4)))
        layers.append(GhostModule(hidden, cout, relu=False))
        self.block = nn.Sequential(*layers)
        if stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvBNAct(cin, cin, kernel, stride, groups=cin, act=None),
                ConvBNAct(cin, cout, 1, act=None),
            )

    def forward(self, x):
        return self.block(x) + self.shortcut(x)


class GhostNet(nn.Sequential):
    """GhostNet 1.0x: ghost bottlenecks with SE (HardSigmoid gate), ReLU."""

    # (kernel, expanded, out, SE, stride), as in the paper's Table 7.
    BLOCKS = (
        (3, 16, 16, False, 1),
        (3, 48, 24, False, 2),
        (3, 72, 24, False, 1),
        (5, 72, 40, True, 2),
        (5, 120, 40, True, 1),
        (3, 240, 80, False, 2),
        (3, 200, 80, False, 1),
        (3, 184, 80, False, 1),
        (3, 184, 80, False, 1),
        (3, 480, 112, True, 1),
        (3, 672, 112, True, 1),
        (5, 672, 160, True, 2),
        (5, 960, 160, False, 1),
        (5, 960, 160, True, 1),
        (5, 960, 160, False, 1),
        (5, 960, 160, True, 1),
    )

    def __init__(self, width=1.0, classes=1000, in_channels=3):
        c = scale_channels(16, width, 4)
        layers = [ConvBNAct(in_channels, c, 3, 2)]
        for k, exp, out, se, s in self.BLOCKS:
            exp, out = scale_channels(exp, width, 4), scale_channels(out, width, 4)
            layers.append(GhostBottleneck(c, exp, out, k, s, se))
            c = out
        last = scale_channels(960, width, 4)
        layers += [
            ConvBNAct(c, last, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(last, 1280, 1),
            nn.ReLU(),
            nn.Flatten(1),
            nn.Linear(1280, classes),
        ]
        super().__init__(*layers)


class TinyYOLOv3(nn.Module):
    """Tiny-YOLOv3 (Darknet ``yolov3-tiny.cfg``): LeakyReLU(0.1), a stride-1 max pool,
    nearest 2x upsample and a concat; two heads at strides 32 and 16.

    Outputs ``(1, anchors*(5+classes), H/32, W/32)`` and ``(..., H/16, W/16)``.
    """

    def __init__(self, width=1.0, classes=80, in_channels=3, anchors=3):
        super().__init__()

        def ch(v):
            return scale_channels(v, width)

        def conv(cin, cout, k=3):
            return ConvBNAct(cin, cout, k, act="leaky")

        head = anchors * (5 + classes)
        backbone = []
        c = in_channels
        for out in (16, 32, 64, 128, 256):
            backbone += [conv(c, ch(out)), nn.MaxPool2d(2, 2)]
            c = ch(out)
        self.body = nn.Sequential(*backbone[:-1])  # up to conv 256 (route at stride 16)
        self.tail = nn.Sequential(nn.MaxPool2d(2, 2), conv(c, ch(512)))
        self.pool1 = nn.MaxPool2d(2, 1)  # stride 1 after Darknet's asymmetric padding
        self.neck = conv(ch(512), ch(1024))
        self.reduce = conv(ch(1024), ch(256), 1)
        self.head1 = nn.Sequential(conv(ch(256), ch(512)), nn.Conv2d(ch(512), head, 1))
        self.lateral = nn.Sequential(conv(ch(256), ch(128), 1), nn.Upsample(scale_factor=2.0))
        self.head2 = nn.Sequential(conv(ch(128) + c, ch(256)), nn.Conv2d(ch(256), head, 1))

    def forward(self, x):
        route = self.body(x)
        y = self.tail(route)
        # Darknet pads right/bottom for the stride-1 pool; edge padding keeps the max
        # exact and export folds it into the MaxPool's own pads.
        y = self.pool1(F.pad(y, (0, 1, 0, 1), mode="replicate"))
        y = self.reduce(self.neck(y))
        return self.head1(y), self.head2(torch.cat([self.lateral(y), route], 1))
