"""The requantizer: int32 accumulator to 8-bit code, bit-exact with onnxruntime.

onnxruntime computes ``y = sat(RNE(f32(f32(acc) * S)) + zp)`` with a float32
scale ``S``. Writing ``S = m * 2**e`` with ``m`` a 24-bit integer mantissa gives an
integer-only form with the same result, which is what the fabric implements:

1. if ``|acc| >= 2**24``, round ``acc`` to 24 significant bits, nearest-even
   (this is ``f32(acc)``);
2. ``P = acc * m`` (exact, at most 55 bits);
3. round ``P`` to 24 significant bits, nearest-even (the float32 product);
4. ``y = RNE(P * 2**e) + zp``, saturated to ``[qmin, qmax]``.

Ref: docs/numerics.md ("Conv, Gemm"), measured against onnxruntime 1.32.
Every kernel that requantizes calls :func:`requantize`; the parameters are made
once per output channel by :meth:`Requant.from_scale`.

:func:`requantize_int` evaluates the four steps in int64, one numpy call per bit
operation: the reference, and slow however small the tensor (docs/runtime.md, "CPU costs").
:func:`requantize` gets the same bits from a handful of numpy calls by letting IEEE
conversions do the roundings: every operand is an integer held exactly, and a float32
conversion or multiply *is* "round to 24 significant bits, nearest-even"
(see :func:`_requantize_float`). tests/runtime/test_fast_paths.py checks the two against
each other on ties, extremes and random inputs.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = [
    "MANTISSA_BITS",
    "Requant",
    "requantize",
    "requantize_int",
    "round_significant",
    "rne_shift",
    "conv_scale",
    "pool_scale",
    "qrange",
]

MANTISSA_BITS = 24


def qrange(dtype):
    """(qmin, qmax) of an 8-bit code type given as ``np.uint8``/``np.int8`` or its name."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 0, 255
    if dtype == np.int8:
        return -128, 127
    raise ValueError(f"quantized type must be uint8 or int8, not {dtype}")


def _bit_length(x):
    """Exact bit length of a non-negative int64 array (float conversion would round)."""
    n = np.zeros_like(x)
    for step in (32, 16, 8, 4, 2, 1):
        n = np.where((x >> (n + step)) != 0, n + step, n)
    return n + (x != 0)


def rne_shift(x, shift):
    """Round ``x / 2**shift`` to nearest, ties to even, for int64 ``x`` and ``shift >= 0``.

    Symmetric in sign. ``shift`` broadcasts against ``x``.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.minimum(np.asarray(shift, dtype=np.int64), 62)
    mag = np.abs(x)
    q = mag >> shift
    rem = mag - (q << shift)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 1)
    up = (shift > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    q = q + up
    return np.where(x < 0, -q, q)


def round_significant(x, bits=MANTISSA_BITS):
    """Round int64 ``x`` to ``bits`` significant bits, nearest-even (a float cast, in integers)."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.maximum(_bit_length(np.abs(x)) - bits, 0)
    return rne_shift(x, shift) << shift


def conv_scale(s_x, s_w, s_y):
    """Float32 scale of Conv/Gemm, in onnxruntime's order: ``f32(f32(s_x * s_w) / s_y)``."""
    f32 = np.float32
    return (f32(s_x) * np.asarray(s_w, dtype=f32)).astype(f32) / f32(s_y)


def pool_scale(s_x, s_y, n):
    """Float32 scale of GlobalAveragePool over ``n`` elements: ``f32(s_x / f32(s_y * n))``."""
    f32 = np.float32
    return np.asarray(f32(s_x) / (f32(s_y) * f32(n)), dtype=f32)


@dataclass(frozen=True)
class Requant:
    """Per-output-channel requantization parameters.

    Attributes
    ----------
    m : np.ndarray of int64, shape (C,) or ()
        24-bit mantissa of the scale, ``2**23 <= m < 2**24`` for normal scales.
    e : np.ndarray of int64
        Binary exponent: ``S == m * 2**e`` exactly.
    zp : int
        Output zero point.
    qmin, qmax : int
        Saturation bounds (the code range, narrowed by a fused ReLU/ReLU6 clamp).
    """

    m: np.ndarray
    e: np.ndarray
    zp: int
    qmin: int
    qmax: int

    @classmethod
    def from_scale(cls, scale, zp, dtype=np.uint8, clamp=None):
        """Split a float32 scale (scalar or per channel) into ``m * 2**e``.

        ``clamp`` optionally narrows the output range to ``(lo, hi)`` codes.
        """
        scale = np.asarray(scale, dtype=np.float32)
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"requantization scale must be positive and finite, not {scale!r}")
        frac, exp = np.frexp(scale.astype(np.float64))  # exact: f32 fits in f64
        m = np.round(frac * (1 << MANTISSA_BITS)).astype(np.int64)
        e = exp.astype(np.int64) - MANTISSA_BITS
        qmin, qmax = qrange(dtype)
        if clamp is not None:
            qmin, qmax = max(qmin, int(clamp[0])), min(qmax, int(clamp[1]))
        return cls(m=m, e=e, zp=int(zp), qmin=qmin, qmax=qmax)

    @property
    def scale(self):
        """The float32 scale these parameters encode."""
        return np.ldexp(self.m.astype(np.float64), self.e).astype(np.float32)

    @cached_property
    def float_operands(self):
        """``(m, 2**e, zp, qmin, qmax)`` for :func:`_requantize_float`: float32 ``m``, the
        rest float64, made once per requantizer. ``None`` unless ``0 < m < 2**24`` and
        ``e < 0`` everywhere (true of every requantizer :meth:`from_scale` makes for a
        scale below ``2**23``)."""
        m, e = np.asarray(self.m, np.int64), np.asarray(self.e, np.int64)
        if not (np.all(m > 0) and np.all(m < 1 << MANTISSA_BITS) and np.all(e < 0)):
            return None
        f64 = np.float64
        return (
            m.astype(np.float32),
            np.ldexp(1.0, e.astype(np.int32)),
            f64(self.zp),
            f64(self.qmin),
            f64(self.qmax),
        )


def _along(v, ndim, axis):
    """Per-channel ``v`` (shape ``(C,)``) shaped to broadcast along ``axis`` of ``ndim`` axes."""
    if np.ndim(v) != 1 or axis in (-1, ndim - 1):
        return v
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


def _requantize_float(acc, m, pow2, zp, qmin, qmax):
    """Steps 1 to 4 of the module docstring through IEEE roundings, for ``|acc| < 2**39``.

    ``m`` (float32) and ``pow2 = 2**e`` (float64, ``e < 0``) as
    :attr:`Requant.float_operands` makes them. Why each line is the integer step exactly:

    1. ``acc`` converts to float64 exactly (below ``2**53``), and float64 to float32
       rounds once, nearest-even, to 24 significant bits: ``round_significant(acc)``.
    2, 3. ``a`` and ``m`` are integers of at most 24 significant bits, both exact in
       float32; a float32 multiply is the exact product ``a * m`` rounded once to
       24 significant bits, and ``|a * m| < 2**63`` does not overflow float32.
    4. ``p * 2**e`` in float64 only moves the exponent (``p`` is 0 or at least 1, and
       ``2**e >= 2**-173``: no underflow), and ``np.rint`` rounds half to even. The
       zero point is added and the result saturated in float64; a sum that rounds
       (``|y| >= 2**53``) saturates all the same.
    """
    a = acc.astype(np.float64).astype(np.float32)
    p = np.multiply(a, m, dtype=np.float32)
    y = np.asarray(np.multiply(p, pow2, dtype=np.float64))  # an array also for 0-d ``acc``
    np.rint(y, out=y)
    np.add(y, zp, out=y)
    np.maximum(y, qmin, out=y)
    np.minimum(y, qmax, out=y)
    return y.astype(np.int32)


def requantize(acc, rq, axis=-1):
    """Requantize int32 accumulators with ``rq``; per-channel parameters run along ``axis``.

    ``acc`` holds integers: any integer type, or float64 holding integers (the
    kernels' float64 sums). Returns int32 codes in ``[rq.qmin, rq.qmax]`` (cast to the
    8-bit type by the caller), equal to :func:`requantize_int`'s for any ``|acc| < 2**39``.
    """
    ops = rq.float_operands
    if ops is None:
        return requantize_int(acc, rq, axis)
    acc = np.asarray(acc)
    m, pow2, zp, qmin, qmax = ops
    return _requantize_float(
        acc, _along(m, acc.ndim, axis), _along(pow2, acc.ndim, axis), zp, qmin, qmax
    )


def requantize_int(acc, rq, axis=-1):
    """:func:`requantize` in int64 arithmetic, step by step: the reference (and the path of
    requantizers :func:`requantize` has no float operands for)."""
    acc = np.asarray(acc, dtype=np.int64)
    m, e = rq.m, rq.e
    if m.ndim == 1:
        shape = [1] * acc.ndim
        shape[axis] = m.shape[0]
        m, e = m.reshape(shape), e.reshape(shape)
    a = round_significant(acc)  # 1. f32(acc)
    p = round_significant(a * m)  # 2, 3. f32(f32(acc) * S), scaled by 2**-e
    y = np.where(e >= 0, p << np.maximum(e, 0), rne_shift(p, np.maximum(-e, 0)))  # 4.
    return np.clip(y + rq.zp, rq.qmin, rq.qmax).astype(np.int32)
