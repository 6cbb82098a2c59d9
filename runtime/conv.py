"""Integer Conv2d (incl. group and depthwise) and fully connected layers: the reference kernels.

The numeric contract (Ref: docs/numerics.md, "Conv, Gemm"; onnxruntime 1.32
QLinearConv / QGemm / QLinearMatMul and fused QDQ Conv/Gemm)::

    acc[o] = sum_k (x[k] - x_zp) * (w[o, k] - w_zp[o]) + bias[o]      (int32)
    y[o]   = requantize(acc[o], rq)                                    (requant.py)

Padding positions hold ``x_zp`` (the real zero), so they add nothing to ``acc``.

Layouts: activations NHWC; conv weights OHWI, shape ``(C_out, KH, KW, C_in // groups)``
(depthwise: ``(C * multiplier, KH, KW, 1)``); fully connected weights ``(O, K)``.
Output channel ``o`` of group ``g = o // (C_out // groups)`` reads input channels
``g * C_in/groups ... (g + 1) * C_in/groups - 1``, as ONNX Conv's ``group``.

Why float64 matmul is exact: numpy's integer matmul does not use BLAS and is
slow, so the dot products run in float64. Every operand is an integer with
``|x - x_zp| <= 255`` and ``|w - w_zp| <= 255``, so each product is an integer below
``2**16`` and every partial sum, in whatever order BLAS adds (with or without
FMA), is an integer below ``K * 2**16``. Integers below ``2**53`` are exact in
float64, so no rounding happens at all while ``K < 2**37`` (the kernels check the
much smaller int32 bound on the result instead).

A single vector (squeeze-excite's 1x1 convolutions, a classifier) is memory- and
call-bound rather than compute-bound, so :class:`FcWeights` also keeps the weights in
float32, cut along ``K`` into slices short enough that ``255 * sum |w - w_zp|`` over a
slice stays below ``2**24``: every partial sum of a slice is then an integer that float32
holds exactly, whatever the order, and the slices add up in float64. Half the bytes to
stream, and numpy's own loop instead of a BLAS call.
"""

from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .errors import QuantizationError
from .requant import qrange, requantize

__all__ = [
    "FcWeights",
    "conv2d",
    "conv2d_acc",
    "fc_weights",
    "fully_connected",
    "fully_connected_acc",
    "conv_output_size",
]

_INT32 = (-(1 << 31), (1 << 31) - 1)
#: Integers below this magnitude are exact in float32.
_F32_EXACT = 1 << 24
#: The largest ``|x - x_zp|`` of 8-bit codes.
_MAX_X = 255


#: Output elements a depthwise convolution sums at a time (:func:`conv2d_acc`): a block of
#: output rows small enough that its sums stay in the processor's cache over the taps.
DEPTHWISE_BLOCK = 1 << 15


def conv_output_size(size, kernel, stride, dilation, pad_before, pad_after):
    """Output length along one spatial axis (ONNX Conv/Pool, floor mode)."""
    span = dilation * (kernel - 1) + 1
    return (size + pad_before + pad_after - span) // stride + 1


def _codes(x, name):
    """Check an 8-bit code array; return its (qmin, qmax)."""
    if x.dtype not in (np.uint8, np.int8):
        raise QuantizationError(f"{name} must hold uint8 or int8 codes, not {x.dtype}")
    return qrange(x.dtype)


def _zero_point(zp, dtype, name, channels=None):
    """Validate a zero point against the code range; return it as int64 (scalar or per channel)."""
    qmin, qmax = qrange(dtype)
    if isinstance(zp, (int, np.integer)):  # the usual scalar, without array checks
        if not qmin <= zp <= qmax:
            raise QuantizationError(f"{name} {int(zp)} is outside the {np.dtype(dtype)} range")
        return np.int64(zp)
    zp = np.asarray(zp, dtype=np.int64)
    if np.any(zp < qmin) or np.any(zp > qmax):
        raise QuantizationError(f"{name} {zp.tolist()} is outside the {np.dtype(dtype)} range")
    if zp.ndim > 1 or (zp.ndim == 1 and zp.shape[0] != channels):
        raise QuantizationError(
            f"{name} must be a scalar or have {channels} entries, not shape {zp.shape}"
        )
    return zp


def _bias(bias, channels):
    """The bias as given (checked to be ``channels`` integers), or 0."""
    if bias is None:
        return 0
    bias = np.asarray(bias)
    if bias.shape != (channels,) or bias.dtype.kind not in "iu":
        raise QuantizationError(
            f"bias must be {channels} int32 values, not {bias.dtype}{bias.shape}"
        )
    return bias


def _sums(acc_f64, bias):
    """float64 sums + bias, still float64 (exact: integers far below ``2**53``), checked
    against the int32 accumulator."""
    acc = acc_f64 + bias
    if acc.size and (acc.min() < _INT32[0] or acc.max() > _INT32[1]):
        raise QuantizationError("accumulator exceeds int32; the hardware would wrap")
    return acc


def _finish(acc_f64, bias):
    """float64 sums -> int64 accumulators (+ bias), checked against the int32 accumulator."""
    return _sums(acc_f64, bias).astype(np.int64)


def _out(acc, rq, x_dtype, out_dtype):
    """Requantize and cast, checking that the requantizer's range fits the output type.

    ``acc``: int32 accumulators, as integers or as float64 holding integers.
    """
    out_dtype = np.dtype(out_dtype or x_dtype)
    qmin, qmax = qrange(out_dtype)
    if rq.qmin < qmin or rq.qmax > qmax:
        raise QuantizationError(
            f"requantizer range [{rq.qmin}, {rq.qmax}] does not fit {out_dtype}"
        )
    return requantize(acc, rq, axis=-1).astype(out_dtype)


def conv2d_acc(
    x, x_zp, w, bias=None, *, w_zp=0, stride=(1, 1), dilation=(1, 1), pads=(0, 0, 0, 0), groups=1
):
    """Int32 accumulators of a quantized 2-D convolution (before requantization).

    Parameters are as for :func:`conv2d`. Returns int64 array ``(N, Ho, Wo, C_out)``
    whose values fit int32 (the width of the hardware accumulator).
    """
    x, w = np.asarray(x), np.asarray(w)
    _codes(x, "x")
    _codes(w, "w")
    if x.ndim != 4 or w.ndim != 4:
        raise QuantizationError(f"conv2d wants NHWC x and OHWI w, not {x.shape} and {w.shape}")
    n, h, wd, c = x.shape
    co, kh, kw, cg = w.shape
    if groups < 1 or c % groups or co % groups or cg != c // groups:
        raise QuantizationError(f"groups={groups} does not fit x channels {c} and w {w.shape}")
    (sh, sw), (dh, dw) = stride, dilation
    pt, pl, pb, pr = pads
    if min(sh, sw, dh, dw) < 1 or min(pads) < 0:
        raise QuantizationError(f"bad stride {stride}, dilation {dilation} or pads {pads}")
    ho = conv_output_size(h, kh, sh, dh, pt, pb)
    wo = conv_output_size(wd, kw, sw, dw, pl, pr)
    if ho < 1 or wo < 1:
        raise QuantizationError(f"kernel {kh}x{kw} does not fit input {h}x{wd} with pads {pads}")
    x_zp = _zero_point(x_zp, x.dtype, "x_zp")
    w_zp = _zero_point(w_zp, w.dtype, "w_zp", channels=co)
    bias = _bias(bias, co)

    wf = w.astype(np.float64) - (w_zp.reshape(-1, 1, 1, 1) if w_zp.ndim else w_zp)
    depthwise = cg == 1 and groups == c
    # Depthwise sums are short (KH*KW terms): when even the largest possible one stays
    # below 2**24, float32 holds every partial sum exactly, in half the bytes.
    info = np.iinfo(x.dtype)
    x_bound = max(int(x_zp.max()) - info.min, info.max - int(x_zp.min()))
    ftype = (
        np.float32
        if depthwise and kh * kw * x_bound * float(np.abs(wf).max(initial=0)) < 2**24
        else np.float64
    )
    # Subtract the zero point first, then pad with 0: the same as padding with x_zp.
    xf = np.pad(x.astype(ftype) - x_zp.astype(ftype), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    s = xf.strides
    # patches[n, i, j, a, b, ch] = xf[n, i*sh + a*dh, j*sw + b*dw, ch]: a view, no copy yet.
    patches = as_strided(
        xf,
        (n, ho, wo, kh, kw, c),
        (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]),
        writeable=False,
    )

    if depthwise:
        # Depthwise (with channel multiplier): one matmul per group would be C tiny
        # matmuls; KH*KW vector multiply-adds over all channels are far faster.
        # Blocks of output rows keep the sums in cache across the KH*KW passes.
        mult = co // c
        acc = np.zeros((n, ho, wo, co), ftype)
        wt = wf.astype(ftype)
        step = max(1, DEPTHWISE_BLOCK // (n * wo * co))
        for r in range(0, ho, step):
            blk = acc[:, r : r + step]
            tmp = np.empty_like(blk)
            for a in range(kh):
                for b in range(kw):
                    tap = patches[:, r : r + step, :, a, b, :]
                    if mult > 1:
                        tap = np.repeat(tap, mult, axis=-1)  # output o reads input o // mult
                    blk += np.multiply(tap, wt[:, a, b, 0], out=tmp)
        return _finish(acc.astype(np.float64, copy=False), bias)

    og = co // groups
    cols = patches.reshape(n * ho * wo, kh * kw, groups, cg)  # copies: im2col
    cols = cols.transpose(2, 0, 1, 3).reshape(groups, n * ho * wo, kh * kw * cg)
    wm = wf.reshape(groups, og, kh * kw * cg).transpose(0, 2, 1)  # (G, K, Og)
    acc = np.matmul(cols, wm)  # (G, M, Og)
    acc = acc.transpose(1, 0, 2).reshape(n, ho, wo, co)
    return _finish(acc, bias)


def conv2d(
    x,
    x_zp,
    w,
    bias,
    rq,
    *,
    w_zp=0,
    stride=(1, 1),
    dilation=(1, 1),
    pads=(0, 0, 0, 0),
    groups=1,
    out_dtype=None,
):
    """Quantized 2-D convolution on NHWC codes, bit-exact with onnxruntime's QLinearConv.

    Parameters
    ----------
    x : np.ndarray of uint8 or int8, shape (N, H, W, C_in)
        Input codes.
    x_zp : int
        Input zero point; also the value of every padding position.
    w : np.ndarray of int8 (or uint8), shape (C_out, KH, KW, C_in // groups)
        Weight codes, OHWI. onnxruntime's quantizer makes them symmetric int8.
    bias : array of int32, shape (C_out,), or None
        Bias in accumulator units (``s_x * s_w[o]``).
    rq : Requant
        Output requantizer, scalar or per output channel, from
        ``Requant.from_scale(conv_scale(s_x, s_w, s_y), y_zp, dtype)``.
    w_zp : int or array of shape (C_out,)
        Weight zero point(s), 0 for symmetric weights.
    stride, dilation : (int, int)
        Along (H, W).
    pads : (top, left, bottom, right)
        ONNX ``pads`` order for 2-D.
    groups : int
        ONNX ``group``; ``groups == C_in`` with ``C_in // groups == 1`` is depthwise.
    out_dtype : np.uint8 or np.int8, optional
        Output code type; default the type of ``x``.

    Returns
    -------
    np.ndarray of ``out_dtype``, shape (N, Ho, Wo, C_out)

    Raises
    ------
    QuantizationError
        On shapes, zero points or groups that do not fit, or an accumulator beyond int32.
    """
    acc = conv2d_acc(
        x, x_zp, w, bias, w_zp=w_zp, stride=stride, dilation=dilation, pads=pads, groups=groups
    )
    return _out(acc, rq, np.asarray(x).dtype, out_dtype)


def _exact_slices(wabs):
    """Bounds ``(k0, k1)`` cutting the rows of ``|w - w_zp|`` (K, O) into the fewest slices
    whose float32 dot products with ``|x - x_zp| <= 255`` are exact (module docstring)."""
    cum = np.zeros((wabs.shape[0] + 1, wabs.shape[1]), np.int64)
    np.cumsum(wabs, axis=0, out=cum[1:])  # nondecreasing along K
    bounds, k0 = [], 0
    while k0 < wabs.shape[0]:
        # The largest k1 with 255 * max_o (cum[k1] - cum[k0]) < 2**24. The maxima grow with
        # k1, so a binary search finds it; one row alone always fits (255 * 255 < 2**24).
        span = (cum[k0 + 1 :] - cum[k0]).max(axis=1) * _MAX_X
        k1 = k0 + max(1, int(np.searchsorted(span, _F32_EXACT, side="left")))
        bounds.append((k0, k1))
        k0 = k1
    return tuple(bounds)


class FcWeights:
    """``(w - w_zp).T`` of a fully connected layer, made once per layer by :func:`fc_weights`.

    :attr:`matrix` (float64 ``(K, O)``) multiplies batches of rows; :meth:`vector`
    multiplies a single row through exact float32 slices (module docstring). Each is
    made when first needed.
    """

    def __init__(self, diff):
        self._diff = diff  # int64 (K, O): (w - w_zp).T

    @property
    def shape(self):
        """``(K, O)``."""
        return self._diff.shape

    @cached_property
    def matrix(self):
        """float64 ``(K, O)``."""
        return np.ascontiguousarray(self._diff, dtype=np.float64)

    @cached_property
    def slices(self):
        """float32 row slices of ``(K, O)``, each exact in a float32 dot product."""
        w32 = np.ascontiguousarray(self._diff, dtype=np.float32)
        return tuple(w32[k0:k1] for k0, k1 in _exact_slices(np.abs(self._diff)))

    def vector(self, x, x_zp):
        """float64 ``(O,)`` sums ``(x - x_zp) @ (w - w_zp).T`` of one row of codes ``x`` (K,)."""
        d = x.astype(np.float32)
        d -= np.float32(x_zp)  # exact: |x - x_zp| <= 255
        k0, acc = 0, 0.0
        for w in self.slices:
            k1 = k0 + w.shape[0]
            acc = acc + np.einsum("k,ko->o", d[k0:k1], w).astype(np.float64)
            k0 = k1
        return acc


def fc_weights(w, w_zp=0):
    """:class:`FcWeights` of ``w`` (O, K) and its zero point(s): the weight operand of
    :func:`fully_connected_acc`, to be made once per layer and passed as ``weights``."""
    w = np.asarray(w)
    _codes(w, "w")
    if w.ndim != 2:
        raise QuantizationError(f"fully_connected wants w (O, K), not {w.shape}")
    w_zp = _zero_point(w_zp, w.dtype, "w_zp", channels=w.shape[0])
    return FcWeights((w.astype(np.int64) - (w_zp.reshape(-1, 1) if w_zp.ndim else w_zp)).T)


def _fc_sums(x, x_zp, w, bias, w_zp, weights):
    """float64 accumulators of :func:`fully_connected_acc` (integers, checked against int32)."""
    x, w = np.asarray(x), np.asarray(w)
    _codes(x, "x")
    if w.ndim != 2 or x.shape[-1:] != w.shape[1:]:
        raise QuantizationError(
            f"fully_connected wants x (..., K) and w (O, K), not {x.shape} and {w.shape}"
        )
    x_zp = _zero_point(x_zp, x.dtype, "x_zp")
    wf = fc_weights(w, w_zp) if weights is None else weights
    if x.size == x.shape[-1]:  # a single row: squeeze-excite, a classifier
        acc = wf.vector(x.reshape(-1), x_zp).reshape(x.shape[:-1] + (w.shape[0],))
    else:
        acc = np.matmul(x.astype(np.float64) - x_zp, wf.matrix)  # exact, see module docstring
    return _sums(acc, _bias(bias, w.shape[0]))


def fully_connected_acc(x, x_zp, w, bias=None, *, w_zp=0, weights=None):
    """Int32 accumulators ``(x - x_zp) @ (w - w_zp).T + bias`` for ``x`` (..., K), ``w`` (O, K).

    ``weights``: :func:`fc_weights` of ``w`` and ``w_zp``, if already made. Returns int64.
    """
    return _fc_sums(x, x_zp, w, bias, w_zp, weights).astype(np.int64)


def fully_connected(x, x_zp, w, bias, rq, *, w_zp=0, out_dtype=None, weights=None):
    """Quantized fully connected layer (Gemm with transB=1, or MatMul with ``w.T``).

    Parameters
    ----------
    x : np.ndarray of uint8 or int8, shape (..., K)
    x_zp : int
    w : np.ndarray of int8 (or uint8), shape (O, K)
        One row per output, as ONNX Gemm's ``B`` with ``transB=1`` (MatMul's ``B.T``).
    bias : array of int32, shape (O,), or None
    rq : Requant
        Scalar or per output channel, from ``conv_scale(s_x, s_w, s_y)``.
    w_zp : int or array of shape (O,)
    out_dtype : np.uint8 or np.int8, optional
        Default the type of ``x``.
    weights : FcWeights, optional
        :func:`fc_weights` ``(w, w_zp)``, made once per layer by the caller.

    Returns
    -------
    np.ndarray of ``out_dtype``, shape (..., O)
    """
    acc = _fc_sums(x, x_zp, w, bias, w_zp, weights)
    return _out(acc, rq, np.asarray(x).dtype, out_dtype)
