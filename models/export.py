"""PyTorch to ONNX: export, clean-up, and giving random weights realistic statistics.

The legacy TorchScript exporter (``dynamo=False``) writes a plain opset-13 graph
with BatchNorm folded into Conv. Its shape arithmetic (``chunk``, ``F.pad``) is then
folded to constants by onnxruntime's pre-processing, and an edge ``Pad`` feeding a
stride-1 ``MaxPool`` (Darknet's stride-1 pool) becomes the pool's own padding.
"""

import os
import pathlib
import tempfile
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

__all__ = ["OPSET", "calibrate_batchnorm", "export_onnx", "fold_edge_pad_into_maxpool"]

# Opset 13: per-channel QuantizeLinear/DequantizeLinear (axis) and no HardSwish op, so
# nn.Hardswish exports as HardSigmoid + Mul, the form numerics.md describes.
OPSET = 13


def calibrate_batchnorm(module, images, seed=0):
    """Give a randomly initialised network the statistics of a trained one.

    BatchNorm gains and shifts are drawn at random (so per-channel weight scales
    differ after folding), then one forward pass in training mode over ``images``
    records each layer's batch mean and variance as its running statistics. Every
    layer's pre-activations then have unit variance on real photos, as in a trained
    network, instead of vanishing or exploding with depth.

    Parameters
    ----------
    module : torch.nn.Module
    images : numpy.ndarray
        Float32 NCHW batch (for example from :func:`bamboo.models.calibration.photos`).
    seed : int
        Seed for the BatchNorm gains and shifts.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                n = bn.num_features
                bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
                bn.bias.copy_(0.25 * torch.randn(n, generator=gen))
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average: one batch gives exactly its statistics
        module.train()
        module(torch.from_numpy(np.ascontiguousarray(images)))
    module.eval()
    return module


def fold_edge_pad_into_maxpool(model):
    """Replace ``Pad(mode=edge) -> MaxPool`` by a ``MaxPool`` with its own padding.

    Exact whenever every pad is smaller than the kernel: each window that reaches
    into the padding also covers the edge value the padding replicates, so the
    maximum is the same as with the pool's implicit -inf padding.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop = []
    for pad in graph.node:
        if pad.op_type != "Pad" or len(pad.input) < 2 or pad.input[1] not in inits:
            continue
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        users = consumers.get(pad.output[0], [])
        if mode != b"edge" or len(users) != 1 or users[0].op_type != "MaxPool":
            continue
        pool = users[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
        pads = numpy_helper.to_array(inits[pad.input[1]]).tolist()
        kernel = attrs["kernel_shape"]
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
            continue  # only spatial padding of an NCHW tensor
        if any(attrs.get("pads", [0])) or attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            continue
        spatial = [pads[2], pads[3], pads[6], pads[7]]  # ONNX order: H/W begins, then ends
        if any(p >= kernel[i % 2] for i, p in enumerate(spatial)):
            continue
        pool.input[0] = pad.input[0]
        del pool.attribute[:]
        attrs["pads"] = spatial
        attrs.pop("auto_pad", None)
        pool.attribute.extend(helper.make_attribute(k, v) for k, v in sorted(attrs.items()))
        drop.append(pad)
    for node in drop:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for t in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(t)
    return model


def export_onnx(module, path, input_shape, output_names=("output",)):
    """Export ``module`` (eval mode) to a clean float ONNX file at ``path``.

    Parameters
    ----------
    module : torch.nn.Module
    path : str or pathlib.Path
    input_shape : tuple of int
        NCHW shape of the single input, named ``input``.
    output_names : sequence of str

    Returns
    -------
    pathlib.Path
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = pathlib.Path(path)
    module.eval()
    with tempfile.TemporaryDirectory(prefix="bamboo-export-") as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        clean = os.path.join(tmp, "clean.onnx")
        with warnings.catch_warnings(), torch.no_grad():
            # The legacy exporter warns that it is deprecated; it is kept on purpose: it
            # folds BatchNorm and writes no dynamic shapes.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                torch.zeros(input_shape),
                raw,
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=list(output_names),
                do_constant_folding=True,
            )
        # Constant-folds the traced shape arithmetic (Shape/Gather/Div feeding Slice, Pad).
        quant_pre_process(raw, clean, skip_symbolic_shape=True)
        model = fold_edge_pad_into_maxpool(onnx.load(clean))
    left = {n.op_type for n in model.graph.node} & {"BatchNormalization", "Shape", "Constant"}
    assert not left, f"export left {sorted(left)} in the graph"
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    _atomic_save(model, path)
    return path


def _atomic_save(model, path):
    # Parallel test workers may build the same cached file: write aside, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
