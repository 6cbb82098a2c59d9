"""256-entry tables for elementwise ops, measured on onnxruntime itself.

A quantized elementwise op with fixed input and output scales is a function of
the input code alone, so running onnxruntime on all 256 codes gives a table that
reproduces it bit for bit (Ref: docs/numerics.md, "Elementwise activations":
computed tables were off by one LSB in a few entries). Front end only.
"""

import numpy as np

from .lut import run_on_codes

__all__ = ["ort_table", "ort_island_table"]


def _qparams(qi, qo):
    """Initializers ``xs, xz, ys, yz`` of the input/output quantization."""
    from onnx import numpy_helper

    return [
        numpy_helper.from_array(np.array(qi.scale, np.float32), "xs"),
        numpy_helper.from_array(np.array(qi.zp, qi.np_dtype), "xz"),
        numpy_helper.from_array(np.array(qo.scale, np.float32), "ys"),
        numpy_helper.from_array(np.array(qo.zp, qo.np_dtype), "yz"),
    ]


def _run(nodes, inits, qi, qo, opset, name):
    """Build the one-input model ``x (256 codes) -> nodes -> y`` and run it on every code."""
    from onnx import helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(qi.np_dtype), [256])],
        [helper.make_tensor_value_info("y", helper.np_dtype_to_tensor_dtype(qo.np_dtype), [256])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", max(opset, 13)),
            helper.make_opsetid("com.microsoft", 1),
        ],
    )
    model.ir_version = 8
    return run_on_codes(model, qi.np_dtype)


def ort_table(op_node, qi, qo, opset, qoperator=False):
    """Run ``op_node`` (an ONNX NodeProto) on every input code and return the output codes.

    Parameters
    ----------
    op_node : onnx.NodeProto
        A float op (QDQ form: wrapped in DequantizeLinear/QuantizeLinear here) or a
        QOperator node whose inputs are ``(x, x_scale, x_zp, y_scale, y_zp)``.
    qi, qo : bamboo.compiler.ir.QType
        Input and output quantization.
    opset : int
        Default-domain opset of the generated model.
    """
    from onnx import helper

    inits = _qparams(qi, qo)
    node = helper.make_node(op_node.op_type, [], [], domain=op_node.domain)
    node.attribute.extend(op_node.attribute)
    if qoperator:
        node.input.extend(["x", "xs", "xz", "ys", "yz"])
        node.output.append("y")
        nodes = [node]
    else:
        node.input.append("f")
        node.input.extend(op_node.input[1:])  # constant extra inputs (e.g. Clip bounds)
        node.output.append("g")
        nodes = [
            helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["f"]),
            node,
            helper.make_node("QuantizeLinear", ["g", "ys", "yz"], ["y"]),
        ]
    return _run(nodes, inits, qi, qo, opset, "table")


def ort_island_table(nodes, src, dst, consts, qi, qo, opset):
    """Table of a float elementwise sub-graph ``src -> ... -> dst`` between one
    DequantizeLinear and one QuantizeLinear (e.g. HardSwish inlined by onnxruntime as
    ``x * HardSigmoid(x)``), measured by running it on all 256 codes."""
    from onnx import helper, numpy_helper

    inits = _qparams(qi, qo)
    inits += [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    srcs = [src] if isinstance(src, str) else list(src)
    body = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], [s]) for s in srcs]
    for n in nodes:
        c = helper.make_node(n.op_type, list(n.input), list(n.output), domain=n.domain)
        c.attribute.extend(n.attribute)
        body.append(c)
    body.append(helper.make_node("QuantizeLinear", [dst, "ys", "yz"], ["y"]))
    return _run(body, inits, qi, qo, opset, "island")
