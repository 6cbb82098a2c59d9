"""A real trained model: a small MobileNetV2-style net on scikit-learn's digits.

The 8x8 digit images (1797, shipped inside scikit-learn) are upsampled to
32x32, one channel, scaled to -1..1. A stratified 75/25 split (``random_state=0``)
gives 1347 training and 450 held-out images. Training is deterministic (seeded,
one thread) and takes a few seconds on a laptop core; the trained float model and
its quantized versions are cached like the zoo's.

``python -m bamboo.models.digits`` trains (or loads) the model and reports the
held-out accuracy of the float model and of onnxruntime's int8 model.
:func:`accuracy` takes any ``predict`` function, so the same command can report
the accuracy of Bamboo's own execution once it is wired in.
"""

import hashlib
import json

import numpy as np

__all__ = [
    "RESOLUTION",
    "DigitsNet",
    "accuracy",
    "build_float",
    "build_quantized",
    "dataset",
    "onnx_predict",
    "report",
]

RESOLUTION = 32
EPOCHS = 12
SEED = 0
# (expansion, out channels, stride) of the inverted residual blocks.
BLOCKS = ((1, 8, 1), (4, 16, 2), (4, 16, 1), (4, 24, 2), (4, 24, 1), (4, 32, 1))


def dataset():
    """``(x_train, y_train, x_test, y_test)``: float32 N x 1 x 32 x 32 in -1..1, int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # 0..16 -> 0..1
    # Nearest 4x upsampling then a 2x2 box blur: bilinear-like, identical everywhere.
    up = images.repeat(4, axis=1).repeat(4, axis=2)
    padded = np.pad(up, ((0, 0), (1, 0), (1, 0)), mode="edge")
    up = 0.25 * (padded[:, 1:, 1:] + padded[:, :-1, 1:] + padded[:, 1:, :-1] + padded[:, :-1, :-1])
    x = (up * 2.0 - 1.0)[:, None].astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, digits.target, test_size=0.25, stratify=digits.target, random_state=0
    )
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64)


def DigitsNet():  # noqa: N802 (a factory standing in for a class)
    """The network: a 3x3 stem, MobileNetV2 inverted residuals, 1x1 head, pool, linear."""
    from torch import nn

    from .layers import ConvBNAct
    from .mobilenet import Classifier, InvertedResidual

    c = 8
    layers = [ConvBNAct(1, c, 3, 2, act="relu6")]
    for t, out, s in BLOCKS:
        layers.append(InvertedResidual(c, c * t, out, 3, s))
        c = out
    layers.append(ConvBNAct(c, 64, 1, act="relu6"))
    return nn.Sequential(*layers, Classifier(64, 10))


def _train():
    import torch

    torch.manual_seed(SEED)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: reproducible sums and a fair share of the cores
    try:
        x_tr, y_tr, _, _ = dataset()
        model = DigitsNet()
        opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
        steps = EPOCHS * ((len(x_tr) + 63) // 64)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
        gen = torch.Generator().manual_seed(SEED)
        x, y = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
        model.train()
        for _ in range(EPOCHS):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 64):
                idx = order[i : i + 64]
                # Random shifts of up to 2 pixels: the test digits are not all centred alike.
                dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
                batch = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
                loss = torch.nn.functional.cross_entropy(model(batch), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return model.eval()
    finally:
        torch.set_num_threads(threads)


def _path(kind):
    from .zoo import _SOURCES, cache_dir, source_hash

    h = hashlib.sha256(
        (source_hash(*_SOURCES, "digits") + json.dumps([RESOLUTION, EPOCHS, SEED, BLOCKS])).encode()
    ).hexdigest()[:12]
    return cache_dir() / f"digits-{RESOLUTION}-1-{h}.{kind}.onnx"


def build_float():
    """The trained float model (ONNX, input ``input`` [1,1,32,32], output ``output`` [1,10])."""
    path = _path("float")
    if not path.exists():
        from .export import export_onnx

        export_onnx(_train(), path, (1, 1, RESOLUTION, RESOLUTION))
    return path


def build_quantized(format="qdq"):  # noqa: A002
    """The quantized model, calibrated on 64 training images (not on the held-out split)."""
    from .quantize import quantize

    path = _path(format)
    if path.exists():
        return path
    x_tr = dataset()[0]
    return quantize(build_float(), path, x_tr[:: len(x_tr) // 64][:64], format)


def onnx_predict(path):
    """A ``predict(x) -> logits`` running ``path`` in onnxruntime (optimization EXTENDED)."""
    from bamboo.compiler.reference import reference_session

    session = reference_session(path)
    return lambda x: np.concatenate(
        [session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))]
    )


def accuracy(predict):
    """Held-out accuracy of ``predict``: a function from float32 N x 1 x 32 x 32 to logits."""
    _, _, x_te, y_te = dataset()
    return float(np.mean(np.argmax(predict(x_te), axis=1) == y_te))


def report():
    """``{"float": acc, "onnxruntime-int8": acc}`` on the held-out split."""
    return {
        "float": accuracy(onnx_predict(build_float())),
        "onnxruntime-int8": accuracy(onnx_predict(build_quantized())),
    }


if __name__ == "__main__":
    _, _, x_te, _ = dataset()
    for name, acc in report().items():
        print(f"{name:<18} {acc:.4f}  ({len(x_te)} held-out digits)")
