"""Differential tests: runtime.elementwise against onnxruntime's integer elementwise kernels.

Golden: onnxruntime 1.32 (x86-64) at ORT_ENABLE_EXTENDED: com.microsoft QLinearAdd,
QLinearMul, QLinearConcat, QLinearLeakyRelu, and QDQ models from ``quantize_static``
that the optimizer fuses into those (checked). Add compares against the x86 formula
(``formula="ort-x86"``); the ARM fixed-point formula cannot run here and is checked
against a scalar transcription of the MLAS source instead.
"""

import numpy as np
import ortutil as ou
import ortutil_elementwise as oe
import pytest
from bamboo.runtime import elementwise as ew
from bamboo.runtime.errors import QuantizationError
from bamboo.runtime.requant import Requant, requantize

f32 = np.float32
DTYPES = [np.uint8, np.int8]


def _params(rng, dtype, n_scales, lo=-6.0, hi=-1.0):
    qmin, qmax = (0, 255) if dtype == np.uint8 else (-128, 127)
    scales = [f32(s) for s in np.exp(rng.uniform(lo, hi, n_scales))]
    zps = [int(z) for z in rng.integers(qmin, qmax + 1, n_scales)]
    return scales, zps


# --- fma ----------------------------------------------------------------------------------------


def test_fma_f32_double_rounding_case():
    # x*y + z = 1 + 2**-23 + 2**-24 - 2**-60: just below a float32 tie. Rounding to
    # float64 first lands on the tie and then rounds up; a true fma rounds down.
    x, y, z = f32(1 + 2.0**-18), f32(2.0**-24 * (1 - 2.0**-18)), f32(1 + 2.0**-23)
    naive = f32(np.float64(x) * np.float64(y) + np.float64(z))
    assert naive == f32(1 + 2.0**-22)
    assert ew.fma_f32(x, y, z) == z


def test_fma_f32_against_rationals():
    from fractions import Fraction

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 3000)).astype(f32)
    z = (rng.standard_normal(3000) * 2.0 ** rng.integers(-30, 5, 3000)).astype(f32)
    got = ew.fma_f32(x, y, z)
    for i in range(x.size):
        exact = Fraction(float(x[i])) * Fraction(float(y[i])) + Fraction(float(z[i]))
        down, up = np.nextafter(got[i], f32(-np.inf)), np.nextafter(got[i], f32(np.inf))
        err = abs(Fraction(float(got[i])) - exact)
        assert err <= abs(Fraction(float(down)) - exact) and err <= abs(Fraction(float(up)) - exact)


# --- Add ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_x86_exhaustive(dtype, diff_cases):
    """Every pair of codes, several random quantizations: bit-exact with QLinearAdd."""
    rng = np.random.default_rng(1 if dtype == np.uint8 else 2)
    a, b = oe.all_pairs(dtype)
    for _ in range(5):
        (sa, sb, sc), (za, zb, zc) = _params(rng, dtype, 3)
        model = oe.qlinear_binary("Add", dtype, a.shape, sa, za, b.shape, sb, zb, sc, zc)
        want = ou.run(model, {"a": a, "b": b})[0]
        got = ew.add(a, sa, za, b, sb, zb, sc, zc)
        np.testing.assert_array_equal(got, want)
        diff_cases("add", a.size)


def _swap_sensitive(rng, dtype, shape_a, shape_b, tries=400):
    """Codes and a quantization for which operand order changes the x86 result (so a
    missing or wrong swap shows)."""
    lo = 0 if dtype == np.uint8 else -128
    out = np.broadcast_shapes(shape_a, shape_b)
    for _ in range(tries):
        a = rng.integers(lo, lo + 256, shape_a).astype(dtype)
        b = rng.integers(lo, lo + 256, shape_b).astype(dtype)
        (sa, sb, sc), (za, zb, zc) = _params(rng, dtype, 3)
        if a.size == 1:  # a lone code meets 256 b codes only: pick a sensitive one
            fa, fb = oe.all_pairs(dtype)
        else:
            fa, fb = np.broadcast_to(a, out).copy(), np.broadcast_to(b, out).copy()
        # Same shapes: no swap, so these differ only through the operands' roles.
        diff = ew.add(fa, sa, za, fb, sb, zb, sc, zc) != ew.add(fb, sb, zb, fa, sa, za, sc, zc)
        if np.any(diff):
            if a.size == 1:
                a[...] = fa[diff][0]
                b.flat[0] = fb[diff][0]
            return a, b, (sa, za, sb, zb, sc, zc)
    raise AssertionError("no order-sensitive quantization found")


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [
        ((1, 64, 8, 128), (1, 64, 1, 1)),  # per-channel b: b folded into the constant
        ((1, 64, 1, 1), (1, 64, 8, 128)),  # per-channel a: onnxruntime swaps the operands
        ((1,), (4, 128, 128)),  # scalar a
        ((), ()),  # two scalars: onnxruntime swaps too
        ((64, 1, 128), (1, 64, 128)),  # innermost axis full on both: no swap
        ((64, 128, 1), (1, 128, 64)),
    ],
)
def test_add_x86_broadcast(shape_a, shape_b, diff_cases):
    rng = np.random.default_rng(3)
    a, b, (sa, za, sb, zb, sc, zc) = _swap_sensitive(rng, np.uint8, shape_a, shape_b)
    model = oe.qlinear_binary("Add", np.uint8, a.shape, sa, za, b.shape, sb, zb, sc, zc)
    want = ou.run(model, {"a": a, "b": b})[0]
    np.testing.assert_array_equal(ew.add(a, sa, za, b, sb, zb, sc, zc), want)
    diff_cases("add", want.size)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_add_qdq(dtype, diff_cases):
    """quantize_static's QDQ Add fuses into QLinearAdd and matches the x86 formula."""
    shape = (1, 8, 16, 16)
    rng = np.random.default_rng(4)
    feeds = [
        {
            "a": rng.standard_normal(shape).astype(f32),
            "b": 2 * rng.standard_normal(shape).astype(f32),
        }
        for _ in range(4)
    ]
    model, qp = ou.strip_io_qdq(
        ou.quantize_qdq(oe.float_binary("Add", shape, shape), feeds, activation_type=dtype)
    )
    assert ou.assert_integer_graph(model) == ["QLinearAdd"]
    (sa, za), (sb, zb), (sc, zc) = qp.values()
    a, b = (rng.integers(0, 256, (2,) + shape).astype(np.uint8).view(dtype) for _ in range(2))
    for i in range(2):
        want = ou.run(model, {model.graph.input[0].name: a[i], model.graph.input[1].name: b[i]})[0]
        np.testing.assert_array_equal(ew.add(a[i], sa, za, b[i], sb, zb, sc, zc), want)
        diff_cases("add", want.size)


def _mlas_neon_add(a, sa, za, b, sb, zb, sc, zc, qmin, qmax):
    """Scalar transcription of MLAS qladd.cpp (MlasCalcQLinearAddParameters + NEON lane math)."""
    ra, rb = f32(sa / sc), f32(sb / sc)
    exp = (int(max(ra, rb).view(np.uint32)) >> 23) - 127
    shift = 21 - exp
    mult = f32(2.0**shift)
    ma, mb = int(np.rint(f32(ra * mult))), int(np.rint(f32(rb * mult)))
    assert 13 <= shift <= 31 and ma < 2**22 and mb < 2**22 and max(ma, mb) >= 2**21
    out = []
    for x, y in zip(a.ravel().tolist(), b.ravel().tolist()):
        acc = (x - za) * ma + (y - zb) * mb
        acc += -1 if acc < 0 else 0  # vsraq_n_s32(acc, acc, 31)
        acc = (acc + (1 << (shift - 1))) >> shift  # vrshlq_s32(acc, -shift)
        out.append(min(max(acc + zc, qmin), qmax))
    return np.array(out).reshape(a.shape)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_fixed_point(dtype, diff_cases):
    """The ARM formula against its source transcription; off x86 by at most one LSB, rarely."""
    rng = np.random.default_rng(5)
    qmin, qmax = (0, 255) if dtype == np.uint8 else (-128, 127)
    a, b = oe.all_pairs(dtype)
    total_off = 0
    for _ in range(4):
        (sa, sb, sc), (za, zb, zc) = _params(rng, dtype, 3, -4.0, -2.0)
        got = ew.add(a, sa, za, b, sb, zb, sc, zc, formula="fixed-point").astype(int)
        pick = rng.integers(0, a.size, 4000)
        ref = _mlas_neon_add(a.ravel()[pick], sa, za, b.ravel()[pick], sb, zb, sc, zc, qmin, qmax)
        np.testing.assert_array_equal(got.ravel()[pick], ref)
        x86 = ew.add(a, sa, za, b, sb, zb, sc, zc).astype(int)
        assert np.abs(got - x86).max() <= 1
        total_off += int(np.count_nonzero(got != x86))
    # The builds disagree on a few pairs per million: measured 5.3e-6 over 80 random
    # quantizations (numerics.md quotes ~3e-6 for TFLite's integer Add).
    assert total_off <= 4 * a.size * 1e-4


# --- Mul ----------------------------------------------------------------------------------------


def _zp_rounding_sensitive(rng, dtype, tries=3000):
    """A quantization where adding the zero point before rounding (onnxruntime) changes codes."""
    a, b = oe.all_pairs(dtype)
    for _ in range(tries):
        (sa, sb), (za, zb, zc) = _params(rng, dtype, 2)[0], _params(rng, dtype, 3)[1]
        sc = f32(sa * sb * np.exp(rng.uniform(0.0, 6.0)))
        p = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
        late = requantize(p, Requant.from_scale(f32(f32(sa * sb) / sc), zc, dtype))
        if np.any(late != ew.mul_channel(a, sa, za, b, sb, zb, sc, zc)):
            return sa, za, sb, zb, sc, zc
    raise AssertionError("no zero-point-rounding-sensitive quantization found")


@pytest.mark.parametrize("dtype", DTYPES)
def test_mul_exhaustive(dtype, diff_cases):
    """Every pair of codes through QLinearMul: random quantizations plus one where the
    requantizer's add-zero-point-after-rounding would be wrong."""
    rng = np.random.default_rng(6 if dtype == np.uint8 else 7)
    a, b = oe.all_pairs(dtype)
    cases = [_zp_rounding_sensitive(rng, dtype)]
    for _ in range(3):
        (sa, sb), zps = _params(rng, dtype, 2)[0], _params(rng, dtype, 3)[1]
        cases.append((sa, zps[0], sb, zps[1], f32(sa * sb * np.exp(rng.uniform(1, 5))), zps[2]))
    for sa, za, sb, zb, sc, zc in cases:
        model = oe.qlinear_binary("Mul", dtype, a.shape, sa, za, b.shape, sb, zb, sc, zc)
        want = ou.run(model, {"a": a, "b": b})[0]
        np.testing.assert_array_equal(ew.mul_channel(a, sa, za, b, sb, zb, sc, zc), want)
        diff_cases("mul_channel", a.size)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_mul_channel_se_qdq(dtype, diff_cases):
    """Squeeze-excite scale: QDQ Mul (N,C,H,W) x (N,C,1,1) fuses to QLinearMul; NHWC kernel."""
    n, c, h, w = 2, 16, 7, 9
    rng = np.random.default_rng(8)
    feeds = [
        {
            "a": rng.standard_normal((n, c, h, w)).astype(f32),
            "b": rng.uniform(0, 1, (n, c, 1, 1)).astype(f32),
        }
        for _ in range(4)
    ]
    model, qp = ou.strip_io_qdq(
        ou.quantize_qdq(
            oe.float_binary("Mul", (n, c, h, w), (n, c, 1, 1)), feeds, activation_type=dtype
        )
    )
    assert ou.assert_integer_graph(model) == ["QLinearMul"]
    (sx, zx), (ss, zs), (sy, zy) = qp.values()
    x = rng.integers(0, 256, (n, c, h, w)).astype(np.uint8).view(dtype)
    s = rng.integers(0, 256, (n, c)).astype(np.uint8).view(dtype)
    names = [i.name for i in model.graph.input]
    want = ou.run(model, {names[0]: x, names[1]: s.reshape(n, c, 1, 1)})[0]
    got = ew.mul_channel(ou.nchw_to_nhwc(x), sx, zx, s, ss, zs, sy, zy)
    np.testing.assert_array_equal(ou.nhwc_to_nchw(got), want)
    diff_cases("mul_channel", want.size)


# --- Concat -------------------------------------------------------------------------------------


def _concat_sensitive(rng, dtype, tries=5000):
    """(scale, zp) in and out for which the requantizer form would differ from the table."""
    codes = oe.codes(dtype)
    for _ in range(tries):
        (s, ys), (z, yz) = _params(rng, dtype, 2, -6.0, 0.0)
        ys = f32(s * rng.choice([0.25, 0.5, 2.0, 3.0])) if rng.random() < 0.5 else ys
        late = requantize(codes.astype(np.int64) - z, Requant.from_scale(f32(s / ys), yz, dtype))
        if np.any(late != ew.requant_table(s, z, ys, yz, dtype)[codes.view(np.uint8)]):
            return s, z, ys, yz
    raise AssertionError("no requantizer-sensitive quantization found")


@pytest.mark.parametrize("dtype", DTYPES)
def test_concat_qlinear(dtype, diff_cases):
    rng = np.random.default_rng(9)
    s0, z0, ys, yz = _concat_sensitive(rng, dtype)
    (s1,), (z1,) = _params(rng, dtype, 1)
    shapes = [(1, 4, 8, 8), (1, 3, 8, 8), (1, 2, 8, 8)]
    scales, zps = [s0, s1, ys], [z0, z1, yz]  # the last input already uses the output's
    xs = [np.resize(oe.codes(dtype), sh) for sh in shapes]
    want = ou.run(
        oe.qlinear_concat(dtype, shapes, scales, zps, ys, yz, axis=1),
        {f"x{i}": x for i, x in enumerate(xs)},
    )[0]
    got = ew.concat([ou.nchw_to_nhwc(x) for x in xs], scales, zps, ys, yz, axis=-1)
    np.testing.assert_array_equal(ou.nhwc_to_nchw(got), want)
    diff_cases("concat", want.size)


def test_concat_qdq(diff_cases):
    shapes = [(1, 4, 6, 6), (1, 5, 6, 6)]
    rng = np.random.default_rng(10)
    feeds = [
        {
            "x0": rng.standard_normal(shapes[0]).astype(f32),
            "x1": 3 * rng.standard_normal(shapes[1]).astype(f32),
        }
        for _ in range(4)
    ]
    model, qp = ou.strip_io_qdq(ou.quantize_qdq(oe.float_concat(shapes, 1), feeds))
    assert ou.assert_integer_graph(model) == ["QLinearConcat"]
    (s0, z0), (s1, z1), (ys, yz) = qp.values()
    assert (s0, z0) != (ys, yz)  # one input really is re-coded
    xs = [rng.integers(0, 256, sh).astype(np.uint8) for sh in shapes]
    names = [i.name for i in model.graph.input]
    want = ou.run(model, dict(zip(names, xs)))[0]
    got = ew.concat([ou.nchw_to_nhwc(x) for x in xs], [s0, s1], [z0, z1], ys, yz, axis=-1)
    np.testing.assert_array_equal(ou.nhwc_to_nchw(got), want)
    diff_cases("concat", want.size)


# --- Upsample, tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "attrs", [{}, {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}]
)
def test_upsample_nearest2x(dtype, attrs, diff_cases):
    x = np.random.default_rng(11).integers(0, 256, (2, 3, 5, 7)).astype(np.uint8).view(dtype)
    want = ou.run(oe.resize_nearest(dtype, x.shape, **attrs), x)[0]
    got = ew.upsample_nearest2x(ou.nchw_to_nhwc(x))
    np.testing.assert_array_equal(ou.nhwc_to_nchw(got), want)
    diff_cases("upsample_nearest2x", want.size)


def test_lut_apply_indexes_by_bit_pattern():
    table = np.arange(256, dtype=np.uint8)
    x = oe.codes(np.int8)
    assert ew.lut_apply(x, table)[:2].tolist() == [128, 129]  # -128 -> entry 0x80
    assert ew.lut_apply(np.int8(-1), table) == 255
    with pytest.raises(QuantizationError, match="table must be 256"):
        ew.lut_apply(x, table[:255])


# --- LeakyReLU shift ----------------------------------------------------------------------------


def _leaky_error(dtype, xs, xz, ys, yz, **kw):
    """(codes wrong, max LSB error) of the shift against onnxruntime's QLinearLeakyRelu(0.1)."""
    x = oe.codes(dtype)
    exact = ou.run(oe.qlinear_unary("LeakyRelu", dtype, x.shape, xs, xz, ys, yz, alpha=0.1), x)[0]
    d = np.abs(ew.leaky_shift(x, xs, xz, ys, yz, **kw).astype(int) - exact.astype(int))
    return int(np.count_nonzero(d)), int(d.max())


def _calibrated_leaky(dtype):
    """quantize_static's scales for LeakyRelu(0.1) on standard normal data (4 batches, seed 0)."""
    rng = np.random.default_rng(0)
    shape = (1, 4, 8, 8)
    feeds = [{"x": rng.standard_normal(shape).astype(f32)} for _ in range(4)]
    model, qp = ou.strip_io_qdq(
        ou.quantize_qdq(oe.float_unary("LeakyRelu", shape, alpha=0.1), feeds, activation_type=dtype)
    )
    assert ou.assert_integer_graph(model) == ["QLinearLeakyRelu"]
    (xs, xz), (ys, yz) = qp.values()
    return float(xs), int(xz), float(ys), int(yz)


# Measured with onnxruntime 1.32. numerics.md quotes 111 (max 2) and 64 (max 1) for
# its own calibration, which is not recorded; the count moves with the calibration
# (91..129 wrong for other seeds), so these pin this file's calibration.
LEAKY_FIGURES = {
    ("calibrated", "shift-first", False): (114, 2),
    ("calibrated", "shift-first", True): (70, 1),
    ("calibrated", "requant-first", False): (103, 1),
    ("calibrated", "requant-first", True): (31, 1),
    ("same", "shift-first", False): (75, 1),
    ("same", "shift-first", True): (11, 1),
}


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("case", sorted(LEAKY_FIGURES))
def test_leaky_shift_error(dtype, case, diff_cases):
    scales, order, rounded = case
    if scales == "calibrated":
        params = _calibrated_leaky(dtype)
    else:  # equal input and output quantization, zero point mid-range
        params = (0.05, 128 if dtype == "uint8" else 0) * 2
    assert (
        _leaky_error(np.dtype(dtype), *params, rounded=rounded, order=order) == LEAKY_FIGURES[case]
    )
    diff_cases("leaky_shift", 256)


def test_leaky_shift_same_params_is_shift():
    x = oe.codes(np.uint8)
    v = x.astype(int) - 100
    want = np.clip(np.where(v < 0, (v * 13) >> 7, v) + 100, 0, 255)
    np.testing.assert_array_equal(ew.leaky_shift(x, 0.1, 100, 0.1, 100), want)


# --- argument checks ----------------------------------------------------------------------------


def test_errors():
    a = np.zeros(4, np.uint8)
    with pytest.raises(QuantizationError, match="a_scale must be positive and finite"):
        ew.add(a, 0.0, 0, a, 1.0, 0, 1.0, 0)
    with pytest.raises(QuantizationError, match="y_zp 300 is outside the uint8 range"):
        ew.add(a, 1.0, 0, a, 1.0, 0, 1.0, 300)
    with pytest.raises(ValueError, match="formula must be one of"):
        ew.add(a, 1.0, 0, a, 1.0, 0, 1.0, 0, formula="tflite")
    with pytest.raises(QuantizationError, match="must share a code type"):
        ew.mul_channel(a, 1.0, 0, a.view(np.int8), 1.0, 0, 1.0, 0)
    with pytest.raises(QuantizationError, match="one scale and zero point per input"):
        ew.concat([a, a], [1.0], [0], 1.0, 0)
    with pytest.raises(QuantizationError, match="must hold uint8 or int8 codes"):
        ew.upsample_nearest2x(np.zeros((1, 2, 2, 1), np.float32))
