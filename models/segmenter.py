"""A small semantic segmenter trained here: two scikit-learn digits side by side, per pixel.

Each image is two of the 32x32 digits of :func:`bamboo.models.digits.dataset` side by side
(1 x 32 x 64); every pixel is labelled background (0) or ``1 + digit`` where the digit's
ink is (intensity above a third of its range), 11 classes. The network is an encoder to
stride 4 and a bilinear ``Upsample`` back to the input size (a ``Resize`` linear in the
graph, run by the CPU bit-exact with onnxruntime), so its output is ``(1, 11, 32, 64)``
logits whose per-pixel argmax is the mask. Pairs come from the digits' own 75/25 split
(held-out pairs from held-out digits). Training is seeded, one thread, under a minute.
"""

import hashlib
import json

import numpy as np

__all__ = [
    "CLASSES",
    "EPOCHS",
    "Segmenter",
    "build_float",
    "build_quantized",
    "pairs",
    "pixel_accuracy",
]

CLASSES = 11
EPOCHS = 6
SEED = 0
PAIRS = 1200


def pairs(split="train", count=PAIRS, seed=SEED):
    """``(x, labels)``: float32 N x 1 x 32 x 64 in -1..1 and int64 N x 32 x 64 masks."""
    from .digits import dataset

    x_tr, y_tr, x_te, y_te = dataset()
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    rng = np.random.default_rng(seed + (split != "train"))
    idx = rng.integers(0, len(x), (count, 2))
    img = np.concatenate([x[idx[:, 0]], x[idx[:, 1]]], axis=3)
    ink = img[:, 0] > -1.0 + 2.0 / 3.0
    cls = np.concatenate(
        [np.broadcast_to(y[idx[:, k], None, None] + 1, (count, 32, 32)) for k in range(2)], axis=2
    )
    return img.astype(np.float32), np.where(ink, cls, 0).astype(np.int64)


def Segmenter():  # noqa: N802 (a factory standing in for a class)
    """Encoder to stride 4, 1x1 classifier, bilinear upsampling by 4 (half-pixel)."""
    from torch import nn

    from .layers import ConvBNAct

    return nn.Sequential(
        ConvBNAct(1, 16, 3, 2),
        ConvBNAct(16, 32, 3, 2),
        ConvBNAct(32, 32, 3, 1),
        ConvBNAct(32, 32, 3, 1),
        nn.Conv2d(32, CLASSES, 1),
        nn.Upsample(scale_factor=4.0, mode="bilinear", align_corners=False),
    )


def _train():
    import torch

    torch.manual_seed(SEED)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = (torch.from_numpy(a) for a in pairs())
        model = Segmenter()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(SEED)
        model.train()
        for _ in range(EPOCHS):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 32):
                idx = order[i : i + 32]
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def _path(kind):
    from .zoo import _SOURCES, cache_dir, source_hash

    h = hashlib.sha256(
        (
            source_hash(*_SOURCES, "digits", "segmenter")
            + json.dumps([CLASSES, EPOCHS, SEED, PAIRS])
        ).encode()
    ).hexdigest()[:12]
    return cache_dir() / f"segmenter-{h}.{kind}.onnx"


def build_float():
    """The trained float model (input ``input`` [1,1,32,64], output ``output`` [1,11,32,64])."""
    path = _path("float")
    if not path.exists():
        from .export import export_onnx

        export_onnx(_train(), path, (1, 1, 32, 64))
    return path


def build_quantized(format="qdq"):  # noqa: A002
    """Quantized by onnxruntime, calibrated on 32 training pairs."""
    from .quantize import quantize

    path = _path(format)
    if not path.exists():
        quantize(build_float(), path, pairs(count=32, seed=SEED + 7)[0], format)
    return path


def pixel_accuracy(logits, labels):
    """Fraction of pixels whose argmax over the classes is the label."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))
