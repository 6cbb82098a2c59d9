"""Reference executor: runs the IR with the ``bamboo.runtime`` integer kernels on NHWC codes.

Inputs and outputs are float arrays shaped as in the ONNX model (quantized and
dequantized at the edges exactly as QuantizeLinear/DequantizeLinear), or the raw
codes (``raw=True``, still in ONNX layout). The final outputs equal onnxruntime's
at ``ORT_ENABLE_EXTENDED`` bit for bit (tests/compiler/test_executor.py).
"""

import numpy as np
from bamboo.runtime import conv as kconv
from bamboo.runtime import elementwise as kel
from bamboo.runtime import pool as kpool
from bamboo.runtime.quant import dequantize, quantize

from . import ir
from .errors import CompilerError

__all__ = ["run", "softmax_ort", "KERNELS"]

_F32 = np.float32


def _conv(node, x, tin, tout):
    a = node.attrs
    y = kconv.conv2d(x, tin.q.zp, a["w"], a["bias"], a["rq"], w_zp=a["w_zp"], stride=a["stride"],
                     dilation=a["dilation"], pads=a["pads"], groups=a["group"],
                     out_dtype=tout.q.np_dtype)
    return y if a.get("lut") is None else kel.lut_apply(y, a["lut"])


def _fc(node, x, tin, tout):
    a = node.attrs
    y = kconv.fully_connected(x, tin.q.zp, a["w"], a["bias"], a["rq"], w_zp=a["w_zp"],
                              out_dtype=tout.q.np_dtype)
    return y if a.get("lut") is None else kel.lut_apply(y, a["lut"])


def _gap(node, x, tin, tout):
    return kpool.global_avg_pool(x, tin.q.zp, node.attrs["rq"], out_dtype=tout.q.np_dtype)


def _avgpool(node, x, tin, tout):
    a = node.attrs
    return kpool.avg_pool(x, tin.q.zp, tin.q.scale, tout.q.scale, tout.q.zp, a["kernel"],
                          stride=a["stride"], pads=a["pads"],
                          count_include_pad=a["count_include_pad"], out_dtype=tout.q.np_dtype)


def _maxpool(node, x, tin, tout):
    a = node.attrs
    return kpool.max_pool(x, a["kernel"], stride=a["stride"], dilation=a["dilation"],
                          pads=a["pads"])


def _add(node, a, b, ta, tb, tout):
    return kel.add(a, _F32(ta.q.scale), ta.q.zp, b, _F32(tb.q.scale), tb.q.zp,
                   _F32(tout.q.scale), tout.q.zp, dtype=tout.q.np_dtype)


def _mul(node, a, b, ta, tb, tout):
    return kel.mul_channel(a, _F32(ta.q.scale), ta.q.zp, b, _F32(tb.q.scale), tb.q.zp,
                           _F32(tout.q.scale), tout.q.zp, dtype=tout.q.np_dtype)


def _concat(node, xs, tins, tout):
    parts = [x if lut is None else kel.lut_apply(x, lut)
             for x, lut in zip(xs, node.attrs["luts"])]
    return np.concatenate(parts, axis=node.attrs["axis"])


def _slice(node, x, tin, tout):
    a = node.attrs
    sl = [slice(None)] * x.ndim
    sl[a["axis"]] = slice(a["start"], a["end"], a["step"])
    return x[tuple(sl)]


def _shuffle(node, x, tin, tout):
    n, h, w, c = x.shape
    g = node.attrs["groups"]
    return x.reshape(n, h, w, g, c // g).transpose(0, 1, 2, 4, 3).reshape(n, h, w, c)


def _resize(node, x, tin, tout):
    fh, fw = node.attrs["scale"]
    return np.repeat(np.repeat(x, fh, axis=1), fw, axis=2)


def _lut(node, x, tin, tout):
    return kel.lut_apply(x, node.attrs["table"])


def _view(node, x, tin, tout):
    return x.reshape(node.attrs["shape"])


def _transpose(node, x, tin, tout):
    return np.ascontiguousarray(x.transpose(node.attrs["perm"]))


def softmax_ort(x, axis, x_scale, y_scale, y_zp):
    """Quantized Softmax over ``axis`` of uint8 codes, as onnxruntime's QLinearSoftmax (x86).

    Ref: onnxruntime contrib_ops/cpu/quantization/qlinear_softmax.cc: a float table of
    ``exp((i - 255 + shift) * x_scale)``, a float32 sum in element order, and
    ``y = sat(nearbyint(table[x] * floor(1 / y_scale) / sum) + y_zp)``.
    """
    x = np.moveaxis(np.asarray(x), axis, -1)
    d = x.shape[-1]
    shift = max(0.0, float(np.log(np.finfo(np.float32).max / d)) - 5.0) / float(x_scale)
    i = np.arange(256, dtype=np.float64)
    table = np.exp((i - 255.0 + shift) * float(_F32(x_scale))).astype(_F32)
    vals = table[(255 - x.max(axis=-1, keepdims=True).astype(np.int64)) + x.astype(np.int64)]
    vsum = np.zeros(x.shape[:-1] + (1,), _F32)
    for k in range(d):  # float32 sum in element order, as the C loop
        vsum = (vsum + vals[..., k:k + 1]).astype(_F32)
    ys = _F32(np.floor(_F32(1.0) / _F32(y_scale)))
    q = np.rint(((vals * ys).astype(_F32) / vsum).astype(_F32)).astype(np.int64) + int(y_zp)
    y = np.minimum(q, 255).astype(np.uint8)
    return np.moveaxis(y, -1, axis)


def _softmax(node, x, tin, tout):
    return softmax_ort(x, node.attrs["axis"], tin.q.scale, tout.q.scale, tout.q.zp)


KERNELS = {
    "conv": _conv, "fc": _fc, "gap": _gap, "avgpool": _avgpool, "maxpool": _maxpool,
    "slice": _slice, "shuffle": _shuffle, "resize": _resize, "lut": _lut, "view": _view,
    "transpose": _transpose, "softmax": _softmax,
}
_BINARY = {"add": _add, "mul": _mul}


def run_node(node, values, graph):
    """Execute one IR node on ``values`` (a dict of code arrays); returns its output array."""
    tins = [graph.tensors[i] for i in node.inputs]
    tout = graph.tensors[node.outputs[0]]
    xs = [values[i] for i in node.inputs]
    if node.op in _BINARY:
        y = _BINARY[node.op](node, xs[0], xs[1], tins[0], tins[1], tout)
    elif node.op == "concat":
        y = _concat(node, xs, tins, tout)
    else:
        y = KERNELS[node.op](node, xs[0], tins[0], tout)
    if y.shape != tout.shape or y.dtype != tout.q.np_dtype:
        raise CompilerError(f"node {node.name!r} ({node.op}) produced {y.dtype}{y.shape}, "
                            f"expected {tout.q.dtype}{tout.shape}")
    return y


def run(graph, feeds, *, raw=False, keep=False):
    """Run ``graph`` on ``feeds`` and return the outputs as a list (ONNX order and layout).

    Parameters
    ----------
    graph : bamboo.compiler.ir.Graph
    feeds : dict or array
        ``{onnx input name: array}`` (or one array for a single input), NCHW as in ONNX:
        float values, or codes when ``raw``.
    raw : bool
        Take and return codes instead of float values.
    keep : bool
        Return ``(outputs, values)`` with every intermediate code tensor (NHWC).
    """
    if not isinstance(feeds, dict):
        feeds = {graph.inputs[0].onnx_name: feeds}
    values = {}
    for spec in graph.inputs:
        if spec.onnx_name not in feeds:
            raise CompilerError(f"no value fed for input {spec.onnx_name!r}")
        t = graph.tensors[spec.tensor]
        x = np.asarray(feeds[spec.onnx_name])
        if tuple(x.shape) != tuple(spec.onnx_shape):
            raise CompilerError(f"input {spec.onnx_name!r} has shape {x.shape}, the model "
                                f"takes {spec.onnx_shape}")
        if not raw and spec.float:
            x = quantize(x, _F32(t.q.scale), t.q.zp, t.q.np_dtype)
        x = x.astype(t.q.np_dtype)
        if t.layout == ir.NHWC:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        values[spec.tensor] = x
    for node in graph.nodes:
        values[node.outputs[0]] = run_node(node, values, graph)
    outs = []
    for spec in graph.outputs:
        t = graph.tensors[spec.tensor]
        y = values[spec.tensor]
        if t.layout == ir.NHWC:
            y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        if not raw and spec.float:
            y = dequantize(y, _F32(t.q.scale), t.q.zp)
        outs.append(y)
    return (outs, values) if keep else outs
