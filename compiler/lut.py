"""Lookup tables for elementwise activations: 256 output codes, one per input code.

With fixed input and output quantization an elementwise op is a function of the
8-bit input code alone, so a 256-entry table (applied by
:func:`bamboo.runtime.elementwise.lut_apply`) reproduces it bit for bit. The
table is built by running onnxruntime itself on all 256 codes through the graph a
quantized model contains, ``DequantizeLinear -> op -> QuantizeLinear``, at
ORT_ENABLE_EXTENDED: exact by construction, whatever onnxruntime does inside.

What onnxruntime 1.32 runs for that graph (Ref: docs/numerics.md,
"Elementwise activations"; pinned by tests/compiler/test_lut.py):

* LeakyRelu, Sigmoid: fused into com.microsoft QLinearLeakyRelu / QLinearSigmoid,
  which build their own table the same way (dequantize, float op, QuantizeLinear).
  Sigmoid is MLAS's rational approximation, not ``1 / (1 + exp(-x))``.
* HardSigmoid, Tanh: no quantized kernel; the op runs in float between DQ and Q.
* HardSwish: inlined as HardSigmoid + Mul, in float.
* SiLU (``x * sigmoid(x)``, as Sigmoid + Mul on the dequantized input; there is no
  ONNX SiLU op): stays float, the Sigmoid again MLAS's approximation.

:func:`build_lut_numpy` computes the same tables without onnxruntime, for hosts that
lack it: exact for the piecewise-linear ops (it repeats onnxruntime's float32
arithmetic), off by one code on rare entries for Sigmoid, Tanh and SiLU, whose
onnxruntime kernels are approximations (counted in the tests). Hence only a fallback.

Table order: entry ``i`` is the output for the input code whose bit pattern is ``i``
(``code & 0xFF``), as :func:`~bamboo.runtime.elementwise.lut_apply` indexes.
"""

import numpy as np
from bamboo.runtime.quant import dequantize, quantize
from bamboo.runtime.requant import qrange

__all__ = ["run_on_codes", "LUT_OPS", "build_lut", "build_lut_numpy", "lut_model", "input_codes"]

# ONNX defaults where the op has attributes; LeakyRelu's 0.01 is ONNX's default too.
LUT_OPS = {
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
    "HardSwish": {},
    "Sigmoid": {},
    "LeakyRelu": {"alpha": 0.01},
    "Tanh": {},
    "SiLU": {},
}
_OPSET = 21
_IR_VERSION = 10  # onnxruntime 1.32 reads IR <= 11


def _attrs(op, attrs):
    if op not in LUT_OPS:
        raise ValueError(f"op must be one of {sorted(LUT_OPS)}, not {op!r}")
    unknown = set(attrs) - set(LUT_OPS[op])
    if unknown:
        raise ValueError(f"{op} takes attributes {sorted(LUT_OPS[op])}, not {sorted(unknown)}")
    return {**LUT_OPS[op], **attrs}


def _check_qparams(x_scale, x_zp, y_scale, y_zp, dtype):
    dtype = np.dtype(dtype)
    qmin, qmax = qrange(dtype)
    for name, s in (("x_scale", x_scale), ("y_scale", y_scale)):
        if not np.isfinite(s) or s <= 0:
            raise ValueError(f"{name} must be positive and finite, not {s!r}")
    for name, z in (("x_zp", x_zp), ("y_zp", y_zp)):
        if not qmin <= int(z) <= qmax:
            raise ValueError(f"{name} {int(z)} is outside the {dtype} range")
    return dtype


def input_codes(dtype):
    """The 256 input codes in table order: ``np.arange(256, dtype=uint8)`` viewed as ``dtype``."""
    return np.arange(256, dtype=np.uint8).view(np.dtype(dtype))


def lut_model(op, x_scale, x_zp, y_scale, y_zp, dtype=np.uint8, **attrs):
    """The ``DequantizeLinear -> op -> QuantizeLinear`` ONNX model over a ``(256,)`` code tensor.

    Imports ``onnx`` (only here and in :func:`build_lut`).
    """
    from onnx import helper, numpy_helper

    attrs = _attrs(op, attrs)
    dtype = _check_qparams(x_scale, x_zp, y_scale, y_zp, dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    inits = [
        numpy_helper.from_array(np.asarray(v, t), n)
        for n, v, t in (
            ("xs", x_scale, np.float32),
            ("xz", x_zp, dtype),
            ("ys", y_scale, np.float32),
            ("yz", y_zp, dtype),
        )
    ]
    nodes = [helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"])]
    if op == "SiLU":
        nodes += [
            helper.make_node("Sigmoid", ["xf"], ["sig"]),
            helper.make_node("Mul", ["xf", "sig"], ["yf"]),
        ]
    else:
        nodes.append(helper.make_node(op, ["xf"], ["yf"], **attrs))
    nodes.append(helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"]))
    graph = helper.make_graph(
        nodes,
        f"lut_{op}",
        [helper.make_tensor_value_info("x", elem, [256])],
        [helper.make_tensor_value_info("y", elem, [256])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return model


def build_lut(op, x_scale, x_zp, y_scale, y_zp, dtype=np.uint8, **attrs):
    """Table of ``op`` measured on onnxruntime (CPU, ORT_ENABLE_EXTENDED) over all 256 codes.

    Parameters
    ----------
    op : str
        One of :data:`LUT_OPS`: "HardSigmoid", "HardSwish", "Sigmoid", "LeakyRelu",
        "Tanh", "SiLU".
    x_scale, x_zp, y_scale, y_zp : float, int
        Input and output quantization (per tensor).
    dtype : np.uint8 or np.int8
        Code type of input and output.
    **attrs
        The op's ONNX attributes (``alpha`` for LeakyRelu; ``alpha``, ``beta`` for
        HardSigmoid); ONNX defaults otherwise.

    Returns
    -------
    np.ndarray of ``dtype``, shape (256,), indexed by input bit pattern.
    """
    model = lut_model(op, x_scale, x_zp, y_scale, y_zp, dtype, **attrs)
    return run_on_codes(model, dtype).astype(dtype)


def run_on_codes(model, dtype):
    """Run ``model`` (input ``x``: 256 codes of ``dtype``, one output) on every code.

    onnxruntime, CPU, ``ORT_ENABLE_EXTENDED`` (the level at which DQ->op->Q groups
    fuse into the integer kernels a quantized graph really runs); returns the output.
    """
    from .reference import reference_session

    sess = reference_session(model)
    (out,) = sess.run(None, {"x": input_codes(dtype)})
    return out


def _float_op(op, x, attrs):
    """The op on float32 ``x``: piecewise-linear ops in float32 as onnxruntime evaluates them
    (``f32(f32(alpha * x) + beta)``, no FMA), transcendental ones exactly in float64."""
    f32 = np.float32
    if op in ("HardSigmoid", "HardSwish"):
        alpha, beta = (attrs["alpha"], attrs["beta"]) if op == "HardSigmoid" else (1 / 6, 0.5)
        hs = np.clip(f32(alpha) * x + f32(beta), f32(0), f32(1))
        return hs if op == "HardSigmoid" else x * hs  # HardSwish inlines as x * HardSigmoid
    if op == "LeakyRelu":
        return np.where(x >= 0, x, f32(attrs["alpha"]) * x)
    xd = x.astype(np.float64)
    with np.errstate(over="ignore"):  # exp overflow -> inf -> exact 0
        sig = 1.0 / (1.0 + np.exp(-xd))
    if op == "Sigmoid":
        return sig.astype(f32)
    if op == "Tanh":
        return np.tanh(xd).astype(f32)
    return x * sig.astype(f32)  # SiLU: Sigmoid, then a float32 Mul


def build_lut_numpy(op, x_scale, x_zp, y_scale, y_zp, dtype=np.uint8, **attrs):
    """The same table from the op's definition, without onnxruntime (a fallback).

    Dequantizes each code as onnxruntime does (float32), evaluates the op (see
    ``_float_op``: float32 arithmetic where onnxruntime's kernel is plain float32,
    float64 where it is an approximation) and quantizes with
    :func:`bamboo.runtime.quant.quantize`. Sigmoid, Tanh and SiLU differ from
    :func:`build_lut` by one code on rare entries that sit on a rounding tie, where
    onnxruntime's polynomial approximations land on the other side.
    """
    attrs = _attrs(op, attrs)
    dtype = _check_qparams(x_scale, x_zp, y_scale, y_zp, dtype)
    x = dequantize(input_codes(dtype), np.float32(x_scale), int(x_zp))
    y = np.asarray(_float_op(op, x, attrs), dtype=np.float32)
    return quantize(y, np.float32(y_scale), int(y_zp), dtype)
