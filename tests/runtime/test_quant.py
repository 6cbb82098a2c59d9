"""Differential tests: runtime.quant against onnxruntime's QuantizeLinear / DequantizeLinear."""

import numpy as np
import ortutil as ou
import pytest
from bamboo.runtime.errors import QuantizationError
from bamboo.runtime.quant import dequantize, quantize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DTYPES = st.sampled_from([np.uint8, np.int8])


def _ort_quantize(x, scale, zp, axis=1):
    node = ou.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=axis)
    model = ou.make_model(
        [node],
        [("x", np.float32, list(x.shape))],
        [("y", zp.dtype, None)],
        {"s": np.asarray(scale, np.float32), "z": zp},
    )
    return ou.run(model, x)[0]


def _ort_dequantize(q, scale, zp, axis=1):
    node = ou.helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)
    model = ou.make_model(
        [node],
        [("q", q.dtype, list(q.shape))],
        [("y", np.float32, None)],
        {"s": np.asarray(scale, np.float32), "z": zp},
    )
    return ou.run(model, q)[0]


def _near_ties(rng, scale, n):
    """Values within a few float32 ulps of (k + 0.5) * s: where rounding order shows."""
    k = rng.integers(-300, 300, n).astype(np.float32)
    x = ((k + np.float32(0.5)) * np.float32(scale)).astype(np.float32)
    for _ in range(3):
        step = rng.integers(-1, 2, n)
        x = np.where(
            step > 0,
            np.nextafter(x, np.float32(np.inf)),
            np.where(step < 0, np.nextafter(x, np.float32(-np.inf)), x),
        )
    return x


@SETTINGS
@given(dtype=DTYPES, log_scale=st.floats(-12, 4), seed=st.integers(0, 2**32 - 1))
def test_quantize_matches_quantizelinear(dtype, log_scale, seed, diff_cases):
    rng = np.random.default_rng(seed)
    scale = np.float32(np.exp(log_scale))
    lo = 0 if dtype == np.uint8 else -128
    zp = np.asarray(rng.integers(lo, lo + 256), dtype)
    x = np.concatenate(
        [
            _near_ties(rng, scale, 3000),
            (rng.normal(0, 200, 1000) * scale).astype(np.float32),  # incl. saturation
            np.array([0.0, -0.0, 1e30, -1e30, scale / 2, -scale / 2], np.float32),
        ]
    ).reshape(2, -1)
    want = _ort_quantize(x, scale, zp)
    np.testing.assert_array_equal(quantize(x, scale, zp, dtype), want)
    diff_cases("quantize", want.size)


@SETTINGS
@given(dtype=DTYPES, c=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_quantize_per_axis_matches(dtype, c, seed, diff_cases):
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(-8, 1, c)).astype(np.float32)
    lo = 0 if dtype == np.uint8 else -128
    zp = rng.integers(lo, lo + 256, c).astype(dtype)
    x = np.stack([_near_ties(rng, s, 200) for s in scale], axis=1).reshape(4, c, 50)
    want = _ort_quantize(x, scale, zp, axis=1)
    np.testing.assert_array_equal(quantize(x, scale, zp, dtype, axis=1), want)
    diff_cases("quantize", want.size)


def test_reciprocal_multiply_is_not_quantizelinear():
    """Why quantize divides: x * (1/s) rounds twice and misses onnxruntime near ties."""
    rng = np.random.default_rng(9)
    scale, zp = np.float32(0.0431), np.asarray(128, np.uint8)
    x = _near_ties(rng, scale, 20000).reshape(1, -1)
    want = _ort_quantize(x, scale, zp)
    np.testing.assert_array_equal(quantize(x, scale, zp), want)
    recip = np.clip(np.rint(x * (np.float32(1) / scale)) + 128, 0, 255)
    assert np.count_nonzero(recip != want) > 100


@SETTINGS
@given(
    dtype=DTYPES,
    log_scale=st.floats(-20, 10),
    c=st.integers(1, 4),
    per_axis=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_dequantize_matches_dequantizelinear(dtype, log_scale, c, per_axis, seed, diff_cases):
    rng = np.random.default_rng(seed)
    lo = 0 if dtype == np.uint8 else -128
    q = np.broadcast_to(np.arange(lo, lo + 256, dtype=np.int64).astype(dtype), (c, 256))
    q = np.ascontiguousarray(q).reshape(1, c, 256)
    if per_axis:
        scale = (np.exp(log_scale) * rng.uniform(0.5, 2, c)).astype(np.float32)
        zp = rng.integers(lo, lo + 256, c).astype(dtype)
    else:
        scale = np.float32(np.exp(log_scale))
        zp = np.asarray(rng.integers(lo, lo + 256), dtype)
    want = _ort_dequantize(q, scale, zp, axis=1)
    got = dequantize(q, scale, zp, axis=1)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))  # bits, incl. -0.0
    diff_cases("dequantize", want.size)


def test_quant_errors_name_the_problem():
    with pytest.raises(QuantizationError, match="scale must be positive and finite"):
        quantize([1.0], 0.0, 0)
    with pytest.raises(QuantizationError, match=r"zero point \[300\] is outside the uint8 range"):
        quantize([1.0], 0.1, 300)
    with pytest.raises(ValueError, match="quantized type must be uint8 or int8"):
        quantize([1.0], 0.1, 0, np.int16)


@pytest.mark.parametrize("value", [0.0, 6.0, -0.7, 1e30])
def test_quantize_takes_0d_input(value):
    """Issue 13: a Relu/Clip bound is a 0-d value (it raised 'return arrays must be of
    ArrayType')."""
    scale, zp = np.float32(0.0235), np.asarray(3, np.uint8)
    got = quantize(np.float32(value), scale, zp)
    assert got.shape == () and got.dtype == np.uint8
    assert got == _ort_quantize(np.array([value], np.float32), scale, zp)[0]
