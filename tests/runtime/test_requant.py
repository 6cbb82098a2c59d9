"""Property tests: the integer requantizer against the float formula, on adversarial inputs.

The reference is onnxruntime's float expression, evaluated in numpy float32::

    y = sat(RNE(f32(f32(acc) * S)) + zp)

(Ref: docs/numerics.md, "Conv, Gemm"). Inputs are built to hit every
rounding step exactly at a tie: f32(acc) for |acc| >= 2**24, the product's
rounding to 24 bits, and the final round to an integer; plus saturation at both
ends and per-channel parameters. The scale's own evaluation order is checked
against onnxruntime's QLinearConv.
"""

import numpy as np
import ortutil as ou
from bamboo.runtime.requant import Requant, conv_scale, requantize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
F32 = np.float32
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def float_formula(acc, scale, zp, qmin, qmax):
    """onnxruntime's requantization in float32 (int32 -> f64 is exact, -> f32 rounds once)."""
    a = np.asarray(acc, np.int64).astype(np.float64).astype(F32)
    p = (a * np.asarray(scale, F32)).astype(F32)
    return np.clip(np.rint(p).astype(np.float64) + zp, qmin, qmax).astype(np.int64)


def _check(acc, scale, zp, dtype, axis=-1):
    rq = Requant.from_scale(scale, zp, dtype)
    shape = [1] * np.ndim(acc)
    if np.ndim(scale):
        shape[axis] = -1
    want = float_formula(
        acc, np.reshape(scale, shape) if np.ndim(scale) else scale, zp, rq.qmin, rq.qmax
    )
    np.testing.assert_array_equal(requantize(acc, rq, axis=axis), want)
    return want


def _zp(rng, dtype):
    lo = 0 if dtype == np.uint8 else -128
    return int(rng.integers(lo, lo + 256))


@SETTINGS
@given(dtype=st.sampled_from([np.uint8, np.int8]), seed=st.integers(0, 2**32 - 1))
def test_large_accumulators(dtype, seed):
    """|acc| >= 2**24, where f32(acc) itself rounds; scales chosen so outputs mostly fit."""
    rng = np.random.default_rng(seed)
    acc = rng.integers(INT32_MIN, INT32_MAX, 4000, endpoint=True)
    acc[:8] = [INT32_MIN, INT32_MAX, 2**24, -(2**24), 2**24 + 1, -(2**24) - 1, 2**25 + 3, 0]
    scale = F32(rng.uniform(20, 150) / 2**31)
    want = _check(acc, scale, _zp(rng, dtype), dtype)
    assert len(np.unique(want)) > 20


@SETTINGS
@given(
    dtype=st.sampled_from([np.uint8, np.int8]),
    shift=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_ties_in_accumulator_rounding(dtype, shift, seed):
    """acc with 25 significant bits, the last one set: f32(acc) is a tie (to even)."""
    rng = np.random.default_rng(seed)
    odd = 2**24 + 2 * rng.integers(0, 2**23, 2000) + 1
    acc = (odd << shift) * rng.choice([-1, 1], 2000)
    scale = F32(rng.uniform(0.5, 100) / 2 ** (25 + shift))
    _check(acc, scale, _zp(rng, dtype), dtype)


@SETTINGS
@given(
    dtype=st.sampled_from([np.uint8, np.int8]), d=st.integers(1, 29), seed=st.integers(0, 2**32 - 1)
)
def test_ties_in_product_rounding(dtype, d, seed):
    """acc * m exactly half-way between two 24-bit values.

    With m odd and ``u * m`` of exactly 25 bits (u odd), ``P = u * m * 2**(d-1)`` has
    its 25th significant bit set and nothing below: a tie. ``u = 3`` and
    ``m < 2**25 / 3`` do it; ``acc = +-3 * 2**(d-1)``.
    """
    rng = np.random.default_rng(seed)
    m = 2 * rng.integers(2**22, (2**25 // 3) // 2, 500) + 1
    acc = 3 * 2 ** (d - 1) * rng.choice([-1, 1], 500)
    # y = 3m * 2**(d-1+e) ~ 2**(24.6 + d - 1 + e); aim for tens of codes.
    e = -(d - 1) - int(rng.integers(18, 21))
    scale = np.ldexp(m.astype(np.float64), e).astype(F32)
    assert np.all(np.ldexp(m.astype(np.float64), e) == scale)  # exact: m has 24 bits
    _check(acc, scale, _zp(rng, dtype), dtype)  # one "channel" per tie


@SETTINGS
@given(
    dtype=st.sampled_from([np.uint8, np.int8]), j=st.integers(1, 24), seed=st.integers(0, 2**32 - 1)
)
def test_ties_in_final_rounding(dtype, j, seed):
    """S = 2**-j and acc an odd multiple of 2**(j-1): acc * S is exactly k + 0.5."""
    rng = np.random.default_rng(seed)
    k = rng.integers(-200, 200, 1000)
    acc = (2 * k + 1) * 2 ** (j - 1)
    acc = acc[(acc >= INT32_MIN) & (acc <= INT32_MAX)]
    want = _check(acc, F32(2.0**-j), _zp(rng, dtype), dtype)
    assert want.size


@SETTINGS
@given(dtype=st.sampled_from([np.uint8, np.int8]), seed=st.integers(0, 2**32 - 1))
def test_saturation_both_ends(dtype, seed):
    rng = np.random.default_rng(seed)
    acc = np.concatenate([rng.integers(INT32_MIN, INT32_MAX, 500), [INT32_MIN, INT32_MAX]])
    zp = _zp(rng, dtype)
    want = _check(acc, F32(rng.uniform(0.01, 1e6)), zp, dtype)
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    assert want.min() == lo and want.max() == hi


@SETTINGS
@given(c=st.integers(1, 16), axis=st.sampled_from([1, -1]), seed=st.integers(0, 2**32 - 1))
def test_per_channel(c, axis, seed):
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(-20, 0, c)).astype(F32)
    shape = (3, c, 40) if axis == 1 else (3, 40, c)
    acc = rng.integers(-(2**20), 2**20, shape)
    acc = acc * rng.integers(1, 2**10, shape) // 2 ** int(rng.integers(0, 10))
    acc = np.clip(acc, INT32_MIN, INT32_MAX)
    _check(acc, scale, _zp(rng, np.uint8), np.uint8, axis=axis)


def test_clamp_narrows_the_range():
    rq = Requant.from_scale(F32(0.5), 0, np.uint8, clamp=(0, 6 * 42))
    assert requantize(np.array([1000, -3, 504, 505]), rq).tolist() == [252, 0, 252, 252]


def _order_sensitive_scales(rng):
    """(s_x, s_w, s_y) where f32(f32(s_x*s_w)/s_y) != f32(s_x*f32(s_w/s_y)).

    Scales are typical of a conv layer (S ~ 1e-4): many accumulators per output code.
    """
    for _ in range(10000):
        s_x, s_w, s_y = (F32(v) for v in rng.uniform([5e-3, 1e-3, 5e-2], [2e-2, 4e-3, 2e-1]))
        ours = conv_scale(s_x, s_w, s_y)
        other = F32(s_x * F32(s_w / s_y))
        if ours != other and 3e-5 < ours < 3e-4:
            return s_x, s_w, s_y, ours, other
    raise AssertionError("no order-sensitive scale triple found")


def test_conv_scale_order_matters(diff_cases):
    """Evaluating the scale in another order changes outputs; onnxruntime uses conv_scale's.

    Bias alone drives the accumulator (x at its zero point), so chosen accumulators
    reach QLinearConv unchanged, one per output channel.
    """
    rng = np.random.default_rng(2024)
    s_x, s_w, s_y, ours, other = _order_sensitive_scales(rng)
    assert ours != other
    zp = 128
    span = int(120 / ours)
    acc = np.arange(-span, span + 1)
    a = acc.astype(F32)
    differ = np.rint(a * ours) != np.rint(a * other)
    assert differ.any(), "the two scales round every accumulator alike"
    n_differ = min(64, int(differ.sum()))
    acc = np.concatenate([acc[differ][:64], rng.integers(-span, span, 64)]).astype(np.int32)
    o = acc.size
    w = np.ones((o, 1, 1, 1), np.int8)
    model = ou.qlinear_conv(
        (1, 1, 1, 1), np.uint8, s_x, zp, w, np.full(o, s_w, F32), 0, acc, s_y, zp
    )
    got = ou.run(model, np.full((1, 1, 1, 1), zp, np.uint8))[0].reshape(o)
    np.testing.assert_array_equal(got, requantize(acc, Requant.from_scale(ours, zp)))
    wrong = requantize(acc, Requant.from_scale(other, zp))
    assert np.all(got[:n_differ] != wrong[:n_differ])
    diff_cases("requantize", o)
