"""Single-op ONNX builders for the elementwise kernels, on top of :mod:`ortutil`.

QOperator nodes (com.microsoft ``QLinearAdd``, ``QLinearMul``, ``QLinearConcat``,
``QLinearLeakyRelu``, ``QLinearSigmoid``) take and return codes; the float models
(:func:`float_binary`, :func:`float_concat`, :func:`float_unary`) go through
``ortutil.quantize_qdq`` and ``ortutil.strip_io_qdq`` for the QDQ variant. Run them
with ``ortutil.run`` (ORT_ENABLE_EXTENDED). Only tests import this module.
"""

import numpy as np
import ortutil as ou
from onnx import helper

__all__ = [
    "qlinear_binary",
    "qlinear_concat",
    "qlinear_unary",
    "qdq_unary",
    "resize_nearest",
    "float_binary",
    "float_concat",
    "float_unary",
    "codes",
    "all_pairs",
]


def _qp(prefix, scale, zp, dtype):
    return {f"{prefix}s": np.float32(scale), f"{prefix}z": np.asarray(zp, dtype)}


def qlinear_binary(op, dtype, a_shape, a_scale, a_zp, b_shape, b_scale, b_zp, y_scale, y_zp):
    """com.microsoft ``QLinearAdd`` / ``QLinearMul`` (``op`` is "Add" or "Mul"): ``(a, b) -> y``."""
    inits = {
        **_qp("a", a_scale, a_zp, dtype),
        **_qp("b", b_scale, b_zp, dtype),
        **_qp("y", y_scale, y_zp, dtype),
    }
    node = helper.make_node(
        f"QLinear{op}",
        ["a", "as", "az", "b", "bs", "bz", "ys", "yz"],
        ["y"],
        domain="com.microsoft",
    )
    return ou.make_model(
        [node],
        [("a", dtype, list(a_shape)), ("b", dtype, list(b_shape))],
        [("y", dtype, None)],
        inits,
    )


def qlinear_concat(dtype, shapes, scales, zps, y_scale, y_zp, axis):
    """com.microsoft ``QLinearConcat`` of inputs ``x0, x1, ...``."""
    inits = _qp("y", y_scale, y_zp, dtype)
    names = ["ys", "yz"]
    for i, (s, z) in enumerate(zip(scales, zps)):
        inits.update(_qp(f"x{i}", s, z, dtype))
        names += [f"x{i}", f"x{i}s", f"x{i}z"]
    node = helper.make_node("QLinearConcat", names, ["y"], domain="com.microsoft", axis=axis)
    return ou.make_model(
        [node],
        [(f"x{i}", dtype, list(s)) for i, s in enumerate(shapes)],
        [("y", dtype, None)],
        inits,
    )


def qlinear_unary(op, dtype, shape, x_scale, x_zp, y_scale, y_zp, **attrs):
    """com.microsoft ``QLinearLeakyRelu`` / ``QLinearSigmoid`` (``op`` without the prefix)."""
    inits = {**_qp("x", x_scale, x_zp, dtype), **_qp("y", y_scale, y_zp, dtype)}
    node = helper.make_node(
        f"QLinear{op}", ["x", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft", **attrs
    )
    return ou.make_model([node], [("x", dtype, list(shape))], [("y", dtype, None)], inits)


def qdq_unary(op, dtype, shape, x_scale, x_zp, y_scale, y_zp, **attrs):
    """Hand-written QDQ ``DequantizeLinear -> op -> QuantizeLinear`` over codes of any shape.

    ``op="SiLU"`` writes ``x * Sigmoid(x)`` (Sigmoid + Mul on the dequantized input).
    """
    inits = {**_qp("x", x_scale, x_zp, dtype), **_qp("y", y_scale, y_zp, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"])]
    if op == "SiLU":
        nodes += [
            helper.make_node("Sigmoid", ["xf"], ["sg"]),
            helper.make_node("Mul", ["xf", "sg"], ["yf"]),
        ]
    else:
        nodes.append(helper.make_node(op, ["xf"], ["yf"], **attrs))
    nodes.append(helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"]))
    return ou.make_model(nodes, [("x", dtype, list(shape))], [("y", dtype, None)], inits)


def resize_nearest(dtype, shape, scale=2, **attrs):
    """ONNX ``Resize`` (nearest) on codes, scaling H and W of an NCHW tensor by ``scale``."""
    node = helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", **attrs)
    return ou.make_model(
        [node],
        [("x", dtype, list(shape))],
        [("y", dtype, None)],
        {"sc": np.array([1, 1, scale, scale], np.float32)},
    )


def float_binary(op, a_shape, b_shape):
    """Float ``Add``/``Mul`` model ``(a, b) -> y`` for ``quantize_qdq``."""
    node = helper.make_node(op, ["a", "b"], ["y"])
    inputs = [("a", np.float32, list(a_shape)), ("b", np.float32, list(b_shape))]
    return ou.make_model([node], inputs, [("y", np.float32, None)])


def float_concat(shapes, axis):
    """Float ``Concat`` of inputs ``x0, x1, ...``."""
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Concat", names, ["y"], axis=axis)
    return ou.make_model(
        [node], [(n, np.float32, list(s)) for n, s in zip(names, shapes)], [("y", np.float32, None)]
    )


def float_unary(op, shape, **attrs):
    """Float single-op model ``x -> y`` (e.g. LeakyRelu) for ``quantize_qdq``."""
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    return ou.make_model([node], [("x", np.float32, list(shape))], [("y", np.float32, None)])


def codes(dtype):
    """All 256 codes of ``dtype`` in increasing order."""
    lo = 0 if np.dtype(dtype) == np.uint8 else -128
    return np.arange(lo, lo + 256).astype(dtype)


def all_pairs(dtype):
    """``(a, b)``, each ``(256, 256)``: every pair of codes."""
    c = codes(dtype)
    a, b = np.meshgrid(c, c, indexing="ij")
    return np.ascontiguousarray(a), np.ascontiguousarray(b)
