"""The runtime's fast paths against the general paths they replace, bit for bit.

Each fast path reaches the general path's result through exact float arithmetic or
word-sized copies (the reasoning is in the kernels' docstrings); these tests hold them
to it on random inputs and on the extremes where a rounding or a bound would show:

* ``requantize`` (IEEE roundings) against ``requantize_int`` (the integer steps);
* the single-row fully connected product in exact float32 slices
  (``FcWeights.vector``) against the float64 matrix product and int64 sums;
* ``global_avg_pool``'s float32 channel sums against int64 sums;
* ``to_blocked``/``from_blocked`` word moves against the byte-wise layout rule;
* ``quantize``'s float32 zero-point add against the float64 formula.
"""

import numpy as np
import pytest
from bamboo.runtime.conv import fc_weights, fully_connected, fully_connected_acc
from bamboo.runtime.layout import from_blocked, to_blocked
from bamboo.runtime.pool import global_avg_pool
from bamboo.runtime.quant import quantize
from bamboo.runtime.requant import Requant, requantize, requantize_int
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
F32 = np.float32


def _extreme_accumulators(rng, n):
    """int32 accumulators: random, every magnitude, ties of f32(acc), the int32 ends."""
    acc = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    bits = rng.integers(0, 31, n)
    acc[: n // 2] = rng.integers(-(2**30), 2**30, n // 2) >> bits[: n // 2]
    ties = (2**24 + 2 * rng.integers(0, 2**23, 64) + 1) << rng.integers(0, 7, 64)
    acc[:64] = ties * rng.choice([-1, 1], 64)
    acc[64:76] = [
        INT32_MIN,
        INT32_MAX,
        0,
        1,
        -1,
        2**24,
        -(2**24),
        2**24 + 1,
        -(2**24) - 1,
        2**31 - 64,
        -(2**31) + 64,
        3,
    ]
    return acc


@SETTINGS
@given(
    dtype=st.sampled_from([np.uint8, np.int8]),
    channels=st.integers(1, 40),
    log2_scale=st.floats(-60, 22),
    clamp=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_requantize_float_path_equals_integer_steps(dtype, channels, log2_scale, clamp, seed):
    """Per-channel scales spanning ``2**-60 .. 2**22``, on accumulators of every size."""
    rng = np.random.default_rng(seed)
    scale = np.exp2(log2_scale + rng.uniform(-4, 0, channels)).astype(F32)
    lo = 0 if dtype == np.uint8 else -128
    zp = int(rng.integers(lo, lo + 256))
    rq = Requant.from_scale(scale, zp, dtype, clamp=(lo + 3, lo + 200) if clamp else None)
    assert rq.float_operands is not None
    acc = _extreme_accumulators(rng, 128 * channels).reshape(4, 32, channels)
    want = requantize_int(acc, rq)
    np.testing.assert_array_equal(requantize(acc, rq), want)
    np.testing.assert_array_equal(requantize(acc.astype(np.float64), rq), want)
    moved = np.moveaxis(acc, -1, 1)
    np.testing.assert_array_equal(requantize(moved, rq, axis=1), np.moveaxis(want, -1, 1))


def test_requantize_tiny_and_scalar_tensors():
    """SE-sized vectors and single values, per-tensor and per-channel."""
    rng = np.random.default_rng(7)
    for c in (1, 4, 8, 48, 1152):
        acc = (
            _extreme_accumulators(rng, 80)[:c].reshape(1, 1, 1, -1)
            if c <= 80
            else rng.integers(INT32_MIN, INT32_MAX, (1, 1, 1, c))
        )
        for scale in (F32(3.1e-5), np.exp(rng.uniform(-14, -4, acc.shape[-1])).astype(F32)):
            rq = Requant.from_scale(scale, 11, np.int8)
            np.testing.assert_array_equal(requantize(acc, rq), requantize_int(acc, rq))
    rq = Requant.from_scale(F32(0.37), 128)
    assert requantize(np.int64(1000), rq) == requantize_int(np.int64(1000), rq)


def test_requantize_without_float_operands_runs_the_integer_steps():
    """Scales of ``2**23`` and more (``e >= 0``) keep to the integer path."""
    rq = Requant.from_scale(F32(2.0**24), 0, np.int8)
    assert rq.float_operands is None
    acc = np.array([0, 1, -1, 5])
    np.testing.assert_array_equal(requantize(acc, rq), [0, 127, -128, 127])


def _fc_reference(x, x_zp, w, w_zp, bias):
    """Sums in int64: no float at all."""
    d = x.astype(np.int64) - x_zp
    wd = w.astype(np.int64) - np.reshape(w_zp, (-1, 1))
    return d @ wd.T + bias


@pytest.mark.parametrize(
    "x_dtype,x_zp,w_zp,k,o",
    [
        (np.uint8, 255, 127, 1280, 7),  # |x - x_zp| = |w - w_zp| = 255: many slices
        (np.uint8, 0, -128, 600, 5),
        (np.int8, -128, 0, 1152, 48),
        (np.int8, 127, -128, 96, 4),
        (np.uint8, 131, 0, 8, 32),
    ],
)
def test_fc_vector_slices_are_exact_at_the_bounds(x_dtype, x_zp, w_zp, k, o):
    """Codes and weights at their extremes, so each slice's sums reach ``2**24``."""
    rng = np.random.default_rng(k + o)
    lo, hi = (0, 255) if x_dtype == np.uint8 else (-128, 127)
    x = np.where(rng.random((1, k)) < 0.9, lo if x_zp > 0 else hi, rng.integers(lo, hi + 1, k))
    x = x.astype(x_dtype)
    w = np.where(
        rng.random((o, k)) < 0.9, 127 if w_zp < 0 else -128, rng.integers(-128, 128, (o, k))
    ).astype(np.int8)
    bias = rng.integers(-1000, 1000, o).astype(np.int32)
    wf = fc_weights(w, w_zp)
    if k * 255 * 255 >= 2**24:
        assert len(wf.slices) > 1
    want = _fc_reference(x, x_zp, w, w_zp, bias)
    inside = np.all((want >= INT32_MIN) & (want <= INT32_MAX))
    if not inside:
        pytest.skip("sums beyond int32")  # not with these sizes; keeps the test honest
    got = fully_connected_acc(x, x_zp, w, bias, w_zp=w_zp, weights=wf)
    np.testing.assert_array_equal(got, want)
    rows = np.repeat(x, 3, axis=0)  # three rows: the float64 matrix path
    np.testing.assert_array_equal(
        fully_connected_acc(rows, x_zp, w, bias, w_zp=w_zp, weights=wf), np.repeat(want, 3, axis=0)
    )


@SETTINGS
@given(
    k=st.integers(1, 1300),
    o=st.integers(1, 64),
    per_channel=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fc_vector_equals_matrix_path(k, o, per_channel, seed):
    """Random single rows (as squeeze-excite's 1x1 convolutions) through both paths."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (1, 1, 1, k)).astype(np.uint8)
    w = rng.integers(-128, 128, (o, k)).astype(np.int8)
    w_zp = rng.integers(-20, 20, o) if per_channel else 0
    bias = rng.integers(-(2**20), 2**20, o).astype(np.int32)
    x_zp = int(rng.integers(0, 256))
    rq = Requant.from_scale(np.exp(rng.uniform(-14, -6, o)).astype(F32), 3)
    want = _fc_reference(x.reshape(1, k), x_zp, w, w_zp, bias).reshape(1, 1, 1, o)
    got = fully_connected_acc(x, x_zp, w, bias, w_zp=w_zp)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        fully_connected(x, x_zp, w, bias, rq, w_zp=w_zp), requantize_int(want, rq).astype(np.uint8)
    )


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((1, 112, 112, 32), np.uint8),
        ((2, 7, 7, 96), np.int8),
        ((1, 257, 256, 2), np.uint8),  # int64 branch
        ((1, 1, 1, 5), np.int8),
    ],
)
def test_global_avg_pool_float_sums_equal_int64(shape, dtype):
    rng = np.random.default_rng(3)
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    x = rng.integers(lo, hi + 1, shape).astype(dtype)
    x[0, :, :, 0] = hi  # a channel at the extreme
    n = shape[1] * shape[2]
    rq = Requant.from_scale(F32(0.9 / n), 5, dtype)
    acc = x.sum(axis=(1, 2), dtype=np.int64, keepdims=True) - 7 * n
    np.testing.assert_array_equal(global_avg_pool(x, 7, rq), requantize_int(acc, rq).astype(dtype))


def _blocked_reference(x, rows):
    """The layout rule byte by byte: ``out[b][i][j][r] = x[i, j, b * rows + r]`` (or 0)."""
    h, w, c = x.shape
    nb = -(-c // rows)
    out = np.zeros((nb, h, w, rows), np.uint8)
    for ch in range(c):
        out[ch // rows, :, :, ch % rows] = x[:, :, ch].view(np.uint8)
    return out.reshape(-1)


@pytest.mark.parametrize("rows", [4, 6, 8, 16, 32])
@pytest.mark.parametrize(
    "hwc",
    [(224, 224, 3), (112, 112, 32), (1, 1, 1152), (1, 1, 20), (7, 5, 13), (3, 3, 16), (4, 4, 1)],
)
def test_layout_word_moves_equal_the_rule(rows, hwc):
    rng = np.random.default_rng(rows)
    x = rng.integers(-128, 128, hwc).astype(np.int8)
    blob = to_blocked(x[None], rows)
    np.testing.assert_array_equal(blob, _blocked_reference(x, rows))
    back = from_blocked(np.concatenate([blob, np.ones(5, np.uint8)]), *hwc, rows, np.int8)
    assert back.flags.c_contiguous and back.dtype == np.int8
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize(
    "dtype,zp",
    [(np.uint8, 0), (np.uint8, 255), (np.uint8, 97), (np.int8, -128), (np.int8, 127), (np.int8, 0)],
)
def test_quantize_saturates_like_the_float64_formula(dtype, zp):
    """Quotients beyond ``2**24`` (where a float32 zero-point add rounds) and infinities."""
    rng = np.random.default_rng(zp & 0xFF)
    s = F32(0.0173)
    x = (rng.standard_normal(4000) * np.exp2(rng.integers(-10, 40, 4000))).astype(F32)
    x[:8] = [np.inf, -np.inf, 3e38, -3e38, 0.5 * s, -0.5 * s, 1.5 * s, 2.0**24 * s]
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    with np.errstate(over="ignore"):
        q = np.rint(np.divide(x, s, dtype=F32)).astype(np.float64)
    want = np.clip(q + zp, lo, hi).astype(dtype)
    np.testing.assert_array_equal(quantize(x, s, zp, dtype), want)
