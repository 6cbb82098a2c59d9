"""Dense prediction networks from torchvision: segmentation and detection heads.

torchvision's own builders, randomly initialised (no downloads), wrapped so the exported
graph ends where a user's post-processing begins:

* ``lraspp_mobilenet_v3_large`` and ``deeplabv3_mobilenet_v3_large``: the ``"out"``
  logits (N, 21, H, W), after the bilinear upsampling to the input size (LR-ASPP's
  head upsamples twice, DeepLabV3's ASPP pooling branch resizes 1x1 to the map);
  the per-pixel argmax is the user's (``bamboo demo --task segment`` times it).
* ``ssdlite320_mobilenet_v3_large``: backbone and SSDLite head, before anchors and NMS:
  box regressions (N, anchors, 4) and class logits (N, anchors, 91), the head's
  Reshape/Transpose/Concat included.

And Tiny-YOLOv3 in Darknet's layout (:class:`TinyYOLOv3Darknet`), whose zero ``Pad``
before the stride-1 max pool the exporter leaves in the graph.
"""

import torch
from torch import nn

from .nets import TinyYOLOv3
from .vision import torchvision

__all__ = ["DeepLabV3", "LRASPP", "SSDLite", "TinyYOLOv3Darknet"]


class _Logits(nn.Module):
    """A torchvision segmentation model returning its ``"out"`` tensor."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)["out"]


def LRASPP(width=1.0, classes=21):  # noqa: N802 (a model class, as the zoo names them)
    """LR-ASPP on MobileNetV3-Large (torchvision ``lraspp_mobilenet_v3_large``)."""
    _full_width(width)
    seg = torchvision().models.segmentation
    return _Logits(
        seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=classes)
    )


def DeepLabV3(width=1.0, classes=21):  # noqa: N802
    """DeepLabV3 on MobileNetV3-Large (torchvision ``deeplabv3_mobilenet_v3_large``)."""
    _full_width(width)
    seg = torchvision().models.segmentation
    return _Logits(
        seg.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=classes, aux_loss=False
        )
    )


class SSDLite(nn.Module):
    """SSDLite320 on MobileNetV3-Large (torchvision ``ssdlite320_mobilenet_v3_large``):
    backbone and head, outputs ``(boxes, logits)`` before anchor decoding and NMS."""

    def __init__(self, width=1.0, classes=91):
        super().__init__()
        _full_width(width)
        det = torchvision().models.detection
        net = det.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=classes
        )
        self.backbone, self.head = net.backbone, net.head

    def forward(self, x):
        out = self.head(list(self.backbone(x).values()))
        return out["bbox_regression"], out["cls_logits"]


def _full_width(width):
    if width != 1.0:
        raise ValueError(f"torchvision's dense models come at width 1.0, not {width!r}")


class TinyYOLOv3Darknet(TinyYOLOv3):
    """Tiny-YOLOv3 in Darknet's layout: ``nn.ZeroPad2d((0, 1, 0, 1))`` before the stride-1
    max pool (a ``Pad`` node in the graph, not folded into the pool's own padding)."""

    def __init__(self, width=1.0, **kw):
        super().__init__(width, **kw)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))

    def forward(self, x):
        route = self.body(x)
        y = self.reduce(self.neck(self.pool1(self.pad(self.tail(route)))))
        return self.head1(y), self.head2(torch.cat([self.lateral(y), route], 1))
