"""Differential tests: runtime.pool against onnxruntime's quantized pooling kernels.

Golden: onnxruntime 1.32 at ORT_ENABLE_EXTENDED: com.microsoft
QLinearGlobalAveragePool / QLinearAveragePool (NCHW and channels_last), MaxPool
on uint8/int8, and QDQ models from ``quantize_static`` checked to fuse.
"""

import numpy as np
import ortutil as ou
import pytest
from bamboo.runtime.errors import QuantizationError
from bamboo.runtime.pool import avg_pool, avg_pool_float, global_avg_pool, max_pool, mean_float
from bamboo.runtime.requant import Requant, pool_scale, requantize_int
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DTYPES = st.sampled_from([np.uint8, np.int8])


def _codes(rng, shape, dtype):
    lo = 0 if np.dtype(dtype) == np.uint8 else -128
    return rng.integers(lo, lo + 256, shape).astype(dtype)


def _qparams(rng, dtype):
    lo = 0 if np.dtype(dtype) == np.uint8 else -128
    s_x = np.float32(rng.uniform(0.005, 0.1))
    s_y = np.float32(s_x * rng.uniform(0.2, 3.0))  # some outputs saturate, most do not
    x_zp, y_zp = (int(v) for v in rng.integers(lo, lo + 256, 2))
    return s_x, x_zp, s_y, y_zp


@settings(SETTINGS, max_examples=150)
@given(
    h=st.integers(1, 56),
    w=st.integers(1, 56),
    c=st.integers(1, 12),
    n=st.integers(1, 2),
    dtype=DTYPES,
    channels_last=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_global_avg_pool_matches_qlinear(h, w, c, n, dtype, channels_last, seed, diff_cases):
    rng = np.random.default_rng(seed)
    x = _codes(rng, (n, h, w, c), dtype)
    s_x, x_zp, s_y, y_zp = _qparams(rng, dtype)
    shape = x.shape if channels_last else (n, c, h, w)
    model = ou.qlinear_global_avg_pool(
        shape, dtype, s_x, x_zp, s_y, y_zp, channels_last=int(channels_last)
    )
    out = ou.run(model, x if channels_last else ou.nhwc_to_nchw(x))[0]
    want = out if channels_last else ou.nchw_to_nhwc(out)
    rq = Requant.from_scale(pool_scale(s_x, s_y, h * w), y_zp, dtype)
    np.testing.assert_array_equal(global_avg_pool(x, x_zp, rq), want)
    diff_cases("global_avg_pool", want.size)


def _quantize(x, s, z):
    """QuantizeLinear by onnxruntime itself (the pooled codes must be the fused graph's)."""
    model = ou.make_model(
        [ou.helper.make_node("QuantizeLinear", ["f", "s", "z"], ["q"])],
        [("f", np.float32, list(x.shape))],
        [("q", z.dtype, None)],
        {"s": np.float32(s), "z": z},
    )
    return ou.run(model, x)[0]


@pytest.mark.parametrize("activation", ["uint8", "int8"])
def test_global_avg_pool_matches_qdq(activation, diff_cases):
    """quantize_static QDQ GlobalAveragePool fuses into QLinearGlobalAveragePool; bit-exact."""
    rng = np.random.default_rng([activation == "int8"])
    c, h, w = 7, 14, 9
    node = ou.helper.make_node("GlobalAveragePool", ["x"], ["y"])
    fmodel = ou.make_model([node], [("x", np.float32, [2, c, h, w])], [("y", np.float32, None)])
    calib = [{"x": rng.normal(0.5, 1, (2, c, h, w)).astype(np.float32)} for _ in range(4)]
    qmodel, qp = ou.strip_io_qdq(
        ou.quantize_qdq(fmodel, calib, activation_type=activation), inputs=False, outputs=False
    )
    assert "QLinearGlobalAveragePool" in ou.assert_integer_graph(qmodel)
    s_x, x_zp = qp["x"]
    out_dq = next(n for n in qmodel.graph.node if n.output[0] == "y")
    s_y, y_zp = (ou.initializers(qmodel)[i] for i in out_dq.input[1:])
    xf = rng.normal(0.5, 1.5, (2, c, h, w)).astype(np.float32)
    want = ou.nchw_to_nhwc(ou.codes_from_dequantized(ou.run(qmodel, xf)[0], s_y, y_zp))
    rq = Requant.from_scale(pool_scale(s_x, s_y, h * w), int(y_zp), y_zp.dtype)
    got = global_avg_pool(ou.nchw_to_nhwc(_quantize(xf, s_x, x_zp)), int(x_zp), rq)
    np.testing.assert_array_equal(got, want)
    diff_cases("global_avg_pool", want.size)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize(
    "op,attrs",
    [
        ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 0])),
        (
            "AveragePool",
            dict(kernel_shape=[2, 3], strides=[1, 2], pads=[1, 0, 0, 2], count_include_pad=1),
        ),
        ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 0])),
    ],
)
def test_pools_match_qdq(dtype, op, attrs, diff_cases):
    """QDQ AveragePool fuses into QLinearAveragePool, QDQ MaxPool runs on codes; bit-exact."""
    rng = np.random.default_rng([dtype == np.int8, len(attrs)])
    shape = (1, 5, 13, 10)
    s_x, x_zp, s_y, y_zp = _qparams(rng, dtype)
    if op == "MaxPool":
        s_y, y_zp = s_x, x_zp  # the quantizer gives MaxPool its input's parameters
    model = ou.qdq_single_op(op, [(shape, s_x, x_zp)], (s_y, y_zp), dtype, **attrs)
    ops = ou.assert_integer_graph(model)
    assert ("QLinearAveragePool" if op == "AveragePool" else "MaxPool") in ops
    p = attrs["pads"]
    for _ in range(4):
        xf = rng.normal(0, 1.5, shape).astype(np.float32)
        want = ou.codes_from_dequantized(ou.run(model, xf)[0], s_y, np.asarray(y_zp, dtype))
        x = ou.nchw_to_nhwc(_quantize(xf, s_x, np.asarray(x_zp, dtype)))
        if op == "MaxPool":
            got = max_pool(x, attrs["kernel_shape"], stride=attrs["strides"], pads=tuple(p))
        else:
            kw = dict(
                stride=attrs["strides"],
                pads=tuple(p),
                count_include_pad=bool(attrs.get("count_include_pad", 0)),
            )
            got = avg_pool_float(x, x_zp, s_x, s_y, y_zp, attrs["kernel_shape"], **kw)
            integer = avg_pool(x, x_zp, s_x, s_y, y_zp, attrs["kernel_shape"], **kw)
            assert np.abs(integer.astype(int) - got).max(initial=0) <= 1
        np.testing.assert_array_equal(got, ou.nchw_to_nhwc(want))
        diff_cases("avg_pool" if op == "AveragePool" else "max_pool", want.size)


@st.composite
def pool_geometry(draw, dilation=False):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    pads = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))  # ONNX: pad < kernel
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    h = draw(st.integers(max(1, span[0] - pads[0] - pads[2]), 14))
    w = draw(st.integers(max(1, span[1] - pads[1] - pads[3]), 14))
    return dict(
        kernel=(kh, kw),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        dilation=(dh, dw),
        pads=pads,
        h=h,
        w=w,
        c=draw(st.integers(1, 6)),
        n=draw(st.integers(1, 2)),
    )


@SETTINGS
@given(
    g=pool_geometry(),
    dtype=DTYPES,
    count_include_pad=st.booleans(),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_avg_pool_matches_qlinear(g, dtype, count_include_pad, channels_last, seed, diff_cases):
    rng = np.random.default_rng(seed)
    x = _codes(rng, (g["n"], g["h"], g["w"], g["c"]), dtype)
    s_x, x_zp, s_y, y_zp = _qparams(rng, dtype)
    shape = x.shape if channels_last else (g["n"], g["c"], g["h"], g["w"])
    model = ou.qlinear_avg_pool(
        shape,
        dtype,
        s_x,
        x_zp,
        s_y,
        y_zp,
        g["kernel"],
        strides=g["stride"],
        pads=g["pads"],
        count_include_pad=int(count_include_pad),
        channels_last=int(channels_last),
    )
    out = ou.run(model, x if channels_last else ou.nhwc_to_nchw(x))[0]
    want = out if channels_last else ou.nchw_to_nhwc(out)
    kw = dict(stride=g["stride"], pads=g["pads"], count_include_pad=count_include_pad)
    np.testing.assert_array_equal(avg_pool_float(x, x_zp, s_x, s_y, y_zp, g["kernel"], **kw), want)
    diff_cases("avg_pool", want.size)
    # The integer contract: equal but for rare one-code slips at float32 near-ties.
    integer = avg_pool(x, x_zp, s_x, s_y, y_zp, g["kernel"], **kw)
    assert np.abs(integer.astype(int) - want).max(initial=0) <= 1
    assert np.count_nonzero(integer != want) <= max(1, want.size // 1000)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_avg_pool_whole_image_is_global(dtype, diff_cases):
    """A window covering the unpadded image takes onnxruntime's integer GlobalAveragePool."""
    rng = np.random.default_rng([dtype == np.int8])
    for h, w in ((7, 7), (3, 11), (14, 5)):
        x = _codes(rng, (2, h, w, 6), dtype)
        s_x, x_zp, s_y, y_zp = _qparams(rng, dtype)
        model = ou.qlinear_avg_pool((2, 6, h, w), dtype, s_x, x_zp, s_y, y_zp, (h, w))
        want = ou.nchw_to_nhwc(ou.run(model, ou.nhwc_to_nchw(x))[0])
        np.testing.assert_array_equal(avg_pool_float(x, x_zp, s_x, s_y, y_zp, (h, w)), want)
        np.testing.assert_array_equal(avg_pool(x, x_zp, s_x, s_y, y_zp, (h, w)), want)
        diff_cases("avg_pool", want.size)


def test_avg_pool_integer_contract_deviates_at_a_float_near_tie():
    """Pin the measured difference: onnxruntime adds y_zp in float32 before rounding.

    The second window sums to acc = -200 with n = 7: acc * S = -11.500003 rounds to
    -12 (code 215), but onnxruntime computes f32(-11.500003 + 227) = 215.5 and
    rounds that half to even: 216.
    """
    x = np.array([30, 188, 98, 191, 228, 103, 65, 68], np.uint8).reshape(1, 1, 8, 1)
    s_x, s_y, x_zp, y_zp = np.float32(0.13284196), np.float32(0.33004206), 163, 227
    args = (x, x_zp, s_x, s_y, y_zp, (1, 7))
    kw = dict(stride=(1, 1), pads=(0, 0, 0, 0))
    model = ou.qlinear_avg_pool(
        x.shape, np.uint8, s_x, x_zp, s_y, y_zp, (1, 7), strides=(1, 1), channels_last=1
    )
    want = ou.run(model, x)[0]
    assert want[0, 0, 1, 0] == 216
    np.testing.assert_array_equal(avg_pool_float(*args, **kw), want)
    assert avg_pool(*args, **kw)[0, 0, 1, 0] == 215


def _avg_pool_reference(
    x, x_zp, s_x, s_y, y_zp, kernel, stride, pads, count_include_pad, out_dtype
):
    """The integer contract window by window: int64 sums, integer requantizer per divisor."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = kernel, stride, pads
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    y = np.empty((n, ho, wo, c), out_dtype)
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * sh - pt, j * sw - pl
            r, q = slice(max(r0, 0), min(r0 + kh, h)), slice(max(c0, 0), min(c0 + kw, w))
            acc = (x[:, r, q].astype(np.int64) - x_zp).sum(axis=(1, 2))
            count = kh * kw if count_include_pad else (r.stop - r.start) * (q.stop - q.start)
            rq = Requant.from_scale(pool_scale(s_x, s_y, count), y_zp, out_dtype)
            y[:, i, j] = requantize_int(acc, rq)
    return y


@st.composite
def wide_pool_geometry(draw):
    """Kernels up to 13 (sums beyond int16), strides past the kernel, pads up to kernel - 1."""
    kh, kw = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    pads = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    h = draw(st.integers(max(1, kh - pads[0] - pads[2]), 20))
    w = draw(st.integers(max(1, kw - pads[1] - pads[3]), 20))
    return dict(
        kernel=(kh, kw),
        stride=(draw(st.integers(1, 15)), draw(st.integers(1, 15))),
        pads=pads,
        h=h,
        w=w,
        c=draw(st.integers(1, 5)),
        n=draw(st.integers(1, 2)),
    )


@settings(SETTINGS, max_examples=300)
@given(
    g=wide_pool_geometry(),
    dtype=DTYPES,
    out_int8=st.booleans(),
    count_include_pad=st.booleans(),
    fill=st.sampled_from(["random", "min", "max"]),
    zp_end=st.sampled_from([None, "min", "max"]),
    s_y_scale=st.sampled_from([1e-3, 1, 1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_avg_pool_matches_window_reference(
    g, dtype, out_int8, count_include_pad, fill, zp_end, s_y_scale, seed
):
    """The vectorised kernel (separable sums, look-up tables) is the per-window formula."""
    rng = np.random.default_rng(seed)
    lo = 0 if np.dtype(dtype) == np.uint8 else -128
    x = _codes(rng, (g["n"], g["h"], g["w"], g["c"]), dtype)
    if fill != "random":
        x[:] = lo if fill == "min" else lo + 255
    s_x, x_zp, s_y, y_zp = _qparams(rng, dtype)
    if zp_end is not None:
        x_zp = lo if zp_end == "min" else lo + 255
    s_y = np.float32(s_y * s_y_scale)
    out_dtype = np.dtype(np.int8 if out_int8 else np.uint8)
    y_zp = int(y_zp) - lo + (-128 if out_int8 else 0)
    args = (
        x,
        x_zp,
        s_x,
        s_y,
        y_zp,
        g["kernel"],
        g["stride"],
        g["pads"],
        count_include_pad,
        out_dtype,
    )
    got = avg_pool(
        *args[:6],
        stride=g["stride"],
        pads=g["pads"],
        count_include_pad=count_include_pad,
        out_dtype=out_dtype,
    )
    assert got.dtype == out_dtype
    np.testing.assert_array_equal(got, _avg_pool_reference(*args))


@SETTINGS
@given(g=pool_geometry(dilation=True), dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_max_pool_matches_maxpool(g, dtype, seed, diff_cases):
    rng = np.random.default_rng(seed)
    x = _codes(rng, (g["n"], g["h"], g["w"], g["c"]), dtype)
    node = ou.helper.make_node(
        "MaxPool",
        ["x"],
        ["y"],
        kernel_shape=list(g["kernel"]),
        strides=list(g["stride"]),
        dilations=list(g["dilation"]),
        pads=list(g["pads"]),
    )
    model = ou.make_model(
        [node], [("x", dtype, [g["n"], g["c"], g["h"], g["w"]])], [("y", dtype, None)]
    )
    want = ou.nchw_to_nhwc(ou.run(model, ou.nhwc_to_nchw(x))[0])
    got = max_pool(x, g["kernel"], stride=g["stride"], dilation=g["dilation"], pads=g["pads"])
    np.testing.assert_array_equal(got, want)
    diff_cases("max_pool", want.size)


def test_pool_errors_name_the_problem():
    x = np.zeros((1, 4, 4, 2), np.uint8)
    with pytest.raises(QuantizationError, match=r"pads \(2, 0, 0, 0\) must be smaller"):
        max_pool(x, (2, 2), pads=(2, 0, 0, 0))
    with pytest.raises(QuantizationError, match="wants NHWC x"):
        global_avg_pool(x[0], 0, Requant.from_scale(0.1, 0))
    with pytest.raises(QuantizationError, match="x_zp -1 is outside the uint8 range"):
        avg_pool(x, -1, 0.1, 0.1, 0, (2, 2))


@pytest.mark.parametrize(
    "shape,axes",
    [
        ((1, 37, 3, 3), (2, 3)),
        ((1, 37, 13, 13), (2, 3)),
        ((1, 37, 14, 14), (2, 3)),
        ((1, 16, 4, 4), (2, 3)),
        ((1, 23, 1, 5), (2, 3)),
        ((1, 9, 2, 3), (2, 3)),
        ((1, 11, 1, 1), (2, 3)),
        ((2, 5, 7, 7), (2, 3)),
        ((1, 1, 6, 6), (2, 3)),
        ((1, 10, 30), (2,)),
        ((1, 6, 5, 8), (3,)),
        ((1, 4, 3, 3), (1, 2, 3)),
    ],
)
def test_mean_float_is_onnxruntime_reduce_mean(shape, axes, diff_cases):
    """Dequantized codes (as SqueezeNet's head averages them), bit for bit."""
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    model = ou.make_model(
        [ou.helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)],
        [("x", np.float32, shape)],
        [("y", np.float32, None)],
        {"axes": np.array(axes, np.int64)},
    )
    sess = ou.session(model)
    for k in range(8):
        scale = np.float32(rng.uniform(0.001, 0.5))
        x = (rng.integers(-128, 128, shape).astype(np.float32) * scale).astype(np.float32)
        (want,) = sess.run(None, {"x": x})
        got = mean_float(x, axes)
        assert got.shape == want.shape and np.array_equal(
            got.view(np.uint32), want.view(np.uint32)
        ), (k, scale)
        diff_cases("mean_float", want.size)


def test_mean_float_refuses_leading_axes():
    with pytest.raises(QuantizationError, match="trailing axes"):
        mean_float(np.zeros((1, 3, 2, 2), np.float32), (1, 2))
