"""compiler.lut: activation tables against onnxruntime 1.32 (ORT_ENABLE_EXTENDED).

The tables come from onnxruntime itself; these tests check that applying one with
``runtime.elementwise.lut_apply`` reproduces onnxruntime on other tensors and other
graphs a quantized model may contain (hand-written QDQ, QOperator QLinearLeakyRelu /
QLinearSigmoid, ``quantize_static`` output), pin which kernels onnxruntime runs, and
count how far the numpy fallback is off.
"""

import numpy as np
import ortutil as ou
import ortutil_elementwise as oe
import pytest
from bamboo.compiler import lut
from bamboo.runtime.elementwise import lut_apply

f32 = np.float32
OPS = sorted(lut.LUT_OPS)
ATTRS = {"LeakyRelu": {"alpha": 0.1}, "HardSigmoid": {"alpha": 0.2, "beta": 0.5}}
# Calibration-like quantization: input range [-8, 8); output ranges from each op.
PARAMS = {
    "HardSigmoid": (16 / 255, 128, 1 / 255, 0),
    "HardSwish": (16 / 255, 128, 8.375 / 255, 11),
    "Sigmoid": (16 / 255, 128, 1 / 256, 0),
    "LeakyRelu": (16 / 255, 128, 8.8 / 255, 23),
    "Tanh": (8 / 255, 128, 2 / 255, 128),
    "SiLU": (16 / 255, 128, 8.28 / 255, 9),
}
# What onnxruntime runs for DQ -> op -> Q at EXTENDED (numerics.md, "Elementwise activations").
KERNELS = {
    "HardSigmoid": ["DequantizeLinear", "HardSigmoid", "QuantizeLinear"],
    "HardSwish": ["DequantizeLinear", "HardSigmoid", "Mul", "QuantizeLinear"],
    "Sigmoid": ["QLinearSigmoid"],
    "LeakyRelu": ["QLinearLeakyRelu"],
    "Tanh": ["DequantizeLinear", "Tanh", "QuantizeLinear"],
    "SiLU": ["DequantizeLinear", "DequantizeLinear", "Sigmoid", "Mul", "QuantizeLinear"],
}


def _params(op, dtype):
    xs, xz, ys, yz = PARAMS[op]
    off = -128 if np.dtype(dtype) == np.int8 else 0
    return xs, xz + off, ys, yz + off


def _random_codes(rng, shape, dtype):
    return rng.integers(0, 256, shape).astype(np.uint8).view(dtype)


@pytest.mark.parametrize("op", OPS)
def test_kernels_onnxruntime_runs(op):
    model = lut.lut_model(op, *_params(op, np.uint8), np.uint8, **ATTRS.get(op, {}))
    assert ou.op_types(ou.optimized_model(model)) == KERNELS[op]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("op", OPS)
def test_table_reproduces_onnxruntime(op, dtype, diff_cases):
    """The table, applied to another tensor, equals onnxruntime on a hand-written QDQ graph
    (and on the QOperator kernel where one exists)."""
    rng = np.random.default_rng(OPS.index(op))
    attrs = ATTRS.get(op, {})
    params = _params(op, dtype)
    table = lut.build_lut(op, *params, dtype, **attrs)
    assert table.shape == (256,) and table.dtype == dtype
    x = _random_codes(rng, (2, 3, 17, 19), dtype)
    got = lut_apply(x, table)
    models = [oe.qdq_unary(op, dtype, x.shape, *params, **attrs)]
    if op in ("LeakyRelu", "Sigmoid"):
        models.append(oe.qlinear_unary(op, dtype, x.shape, *params, **attrs))
    for model in models:
        np.testing.assert_array_equal(got, ou.run(model, x)[0])
        diff_cases("lut", x.size)


@pytest.mark.parametrize("op", ["LeakyRelu", "Sigmoid"])
def test_table_on_quantize_static_graph(op, diff_cases):
    """Scales from quantize_static; the fused graph it yields is what the table stands for."""
    rng = np.random.default_rng(12)
    shape = (1, 8, 10, 10)
    feeds = [{"x": 3 * rng.standard_normal(shape).astype(f32)} for _ in range(4)]
    model, qp = ou.strip_io_qdq(
        ou.quantize_qdq(oe.float_unary(op, shape, **ATTRS.get(op, {})), feeds)
    )
    assert ou.assert_integer_graph(model) == KERNELS[op]
    (xs, xz), (ys, yz) = qp.values()
    table = lut.build_lut(op, float(xs), int(xz), float(ys), int(yz), np.uint8, **ATTRS.get(op, {}))
    x = _random_codes(rng, shape, np.uint8)
    np.testing.assert_array_equal(lut_apply(x, table), ou.run(model, x)[0])
    diff_cases("lut", x.size)


# --- numpy fallback -----------------------------------------------------------------------------

# Quantizations found by a search (2500 random sets per op) where the fallback misses an
# entry: onnxruntime's Sigmoid/Tanh approximations fall on the other side of a tie.
TIE_CASES = {
    "Sigmoid": [(0.049950108495765054, 172, 0.00392156862745098, 0)],
    "Tanh": [(0.033557561857010594, 53, 0.028556125493983953, 207)],
    "SiLU": [(0.10041148428667197, 193, 0.0007447388750198645, 91)],
}
NICE_SCALES = [2.0**-k for k in range(2, 9)] + [1 / 255, 2 / 255, 6 / 255, 0.1, 0.05, 0.02]


def _fallback_cases(op, n=40):
    """``n`` seeded quantizations, half on round scales (ties are likelier), plus TIE_CASES."""
    rng = np.random.default_rng(100 + OPS.index(op))
    cases = [(np.uint8,) + c for c in TIE_CASES.get(op, [])]
    for k in range(n):
        dtype = (np.uint8, np.int8)[k % 2]
        lo = 0 if dtype == np.uint8 else -128
        if k % 4 < 2:
            xs, ys = (float(rng.choice(NICE_SCALES)) for _ in range(2))
        else:
            xs, ys = float(np.exp(rng.uniform(-6, -1))), float(np.exp(rng.uniform(-7, -2)))
        xz, yz = (int(z) for z in rng.integers(lo, lo + 256, 2))
        cases.append((dtype, xs, xz, ys, yz))
    return cases


# Measured (onnxruntime 1.32, x86-64): (entries wrong, max error in codes) over the cases.
FALLBACK_MISMATCH = {
    "HardSigmoid": (0, 0),
    "HardSwish": (0, 0),
    "LeakyRelu": (0, 0),
    "Sigmoid": (1, 1),
    "Tanh": (2, 1),
    "SiLU": (1, 1),
}


@pytest.mark.parametrize("op", OPS)
def test_numpy_fallback_mismatch(op, diff_cases):
    wrong, worst = 0, 0
    cases = _fallback_cases(op)
    for dtype, xs, xz, ys, yz in cases:
        attrs = ATTRS.get(op, {})
        exact = lut.build_lut(op, xs, xz, ys, yz, dtype, **attrs).astype(int)
        approx = lut.build_lut_numpy(op, xs, xz, ys, yz, dtype, **attrs).astype(int)
        wrong += int(np.count_nonzero(exact != approx))
        worst = max(worst, int(np.abs(exact - approx).max()))
    assert (wrong, worst) == FALLBACK_MISMATCH[op]
    diff_cases("lut_numpy", 256 * len(cases))


def test_errors():
    with pytest.raises(ValueError, match="op must be one of"):
        lut.build_lut_numpy("Gelu", 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match=r"LeakyRelu takes attributes \['alpha'\], not \['beta'\]"):
        lut.build_lut_numpy("LeakyRelu", 0.1, 0, 0.1, 0, beta=1.0)
    with pytest.raises(ValueError, match="y_zp 256 is outside the uint8 range"):
        lut.build_lut_numpy("Sigmoid", 0.1, 0, 0.1, 256)
    with pytest.raises(ValueError, match="x_scale must be positive"):
        lut.build_lut_numpy("Sigmoid", 0.0, 0, 0.1, 0)
