"""Lowering of float compute ops (QDQ ``DQ -> op -> Q`` groups) and their shared builders.

The builders (:func:`build_conv`, :func:`build_fc`, ...) take integer weights and
quantization parameters, so the QOperator path (:mod:`.onnx_qop`) uses them too.
"""

import numpy as np
from bamboo.runtime.quant import quantize
from bamboo.runtime.requant import Requant, conv_scale, pool_scale

from . import ir
from .errors import NotQuantizedError, UnsupportedOpError
from .lut import build_lut
from .onnx_common import attrs as _attrs
from .onnx_common import label as _label
from .onnx_common import requant_table
from .onnx_moves import pool_geometry
from .resize import lower_resize
from .tables import ort_island_table, ort_table

__all__ = [
    "lower_compute",
    "build_conv",
    "build_fc",
    "build_binary",
    "build_const_operand",
    "build_concat",
    "build_gap",
    "build_avgpool",
    "build_softmax",
    "clamp_codes",
]


def clamp_codes(q, lo, hi):
    """Codes ``(lo_code, hi_code)`` that clamp real values to ``[lo, hi]`` in quantization ``q``."""
    f32 = np.float32
    lo_c = q.qmin if lo is None else int(quantize(f32(lo), f32(q.scale), q.zp, q.np_dtype))
    hi_c = q.qmax if hi is None else int(quantize(f32(hi), f32(q.scale), q.zp, q.np_dtype))
    return lo_c, hi_c


def _clip_bounds(lw, node):
    a = _attrs(node)
    if node.op_type == "Relu":
        return 0.0, None
    lo, hi = a.get("min"), a.get("max")
    if len(node.input) > 1 and node.input[1]:
        lo = float(lw.const(node.input[1], node, "min"))
    if len(node.input) > 2 and node.input[2]:
        hi = float(lw.const(node.input[2], node, "max"))
    return lo, hi


def _weights(lw, name, node, what="weights"):
    v = lw.get(name, node)
    if v.kind == "const":
        raise NotQuantizedError(
            f"node {_label(node)!r} ({node.op_type}): {what} {name!r} are float; quantize the "
            f"weights too (quantize_static quantizes them unless the op is excluded)"
        )
    if v.kind != "qconst":
        raise UnsupportedOpError(
            f"node {_label(node)!r} ({node.op_type}): {what} {name!r} must be constant"
        )
    return v.codes, v.scale, v.zp, v.axis


def _bias(lw, name, node):
    if len(node.input) <= 2 or not name:
        return None
    codes, _, _, _ = _weights(lw, name, node, "bias")
    if codes.dtype != np.int32:
        raise UnsupportedOpError(f"node {_label(node)!r}: bias must be int32, not {codes.dtype}")
    return codes.astype(np.int32)


def _per_channel(a, n):
    a = np.asarray(a).reshape(-1)
    return np.broadcast_to(a, (n,)).copy()


def lower_compute(lw, node, q, base, clamp):
    """Lower a pending float ``node`` given its output quantization ``q``."""
    op = node.op_type
    src = [node.name]
    if op in ("Relu", "Clip"):
        lo, hi = _clip_bounds(lw, node)
        c = clamp_codes(q, lo, hi)
        if clamp is not None:
            c = (max(c[0], clamp[0]), min(c[1], clamp[1]))
        v = lw.get(node.input[0], node)
        if v.kind == "pending" and v.node.op_type in (
            "Conv",
            "Gemm",
            "MatMul",
            "GlobalAveragePool",
            "Relu",
            "Clip",
        ):
            out = lw.compute(v.node, q, base, clamp=c)
            last = lw.nodes[-1]
            lw.nodes[-1] = last.replace(fused=last.fused + (_label(node),))
            return out
        x = lw.act(node.input[0], node)
        table = _clamp_table(lw.t(x).q, q, c)
        t = lw.t(x)
        return lw.emit("lut", base, [x], t.shape, q, t.layout, source=src, table=table, fn=op)
    if op in ("Resize", "Upsample"):  # linear between DQ and Q (compiler/resize.py)
        return _apply_clamp(lw, lower_resize(lw, node, lw.act(node.input[0], node), q, base), clamp)
    if op in ("Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh"):
        x = lw.act(node.input[0], node)
        t = lw.t(x)
        if t.q.dtype == q.dtype:
            table = build_lut(
                op,
                np.float32(t.q.scale),
                t.q.zp,
                np.float32(q.scale),
                q.zp,
                q.np_dtype,
                **{k: float(v) for k, v in _attrs(node).items()},
            )
        else:
            table = ort_table(node, t.q, q, lw.opset)
        attrs = {"alpha": float(_attrs(node).get("alpha", 0.01))} if op == "LeakyRelu" else {}
        out = lw.emit(
            "lut", base, [x], t.shape, q, t.layout, source=src, table=table, fn=op, **attrs
        )
        return _apply_clamp(lw, out, clamp)
    if op == "Conv":
        a = _attrs(node)
        codes, ws, wz, _ = _weights(lw, node.input[1], node)
        x = lw.act(node.input[0], node)
        return build_conv(
            lw,
            node,
            x,
            codes,
            ws,
            wz,
            _bias(lw, node.input[2] if len(node.input) > 2 else "", node),
            q,
            base,
            a,
            clamp,
        )
    if op in ("Gemm", "MatMul"):
        a = _attrs(node)
        codes, ws, wz, _ = _weights(lw, node.input[1], node)
        if op == "Gemm":
            if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
                raise UnsupportedOpError(
                    f"node {_label(node)!r}: Gemm with alpha/beta != 1 or transA is unsupported"
                )
            w = codes if a.get("transB", 0) else codes.T
            bias = _bias(lw, node.input[2] if len(node.input) > 2 else "", node)
        else:
            w, bias = codes.T, None
        x = lw.act(node.input[0], node)
        return build_fc(lw, node, x, w, ws, wz, bias, q, base, clamp)
    if op in ("Add", "Mul"):
        island = _elementwise_island(lw, node)
        if island is not None:
            nodes, src, consts = island
            t = lw.t(src)
            table = ort_island_table(
                nodes, _dq_name(lw, nodes, src), node.output[0], consts, t.q, q, lw.opset
            )
            out = lw.emit(
                "lut",
                base,
                [src],
                t.shape,
                q,
                t.layout,
                source=[n.name for n in nodes],
                table=table,
                fn="+".join(n.op_type for n in nodes),
            )
            return _apply_clamp(lw, out, clamp)
        kinds = [lw.get(i, node).kind for i in node.input[:2]]
        if kinds[0] in ("const", "qconst") or kinds[1] in ("const", "qconst"):
            k = 0 if kinds[0] in ("const", "qconst") else 1
            v = lw.get(node.input[k], node)
            operand = (
                (np.asarray(v.value), None, None)
                if v.kind == "const"
                else (
                    np.asarray(v.codes),
                    float(np.asarray(v.scale).reshape(-1)[0]),
                    int(np.asarray(v.zp).reshape(-1)[0]),
                )
            )
            if v.kind == "qconst" and (np.size(v.scale) != 1 or np.size(v.zp) != 1):
                raise UnsupportedOpError(
                    f"node {_label(node)!r}: {op} constant quantized per "
                    f"axis; quantize it per tensor"
                )
            x = lw.act(node.input[1 - k], node)
            out = build_const_operand(lw, node, op.lower(), x, operand, q, base)
            return _apply_clamp(lw, out, clamp)
        a = lw.act(node.input[0], node)
        b = lw.act(node.input[1], node)
        return _apply_clamp(lw, build_binary(lw, node, op.lower(), a, b, q, base), clamp)
    if op == "Concat":
        xs = [lw.act(i, node) for i in node.input]
        return _apply_clamp(
            lw, build_concat(lw, node, xs, _attrs(node).get("axis", 1), q, base), clamp
        )
    if op == "GlobalAveragePool":
        return build_gap(lw, node, lw.act(node.input[0], node), q, base, clamp)
    if op == "ReduceMean":
        return _reduce_mean(lw, node, q, base, clamp)
    if op == "AveragePool":
        out = build_avgpool(lw, node, lw.act(node.input[0], node), q, base, _attrs(node))
        return _apply_clamp(lw, out, clamp)
    if op == "Softmax":
        a = _attrs(node)
        axis = a.get("axis", 1 if lw.opset < 13 else -1)
        return build_softmax(lw, node, lw.act(node.input[0], node), q, base, axis, lw.opset)
    raise UnsupportedOpError(f"node {_label(node)!r}: {op} unsupported")


def reduce_axes(lw, node, rank):
    """The sorted, non-negative axes a Reduce* ``node`` reduces over a rank-``rank`` input:
    from the attribute (opset < 18) or the second input (opset 18)."""
    a = _attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = [int(v) for v in np.asarray(lw.const(node.input[1], node, "axes")).reshape(-1)]
    if not axes:
        axes = [] if a.get("noop_with_empty_axes", 0) else list(range(rank))
    return sorted({int(v) % rank for v in axes})


def _reduce_mean(lw, node, q, base, clamp):
    """``ReduceMean`` over H and W (``x.mean([2, 3])``, keepdims 0 or 1) is a global average
    pool; axes come from the attribute (opset < 18) or the second input (opset 18)."""
    x = lw.act(node.input[0], node)
    a = _attrs(node)
    shape = ir.logical_shape(lw.t(x))
    axes = reduce_axes(lw, node, len(shape))
    if len(shape) != 4 or axes != [2, 3]:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: ReduceMean over axes {axes} of {shape}; Bamboo runs the "
            f"mean over the spatial axes [2, 3] (a global average pool)"
        )
    keep = a.get("keepdims", 1)
    out = build_gap(lw, node, x, q, base if keep else f"{base}_gap", clamp)
    if keep:
        return out
    n, _, _, c = lw.t(out).shape
    return lw.emit("view", base, [out], (n, c), q, ir.ND, source=[node.name], shape=(n, c))


def _clamp_table(qi, qo, c):
    return np.clip(requant_table(qi, qo).astype(np.int64), c[0], c[1]).astype(qo.np_dtype)


def _apply_clamp(lw, out, clamp):
    if clamp is None:
        return out
    t = lw.t(out)
    return lw.emit(
        "lut",
        f"{out}_clamp",
        [out],
        t.shape,
        t.q,
        t.layout,
        table=_clamp_table(t.q, t.q, clamp),
        fn="Clip",
    )


def _check_bias(node, bias, o):
    if bias is None:
        return np.zeros(o, np.int32)
    bias = np.asarray(bias)
    if bias.shape != (o,) or bias.dtype != np.int32:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: bias is {bias.dtype}{list(bias.shape)}, expected int32[{o}]"
        )
    return bias


def _check_scales(node, ws, o):
    ws = np.asarray(ws)
    if not np.isfinite(ws).all() or (ws <= 0).any():
        raise UnsupportedOpError(
            f"node {_label(node)!r}: weight scales must be positive and finite"
        )
    if ws.size not in (1, o):
        raise UnsupportedOpError(
            f"node {_label(node)!r}: {ws.size} weight scales for {o} output channels"
        )


def build_conv(lw, node, x, codes, ws, wz, bias, q, base, a, clamp=None):
    """A ``conv`` node from OIHW weight codes ``codes`` and per-channel scales ``ws``."""
    x = lw.nhwc(x)
    xt = lw.t(x)
    n, h, w, c = xt.shape
    if codes.ndim != 4:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: only 2-D convolutions are supported (weights {codes.shape})"
        )
    o, cg, kh, kw = codes.shape
    group = int(a.get("group", 1))
    if cg * group != c or o % group:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: weights {codes.shape} with group "
            f"{group} do not fit {c} input channels"
        )
    stride, dil, pads, (ho, wo) = pool_geometry(node, (h, w), (kh, kw), a)
    src, outer, value = lw.explicit_pad(x)
    if value == xt.q.zp:  # a Pad of real zero before the Conv: the Conv's own padding
        x, pads = src, tuple(int(p) for p in np.add(pads, outer))
    _check_scales(node, ws, o)
    scale = conv_scale(np.float32(xt.q.scale), _per_channel(ws, o), np.float32(q.scale))
    rq = Requant.from_scale(scale, q.zp, q.np_dtype, clamp)
    bias = _check_bias(node, bias, o)
    return lw.emit(
        "conv",
        base,
        [x],
        (n, ho, wo, o),
        q,
        ir.NHWC,
        source=[node.name],
        w=np.ascontiguousarray(codes.transpose(0, 2, 3, 1)),
        w_zp=_per_channel(wz, o).astype(np.int32),
        bias=bias,
        rq=rq,
        lut=None,
        kernel=(kh, kw),
        stride=stride,
        dilation=dil,
        pads=pads,
        group=group,
    )


def build_fc(lw, node, x, w, ws, wz, bias, q, base, clamp=None):
    """An ``fc`` node from ``w`` (O, K) weight codes."""
    xt = lw.t(x)
    if xt.layout == ir.NHWC and xt.shape[1] == xt.shape[2] == 1:
        x = lw.emit(
            "view",
            f"{x}_flat",
            [x],
            (xt.shape[0], xt.shape[3]),
            xt.q,
            ir.ND,
            shape=(xt.shape[0], xt.shape[3]),
        )
        xt = lw.t(x)
    if xt.layout != ir.ND or xt.shape[-1] != w.shape[1]:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: input {ir.logical_shape(xt)} does not "
            f"fit weights {w.shape} (O, K)"
        )
    o = w.shape[0]
    _check_scales(node, ws, o)
    scale = conv_scale(np.float32(xt.q.scale), _per_channel(ws, o), np.float32(q.scale))
    rq = Requant.from_scale(scale, q.zp, q.np_dtype, clamp)
    bias = _check_bias(node, bias, o)
    return lw.emit(
        "fc",
        base,
        [x],
        xt.shape[:-1] + (o,),
        q,
        ir.ND,
        source=[node.name],
        w=np.ascontiguousarray(w),
        w_zp=_per_channel(wz, o).astype(np.int32),
        bias=np.asarray(bias, np.int32),
        rq=rq,
        lut=None,
    )


def _same_layout(lw, names):
    ts = [lw.t(n) for n in names]
    if any(t.layout == ir.NHWC for t in ts) and all(len(t.shape) == 4 for t in ts):
        return [lw.nhwc(n) for n in names]
    return [lw.logical(n) for n in names]


def build_binary(lw, node, op, a, b, q, base):
    """``add`` or ``mul`` of two activations (numpy broadcasting on physical shapes)."""
    a, b = _same_layout(lw, [a, b])
    ta, tb = lw.t(a), lw.t(b)
    if ta.q.dtype != tb.q.dtype or ta.q.dtype != q.dtype:
        raise UnsupportedOpError(f"node {_label(node)!r}: {op} of mixed uint8/int8 codes")
    try:
        shape = np.broadcast_shapes(ta.shape, tb.shape)
    except ValueError:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: shapes {ir.logical_shape(ta)} and "
            f"{ir.logical_shape(tb)} do not broadcast"
        ) from None
    return lw.emit(op, base, [a, b], shape, q, ta.layout, source=[node.name])


def build_const_operand(lw, node, op, x, operand, q, base):
    """``add``/``mul`` of activation ``x`` and a constant ``operand = (values, scale, zp)``
    (scale None: float values). A scalar becomes a 256-entry table (fabric); a per-channel
    or per-element constant an ``add_const``/``mul_const`` node (CPU)."""
    from bamboo.runtime.cpu_ops import run_op

    values, scale, zp = operand
    t = lw.t(x)
    shape = ir.logical_shape(t)
    try:
        out_shape = np.broadcast_shapes(shape, values.shape)
    except ValueError:
        out_shape = None
    if out_shape != tuple(shape):
        raise UnsupportedOpError(
            f"node {_label(node)!r}: constant of shape {values.shape} does "
            f"not broadcast to the activation {shape}"
        )
    if scale is not None and values.dtype != t.q.np_dtype:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: {values.dtype} constant with {t.q.dtype} activations"
        )
    attrs = {"fn": op, "operand_scale": scale, "operand_zp": zp}
    if values.size == 1:
        codes = np.arange(256, dtype=np.uint8).view(t.q.np_dtype)  # index = the code's bits
        table = run_op(f"{op}_const", {**attrs, "operand": values.reshape(())}, [codes], [t.q], q)
        return lw.emit(
            "lut",
            base,
            [x],
            t.shape,
            q,
            t.layout,
            source=[node.name],
            table=np.asarray(table, q.np_dtype),
            fn=f"{op.capitalize()} constant",
        )
    full = values.reshape((1,) * (len(shape) - values.ndim) + values.shape)
    if t.layout == ir.NHWC:
        full = full.transpose(0, 2, 3, 1)
    return lw.emit(
        f"{op}_const",
        base,
        [x],
        t.shape,
        q,
        t.layout,
        source=[node.name],
        operand=np.ascontiguousarray(full if scale is not None else full.astype(np.float32)),
        **attrs,
    )


def build_concat(lw, node, xs, axis, q, base):
    """``concat`` along logical ``axis``; inputs with other parameters get a requant table."""
    xs = _same_layout(lw, xs)
    ts = [lw.t(x) for x in xs]
    rank = len(ts[0].shape)
    if not -rank <= axis < rank:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: Concat axis {axis} out of range for rank {rank}"
        )
    pax = ir.to_physical_axis(ts[0], axis)
    if any(
        len(t.shape) != rank
        or t.layout != ts[0].layout
        or t.shape[:pax] + t.shape[pax + 1 :] != ts[0].shape[:pax] + ts[0].shape[pax + 1 :]
        for t in ts
    ):
        raise UnsupportedOpError(
            f"node {_label(node)!r}: Concat inputs "
            f"{[ir.logical_shape(t) for t in ts]} differ off axis {axis}"
        )
    shape = list(ts[0].shape)
    shape[pax] = sum(t.shape[pax] for t in ts)
    luts = tuple(
        None if (t.q.scale, t.q.zp) == (q.scale, q.zp) else requant_table(t.q, q) for t in ts
    )
    return lw.emit(
        "concat", base, xs, shape, q, ts[0].layout, source=[node.name], axis=pax, luts=luts
    )


def build_gap(lw, node, x, q, base, clamp=None):
    """``gap`` with the divide by H*W in the requantizer scale."""
    x = lw.nhwc(x)
    n, h, w, c = lw.t(x).shape
    rq = Requant.from_scale(
        pool_scale(np.float32(lw.t(x).q.scale), np.float32(q.scale), h * w), q.zp, q.np_dtype, clamp
    )
    return lw.emit("gap", base, [x], (n, 1, 1, c), q, ir.NHWC, source=[node.name], rq=rq)


def build_avgpool(lw, node, x, q, base, a):
    """``avgpool`` (integer window sum and per-divisor requantizer, as the runtime kernel)."""
    x = lw.nhwc(x)
    n, h, w, c = lw.t(x).shape
    kernel = tuple(a["kernel_shape"])
    stride, _, pads, (ho, wo) = pool_geometry(node, (h, w), kernel, a)
    if a.get("ceil_mode", 0):
        raise UnsupportedOpError(f"node {_label(node)!r}: AveragePool ceil_mode=1 unsupported")
    include = bool(a.get("count_include_pad", 0))
    src, outer, value = lw.explicit_pad(x)
    # Explicitly padded pixels are real zeros the average counts: fold them when every pad
    # then counts (the pool's own pads count too, or it has none).
    if value == lw.t(x).q.zp and (include or not any(pads)):
        x, pads, include = src, tuple(int(p) for p in np.add(pads, outer)), True
    return lw.emit(
        "avgpool",
        base,
        [x],
        (n, ho, wo, c),
        q,
        ir.NHWC,
        source=[node.name],
        kernel=kernel,
        stride=stride,
        pads=pads,
        count_include_pad=include,
    )


def build_softmax(lw, node, x, q, base, axis, opset):
    """``softmax`` (CPU) over one axis, as onnxruntime's QLinearSoftmax."""
    t = lw.t(x)
    shape = ir.logical_shape(t)
    axis = axis % len(shape)
    if opset < 13 and any(s != 1 for s in shape[axis + 1 :]):
        raise UnsupportedOpError(f"node {_label(node)!r}: opset<13 Softmax over several axes")
    if t.q.dtype != "uint8" or q.dtype != "uint8":
        raise UnsupportedOpError(f"node {_label(node)!r}: quantized Softmax needs uint8 codes")
    return lw.emit(
        "softmax",
        base,
        [x],
        t.shape,
        q,
        t.layout,
        source=[node.name],
        axis=ir.to_physical_axis(t, axis),
    )


_ISLAND_OPS = {
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "LeakyRelu",
    "Tanh",
    "Relu",
    "Clip",
    "Mul",
    "Add",
    "Sub",
    "Div",
}


def _elementwise_island(lw, root):
    """``(nodes, src tensor, constants)`` if ``root`` is a float elementwise sub-graph of one
    dequantized tensor (``x * HardSigmoid(x)``, ``x * Sigmoid(x)``), else None."""
    nodes, srcs, consts, seen = [], set(), {}, set()

    def walk(n):
        if n.name in seen and n.name:
            return True
        seen.add(n.name)
        if n.op_type not in _ISLAND_OPS:
            return False
        for i in n.input:
            if not i:
                continue
            v = lw.vals.get(i)
            if v is None:
                return False
            if v.kind == "dq":
                srcs.add((v.tensor, i))
            elif v.kind == "const":
                consts[i] = v.value
            elif v.kind == "pending":
                if not walk(v.node):
                    return False
            else:
                return False
        nodes.append(n)
        return True

    if not walk(root) or len({s for s, _ in srcs}) != 1 or len(nodes) < 2:
        return None
    if any(np.asarray(c).size != 1 for c in consts.values()):
        return None
    return nodes, next(iter(srcs))[0], consts


def _dq_name(lw, nodes, src):
    """The ONNX names of the dequantized values of ``src`` that the island reads."""
    names = []
    for n in nodes:
        for i in n.input:
            v = lw.vals.get(i)
            if v is not None and v.kind == "dq" and v.tensor == src and i not in names:
                names.append(i)
    return names
