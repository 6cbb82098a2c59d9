"""The requantizer: int32 accumulator to 8-bit code, bit-exact with onnxruntime.

onnxruntime computes ``y = sat(RNE(f32(f32(acc) * S)) + zp)`` with a float32
scale ``S``. Writing ``S = m * 2**e`` with ``m`` a 24-bit integer mantissa gives an
integer-only form with the same result, which is what the fabric implements:

1. if ``|acc| >= 2**24``, round ``acc`` to 24 significant bits, nearest-even
   (this is ``f32(acc)``);
2. ``P = acc * m`` (exact, at most 55 bits);
3. round ``P`` to 24 significant bits, nearest-even (the float32 product);
4. ``y = RNE(P * 2**e) + zp``, saturated to ``[qmin, qmax]``.

Ref: ../shared/numerics.md ("Conv, Gemm"), measured against onnxruntime 1.32.
Every kernel that requantizes calls :func:`requantize`; the parameters are made
once per output channel by :meth:`Requant.from_scale`.
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MANTISSA_BITS", "Requant", "requantize", "round_significant", "rne_shift",
    "conv_scale", "pool_scale", "qrange",
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


def requantize(acc, rq, axis=-1):
    """Requantize int32 accumulators with ``rq``; per-channel parameters run along ``axis``.

    Returns int32 codes in ``[rq.qmin, rq.qmax]`` (cast to the 8-bit type by the caller).
    """
    acc = np.asarray(acc, dtype=np.int64)
    m, e = rq.m, rq.e
    if m.ndim == 1:
        shape = [1] * acc.ndim
        shape[axis] = m.shape[0]
        m, e = m.reshape(shape), e.reshape(shape)
    a = round_significant(acc)                      # 1. f32(acc)
    p = round_significant(a * m)                    # 2, 3. f32(f32(acc) * S), scaled by 2**-e
    y = np.where(e >= 0, p << np.maximum(e, 0), rne_shift(p, np.maximum(-e, 0)))  # 4.
    return np.clip(y + rq.zp, rq.qmin, rq.qmax).astype(np.int32)
