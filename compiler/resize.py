"""ONNX ``Resize`` / ``Upsample`` to the IR ``resize`` node: attributes, modes, index maps.

Ref: ONNX Resize-10/11/13/18/19 and Upsample-7/9; onnxruntime's CPU kernel
(``bamboo.runtime.resize`` reproduces it). Everything a mode decides is computed here,
at compile time, as per-axis index maps (and float32 weights for linear); the runtime
only gathers and blends.

IR attributes of ``resize`` (NHWC):

``mode``       "nearest" or "linear"
``rows``, ``cols``   nearest: source row of each output row, source column of each column
``ymap``, ``xmap``   linear: ``(i1, i2, d1, d2)`` per axis (``runtime.resize.linear_map``)
``requant``    linear in QDQ: ``(s_in, zp_in, s_out, zp_out)``, float Resize between
               DequantizeLinear and QuantizeLinear (onnxruntime keeps it float); None on
               codes (QOperator: uint8/int8 Resize, truncating)
``scale``      ``(fh, fw)`` when nearest is a pixel repeat by integer factors (the fabric
               does those as data movement), else None

Where each mode runs: nearest pixel repeats on the fabric, every other nearest map and
linear on the CPU (``compiler/backend/check.py`` gives the reason ``inspect`` shows).
"""

import numpy as np
from bamboo.runtime import resize as rs

from . import ir
from .errors import UnsupportedOpError
from .onnx_common import attrs as _attrs
from .onnx_common import label as _label

__all__ = ["is_copy_resize", "is_float_resize", "lower_resize", "placement", "resize_geometry"]


def _s(v, default):
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else v


def _mode(node):
    return _s(_attrs(node).get("mode"), "nearest")


def is_float_resize(node, kind):
    """Whether ``node`` reading a value of ``kind`` computes new values in float: linear
    Resize after a DequantizeLinear (onnxruntime runs it in float, then QuantizeLinear)."""
    return node.op_type in ("Resize", "Upsample") and kind == "dq" and _mode(node) == "linear"


def is_copy_resize(node):
    """Whether ``node`` only copies elements (nearest Resize/Upsample): then it commutes with
    a QuantizeLinear, and a float value it reads may be quantized first."""
    return node.op_type in ("Resize", "Upsample") and _mode(node) == "nearest"


def resize_geometry(lw, node, shape):
    """``(mode, ctm, nearest_mode, (out_h, scale_h), (out_w, scale_w))`` of a Resize/Upsample
    on an NCHW input of ``shape``, with onnxruntime's float32 scales; one clear error for
    anything onnxruntime's quantized graphs do not use."""
    a = _attrs(node)
    where = f"node {_label(node)!r}"
    mode = _mode(node)
    if mode not in ("nearest", "linear"):
        raise UnsupportedOpError(f"{where}: Resize mode {mode!r}; Bamboo does nearest and linear")
    legacy = node.op_type == "Upsample" or lw.opset < 11
    ctm = "asymmetric" if legacy else _s(a.get("coordinate_transformation_mode"), "half_pixel")
    nm = "simple" if legacy else _s(a.get("nearest_mode"), "round_prefer_floor")
    if ctm not in rs.COORDINATE_MODES:
        raise UnsupportedOpError(
            f"{where}: coordinate_transformation_mode {ctm!r} is not "
            f"supported (one of {', '.join(rs.COORDINATE_MODES)})"
        )
    if a.get("antialias", 0):
        raise UnsupportedOpError(f"{where}: Resize with antialias is not supported")
    if a.get("axes") is not None or _s(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise UnsupportedOpError(
            f"{where}: Resize axes / keep_aspect_ratio_policy are not "
            f"supported; give scales or sizes for every axis"
        )
    if len(shape) != 4:
        raise UnsupportedOpError(
            f"{where}: Resize of a {len(shape)}-D tensor; Bamboo resizes feature maps (N, C, H, W)"
        )
    scales = sizes = None
    if node.op_type == "Upsample":
        scales = lw.const(node.input[1], node, "scales")
    elif lw.opset < 11:
        scales = lw.const(node.input[1], node, "scales")
    else:
        if len(node.input) > 2 and node.input[2]:
            scales = lw.const(node.input[2], node, "scales")
        if (scales is None or np.size(scales) == 0) and len(node.input) > 3 and node.input[3]:
            sizes = np.asarray(lw.const(node.input[3], node, "sizes"), np.int64)
    if sizes is not None:
        sizes = sizes.reshape(-1)
        if sizes.shape != (4,):
            raise UnsupportedOpError(f"{where}: Resize sizes {sizes.tolist()} must have 4 entries")
        scales = np.float32(sizes) / np.float32(shape)
        out = [int(v) for v in sizes]
    elif scales is not None and np.size(scales):
        scales = np.asarray(scales, np.float32).reshape(-1)
        if scales.shape != (4,):
            raise UnsupportedOpError(
                f"{where}: Resize scales {scales.tolist()} must have 4 entries"
            )
        out = [int(s * np.float32(d)) for s, d in zip(scales, shape)]
    else:
        raise UnsupportedOpError(f"{where}: Resize needs constant scales or sizes")
    if out[0] != shape[0] or out[1] != shape[1]:
        raise UnsupportedOpError(
            f"{where}: Resize must scale H and W only, not {list(shape)} -> {out}"
        )
    if min(out) < 1 or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise UnsupportedOpError(
            f"{where}: Resize scales {scales.tolist()} give an empty or invalid output {out}"
        )
    return mode, ctm, nm, (out[2], scales[2]), (out[3], scales[3])


def lower_resize(lw, node, tname, q=None, base=None):
    """Lower ``node`` reading IR tensor ``tname``; returns its output tensor.

    ``q``: the output quantization of a float (QDQ) linear Resize, whose QuantizeLinear
    fixes it (``base``: that output's name); None: the output keeps the input's
    quantization (codes move, or QOperator linear on codes).
    """
    t = lw.t(tname)
    if q is not None and q.dtype != t.q.dtype:
        raise UnsupportedOpError(
            f"node {_label(node)!r}: Resize from {t.q.dtype} to {q.dtype} "
            f"codes; quantize its input and output alike"
        )
    shape = ir.logical_shape(t)
    mode, ctm, nm, (oh, sh), (ow, sw) = resize_geometry(lw, node, shape)
    h, w = shape[2], shape[3]
    tname = lw.nhwc(tname)
    n, _, _, c = lw.t(tname).shape
    attrs = {"mode": mode, "requant": None, "scale": None}
    if mode == "nearest":
        rows, cols = rs.nearest_map(oh, h, sh, ctm, nm), rs.nearest_map(ow, w, sw, ctm, nm)
        fh, fw = rs.repeat_factor(rows, h), rs.repeat_factor(cols, w)
        attrs.update(rows=rows, cols=cols, scale=(fh, fw) if fh and fw else None)
    else:
        attrs.update(
            ymap=tuple(rs.linear_map(oh, h, sh, ctm)), xmap=tuple(rs.linear_map(ow, w, sw, ctm))
        )
        if q is not None:
            attrs["requant"] = (float(t.q.scale), int(t.q.zp), float(q.scale), int(q.zp))
    return lw.emit(
        "resize",
        base or _label(node),
        [tname],
        (n, oh, ow, c),
        q or t.q,
        ir.NHWC,
        source=[node.name],
        **attrs,
    )


def placement(attrs):
    """``(target, reason)`` of a ``resize`` node (see the module docstring)."""
    if attrs["mode"] == "nearest":
        if attrs["scale"] is not None:
            fh, fw = attrs["scale"]
            return ir.FABRIC, f"nearest {fh}x{fw} pixel repeat (data movement)"
        return ir.CPU, "nearest resize that is not an integer pixel repeat (gather on the CPU)"
    if attrs["requant"] is not None:
        return ir.CPU, (
            "bilinear resize in float32 between DequantizeLinear and QuantizeLinear "
            "(onnxruntime's rounding; the fabric has no float blend)"
        )
    return ir.CPU, "bilinear resize on codes (float32 weights, truncated; CPU)"
