"""Elementwise integer kernels: Add, channel Mul, Concat, 2x upsample, tables, LeakyReLU shift.

Each kernel states which onnxruntime 1.32 kernel it reproduces and how; the
differential tests (tests/runtime/test_elementwise.py) compare them bit for bit.
Ref: docs/numerics.md ("Add", "Elementwise activations"). Layouts are NHWC,
as in conv.py; every kernel here is shape-agnostic except :func:`upsample_nearest2x`.

Add (QLinearAdd, and QDQ Add fused at ORT_ENABLE_EXTENDED) is platform-dependent:

* ``formula="ort-x86"`` (golden on x86-64 with AVX2, MLAS ``qladd_avx2.cpp``): float32
  FMAs on the raw codes::

      rA = f32(sa / sc);  rB = f32(sb / sc);  K = f32(zc - fma(rA, za, f32(rB * zb)))
      y  = sat(RNE(fma(a, rA, fma(b, rB, K))))

  Exhaustively bit-exact. When ``a`` is the operand that broadcasts along the innermost
  axis (or both are single values), onnxruntime swaps the operands (its "scalar input
  0" span), so ``a`` and ``b`` trade roles above; this kernel does the same. The
  roles matter: over all code pairs, about one random quantization in seven changes.
* ``formula="fixed-point"`` (ARM builds, MLAS ``qladd.cpp`` NEON path): 22-bit integer
  multipliers ``MA = RNE(rA * 2**s)``, ``MB = RNE(rB * 2**s)``, where
  ``s = 21 - floor(log2(max(rA, rB)))``,
  ``y = sat(round_half_away((a - za) * MA + (b - zb) * MB, s) + zc)``, and MLAS's float
  fallback when the ratios are out of its range. Not checkable on x86: it is a
  transcription of the MLAS source (whether the ARM compiler contracts the fallback's
  float multiply-add into an FMA is unverified). It differs from x86 by one LSB on
  about 5 code pairs per million (measured over 80 random quantizations).

channel-wise Mul (QLinearMul, QDQ Mul fused at EXTENDED; MLAS ``qlmul.cpp``, SSE2 path,
no FMA)::

    R = f32(f32(sa * sb) / sc);  y = sat(RNE(f32(f32(f32(p) * R) + zc))),  p = (a - za) * (b - zb)

The zero point is added in float *before* rounding, so :func:`~.requant.requantize`
(which adds it after) differs on a handful of near-tie products; the kernel runs the
requantizer's integer steps with that one extra rounding (see :func:`mul_channel`).

Concat (QLinearConcat, QDQ Concat fused at EXTENDED): inputs whose (scale, zero point)
differ from the output's go through a 256-entry table
``quantize(dequantize(code, s_in, z_in), s_out, z_out)`` (onnxruntime's
``QlinearBuildLookupTable``); the requantizer form differs on a few codes, so the table
is the exact path (and what the fabric does: a table lookup on the way through).

LeakyReLU(0.1) as a shift (:func:`leaky_shift`) is an opt-in approximation with a
measured error (tests); the exact path is a table from compiler/lut.py.

Tables (:func:`lut_apply`) are indexed by the code's bit pattern, ``code & 0xFF``: for
int8, entry ``i`` belongs to code ``np.int8(i)`` (so -128 is entry 128), the order
onnxruntime builds its own tables in. No ``+128`` offset anywhere.
"""

import numpy as np

from .errors import QuantizationError
from .quant import dequantize, quantize
from .requant import Requant, qrange, requantize, rne_shift, round_significant

__all__ = [
    "ADD_FORMULAS",
    "LEAKY_MULT",
    "LEAKY_SHIFT",
    "add",
    "mul_channel",
    "concat",
    "requant_table",
    "upsample_nearest2x",
    "lut_apply",
    "leaky_shift",
    "fma_f32",
]

ADD_FORMULAS = ("ort-x86", "fixed-point")
# LeakyReLU(0.1) approximated as v * 13 / 128 (0.1015625): one multiply and a shift.
LEAKY_MULT = 13
LEAKY_SHIFT = 7

_f32 = np.float32


def _codes(x, name):
    x = np.asarray(x)
    if x.dtype not in (np.uint8, np.int8):
        raise QuantizationError(f"{name} must hold uint8 or int8 codes, not {x.dtype}")
    return x


def _scale(s, name):
    s = _f32(s)
    if not np.isfinite(s) or s <= 0:
        raise QuantizationError(f"{name} must be positive and finite, not {s!r}")
    return s


def _zp(z, dtype, name):
    qmin, qmax = qrange(dtype)
    if not qmin <= int(z) <= qmax:
        raise QuantizationError(f"{name} {int(z)} is outside the {np.dtype(dtype)} range")
    return int(z)


def fma_f32(x, y, z):
    """Fused multiply-add of float32 values, rounded once to float32 (as ``vfmadd``).

    numpy has no fma. ``x * y`` of two float32 values is exact in float64 (48-bit
    significand), but rounding ``x * y + z`` to float64 and then to float32 rounds
    twice, which can be wrong at float32 ties. Rounding the float64 sum to *odd*
    instead (keep the RNE result if its last bit is odd or it is exact, else step to
    the odd neighbour in the direction of the error) makes the second rounding
    correct, because float64 carries more than ``24 + 1`` bits (Boldo & Melquiond,
    "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to
    odd", IEEE TC 2008). The error of the float64 sum is exact by TwoSum.
    """
    x = np.asarray(x, _f32).astype(np.float64)
    y = np.asarray(y, _f32).astype(np.float64)
    z = np.asarray(z, _f32).astype(np.float64)
    p = x * y
    s = p + z
    bv = s - p
    err = (p - (s - bv)) + (z - bv)  # TwoSum: s + err == p + z exactly
    inexact_even = (err != 0) & ((s.view(np.int64) & 1) == 0)
    toward = np.where(err > 0, np.inf, -np.inf)
    s = np.where(inexact_even, np.nextafter(s, toward), s)
    return s.astype(_f32)


def _innermost_broadcast(a_shape, b_shape):
    """True if ``a`` is constant along the innermost axis where the result varies, or if
    both are single values (onnxruntime tries its "input 0 is scalar" path first)."""
    out = np.broadcast_shapes(a_shape, b_shape)
    a_pad = (1,) * (len(out) - len(a_shape)) + tuple(a_shape)
    b_pad = (1,) * (len(out) - len(b_shape)) + tuple(b_shape)
    for n, na, nb in zip(reversed(out), reversed(a_pad), reversed(b_pad)):
        if n > 1:
            return na == 1 and nb > 1
    return True


def _add_x86(a, sa, za, b, sb, zb, sc, zc, qmin, qmax):
    # onnxruntime's broadcaster hands MLAS the non-broadcast operand as A and folds
    # the other into the constant, so a broadcast `a` trades places with `b`.
    if _innermost_broadcast(a.shape, b.shape):
        a, sa, za, b, sb, zb = b, sb, zb, a, sa, za
    ra, rb = _f32(sa / sc), _f32(sb / sc)
    k = _f32(_f32(zc) - fma_f32(ra, _f32(za), _f32(rb * _f32(zb))))
    v = fma_f32(a.astype(_f32), ra, fma_f32(b.astype(_f32), rb, k))
    return np.clip(np.rint(v), qmin, qmax)  # rint: RNE, as cvtps2dq


def _add_fixed(a, sa, za, b, sb, zb, sc, zc, qmin, qmax):
    ra, rb = _f32(sa / sc), _f32(sb / sc)
    big = max(ra, rb)
    shift = 21 - (int(np.frexp(big)[1]) - 1)  # 21 - unbiased exponent of the larger ratio
    ok = all(2.0**-14 <= r < 256.0 for r in (ra, rb)) and 13 <= shift <= 31
    if ok:
        ma = int(np.rint(np.float64(ra) * 2.0**shift))  # exact product, RNE as lrintf
        mb = int(np.rint(np.float64(rb) * 2.0**shift))
        ok = ma < (1 << 22) and mb < (1 << 22) and max(ma, mb) >= (1 << 21)
    if not ok:
        # MLAS's plain C++ fallback: dequantize, add, divide, round.
        va = _f32(sa) * (a.astype(np.int64) - za).astype(_f32)
        vb = _f32(sb) * (b.astype(np.int64) - zb).astype(_f32)
        vc = np.clip((va + vb) / _f32(sc), _f32(qmin - zc), _f32(qmax - zc))
        return np.clip(np.rint(vc + _f32(zc)), qmin, qmax)
    acc = (a.astype(np.int64) - za) * ma + (b.astype(np.int64) - zb) * mb
    # vsra(acc, acc, 31) then vrshl(-shift): round half away from zero.
    y = (acc - (acc < 0) + (1 << (shift - 1))) >> shift
    return np.clip(y + zc, qmin, qmax)


def add(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, dtype=None, formula="ort-x86"):
    """Quantized Add ``y = a + b`` on 8-bit codes, with numpy broadcasting.

    Parameters
    ----------
    a, b : np.ndarray of uint8 or int8
        Input codes (same dtype), broadcastable against each other.
    a_scale, a_zp, b_scale, b_zp, y_scale, y_zp : float, int
        Per-tensor quantization parameters.
    dtype : np.uint8 or np.int8, optional
        Output code type; defaults to the inputs'.
    formula : {"ort-x86", "fixed-point"}
        Which onnxruntime build to match (see the module docstring): x86-64 (golden on
        the workstation) or ARM's fixed-point NEON kernel.

    Returns
    -------
    np.ndarray of ``dtype``, the broadcast shape.
    """
    a, b = _codes(a, "a"), _codes(b, "b")
    if a.dtype != b.dtype:
        raise QuantizationError(f"add inputs must share a code type, not {a.dtype} and {b.dtype}")
    dtype = np.dtype(dtype or a.dtype)
    if formula not in ADD_FORMULAS:
        raise ValueError(f"formula must be one of {ADD_FORMULAS}, not {formula!r}")
    sa, sb, sc = _scale(a_scale, "a_scale"), _scale(b_scale, "b_scale"), _scale(y_scale, "y_scale")
    za, zb = _zp(a_zp, a.dtype, "a_zp"), _zp(b_zp, b.dtype, "b_zp")
    zc = _zp(y_zp, dtype, "y_zp")
    qmin, qmax = qrange(dtype)
    kernel = _add_x86 if formula == "ort-x86" else _add_fixed
    y = kernel(a, sa, za, b, sb, zb, sc, zc, qmin, qmax)
    return np.broadcast_to(y, np.broadcast_shapes(a.shape, b.shape)).astype(dtype)


def mul_channel(x, x_scale, x_zp, s, s_scale, s_zp, y_scale, y_zp, dtype=None):
    """Quantized Mul ``y = x * s``: the squeeze-excite channel scale (any broadcast works).

    For NHWC ``x`` of shape ``(N, H, W, C)``, ``s`` is ``(N, 1, 1, C)`` or ``(N, C)``
    (expanded to the former). Matches QLinearMul / fused QDQ Mul on x86 (module
    docstring); the product is symmetric, so which operand broadcasts does not matter.

    The integer form, which hardware can use, with ``R = m * 2**e`` (24-bit ``m``):
    ``P = round24(p * m)`` is ``f32(p * R)`` (``|p| < 2**17`` is exact in float32),
    ``Q = round24(P + zc * 2**-e)`` is the float32 add of the zero point, and
    ``y = RNE(Q * 2**e)``: :func:`~.requant.requantize` minus its final zero-point add,
    plus one more 24-bit rounding.

    Returns
    -------
    np.ndarray of ``dtype`` (default: ``x``'s), the broadcast shape.
    """
    x, s = _codes(x, "x"), _codes(s, "s")
    if x.dtype != s.dtype:
        raise QuantizationError(f"mul inputs must share a code type, not {x.dtype} and {s.dtype}")
    if s.ndim == 2 and x.ndim == 4:
        s = s[:, None, None, :]
    dtype = np.dtype(dtype or x.dtype)
    sx, ss, sy = _scale(x_scale, "x_scale"), _scale(s_scale, "s_scale"), _scale(y_scale, "y_scale")
    zx, zs = _zp(x_zp, x.dtype, "x_zp"), _zp(s_zp, s.dtype, "s_zp")
    zy = _zp(y_zp, dtype, "y_zp")
    rq = Requant.from_scale(_f32(_f32(sx * ss) / sy), zy, dtype)
    e = int(rq.e)
    if not -54 <= e <= 0:  # keeps zc * 2**-e and the products inside int64
        raise QuantizationError(f"mul scale ratio {rq.scale!r} is out of the supported range")
    p = (x.astype(np.int64) - zx) * (s.astype(np.int64) - zs)
    big = round_significant(p * int(rq.m))  # f32(f32(p) * R) / 2**e
    q = round_significant(big + (zy << -e))  # f32(... + zc) / 2**e
    y = rne_shift(q, -e)
    return np.clip(y, rq.qmin, rq.qmax).astype(dtype)


def requant_table(x_scale, x_zp, y_scale, y_zp, dtype=np.uint8):
    """256-entry table moving codes from one quantization to another, as QLinearConcat.

    ``table[i] = quantize(dequantize(code_i, x_scale, x_zp), y_scale, y_zp)`` where
    ``code_i`` has bit pattern ``i`` (see :func:`lut_apply`).
    """
    dtype = np.dtype(dtype)
    codes = np.arange(256, dtype=np.uint8).view(dtype)
    return quantize(
        dequantize(codes, _scale(x_scale, "x_scale"), _zp(x_zp, dtype, "x_zp")),
        _scale(y_scale, "y_scale"),
        _zp(y_zp, dtype, "y_zp"),
        dtype,
    )


def concat(tensors, scales, zps, y_scale, y_zp, axis=-1):
    """Quantized Concat: inputs with other quantization parameters are re-coded by table.

    Parameters
    ----------
    tensors : sequence of np.ndarray
        Codes, one dtype, shapes equal except along ``axis``.
    scales, zps : sequences
        Each input's scale and zero point.
    y_scale, y_zp : float, int
        Output quantization; inputs that already use it are copied unchanged.
    axis : int
        Concatenation axis (NHWC channels: -1).
    """
    tensors = [_codes(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    if not tensors or len(scales) != len(tensors) or len(zps) != len(tensors):
        raise QuantizationError(
            f"concat needs one scale and zero point per input: {len(tensors)} inputs, "
            f"{len(scales)} scales, {len(zps)} zero points"
        )
    dtype = tensors[0].dtype
    if any(t.dtype != dtype for t in tensors):
        raise QuantizationError("concat inputs must share a code type")
    sy, zy = _scale(y_scale, "y_scale"), _zp(y_zp, dtype, "y_zp")
    parts = []
    for t, s, z in zip(tensors, scales, zps):
        if _scale(s, "scale") == sy and _zp(z, dtype, "zero point") == zy:
            parts.append(t)
        else:
            parts.append(lut_apply(t, requant_table(s, z, sy, zy, dtype)))
    return np.concatenate(parts, axis=axis)


def upsample_nearest2x(x, axes=(1, 2)):
    """Nearest-neighbour 2x upsampling along ``axes`` (NHWC: H and W); codes are copied.

    Equals ONNX Resize(mode="nearest", scales 2) for the default half_pixel /
    round_prefer_floor and for asymmetric / floor: output ``i`` reads input ``i // 2``.
    """
    x = _codes(x, "x")
    for ax in axes:
        x = np.repeat(x, 2, axis=ax)
    return x


def lut_apply(x, table):
    """Map codes through a 256-entry table indexed by the code's bit pattern (``code & 0xFF``)."""
    x = _codes(x, "x")
    table = np.asarray(table)
    if table.shape != (256,) or table.dtype not in (np.uint8, np.int8):
        raise QuantizationError(
            f"table must be 256 uint8/int8 entries, not {table.dtype} {table.shape}"
        )
    return table[x.view(np.uint8)]


def leaky_shift(x, x_scale, x_zp, y_scale, y_zp, dtype=None, rounded=False, order="shift-first"):
    """LeakyReLU(0.1) approximated by a shift: ``(v * 13) >> 7`` for ``v = x - x_zp < 0``.

    An opt-in approximation; the exact path is a table (compiler/lut.py). Its error is
    measured in the tests against onnxruntime's QLinearLeakyRelu.

    Parameters
    ----------
    x : np.ndarray of uint8 or int8
    x_scale, x_zp, y_scale, y_zp : float, int
        With equal input and output parameters the requantization is the identity
        (ratio exactly 1) and ``y = x_zp + (v >= 0 ? v : (v * 13) >> 7)``.
    rounded : bool
        ``(v * 13 + 64) >> 7`` (round half up) instead of the floor.
    order : {"shift-first", "requant-first"}
        ``"shift-first"``: shift the zero-point-corrected input, then requantize by
        ``f32(x_scale / y_scale)`` with :func:`~.requant.requantize` (one requantizer per
        value, whatever its sign). ``"requant-first"``: requantize ``v`` to output units
        (no zero point, no saturation), shift the negative results, add ``y_zp``,
        saturate; the shift then errs in output LSBs rather than input LSBs.
    """
    x = _codes(x, "x")
    dtype = np.dtype(dtype or x.dtype)
    if order not in ("shift-first", "requant-first"):
        raise ValueError(f"order must be 'shift-first' or 'requant-first', not {order!r}")
    sx, sy = _scale(x_scale, "x_scale"), _scale(y_scale, "y_scale")
    zx, zy = _zp(x_zp, x.dtype, "x_zp"), _zp(y_zp, dtype, "y_zp")
    bias = (1 << (LEAKY_SHIFT - 1)) if rounded else 0

    def shift(v):
        return np.where(v < 0, (v * LEAKY_MULT + bias) >> LEAKY_SHIFT, v)

    v = x.astype(np.int64) - zx
    rq = Requant.from_scale(_f32(sx / sy), zy, dtype)
    if order == "shift-first":
        return requantize(shift(v), rq).astype(dtype)
    wide = Requant(m=rq.m, e=rq.e, zp=0, qmin=-(1 << 31), qmax=(1 << 31) - 1)
    u = requantize(v, wide).astype(np.int64)
    return np.clip(shift(u) + zy, rq.qmin, rq.qmax).astype(dtype)
