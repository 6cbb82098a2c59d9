"""Single-op quantized ONNX models and an onnxruntime runner: the golden side of differential tests.

Two ways to get a quantized op out of onnxruntime, both accepted as golden
(Ref: docs/numerics.md, "Which quantized graph to expect"):

* **QOperator**: integer nodes written by hand with :func:`make_model`
  (``QLinearConv``, ``QLinearMatMul``, com.microsoft ``QGemm``,
  ``QLinearGlobalAveragePool``, ``QLinearAveragePool``...). Inputs and outputs are
  codes; the builders below (``qlinear_conv`` etc.) cover the common ones.
* **QDQ**: a float model (:func:`make_model` with float ops) quantized by
  ``onnxruntime.quantization.quantize_static`` (:func:`quantize_qdq`). Its graph
  inputs/outputs are float; :func:`strip_io_qdq` removes the boundary
  QuantizeLinear/DequantizeLinear so the model takes and returns codes, and
  returns their (scale, zero point).

:func:`run` executes at ``ORT_ENABLE_EXTENDED`` (the level at which DQ->op->Q
groups fuse into integer kernels); :func:`assert_integer_graph` checks that the
optimized graph has no float compute op left, which a QDQ result must pass
before it is called golden.

Everything here is NCHW, as ONNX is; :func:`nhwc_to_nchw`/:func:`nchw_to_nhwc`
convert for the NHWC reference kernels. Only tests import this module.
"""

import os
import tempfile

import numpy as np
import pytest

# Importing this module skips the importing test module when the golden side is missing.
onnx = pytest.importorskip("onnx", reason="differential tests need onnx")
ort = pytest.importorskip("onnxruntime", reason="differential tests need onnxruntime")
from bamboo.compiler.reference import reference_session  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

__all__ = [
    "helper",
    "OPSET",
    "MS_OPSET",
    "FLOAT_OPS",
    "EXTENDED",
    "make_model",
    "tensor",
    "initializers",
    "qlinear_conv",
    "qgemm",
    "qlinear_matmul",
    "qlinear_global_avg_pool",
    "qlinear_avg_pool",
    "quantize_qdq",
    "qdq_single_op",
    "dequantized_initializers",
    "strip_io_qdq",
    "codes_from_dequantized",
    "session",
    "run",
    "optimized_model",
    "op_types",
    "assert_integer_graph",
    "nhwc_to_nchw",
    "nchw_to_nhwc",
]

OPSET = 21
MS_OPSET = 1
# Ops that, left in an optimized graph, mean some arithmetic ran in float.
FLOAT_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "AveragePool",
        "GlobalAveragePool",
        "FusedConv",
        "FusedGemm",
        "FusedMatMul",
        "Sigmoid",
        "LeakyRelu",
        "HardSigmoid",
        "Softmax",
    }
)
EXTENDED = "extended"


# --- building -----------------------------------------------------------------------------------


def tensor(name, value):
    """An initializer from a numpy array (dtype kept) or a Python scalar (float32)."""
    value = np.asarray(value) if isinstance(value, np.ndarray) else np.asarray(value, np.float32)
    return numpy_helper.from_array(value, name)


def make_model(nodes, inputs, outputs, inits=(), opset=OPSET):
    """A checked ModelProto with the default and com.microsoft domains imported.

    Parameters
    ----------
    nodes : list of NodeProto
        From ``onnx.helper.make_node`` (give ``domain="com.microsoft"`` for contrib ops).
    inputs, outputs : list of (name, numpy dtype, shape)
        Graph inputs/outputs; a shape entry may be None or a string for a free dimension.
    inits : dict of name -> array, or iterable of TensorProto
    """

    def vi(name, dtype, shape):
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        if shape is not None:
            shape = [d if isinstance(d, str) or d is None else int(d) for d in shape]
        return helper.make_tensor_value_info(name, elem, shape)

    if isinstance(inits, dict):
        inits = [tensor(k, v) for k, v in inits.items()]
    graph = helper.make_graph(
        list(nodes), "g", [vi(*i) for i in inputs], [vi(*o) for o in outputs], list(inits)
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", opset),
            helper.make_opsetid("com.microsoft", MS_OPSET),
        ],
    )
    model.ir_version = 10  # onnxruntime 1.32 reads IR <= 11; pin so newer onnx cannot outrun it
    return model


def initializers(model):
    """All initializers of ``model`` as a dict of numpy arrays."""
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _zp(value, dtype):
    return np.asarray(value, dtype=dtype)


def qlinear_conv(
    x_shape,
    x_dtype,
    x_scale,
    x_zp,
    w,
    w_scale,
    w_zp,
    bias,
    y_scale,
    y_zp,
    *,
    y_dtype=None,
    strides=(1, 1),
    dilations=(1, 1),
    pads=(0, 0, 0, 0),
    group=1,
):
    """QLinearConv model ``x -> y`` over NCHW codes; ``w`` is OIHW codes, ``bias`` int32 or None.

    ``pads`` is ONNX order (top, left, bottom, right). ``w_scale``/``w_zp`` may be per
    output channel (1-D).
    """
    y_dtype = np.dtype(y_dtype or x_dtype)
    inits = {
        "xs": np.float32(x_scale),
        "xz": _zp(x_zp, x_dtype),
        "w": w,
        "ws": np.asarray(w_scale, np.float32),
        "wz": _zp(w_zp, w.dtype),
        "ys": np.float32(y_scale),
        "yz": _zp(y_zp, y_dtype),
    }
    ins = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    if bias is not None:
        inits["b"] = np.asarray(bias, np.int32)
        ins.append("b")
    node = helper.make_node(
        "QLinearConv",
        ins,
        ["y"],
        strides=list(strides),
        dilations=list(dilations),
        pads=list(pads),
        group=group,
        kernel_shape=list(w.shape[2:]),
    )
    return make_model([node], [("x", x_dtype, list(x_shape))], [("y", y_dtype, None)], inits)


def qgemm(x_shape, x_dtype, x_scale, x_zp, w, w_scale, w_zp, bias, y_scale, y_zp, *, y_dtype=None):
    """com.microsoft QGemm ``y = x @ w.T + bias`` with ``w`` (O, K) codes (transB=1)."""
    y_dtype = np.dtype(y_dtype or x_dtype)
    inits = {
        "xs": np.float32(x_scale),
        "xz": _zp(x_zp, x_dtype),
        "w": w,
        "ws": np.asarray(w_scale, np.float32),
        "wz": np.full(np.shape(w_scale), w_zp, w.dtype),
        "b": np.asarray(bias, np.int32),
        "ys": np.float32(y_scale),
        "yz": _zp(y_zp, y_dtype),
    }
    node = helper.make_node(
        "QGemm",
        ["x", "xs", "xz", "w", "ws", "wz", "b", "ys", "yz"],
        ["y"],
        domain="com.microsoft",
        transB=1,
    )
    return make_model([node], [("x", x_dtype, list(x_shape))], [("y", y_dtype, None)], inits)


def qlinear_matmul(
    x_shape, x_dtype, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, *, y_dtype=None
):
    """QLinearMatMul ``y = x @ w`` with ``w`` (K, O) codes, no bias."""
    y_dtype = np.dtype(y_dtype or x_dtype)
    inits = {
        "xs": np.float32(x_scale),
        "xz": _zp(x_zp, x_dtype),
        "w": w,
        "ws": np.asarray(w_scale, np.float32),
        "wz": _zp(w_zp, w.dtype),
        "ys": np.float32(y_scale),
        "yz": _zp(y_zp, y_dtype),
    }
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    return make_model([node], [("x", x_dtype, list(x_shape))], [("y", y_dtype, None)], inits)


def qlinear_global_avg_pool(x_shape, x_dtype, x_scale, x_zp, y_scale, y_zp, *, channels_last=0):
    """com.microsoft QLinearGlobalAveragePool (NCHW unless ``channels_last``)."""
    inits = {
        "xs": np.float32(x_scale),
        "xz": _zp(x_zp, x_dtype),
        "ys": np.float32(y_scale),
        "yz": _zp(y_zp, x_dtype),
    }
    node = helper.make_node(
        "QLinearGlobalAveragePool",
        ["x", "xs", "xz", "ys", "yz"],
        ["y"],
        domain="com.microsoft",
        channels_last=channels_last,
    )
    return make_model([node], [("x", x_dtype, list(x_shape))], [("y", x_dtype, None)], inits)


def qlinear_avg_pool(
    x_shape,
    x_dtype,
    x_scale,
    x_zp,
    y_scale,
    y_zp,
    kernel,
    *,
    strides=None,
    pads=(0, 0, 0, 0),
    count_include_pad=0,
    ceil_mode=0,
    channels_last=0,
):
    """com.microsoft QLinearAveragePool."""
    inits = {
        "xs": np.float32(x_scale),
        "xz": _zp(x_zp, x_dtype),
        "ys": np.float32(y_scale),
        "yz": _zp(y_zp, x_dtype),
    }
    node = helper.make_node(
        "QLinearAveragePool",
        ["x", "xs", "xz", "ys", "yz"],
        ["y"],
        domain="com.microsoft",
        kernel_shape=list(kernel),
        strides=list(strides or kernel),
        pads=list(pads),
        count_include_pad=count_include_pad,
        ceil_mode=ceil_mode,
        channels_last=channels_last,
    )
    return make_model([node], [("x", x_dtype, list(x_shape))], [("y", x_dtype, None)], inits)


# --- QDQ through the onnxruntime quantizer ------------------------------------------------------


class _Reader:
    """CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize_qdq(
    model,
    calib_feeds,
    *,
    per_channel=True,
    activation_type="uint8",
    weight_type="int8",
    extra_options=None,
    **kw,
):
    """Quantize a float ``model`` with ``quantize_static`` (QDQ format, MinMax calibration).

    ``calib_feeds`` is a list of ``{input name: float32 array}``. ``activation_type`` /
    ``weight_type`` are ``"uint8"`` or ``"int8"``. Extra keywords go to ``quantize_static``.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f.onnx"), os.path.join(d, "q.onnx")
        onnx.save(model, src)
        quantize_static(
            src,
            dst,
            _Reader(calib_feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=qtype[activation_type],
            weight_type=qtype[weight_type],
            extra_options=extra_options or {},
            **kw,
        )
        return onnx.load(dst)


def qdq_single_op(op, inputs, y_qparams, dtype=np.uint8, domain="", **attrs):
    """A hand-made QDQ model ``float -> Q -> DQ -> op -> Q -> DQ -> float``.

    For ops ``quantize_static`` leaves float when alone (AveragePool, MaxPool...),
    with chosen scales. ``inputs`` is a list of ``(shape, scale, zero_point)``
    (graph inputs named ``x0, x1, ...``); ``y_qparams`` is ``(scale, zero_point)``
    of the single output ``y``. Keep both boundaries: int8 groups fuse only so
    (see :func:`strip_io_qdq`).
    """
    nodes, ins, inits = [], [], {}
    for i, (shape, s, z) in enumerate(inputs):
        inits[f"s{i}"], inits[f"z{i}"] = np.float32(s), np.asarray(z, dtype)
        nodes += [
            helper.make_node("QuantizeLinear", [f"x{i}", f"s{i}", f"z{i}"], [f"q{i}"]),
            helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", f"z{i}"], [f"d{i}"]),
        ]
        ins.append((f"x{i}", np.float32, list(shape)))
    inits["sy"], inits["zy"] = np.float32(y_qparams[0]), np.asarray(y_qparams[1], dtype)
    nodes += [
        helper.make_node(op, [f"d{i}" for i in range(len(inputs))], ["t"], domain=domain, **attrs),
        helper.make_node("QuantizeLinear", ["t", "sy", "zy"], ["qy"]),
        helper.make_node("DequantizeLinear", ["qy", "sy", "zy"], ["y"]),
    ]
    return make_model(nodes, ins, [("y", np.float32, None)], inits)


def dequantized_initializers(model):
    """Constant inputs behind DequantizeLinear nodes, keyed by the DQ output name.

    Returns ``{name: (codes, scale, zero_point, axis)}``: e.g. a QDQ Conv's
    ``node.input[1]`` looks up its int8 weights and per-channel scales,
    ``node.input[2]`` its int32 bias.
    """
    inits = initializers(model)
    out = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            zp = inits[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros((), np.int32)
            out[n.output[0]] = (inits[n.input[0]], inits[n.input[1]], zp, axis)
    return out


def strip_io_qdq(model, inputs=True, outputs=True):
    """Remove boundary QuantizeLinear (on inputs) and DequantizeLinear (on outputs).

    Returns ``(model, qparams)``: the model now takes (``inputs``) and returns
    (``outputs``) codes, and ``qparams[name] = (scale, zero_point)`` for every
    graph input/output name that now carries codes, plus, with ``inputs=False``,
    for each float input name the qparams of its QuantizeLinear.

    Strip nothing (``inputs=outputs=False``) for int8 activations: measured on
    x86 onnxruntime 1.32, an int8 QDQ Conv fuses into QLinearConv only with both
    the input Q and the output DQ in place (they are rewritten to uint8 pairs);
    without either, the Conv silently stays float. Recover output codes with
    :func:`codes_from_dequantized`.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = initializers(model)
    in_names = {i.name for i in g.input}
    out_names = {o.name for o in g.output}
    qparams, drop, new_in, new_out = {}, [], [], []
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in in_names:
            s, z = inits[n.input[1]], inits[n.input[2]]
            if not inputs:
                qparams[n.input[0]] = (s, z)
                continue
            qparams[n.output[0]] = (s, z)
            new_in.append(
                helper.make_tensor_value_info(
                    n.output[0], helper.np_dtype_to_tensor_dtype(z.dtype), None
                )
            )
            drop.append(n)
        elif n.op_type == "DequantizeLinear" and n.output[0] in out_names and outputs:
            s, z = inits[n.input[1]], inits[n.input[2]]
            qparams[n.input[0]] = (s, z)
            new_out.append(
                helper.make_tensor_value_info(
                    n.input[0], helper.np_dtype_to_tensor_dtype(z.dtype), None
                )
            )
            drop.append(n)
    for n in drop:
        g.node.remove(n)
    kept_in = [i for i in g.input if all(i.name != n.input[0] for n in drop)]
    kept_out = [o for o in g.output if all(o.name != n.output[0] for n in drop)]
    del g.input[:]
    g.input.extend(kept_in + new_in)
    del g.output[:]
    g.output.extend(kept_out + new_out)
    return model, qparams


def codes_from_dequantized(y, scale, zp):
    """Invert DequantizeLinear exactly: ``rint(y / scale) + zp`` as ``zp``'s dtype.

    ``y = f32((q - zp) * s)`` carries a relative error below ``2**-24``, so for
    ``|q - zp| <= 255`` the quotient is within ``1e-5`` of an integer.
    """
    zp = np.asarray(zp)
    q = np.rint(np.asarray(y, np.float64) / np.float64(scale)) + zp.astype(np.int64)
    return q.astype(zp.dtype)


# --- running ------------------------------------------------------------------------------------


def session(model, level=EXTENDED, optimized_path=None):
    """An InferenceSession (CPU, one thread: deterministic and kind to shared machines;
    exact integer kernels on every processor: bamboo.compiler.reference)."""
    return reference_session(model, level, optimized_path)


def run(model, feeds, level=EXTENDED):
    """Run ``model`` on ``feeds`` (dict, or a single array for the first input); list of outputs."""
    sess = session(model, level)
    if not isinstance(feeds, dict):
        feeds = {sess.get_inputs()[0].name: feeds}
    return sess.run(None, feeds)


def optimized_model(model, level=EXTENDED):
    """The graph onnxruntime actually executes at ``level``, as a ModelProto."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "opt.onnx")
        session(model, level, optimized_path=path)
        return onnx.load(path)


def op_types(model):
    """Op types of ``model``'s top-level nodes, in order."""
    return [n.op_type for n in model.graph.node]


def assert_integer_graph(model, level=EXTENDED, float_ops=FLOAT_OPS):
    """Fail unless onnxruntime's optimized graph at ``level`` runs no float compute op.

    A float op is one of ``float_ops``, or a DequantizeLinear feeding another node
    (one that only produces a graph output is the float boundary, allowed).
    Returns the optimized op types so a test can also pin the fused kernel it expects.
    """
    opt = optimized_model(model, level)
    ops = op_types(opt)
    consumed = {i for n in opt.graph.node for i in n.input}
    bad = sorted(set(ops) & set(float_ops))
    bad += ["DequantizeLinear"] * any(
        n.op_type == "DequantizeLinear" and n.output[0] in consumed for n in opt.graph.node
    )
    assert not bad, f"float ops remain after {level} optimization: {bad} in {ops}"
    return ops


# --- layout -------------------------------------------------------------------------------------


def nhwc_to_nchw(x):
    """NHWC -> NCHW (contiguous copy)."""
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def nchw_to_nhwc(x):
    """NCHW -> NHWC (contiguous copy)."""
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))
