"""Lowering of ONNX ops that only move codes: views, transposes, MaxPool, Slice/Split, Resize.

Their output keeps the input's quantization. Flatten/Reshape are views when the
physical order allows it (an ND tensor, or an NHWC map with H = W = 1); otherwise
the NHWC map is first transposed back to NCHW.
"""

import numpy as np
from bamboo.runtime.conv import conv_output_size

from . import ir
from .errors import UnsupportedOpError
from .onnx_common import attrs as _attrs
from .onnx_common import label as _label
from .resize import lower_resize

__all__ = ["lower_move", "pool_geometry"]


def pool_geometry(node, in_hw, kernel, attrs):
    """``(stride, dilation, pads, out_hw)`` of a Conv/Pool node, resolving ``auto_pad``."""
    nd = len(kernel)
    stride = tuple(attrs.get("strides", (1,) * nd))
    dil = tuple(attrs.get("dilations", (1,) * nd))
    pads = tuple(attrs.get("pads", (0,) * 2 * nd))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads_b, pads_a = [], []
        for size, k, s, d in zip(in_hw, kernel, stride, dil):
            out = -(-size // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
            small, big = total // 2, total - total // 2
            pads_b.append(small if auto == "SAME_UPPER" else big)
            pads_a.append(big if auto == "SAME_UPPER" else small)
        pads = tuple(pads_b + pads_a)
    elif auto == "VALID":
        pads = (0,) * 2 * nd
    if nd != 2:
        raise UnsupportedOpError(f"node {_label(node)!r}: only 2-D kernels are supported")
    if len(stride) != 2 or len(dil) != 2:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: strides {stride} and dilations {dil} "
            f"must have 2 entries for a 2-D kernel"
        )
    if min(stride + dil + tuple(kernel)) < 1 or min(pads) < 0 or len(pads) != 4:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: invalid kernel {kernel}, strides "
            f"{stride}, dilations {dil} or pads {pads}"
        )
    ceil = attrs.get("ceil_mode", 0)
    out = []
    for i in range(2):
        if ceil:
            span = dil[i] * (kernel[i] - 1) + 1
            o = -(-(in_hw[i] + pads[i] + pads[i + 2] - span) // stride[i]) + 1
            # The last window must start inside the image or its leading pad (onnxruntime
            # follows PyTorch here; measured on 1.32 for inputs 1-8, kernels 1-3, strides 1-3).
            if (o - 1) * stride[i] >= in_hw[i] + pads[i]:
                o -= 1
        else:
            o = conv_output_size(in_hw[i], kernel[i], stride[i], dil[i], pads[i], pads[i + 2])
        out.append(o)
    if min(out) < 1:
        raise UnsupportedOpError(f"node {_label(node)!r}: kernel larger than its input {in_hw}")
    # ONNX (top, left, bottom, right) order is what the runtime kernels take.
    return stride, dil, (pads[0], pads[1], pads[2], pads[3]), tuple(out)


def _view(lw, node, tname, shape):
    t = lw.t(tname)
    shape = tuple(int(s) for s in shape)
    if int(np.prod(shape)) != t.size:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: cannot view {ir.logical_shape(t)} as {shape}"
        )
    if t.layout == ir.NHWC and not (t.shape[1] == 1 and t.shape[2] == 1):
        tname = lw.logical(tname)
    if shape == lw.t(tname).shape and lw.t(tname).layout == ir.ND:
        return tname
    out = lw.emit("view", _label(node), [tname], shape, t.q, ir.ND, source=[node.name], shape=shape)
    if len(shape) == 4 and len(t.shape) != 4:
        # A feature map rebuilt from another rank (channel shuffle's 5-D detour): back to
        # NHWC now, so the ops after it and recognize_channel_shuffle see a map.
        out = lw.nhwc(out)
    return out


def _reshape_target(node, lw, t):
    op, a = node.op_type, _attrs(node)
    shape = ir.logical_shape(t)
    if op == "Reshape":
        raw = np.asarray(lw.const(node.input[1], node, "shape"))
        if raw.ndim != 1:
            raise UnsupportedOpError(
                f"node {_label(node)!r}: Reshape's shape input must be 1-D, not {raw.shape}"
            )
        target = [int(s) for s in raw]
        out = []
        for i, s in enumerate(target):
            out.append(shape[i] if s == 0 and not a.get("allowzero", 0) else s)
        if -1 in out:
            known = int(np.prod([s for s in out if s != -1]))
            out[out.index(-1)] = t.size // max(known, 1)
        return out
    if op == "Flatten":
        axis = a.get("axis", 1) % len(shape) if shape else 0
        return [int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))]
    if op in ("Squeeze", "Unsqueeze"):
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = [int(x) for x in lw.const(node.input[1], node, "axes")]
        if op == "Squeeze":
            axes = (
                [x % len(shape) for x in axes]
                if axes
                else [i for i, s in enumerate(shape) if s == 1]
            )
            return [s for i, s in enumerate(shape) if i not in axes]
        out = list(shape)
        rank = len(shape) + len(axes)
        for x in sorted(x % rank for x in axes):
            out.insert(x, 1)
        return out
    return list(shape)  # Identity


def lower_move(lw, node, tname):
    """Lower a code-moving ``node`` reading IR tensor ``tname``; returns its output tensors."""
    op, a = node.op_type, _attrs(node)
    t = lw.t(tname)
    if op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
        return [_view(lw, node, tname, _reshape_target(node, lw, t))]
    if op == "Transpose":
        rank = len(t.shape)
        perm = tuple(a.get("perm", tuple(reversed(range(rank)))))
        if sorted(perm) != list(range(rank)):
            raise UnsupportedOpError(
                f"node {_label(node)!r}: perm {perm} is not a permutation "
                f"of the {rank} axes of {ir.logical_shape(t)}"
            )
        base = (0, 3, 1, 2) if t.layout == ir.NHWC else tuple(range(rank))
        phys = tuple(base[p] for p in perm)
        shape = tuple(t.shape[p] for p in phys)
        if phys == tuple(range(rank)):
            if t.layout == ir.ND:
                return [tname]
            return [
                lw.emit(
                    "view",
                    _label(node),
                    [tname],
                    shape,
                    t.q,
                    ir.ND,
                    source=[node.name],
                    shape=shape,
                )
            ]
        return [
            lw.emit(
                "transpose", _label(node), [tname], shape, t.q, ir.ND, source=[node.name], perm=phys
            )
        ]
    if op == "MaxPool":
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedOpError(f"node {_label(node)!r}: MaxPool indices are unsupported")
        tname = lw.nhwc(tname)
        n, h, w, c = lw.t(tname).shape
        kernel = tuple(a["kernel_shape"])
        stride, dil, pads, (ho, wo) = pool_geometry(node, (h, w), kernel, a)
        extra = {}
        # ceil_mode: the extra windows hang over the bottom/right edge; padding with the
        # smallest code never wins a max, so it is floor mode with larger trailing pads.
        pt, pl, pb, pr = pads
        pb += max(0, (ho - 1) * stride[0] + dil[0] * (kernel[0] - 1) + 1 - (h + pt + pb))
        pr += max(0, (wo - 1) * stride[1] + dil[1] * (kernel[1] - 1) + 1 - (w + pl + pr))
        pads = (pt, pl, pb, pr)
        # An explicit Pad before the pool folds into its padding: with the smallest code it
        # never wins (as the pool's own padding); with another code (the zero point, real 0)
        # only when the pool has no padding of its own, as the pool's pad value.
        src, outer, value = lw.explicit_pad(tname)
        if (
            src != tname
            and max(np.add(pads, outer)[[0, 2]]) < kernel[0]
            and max(np.add(pads, outer)[[1, 3]]) < kernel[1]
            and (value == lw.t(src).q.qmin or not any(pads))
        ):
            tname, pads = src, tuple(int(p) for p in np.add(pads, outer))
            extra = {} if value == lw.t(src).q.qmin else {"pad_value": value}
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            raise UnsupportedOpError(
                f"node {_label(node)!r}: MaxPool pads {pads} (ceil_mode "
                f"included) must be smaller than the kernel {kernel}"
            )
        return [
            lw.emit(
                "maxpool",
                _label(node),
                [tname],
                (n, ho, wo, c),
                t.q,
                ir.NHWC,
                source=[node.name],
                kernel=kernel,
                stride=stride,
                dilation=dil,
                pads=pads,
                **extra,
            )
        ]
    if op in ("Slice", "Split"):
        return _slice_split(lw, node, tname, a)
    if op in ("Resize", "Upsample"):
        return [lower_resize(lw, node, tname)]
    if op == "Pad":
        return [_pad(lw, node, tname, a)]
    raise UnsupportedOpError(f"node {_label(node)!r}: {op} unsupported")


def _slice_split(lw, node, tname, a):
    t = lw.t(tname)
    shape = ir.logical_shape(t)
    rank = len(shape)
    if node.op_type == "Split":
        axis = a.get("axis", 0) % rank
        split = a.get("split")
        if split is None and len(node.input) > 1 and node.input[1]:
            split = [int(s) for s in lw.const(node.input[1], node, "split")]
        if split is None:
            k = len(node.output)
            split = [shape[axis] // k] * k
        ranges, start = [], 0
        for s in split:
            ranges.append((axis, start, start + s, 1))
            start += s
    else:
        starts = lw.const(node.input[1], node, "starts")
        ends = lw.const(node.input[2], node, "ends")
        axes = (
            lw.const(node.input[3], node, "axes")
            if len(node.input) > 3 and node.input[3]
            else np.arange(len(starts))
        )
        steps = (
            lw.const(node.input[4], node, "steps")
            if len(node.input) > 4 and node.input[4]
            else np.ones(len(starts), np.int64)
        )
        sl = [slice(None)] * rank
        for s, e, ax, st in zip(starts, ends, axes, steps):
            sl[int(ax) % rank] = slice(int(s), int(e), int(st))
        moved = [
            (i, sl[i].indices(shape[i]))
            for i in range(rank)
            if sl[i].indices(shape[i]) != (0, shape[i], 1)
        ]
        if len(moved) > 1:
            raise UnsupportedOpError(f"node {_label(node)!r}: Slice on several axes at once")
        if not moved:
            return [tname]
        ax, (s0, e0, st) = moved[0]
        ranges = [(ax, s0, e0, st)]
    outs = []
    for k, (ax, s0, e0, st) in enumerate(ranges):
        pax = ir.to_physical_axis(t, ax)
        n = len(range(s0, e0, st))
        phys = list(t.shape)
        phys[pax] = n
        outs.append(
            lw.emit(
                "slice",
                f"{_label(node)}_{k}" if len(ranges) > 1 else _label(node),
                [tname],
                phys,
                t.q,
                t.layout,
                source=[node.name],
                axis=pax,
                start=s0,
                end=e0,
                step=st,
            )
        )
    return outs


_PAD_MODES = ("constant", "edge", "reflect", "wrap")


def _pad(lw, node, tname, a):
    """An IR ``pad`` (the Conv/pool after it may fold it into its own padding)."""
    t = lw.t(tname)
    shape = ir.logical_shape(t)
    rank = len(shape)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in _PAD_MODES:
        raise UnsupportedOpError(f"node {_label(node)!r}: Pad mode {mode!r} is not an ONNX mode")
    raw = [int(p) for p in np.asarray(lw.const(node.input[1], node, "pads")).reshape(-1)]
    axes = list(range(rank))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(x) % rank for x in np.asarray(lw.const(node.input[3], node, "axes"))]
    if len(raw) != 2 * len(axes):
        raise UnsupportedOpError(f"node {_label(node)!r}: {len(raw)} pads for {len(axes)} axes")
    logical = [[0, 0] for _ in range(rank)]
    for k, ax in enumerate(axes):
        logical[ax] = [raw[k], raw[k + len(axes)]]
    value = _pad_code(lw, node, t.q)
    spatial = rank == 4 and logical[0] == logical[1] == [0, 0]
    if spatial:
        tname = lw.nhwc(tname)
    else:
        tname = lw.logical(tname)
    t = lw.t(tname)
    phys = [logical[i] for i in ((0, 2, 3, 1) if t.layout == ir.NHWC else range(rank))]
    shape = [s + b + e for s, (b, e) in zip(t.shape, phys)]
    if min(shape) < 1:
        raise UnsupportedOpError(f"node {_label(node)!r}: pads {raw} leave an empty tensor")
    if mode == "reflect" and any(b >= s or e >= s for s, (b, e) in zip(t.shape, phys)):
        raise UnsupportedOpError(
            f"node {_label(node)!r}: reflect pads {raw} reach past the tensor {ir.logical_shape(t)}"
        )
    return lw.emit(
        "pad",
        _label(node),
        [tname],
        shape,
        t.q,
        t.layout,
        source=[node.name],
        pads=tuple(tuple(p) for p in phys),
        mode=mode,
        value=value,
    )


def _pad_code(lw, node, q):
    """The code of Pad's constant value: the input is codes (``q``) or their float view."""
    kind = lw.get(node.input[0], node).kind
    v = 0
    if len(node.input) > 2 and node.input[2]:
        cv = lw.get(node.input[2], node)
        if cv.kind == "qconst":  # DequantizeLinear of a constant code: its real value
            from bamboo.runtime.quant import dequantize

            v = (
                dequantize(
                    np.asarray(cv.codes).reshape(-1)[:1],
                    np.asarray(cv.scale).reshape(-1)[0],
                    np.asarray(cv.zp).reshape(-1)[0],
                )[0]
                if np.size(cv.codes)
                else 0
            )
        else:
            v = np.asarray(lw.const(node.input[2], node, "constant value")).reshape(-1)
            v = v[0] if v.size else 0
    if kind == "q":
        code = int(v)
    else:
        from bamboo.runtime.quant import quantize

        code = int(quantize(np.float32(v), np.float32(q.scale), q.zp, q.np_dtype))
    if not q.qmin <= code <= q.qmax:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: Pad value {v} is outside the {q.dtype} codes"
        )
    return code
