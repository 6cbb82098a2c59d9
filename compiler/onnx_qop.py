"""Lowering of QOperator nodes (QLinearConv, QLinearMatMul, com.microsoft QGemm, QLinearAdd,
QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat, QLinearLeakyRelu,
QLinearSigmoid, QLinearSoftmax) through the same builders as the QDQ path."""

import numpy as np

from . import ir
from .errors import UnsupportedOpError
from .onnx_common import Codes
from .onnx_common import attrs as _attrs
from .onnx_common import elem_name as _elem_name
from .onnx_common import scalar_q as _scalar_q
from .onnx_compute import (
    build_avgpool,
    build_binary,
    build_concat,
    build_const_operand,
    build_conv,
    build_fc,
    build_gap,
    build_softmax,
)
from .tables import ort_table

__all__ = ["lower_qop"]


def _label(node):
    return node.name or f"{node.op_type}_{node.output[0]}"


def _q(lw, node, k):
    scale = lw.const(node.input[k], node, "scale")
    zp = (
        lw.const(node.input[k + 1], node, "zero point")
        if len(node.input) > k + 1 and node.input[k + 1]
        else np.uint8(0)
    )
    return _scalar_q(scale, zp, f"{node.op_type} {_label(node)!r}")


def _act(lw, node, k, q):
    """IR tensor for activation input ``k`` quantized as ``q`` (raw graph inputs adopt ``q``)."""
    from onnx import helper

    name = node.input[k]
    v = lw.get(name, node)
    if v.kind == "fin":
        fname, shape, elem = v.name, v.shape, v.elem
        if elem != helper.np_dtype_to_tensor_dtype(q.np_dtype):
            raise UnsupportedOpError(
                f"node {_label(node)!r} ({node.op_type}) reads the input {fname!r} of type "
                f"{_elem_name(elem)} as {q.dtype} codes; declare the input {q.dtype} or "
                f"quantize it with a QuantizeLinear"
            )
        layout = ir.NHWC if len(shape) == 4 else ir.ND
        phys = (shape[0], shape[2], shape[3], shape[1]) if layout == ir.NHWC else shape
        t = lw.tensor(fname, phys, q, layout)
        lw.inputs.append(ir.IOSpec(fname, t, tuple(shape), False))
        lw.vals[name] = Codes(t)
        return t
    t = lw.act(name, node)
    tq = lw.t(t).q
    if (tq.scale, tq.zp, tq.dtype) != (q.scale, q.zp, q.dtype):
        t = lw.requant(t, q, f"{_label(node)}_in{k}")
    return t


def _wconst(lw, node, k):
    codes = lw.const(node.input[k], node, "weights")
    scale = np.asarray(lw.const(node.input[k + 1], node, "weight scale"), np.float32)
    zp = (
        lw.const(node.input[k + 2], node, "weight zero point")
        if node.input[k + 2]
        else np.zeros((), codes.dtype)
    )
    return codes, scale, np.asarray(zp)


def lower_qop(lw, node):
    """Lower one QOperator ``node``; sets ``lw.vals`` for its output."""
    op, a = node.op_type, _attrs(node)
    base = node.output[0]
    lw.labels.setdefault(base, _label(node))
    if op == "QLinearConv":
        x = _act(lw, node, 0, _q(lw, node, 1))
        codes, ws, wz = _wconst(lw, node, 3)
        bias = (
            lw.const(node.input[8], node, "bias") if len(node.input) > 8 and node.input[8] else None
        )
        out = build_conv(lw, node, x, codes, ws, wz, bias, _q(lw, node, 6), base, a)
    elif op in ("QLinearMatMul", "QGemm"):
        x = _act(lw, node, 0, _q(lw, node, 1))
        codes, ws, wz = _wconst(lw, node, 3)
        if op == "QGemm":
            if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0:
                raise UnsupportedOpError(f"node {_label(node)!r}: QGemm transA/alpha unsupported")
            w = codes if a.get("transB", 0) else codes.T
            bias = lw.const(node.input[6], node, "bias") if node.input[6] else None
            if len(node.input) < 9 or not node.input[7]:
                raise UnsupportedOpError(f"node {_label(node)!r}: QGemm with float output")
            qo = _q(lw, node, 7)
        else:
            w, bias, qo = codes.T, None, _q(lw, node, 6)
        out = build_fc(lw, node, x, w, ws, wz, bias, qo, base)
    elif op in ("QLinearAdd", "QLinearMul") and any(
        lw.get(node.input[k], node).kind == "const" for k in (0, 3)
    ):
        # A constant operand (the bias after a QLinearMatMul of older quantizers).
        k = 3 if lw.get(node.input[3], node).kind == "const" else 0
        qc = _q(lw, node, k + 1)
        x = _act(lw, node, 3 - k, _q(lw, node, 4 - k))
        out = build_const_operand(
            lw,
            node,
            op[7:].lower(),
            x,
            (np.asarray(lw.const(node.input[k], node)), qc.scale, qc.zp),
            _q(lw, node, 6),
            base,
        )
    elif op in ("QLinearAdd", "QLinearMul"):
        xa = _act(lw, node, 0, _q(lw, node, 1))
        xb = _act(lw, node, 3, _q(lw, node, 4))
        out = build_binary(lw, node, op[7:].lower(), xa, xb, _q(lw, node, 6), base)
    elif op in ("QLinearGlobalAveragePool", "QLinearAveragePool"):
        if a.get("channels_last", 0):
            raise UnsupportedOpError(f"node {_label(node)!r}: channels_last=1 is unsupported")
        x = _act(lw, node, 0, _q(lw, node, 1))
        qo = _q(lw, node, 3)
        out = (
            build_gap(lw, node, x, qo, base)
            if op == "QLinearGlobalAveragePool"
            else build_avgpool(lw, node, x, qo, base, a)
        )
    elif op == "QLinearConcat":
        qo = _q(lw, node, 0)
        xs = []
        for k in range(2, len(node.input), 3):
            xs.append(_act(lw, node, k, _q(lw, node, k + 1)))
        out = build_concat(lw, node, xs, a.get("axis", 1), qo, base)
    elif op in ("QLinearLeakyRelu", "QLinearSigmoid"):
        qi = _q(lw, node, 1)
        x = _act(lw, node, 0, qi)
        qo = _q(lw, node, 3)
        t = lw.t(x)
        table = ort_table(node, qi, qo, lw.opset, qoperator=True)
        extra = {"alpha": float(a.get("alpha", 0.01))} if op == "QLinearLeakyRelu" else {}
        fn = "LeakyRelu" if op == "QLinearLeakyRelu" else "Sigmoid"
        out = lw.emit(
            "lut", base, [x], t.shape, qo, t.layout, source=[node.name], table=table, fn=fn, **extra
        )
    elif op == "QLinearSoftmax":
        x = _act(lw, node, 0, _q(lw, node, 1))
        axis = a.get("axis", -1)
        out = build_softmax(lw, node, x, _q(lw, node, 3), base, axis, int(a.get("opset", 13)))
    else:
        raise UnsupportedOpError(f"node {_label(node)!r}: {op} unsupported")
    lw.vals[node.output[0]] = Codes(out)
