"""Integer pooling on NHWC codes: global average, windowed average and max.

* ``global_avg_pool``: ``acc = sum(x) - x_zp * N`` over the ``N = H * W`` pixels of a
  channel, then the conv requantizer with ``S = pool_scale(s_x, s_y, N)``, i.e.
  ``f32(s_x / f32(s_y * N))``. Bit-exact with onnxruntime's
  QLinearGlobalAveragePool and fused QDQ GlobalAveragePool
  (Ref: docs/numerics.md, "GlobalAveragePool").
* ``avg_pool``: the same integer formula per window, with ``N`` the number of
  pixels averaged (the window area with ``count_include_pad``, else only the
  pixels inside the image). This is the hardware contract. It is *not* quite
  onnxruntime: QLinearAveragePool (what a QDQ AveragePool fuses into) computes
  in float32, which ``avg_pool_float`` reproduces bit for bit. The two differ
  by one code on exact ties (an odd zero point: up to a quarter of a 2x2 pool's outputs),
  so compiled models run ``avg_pool_float`` on the CPU (``cpu_ops``; the back end keeps
  non-global average pools off the fabric).
* ``mean_float``: onnxruntime's float32 ``ReduceMean`` over trailing axes, for a model
  whose output is a float mean of dequantized values (SqueezeNet's head): each row summed
  in the order of Eigen's SSE reduction, then divided by its length.
* ``max_pool``: max of the codes. Exact because quantization is monotonic and a
  quantized MaxPool keeps its input scale and zero point (onnxruntime runs
  MaxPool directly on uint8/int8).
"""

import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .conv import _codes, _out, _zero_point, conv_output_size
from .errors import QuantizationError
from .requant import Requant, pool_scale, qrange, requantize

__all__ = ["global_avg_pool", "avg_pool", "avg_pool_float", "max_pool", "mean_float"]


def _geometry(shape, kernel, stride, dilation, pads):
    """Output ``(Ho, Wo)`` of a pool over NHWC ``shape``; raises on bad attributes."""
    n, h, w, c = shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pl, pb, pr = pads
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(pads) < 0:
        raise QuantizationError(
            f"bad kernel {kernel}, stride {stride}, dilation {dilation} or pads {pads}"
        )
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        # ONNX requires pads smaller than the kernel, so every window sees the image.
        raise QuantizationError(f"pads {pads} must be smaller than the kernel {kernel}")
    ho = conv_output_size(h, kh, sh, dh, pt, pb)
    wo = conv_output_size(w, kw, sw, dw, pl, pr)
    if ho < 1 or wo < 1:
        raise QuantizationError(f"kernel {kernel} does not fit input {h}x{w} with pads {pads}")
    return ho, wo


def _windows(x, kernel, stride, dilation, pads, fill):
    """View ``(N, Ho, Wo, KH, KW, C)`` of ``x`` padded with ``fill``."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    pt, pl, pb, pr = pads
    ho, wo = _geometry(x.shape, kernel, stride, dilation, pads)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    s = xp.strides
    return as_strided(
        xp,
        (n, ho, wo, kh, kw, c),
        (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]),
        writeable=False,
    )


def global_avg_pool(x, x_zp, rq, out_dtype=None):
    """Quantized GlobalAveragePool on NHWC codes.

    Parameters
    ----------
    x : np.ndarray of uint8 or int8, shape (N, H, W, C)
    x_zp : int
    rq : Requant
        ``Requant.from_scale(pool_scale(s_x, s_y, H * W), y_zp, dtype)``: the divide by
        ``H * W`` lives in the scale, so the kernel itself only sums.
    out_dtype : np.uint8 or np.int8, optional
        Default the type of ``x``.

    Returns
    -------
    np.ndarray of ``out_dtype``, shape (N, 1, 1, C)
    """
    x = np.asarray(x)
    _codes(x, "x")
    if x.ndim != 4:
        raise QuantizationError(f"global_avg_pool wants NHWC x, not shape {x.shape}")
    x_zp = _zero_point(x_zp, x.dtype, "x_zp")
    n = x.shape[1] * x.shape[2]
    return _out(_channel_sums(x) - x_zp * n, rq, x.dtype, out_dtype)


def _channel_sums(x):
    """``x.sum(axis=(1, 2), keepdims=True)`` of NHWC codes, as float64 integers.

    Up to ``2**24 / 255`` pixels, in float32: every partial sum, in whatever order numpy
    adds, is an integer below ``2**24`` and so exact, and float32 halves the bytes of the
    int64 sum. Beyond, in int64; at most 2**23 pixels keep ``|acc| < 2**31``.
    """
    n, h, w, c = x.shape
    if h * w * 255 < 1 << 24:
        sums = np.einsum("nhwc->nc", x.astype(np.float32))
    else:
        sums = x.sum(axis=(1, 2), dtype=np.int64)
    return sums.astype(np.float64).reshape(n, 1, 1, c)


def avg_pool(
    x,
    x_zp,
    s_x,
    s_y,
    y_zp,
    kernel,
    *,
    stride=None,
    pads=(0, 0, 0, 0),
    count_include_pad=False,
    out_dtype=None,
):
    """Quantized AveragePool on NHWC codes (floor mode, no dilation).

    Each output is ``requantize(sum(x - x_zp over the window), S_n)`` with
    ``S_n = pool_scale(s_x, s_y, n)`` and ``n`` the divisor: the kernel area when
    ``count_include_pad``, else the number of window pixels inside the image.
    Padding contributes the real zero either way.

    onnxruntime 1.32's QLinearAveragePool (what QDQ AveragePool fuses into at
    EXTENDED) computes in float32 instead (see :func:`avg_pool_float`); the two
    disagree by one code on a few outputs per million, where the float path
    lands within float32 rounding of a half-way point.

    Parameters
    ----------
    x : np.ndarray of uint8 or int8, shape (N, H, W, C)
    x_zp : int
    s_x, s_y : float
        Input and output scales.
    y_zp : int
        Output zero point.
    kernel : (int, int)
    stride : (int, int), optional
        Default the kernel (non-overlapping windows).
    pads : (top, left, bottom, right)
    count_include_pad : bool
        ONNX ``count_include_pad``.
    out_dtype : np.uint8 or np.int8, optional
        Default the type of ``x``.

    Returns
    -------
    np.ndarray of ``out_dtype``, shape (N, Ho, Wo, C)
    """
    x = np.asarray(x)
    _codes(x, "x")
    if x.ndim != 4:
        raise QuantizationError(f"avg_pool wants NHWC x, not shape {x.shape}")
    x_zp = int(_zero_point(x_zp, x.dtype, "x_zp"))
    out_dtype = np.dtype(out_dtype or x.dtype)
    kernel = tuple(kernel)
    stride = tuple(stride or kernel)
    pads = tuple(int(p) for p in pads)
    acc = _window_sums(x, x_zp, kernel, stride, pads)
    counts = _counts(x.shape[1:3], kernel, stride, pads, count_include_pad, acc.shape[1:3])
    qmin, qmax = qrange(x.dtype)
    bound = max(x_zp - qmin, qmax - x_zp) * kernel[0] * kernel[1]  # of |acc|
    return _requantize_counts(acc, counts, bound, s_x, s_y, y_zp, out_dtype)


def _window_sums(x, x_zp, kernel, stride, pads):
    """``sum(x - x_zp)`` over each window (padding adds 0), exact integers, ``(N, Ho, Wo, C)``.

    Separable: the ``kw`` column taps of every padded row first, then the ``kh`` row taps,
    each a sum of strided slices. In int16 while ``kh * kw * 255`` fits, else int32 or int64.
    """
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, stride, pads
    ho, wo = _geometry(x.shape, kernel, stride, (1, 1), pads)
    bound = kh * kw * 255
    acc_t = np.int16 if bound <= 32767 else np.int32 if bound < 1 << 31 else np.int64
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=acc_t)
    np.subtract(x, acc_t(x_zp), out=xp[:, pt : pt + h, pl : pl + w], dtype=acc_t)
    rows = xp[:, : (ho - 1) * sh + kh]  # the padded rows some window reads
    cols = rows[:, :, 0 : (wo - 1) * sw + 1 : sw].copy()
    for b in range(1, kw):
        cols += rows[:, :, b : b + (wo - 1) * sw + 1 : sw]
    acc = cols[:, 0 : (ho - 1) * sh + 1 : sh].copy()
    for a in range(1, kh):
        acc += cols[:, a : a + (ho - 1) * sh + 1 : sh]
    return acc


def _counts(hw, kernel, stride, pads, count_include_pad, out_hw):
    """Divisor of each output pixel ``(Ho, Wo)``: the kernel area, or the image pixels only."""
    (kh, kw), (sh, sw), (pt, pl, _, _) = kernel, stride, pads
    if count_include_pad:
        return np.full(out_hw, kh * kw, dtype=np.int64)

    def inside(size, k, s, p, out):
        start = np.arange(out, dtype=np.int64) * s - p
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return np.multiply.outer(
        inside(hw[0], kh, sh, pt, out_hw[0]), inside(hw[1], kw, sw, pl, out_hw[1])
    )


def _requantize_counts(acc, counts, bound, s_x, s_y, y_zp, out_dtype):
    """``requantize(acc, Requant(pool_scale(s_x, s_y, count)))`` per output pixel.

    Window sums are small integers (``|acc| <= bound``), so when that range is no
    bigger than the output, the requantizer runs once on every possible sum and the
    outputs are a table look-up: the same function, element for element.
    """
    if counts.min() == counts.max():
        uniq, where = (int(counts.flat[0]),), None
    else:
        uniq, where = np.unique(counts, return_inverse=True)
        uniq, where = tuple(int(k) for k in uniq), where.reshape(counts.shape)
    width = 2 * bound + 1
    if len(uniq) * width <= acc.size:
        table = _pool_table(
            float(np.float32(s_x)),
            float(np.float32(s_y)),
            int(y_zp),
            np.dtype(out_dtype).str,
            uniq,
            bound,
        )
        idx = acc.astype(np.intp) + bound
        if where is not None:
            idx += (where * width)[None, :, :, None]
        return table.take(idx)
    y = np.empty(acc.shape, dtype=out_dtype)
    # A handful of distinct divisors (interior, edges, corners): one requantizer each.
    for count in uniq:
        rq = Requant.from_scale(pool_scale(s_x, s_y, count), y_zp, out_dtype)
        sel = counts == count
        y[:, sel] = requantize(acc[:, sel], rq).astype(out_dtype)
    return y


@functools.lru_cache(maxsize=64)
def _pool_table(s_x, s_y, y_zp, dtype, counts, bound):
    """Outputs for sums ``-bound .. bound`` of each divisor in ``counts``, one row each."""
    sums = np.arange(-bound, bound + 1, dtype=np.int64)
    rows = [
        requantize(sums, Requant.from_scale(pool_scale(s_x, s_y, k), y_zp, dtype)) for k in counts
    ]
    table = np.concatenate(rows).astype(dtype)
    table.flags.writeable = False
    return table


def avg_pool_float(
    x,
    x_zp,
    s_x,
    s_y,
    y_zp,
    kernel,
    *,
    stride=None,
    pads=(0, 0, 0, 0),
    count_include_pad=False,
    out_dtype=None,
):
    """AveragePool exactly as onnxruntime's QLinearAveragePool computes it, in float32.

    Ref: onnxruntime contrib_ops/cpu/quantization/qlinear_pool.cc (1.32), measured
    bit-exact against it. Per window, in float32::

        d   = s_x * (x - x_zp)                    # each pixel dequantized
        sum = ((d0 + d1) + d2) + ...              # row-major window order, image pixels only
        avg = sum / n                             # n as in avg_pool
        y   = sat(RNE(avg / s_y + y_zp))          # the zero point is added *before* rounding

    When the window is the whole unpadded image, onnxruntime switches to its
    integer GlobalAveragePool kernel, and so does this function. A golden
    reference for tests and simulators, not a hardware contract: the accelerator
    implements :func:`avg_pool`. Parameters as :func:`avg_pool`.
    """
    x = np.asarray(x)
    _codes(x, "x")
    if x.ndim != 4:
        raise QuantizationError(f"avg_pool_float wants NHWC x, not shape {x.shape}")
    x_zp = int(_zero_point(x_zp, x.dtype, "x_zp"))
    out_dtype = np.dtype(out_dtype or x.dtype)
    kernel = tuple(kernel)
    if kernel == x.shape[1:3] and not any(pads):
        rq = Requant.from_scale(pool_scale(s_x, s_y, kernel[0] * kernel[1]), y_zp, out_dtype)
        return global_avg_pool(x, x_zp, rq, out_dtype)
    f32 = np.float32
    d = f32(s_x) * (x.astype(np.int32) - x_zp).astype(f32)
    win = _windows(d, kernel, tuple(stride or kernel), (1, 1), pads, 0)
    # Padding adds +0.0, an exact no-op, so summing every tap keeps the order and the bits.
    acc = np.zeros(win.shape[:3] + win.shape[5:], dtype=f32)
    for a in range(kernel[0]):
        for b in range(kernel[1]):
            acc = acc + win[:, :, :, a, b, :]
    if count_include_pad:
        counts = np.full(acc.shape[1:3], kernel[0] * kernel[1])
    else:
        ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
        counts = _windows(ones, kernel, tuple(stride or kernel), (1, 1), pads, 0).sum(axis=(3, 4))
        counts = counts[0, :, :, 0]
    avg = acc / counts[None, :, :, None].astype(f32)
    y = np.rint((avg / f32(s_y) + f32(y_zp)).astype(f32))
    return np.clip(y, *qrange(out_dtype)).astype(out_dtype)


def max_pool(x, kernel, *, stride=None, dilation=(1, 1), pads=(0, 0, 0, 0), pad_value=None):
    """MaxPool on NHWC codes (floor mode); padding never wins unless ``pad_value`` is given.

    Parameters
    ----------
    x : np.ndarray of uint8 or int8, shape (N, H, W, C)
    kernel, stride, dilation : (int, int)
        ``stride`` defaults to the kernel.
    pads : (top, left, bottom, right)
    pad_value : int, optional
        The code the padding holds (an explicit ONNX Pad folded into the pool: the zero
        point); default the smallest code, which never wins.

    Returns
    -------
    np.ndarray of ``x.dtype``, shape (N, Ho, Wo, C)
    """
    x = np.asarray(x)
    qmin, _ = _codes(x, "x")
    qmin = qmin if pad_value is None else int(pad_value)
    if x.ndim != 4:
        raise QuantizationError(f"max_pool wants NHWC x, not shape {x.shape}")
    kernel = tuple(kernel)
    # Padding with the smallest code is neutral for max, and every window holds at
    # least one image pixel (pads < kernel), so a pad value is never the result.
    win = _windows(x, kernel, tuple(stride or kernel), tuple(dilation), pads, qmin)
    return win.max(axis=(3, 4))


_LANES = 4  # float32 lanes of an SSE packet: the vector width of onnxruntime's Eigen


def mean_float(x, axes):
    """Float32 mean of ``x`` over ``axes`` (the trailing axes, kept as size 1), bit for bit
    as onnxruntime's CPU ``ReduceMean`` (1.32, x86-64).

    onnxruntime reduces trailing axes row by row (``FastReduceKR``): the Eigen ``sum()``
    of the row, then a division by its length. Eigen sums a row with two 4-lane
    accumulators from the row's first 16-byte-aligned element (onnxruntime's buffers are
    64-byte aligned, so row ``r`` of length ``n`` starts ``(-r * n) % 4`` elements before
    one), folds them, adds the lanes as ``(l0 + l2) + (l1 + l3)``, then the unaligned head
    and the tail one by one; a row without one whole aligned packet is summed in order.
    Measured against onnxruntime for rows of 1 to 196 elements
    (``tests/runtime/test_pool.py``).
    """
    x = np.asarray(x, dtype=np.float32)
    axes = tuple(sorted(a % x.ndim for a in axes))
    if axes != tuple(range(x.ndim - len(axes), x.ndim)) or not axes:
        raise QuantizationError(
            f"mean_float reduces trailing axes only, not {axes} of a {x.ndim}-D tensor"
        )
    kept = x.shape[: x.ndim - len(axes)]
    rows = x.reshape(-1, int(np.prod([x.shape[a] for a in axes], dtype=np.int64)))
    n = rows.shape[1]
    out = np.empty(rows.shape[0], np.float32)
    starts = np.minimum((-np.arange(rows.shape[0]) * n) % _LANES, n)
    for start in np.unique(starts):
        sel = starts == start
        out[sel] = _eigen_sum(rows[sel], int(start))
    out = (out / np.float32(n)).astype(np.float32)
    return out.reshape(kept + (1,) * len(axes))


def _eigen_sum(rows, start):
    """Eigen's vectorized ``redux`` of each row of ``rows`` (float32), aligned at ``start``."""
    n, p = rows.shape[1], _LANES
    whole2 = (n - start) // (2 * p) * 2 * p
    whole = (n - start) // p * p
    if not whole:
        res = rows[:, 0].copy()
        for i in range(1, n):
            res = res + rows[:, i]
        return res
    body = rows[:, start:]
    acc0 = body[:, :p].copy()
    if whole > p:
        acc1 = body[:, p : 2 * p].copy()
        for i in range(2 * p, whole2, 2 * p):
            acc0 = acc0 + body[:, i : i + p]
            acc1 = acc1 + body[:, i + p : i + 2 * p]
        acc0 = acc0 + acc1
        if whole > whole2:
            acc0 = acc0 + body[:, whole2 : whole2 + p]
    res = (acc0[:, 0] + acc0[:, 2]) + (acc0[:, 1] + acc0[:, 3])
    for i in [*range(start), *range(start + whole, n)]:
        res = res + rows[:, i]
    return res
