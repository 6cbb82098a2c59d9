"""CPU operators of a compiled model: one numpy function per IR op, on NHWC codes.

The reference executor (``bamboo.compiler.executor``) and the runtime session both
dispatch through :func:`run_op`, so the board runs its CPU nodes with exactly the
kernels the compiler is tested with, and needs no compiler to do it. An op function
takes the node's attributes, its input code arrays, the inputs' and the output's
quantization (anything with ``scale``, ``zp`` and ``np_dtype``: the compiler's
``ir.QType`` or :class:`QInfo` read from an artifact) and returns the output codes.
"""

import base64
import weakref
from dataclasses import dataclass

import numpy as np

from . import conv as kconv
from . import elementwise as kel
from . import pool as kpool
from . import quant as kquant
from . import resize as rsz
from .errors import RuntimeBambooError
from .requant import Requant

__all__ = ["BINARY", "KERNELS", "QInfo", "decode_value", "run_op", "softmax_ort"]

_F32 = np.float32


@dataclass(frozen=True)
class QInfo:
    """Quantization of a tensor as an artifact records it: ``real = (code - zp) * scale``."""

    dtype: str
    scale: float
    zp: int

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)


def decode_value(v):
    """An attribute value from an artifact's METADATA JSON.

    numpy arrays travel as ``{"__nd__": base64, "dtype", "shape"}`` and requantizers as
    ``{"__rq__": {...}}`` (written by ``bamboo.compiler.backend.artifact_writer``);
    tuples come back as lists.
    """
    if isinstance(v, dict) and "__nd__" in v:
        return np.frombuffer(base64.b64decode(v["__nd__"]), v["dtype"]).reshape(v["shape"])
    if isinstance(v, dict) and "__rq__" in v:
        r = v["__rq__"]
        return Requant(decode_value(r["m"]), decode_value(r["e"]), r["zp"], r["qmin"], r["qmax"])
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    return v


def _lut(y, table):
    return y if table is None else kel.lut_apply(y, table)


def _conv(a, x, tin, tout):
    w = a["w"]
    if (
        w.shape[1:3] == (1, 1)
        and a["group"] == 1
        and tuple(a["stride"]) == (1, 1)
        and not any(a["pads"])
    ):
        # A 1x1 convolution (squeeze-excite's on the CPU) is a fully connected layer over
        # the pixels: the same sums, with the weights converted once.
        w2 = w.reshape(w.shape[0], w.shape[3])
        y = kconv.fully_connected(
            x,
            tin.zp,
            w2,
            a["bias"],
            a["rq"],
            w_zp=a["w_zp"],
            out_dtype=tout.np_dtype,
            weights=_fc_weights(w, a["w_zp"]),
        )
        return _lut(y, a.get("lut"))
    y = kconv.conv2d(
        x,
        tin.zp,
        a["w"],
        a["bias"],
        a["rq"],
        w_zp=a["w_zp"],
        stride=a["stride"],
        dilation=a["dilation"],
        pads=a["pads"],
        groups=a["group"],
        out_dtype=tout.np_dtype,
    )
    return _lut(y, a.get("lut"))


def _fc(a, x, tin, tout):
    y = kconv.fully_connected(
        x,
        tin.zp,
        a["w"],
        a["bias"],
        a["rq"],
        w_zp=a["w_zp"],
        out_dtype=tout.np_dtype,
        weights=_fc_weights(a["w"], a["w_zp"]),
    )
    return _lut(y, a.get("lut"))


# The weight operands of the CPU's fully connected layers (``kconv.FcWeights``), made once
# per weight array rather than per frame (a 1280 x 1000 classifier's would otherwise be
# remade every frame).
_FC_WEIGHTS = {}


def _fc_weights(w, w_zp):
    """``kconv.fc_weights`` of ``w`` (O, K), or of a 1x1 kernel (O, 1, 1, K), cached."""
    key = (id(w), np.asarray(w_zp).tobytes())
    hit = _FC_WEIGHTS.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    wf = kconv.fc_weights(w.reshape(w.shape[0], -1), w_zp)
    if len(_FC_WEIGHTS) >= 256:
        _FC_WEIGHTS.pop(next(iter(_FC_WEIGHTS)))
    _FC_WEIGHTS[key] = (weakref.ref(w), wf)
    return wf


def _gap(a, x, tin, tout):
    return kpool.global_avg_pool(x, tin.zp, a["rq"], out_dtype=tout.np_dtype)


def _avgpool(a, x, tin, tout):
    # The float form: what onnxruntime computes (the integer avg_pool differs on ties).
    return kpool.avg_pool_float(
        x,
        tin.zp,
        tin.scale,
        tout.scale,
        tout.zp,
        a["kernel"],
        stride=a["stride"],
        pads=a["pads"],
        count_include_pad=a["count_include_pad"],
        out_dtype=tout.np_dtype,
    )


def _maxpool(a, x, tin, tout):
    return kpool.max_pool(
        x,
        a["kernel"],
        stride=a["stride"],
        dilation=a["dilation"],
        pads=a["pads"],
        pad_value=a.get("pad_value"),
    )


def _add(a, x, y, tx, ty, tout):
    return kel.add(
        x,
        _F32(tx.scale),
        tx.zp,
        y,
        _F32(ty.scale),
        ty.zp,
        _F32(tout.scale),
        tout.zp,
        dtype=tout.np_dtype,
    )


def _mul(a, x, y, tx, ty, tout):
    return kel.mul_channel(
        x,
        _F32(tx.scale),
        tx.zp,
        y,
        _F32(ty.scale),
        ty.zp,
        _F32(tout.scale),
        tout.zp,
        dtype=tout.np_dtype,
    )


def _concat(a, xs, tins, tout):
    parts = [_lut(x, lut) for x, lut in zip(xs, a["luts"])]
    return np.concatenate(parts, axis=a["axis"])


def _slice(a, x, tin, tout):
    sl = [slice(None)] * x.ndim
    sl[a["axis"]] = slice(a["start"], a["end"], a["step"])
    return x[tuple(sl)]


def _shuffle(a, x, tin, tout):
    n, h, w, c = x.shape
    g = a["groups"]
    return x.reshape(n, h, w, g, c // g).transpose(0, 1, 2, 4, 3).reshape(n, h, w, c)


def _resize(a, x, tin, tout):
    if a["mode"] == "nearest":
        return rsz.resize_nearest(x, a["rows"], a["cols"])
    return rsz.resize_linear(x, a["ymap"], a["xmap"], a["requant"])


def _const_operand(a, x, tin, tout):
    """``add_const``/``mul_const``: ``x`` with a constant operand broadcast to it.

    Quantized operand (``operand_scale`` set): the QLinearAdd/QLinearMul formulas of
    :mod:`.elementwise`. Float operand: onnxruntime's float op between DequantizeLinear and
    QuantizeLinear, ``Q(DQ(x) op c)`` in float32.
    """
    c = np.asarray(a["operand"])
    if a["operand_scale"] is not None:
        kernel = kel.add if a["fn"] == "add" else kel.mul_channel
        return kernel(
            x,
            _F32(tin.scale),
            tin.zp,
            c.astype(x.dtype),
            _F32(a["operand_scale"]),
            a["operand_zp"],
            _F32(tout.scale),
            tout.zp,
            dtype=tout.np_dtype,
        )
    v = kquant.dequantize(x, _F32(tin.scale), tin.zp)
    v = (v + c.astype(_F32) if a["fn"] == "add" else v * c.astype(_F32)).astype(_F32)
    return kquant.quantize(v, _F32(tout.scale), tout.zp, tout.np_dtype)


def _pad(a, x, tin, tout):
    """ONNX Pad on codes: ``pads`` per physical axis as (before, after); negative crops."""
    crop = tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(a["pads"]))
    width = [(max(0, b), max(0, e)) for b, e in a["pads"]]
    if a["mode"] == "constant":
        return np.pad(x[crop], width, mode="constant", constant_values=a["value"])
    return np.pad(
        x[crop], width, mode={"edge": "edge", "reflect": "reflect", "wrap": "wrap"}[a["mode"]]
    )


def _column_taps(a, x, tin, tout):
    """NHWC codes -> pixel ``(y, j)`` holding inputs ``(y, j * stride_w + kx - pad_left)``
    for ``kx < kernel_w`` as channels ``kx * C + c`` (the zero point's code outside the
    map), ``width`` pixels a row: a conv's kernel columns laid out as channels. Channels
    ``kx * C + c`` of a pixel are ``kernel_w * C`` consecutive codes of the padded row, so
    the map is a read-only strided view of it: the channel blocking that carries it to
    the fabric (``layout.to_blocked``) is its only copy."""
    k, s, pl, wo = (int(a[n]) for n in ("kernel_w", "stride_w", "pad_left", "width"))
    n, h, w, c = x.shape
    right = max(0, (wo - 1) * s + k - pl - w)
    xp = np.empty((n, h, pl + w + right, c), x.dtype)
    xp[:, :, :pl] = xp[:, :, pl + w :] = x.dtype.type(tin.zp)
    xp[:, :, pl : pl + w] = x
    st = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, h, wo, k * c), (st[0], st[1], s * st[2], st[3]), writeable=False
    )


def _table(a, x, tin, tout):
    return kel.lut_apply(x, a["table"])


def _view(a, x, tin, tout):
    return x.reshape(a["shape"])


def _transpose(a, x, tin, tout):
    return np.ascontiguousarray(x.transpose(a["perm"]))


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
        vsum = (vsum + vals[..., k : k + 1]).astype(_F32)
    ys = _F32(np.floor(_F32(1.0) / _F32(y_scale)))
    q = np.rint(((vals * ys).astype(_F32) / vsum).astype(_F32)).astype(np.int64) + int(y_zp)
    y = np.minimum(q, 255).astype(np.uint8)
    return np.moveaxis(y, -1, axis)


def _softmax(a, x, tin, tout):
    return softmax_ort(x, a["axis"], tin.scale, tout.scale, tout.zp)


#: Unary ops: ``f(attrs, x, tin, tout)``.
KERNELS = {
    "conv": _conv,
    "fc": _fc,
    "gap": _gap,
    "avgpool": _avgpool,
    "maxpool": _maxpool,
    "slice": _slice,
    "shuffle": _shuffle,
    "resize": _resize,
    "lut": _table,
    "view": _view,
    "transpose": _transpose,
    "column_taps": _column_taps,
    "softmax": _softmax,
    "pad": _pad,
    "add_const": _const_operand,
    "mul_const": _const_operand,
}
#: Binary ops: ``f(attrs, a, b, ta, tb, tout)``.
BINARY = {"add": _add, "mul": _mul}


def run_op(op, attrs, xs, tins, tout):
    """Run one operator.

    Parameters
    ----------
    op : str
        IR op name (``"conv"``, ``"add"``, ``"concat"``...).
    attrs : dict
        The node's attributes (IR values, or decoded from an artifact's metadata).
    xs : list of np.ndarray
        Input codes, NHWC for feature maps.
    tins : list
        Inputs' quantization (``scale``, ``zp``, ``np_dtype``).
    tout
        Output quantization.

    Returns
    -------
    np.ndarray
        Output codes.
    """
    if op in BINARY:
        return BINARY[op](attrs, xs[0], xs[1], tins[0], tins[1], tout)
    if op == "concat":
        return _concat(attrs, xs, tins, tout)
    try:
        kernel = KERNELS[op]
    except KeyError:
        raise RuntimeBambooError(f"no CPU kernel for op {op!r}") from None
    return kernel(attrs, xs[0], tins[0], tout)
