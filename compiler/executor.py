"""Reference executor: runs the IR with the ``bamboo.runtime`` integer kernels on NHWC codes.

The per-op dispatch lives in ``bamboo.runtime.cpu_ops`` (the board runs CPU nodes
with it, without the compiler); this module walks the IR graph and quantizes at the edges.

Inputs and outputs are float arrays shaped as in the ONNX model (quantized and
dequantized at the edges exactly as QuantizeLinear/DequantizeLinear), or the raw
codes (``raw=True``, still in ONNX layout). The final outputs equal onnxruntime's
at ``ORT_ENABLE_EXTENDED`` bit for bit (tests/compiler/test_executor.py).
"""

import numpy as np
from bamboo.runtime.cpu_ops import BINARY, KERNELS, run_op, softmax_ort
from bamboo.runtime.pool import mean_float
from bamboo.runtime.quant import dequantize, quantize

from . import ir
from .errors import CompilerError

__all__ = ["BINARY", "KERNELS", "run", "run_node", "softmax_ort"]

_F32 = np.float32


def run_node(node, values, graph):
    """Execute one IR node on ``values`` (a dict of code arrays); returns its output array."""
    tins = [graph.tensors[i] for i in node.inputs]
    tout = graph.tensors[node.outputs[0]]
    y = run_op(node.op, node.attrs, [values[i] for i in node.inputs], [t.q for t in tins], tout.q)
    if y.shape != tout.shape or y.dtype != tout.q.np_dtype:
        raise CompilerError(
            f"node {node.name!r} ({node.op}) produced {y.dtype}{y.shape}, "
            f"expected {tout.q.dtype}{tout.shape}"
        )
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
            raise CompilerError(
                f"input {spec.onnx_name!r} has shape {x.shape}, the model takes {spec.onnx_shape}"
            )
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
            if spec.mean_axes:
                y = mean_float(y, spec.mean_axes).reshape(spec.onnx_shape)
        outs.append(y)
    return (outs, values) if keep else outs
