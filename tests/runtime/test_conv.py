"""Differential tests: runtime.conv against onnxruntime's integer Conv and Gemm kernels.

Golden: onnxruntime 1.32 at ORT_ENABLE_EXTENDED, QOperator nodes (QLinearConv,
QGemm, QLinearMatMul) and QDQ models from ``quantize_static`` whose optimized
graph is checked to hold no float op. Every comparison is bit for bit.
"""

import numpy as np
import ortutil as ou
import pytest
from bamboo.runtime.conv import conv2d, conv2d_acc, fully_connected
from bamboo.runtime.errors import QuantizationError
from bamboo.runtime.requant import Requant, conv_scale
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _codes(rng, shape, dtype):
    lo, hi = (0, 256) if np.dtype(dtype) == np.uint8 else (-128, 128)
    return rng.integers(lo, hi, shape).astype(dtype)


def _scales(rng, k, o, per_channel):
    """Scales putting typical outputs tens of codes from the zero point, plus saturation."""
    s_x = np.float32(rng.uniform(0.002, 0.1))
    s_w = rng.uniform(0.001, 0.05, o if per_channel else ()).astype(np.float32)
    target = 40.0 / (5400.0 * np.sqrt(k))  # ~40 codes per accumulator std
    s_y = np.float32(s_x * np.mean(s_w) / target * rng.uniform(0.3, 3.0))
    return s_x, s_w, s_y


@st.composite
def conv_cases(draw):
    """Random conv geometry: strides 1/2, dilation, asymmetric pads, groups incl. depthwise."""
    kind = draw(st.sampled_from(["dense", "group", "depthwise", "depthwise_mult", "pointwise"]))
    kh, kw = (1, 1) if kind == "pointwise" else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    cg = draw(st.integers(1, 6))
    groups = {"dense": 1, "pointwise": 1, "group": draw(st.integers(2, 3))}.get(kind, cg)
    if kind.startswith("depthwise"):
        cg = 1
    c = cg * groups
    mult = 2 if kind == "depthwise_mult" else draw(st.integers(1, 3))
    o = groups * mult
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, k - 1)) if k > 1 else 0 for k in (kh, kw, kh, kw))
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    h = draw(st.integers(max(1, span[0] - pads[0] - pads[2]), 10))
    w = draw(st.integers(max(1, span[1] - pads[1] - pads[3]), 10))
    return dict(
        n=draw(st.integers(1, 2)),
        h=h,
        w=w,
        c=c,
        o=o,
        kh=kh,
        kw=kw,
        stride=stride,
        dilation=dilation,
        pads=pads,
        groups=groups,
        x_dtype=draw(st.sampled_from([np.uint8, np.int8])),
        per_channel=draw(st.booleans()),
        # Mostly symmetric int8 weights; sometimes a weight zero point
        # (int8, or uint8 which onnxruntime takes with uint8 activations only).
        w_kind=draw(st.sampled_from(["sym"] * 4 + ["int8_zp", "uint8_zp"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _run_conv(p):
    rng = np.random.default_rng(p["seed"])
    x = _codes(rng, (p["n"], p["h"], p["w"], p["c"]), p["x_dtype"])
    w_uint8 = p["w_kind"] == "uint8_zp" and p["x_dtype"] == np.uint8
    w = _codes(
        rng, (p["o"], p["kh"], p["kw"], p["c"] // p["groups"]), np.uint8 if w_uint8 else np.int8
    )
    w_zp = {"sym": 0, "int8_zp": int(rng.integers(-128, 128))}.get(p["w_kind"], 0)
    w_zp = int(rng.integers(0, 256)) if w_uint8 else w_zp
    qmin, qmax = (0, 255) if p["x_dtype"] == np.uint8 else (-128, 127)
    x_zp, y_zp = (int(v) for v in rng.integers(qmin, qmax + 1, 2))
    k = p["kh"] * p["kw"] * p["c"] // p["groups"]
    s_x, s_w, s_y = _scales(rng, k, p["o"], p["per_channel"])
    # Mostly moderate biases, sometimes large enough for |acc| >= 2**24.
    bias = rng.integers(-(1 << 26), 1 << 26, p["o"]) >> int(rng.integers(0, 14))
    bias = bias.astype(np.int32)
    model = ou.qlinear_conv(
        (p["n"], p["c"], p["h"], p["w"]),
        p["x_dtype"],
        s_x,
        x_zp,
        w.transpose(0, 3, 1, 2).copy(),
        s_w,
        w_zp,
        bias,
        s_y,
        y_zp,
        strides=p["stride"],
        dilations=p["dilation"],
        pads=p["pads"],
        group=p["groups"],
    )
    want = ou.nchw_to_nhwc(ou.run(model, ou.nhwc_to_nchw(x))[0])
    rq = Requant.from_scale(conv_scale(s_x, s_w, s_y), y_zp, p["x_dtype"])
    got = conv2d(
        x,
        x_zp,
        w,
        bias,
        rq,
        w_zp=w_zp,
        stride=p["stride"],
        dilation=p["dilation"],
        pads=p["pads"],
        groups=p["groups"],
    )
    return want, got


@SETTINGS
@given(p=conv_cases())
def test_conv2d_matches_qlinearconv(p, diff_cases):
    want, got = _run_conv(p)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    diff_cases("conv2d", want.size)


@pytest.mark.parametrize("x_dtype", [np.uint8, np.int8])
def test_conv2d_mobilenet_layers(x_dtype, diff_cases):
    """Full-size MobileNet-v1 layer shapes: the first conv and a depthwise/pointwise pair."""
    for p in (
        dict(n=1, h=224, w=224, c=3, o=32, kh=3, kw=3, stride=(2, 2), pads=(0, 0, 1, 1), groups=1),
        dict(
            n=1, h=112, w=112, c=32, o=32, kh=3, kw=3, stride=(1, 1), pads=(1, 1, 1, 1), groups=32
        ),
        dict(n=1, h=56, w=56, c=64, o=128, kh=1, kw=1, stride=(1, 1), pads=(0, 0, 0, 0), groups=1),
    ):
        p.update(dilation=(1, 1), x_dtype=x_dtype, per_channel=True, w_kind="sym", seed=7)
        want, got = _run_conv(p)
        np.testing.assert_array_equal(got, want)
        diff_cases("conv2d", want.size)


@pytest.mark.parametrize("activation", ["uint8", "int8"])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("depthwise", [False, True])
def test_conv2d_matches_qdq_conv(activation, per_channel, depthwise, diff_cases):
    """quantize_static QDQ Conv (+ReLU folded away): fused at EXTENDED, then bit-exact."""

    rng = np.random.default_rng([activation == "int8", per_channel, depthwise])
    c, o, groups = (6, 6, 6) if depthwise else (5, 7, 1)
    wf = rng.normal(0, 0.3, (o, c // groups, 3, 3)).astype(np.float32)
    bf = rng.normal(0, 0.1, o).astype(np.float32)
    nodes = [
        ou.helper.make_node(
            "Conv", ["x", "W", "B"], ["c"], pads=[1, 0, 2, 1], strides=[2, 1], group=groups
        ),
        ou.helper.make_node("Relu", ["c"], ["y"]),
    ]
    fmodel = ou.make_model(
        nodes, [("x", np.float32, [1, c, 11, 9])], [("y", np.float32, None)], {"W": wf, "B": bf}
    )
    calib = [{"x": rng.normal(0, 1, (1, c, 11, 9)).astype(np.float32)} for _ in range(8)]
    # Float in and out: see strip_io_qdq on why int8 needs the boundary Q and DQ.
    qmodel, qp = ou.strip_io_qdq(
        ou.quantize_qdq(fmodel, calib, per_channel=per_channel, activation_type=activation),
        inputs=False,
        outputs=False,
    )
    ops = ou.assert_integer_graph(qmodel)
    assert "QLinearConv" in ops
    conv = next(n for n in qmodel.graph.node if n.op_type == "Conv")
    dq = ou.dequantized_initializers(qmodel)
    w, s_w, w_zp, _ = dq[conv.input[1]]
    bias = dq[conv.input[2]][0]
    s_x, x_zp = qp["x"]
    out_dq = next(
        n for n in qmodel.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "y"
    )
    s_y, y_zp = (ou.initializers(qmodel)[i] for i in out_dq.input[1:])
    xf = rng.normal(0, 1.5, (1, c, 11, 9)).astype(np.float32)
    x_nchw = ou.run(
        ou.make_model(
            [ou.helper.make_node("QuantizeLinear", ["f", "s", "z"], ["q"])],
            [("f", np.float32, [1, c, 11, 9])],
            [("q", x_zp.dtype, None)],
            {"s": s_x, "z": x_zp},
        ),
        xf,
    )[0]
    want = ou.nchw_to_nhwc(ou.codes_from_dequantized(ou.run(qmodel, xf)[0], s_y, y_zp))
    rq = Requant.from_scale(conv_scale(s_x, s_w, s_y), int(y_zp), y_zp.dtype)
    got = conv2d(
        ou.nchw_to_nhwc(x_nchw),
        int(x_zp),
        w.transpose(0, 2, 3, 1),
        bias,
        rq,
        w_zp=w_zp,
        stride=(2, 1),
        pads=(1, 0, 2, 1),
        groups=groups,
    )
    np.testing.assert_array_equal(got, want)
    diff_cases("conv2d", want.size)


@st.composite
def fc_cases(draw):
    return dict(
        m=draw(st.integers(1, 16)),
        k=draw(st.integers(1, 300)),
        o=draw(st.integers(1, 40)),
        x_dtype=draw(st.sampled_from([np.uint8, np.int8])),
        per_channel=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _fc_data(p):
    rng = np.random.default_rng(p["seed"])
    x = _codes(rng, (p["m"], p["k"]), p["x_dtype"])
    w = _codes(rng, (p["o"], p["k"]), np.int8)
    qmin = 0 if p["x_dtype"] == np.uint8 else -128
    x_zp, y_zp = (int(v) for v in rng.integers(qmin, qmin + 256, 2))
    s_x, s_w, s_y = _scales(rng, p["k"], p["o"], p["per_channel"])
    bias = (rng.integers(-(1 << 20), 1 << 20, p["o"])).astype(np.int32)
    return x, w, x_zp, y_zp, s_x, s_w, s_y, bias


@SETTINGS
@given(p=fc_cases())
def test_fully_connected_matches_qgemm(p, diff_cases):
    x, w, x_zp, y_zp, s_x, s_w, s_y, bias = _fc_data(p)
    model = ou.qgemm(x.shape, p["x_dtype"], s_x, x_zp, w, s_w, 0, bias, s_y, y_zp)
    want = ou.run(model, x)[0]
    rq = Requant.from_scale(conv_scale(s_x, s_w, s_y), y_zp, p["x_dtype"])
    np.testing.assert_array_equal(fully_connected(x, x_zp, w, bias, rq), want)
    diff_cases("fully_connected", want.size)


@settings(SETTINGS, max_examples=40)
@given(p=fc_cases())
def test_fully_connected_matches_qlinearmatmul(p, diff_cases):
    x, w, x_zp, y_zp, s_x, s_w, s_y, _ = _fc_data(p)
    model = ou.qlinear_matmul(x.shape, p["x_dtype"], s_x, x_zp, w.T.copy(), s_w, 0, s_y, y_zp)
    want = ou.run(model, x)[0]
    rq = Requant.from_scale(conv_scale(s_x, s_w, s_y), y_zp, p["x_dtype"])
    np.testing.assert_array_equal(fully_connected(x, x_zp, w, None, rq), want)
    diff_cases("fully_connected", want.size)


@pytest.mark.parametrize("activation", ["uint8", "int8"])
@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("op", ["Gemm", "MatMul"])
def test_fully_connected_matches_qdq(activation, per_channel, op, diff_cases):
    """quantize_static QDQ Gemm/MatMul fuse into QGemm/QLinearMatMul at EXTENDED; bit-exact."""
    rng = np.random.default_rng([activation == "int8", per_channel, op == "Gemm"])
    k, o = 37, 11
    wf = rng.normal(0, 0.3, (o, k)).astype(np.float32)
    if op == "Gemm":
        node = ou.helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)
        inits = {"W": wf, "B": rng.normal(0, 0.1, o).astype(np.float32)}
    else:
        node = ou.helper.make_node("MatMul", ["x", "W"], ["y"])
        inits = {"W": wf.T.copy()}
    fmodel = ou.make_model([node], [("x", np.float32, [5, k])], [("y", np.float32, None)], inits)
    calib = [{"x": rng.normal(0, 1, (5, k)).astype(np.float32)} for _ in range(6)]
    qmodel, qp = ou.strip_io_qdq(
        ou.quantize_qdq(fmodel, calib, per_channel=per_channel, activation_type=activation),
        inputs=False,
        outputs=False,
    )
    assert {"Gemm": "QGemm", "MatMul": "QLinearMatMul"}[op] in ou.assert_integer_graph(qmodel)
    fnode = next(n for n in qmodel.graph.node if n.op_type == op)
    dq = ou.dequantized_initializers(qmodel)
    w, s_w, w_zp, _ = dq[fnode.input[1]]
    if op == "MatMul":
        w = w.T  # (K, O) -> (O, K); per-channel scales run along O either way
    bias = dq[fnode.input[2]][0] if op == "Gemm" else None
    s_x, x_zp = qp["x"]
    out_dq = next(n for n in qmodel.graph.node if n.output[0] == "y")
    s_y, y_zp = (ou.initializers(qmodel)[i] for i in out_dq.input[1:])
    xf = rng.normal(0, 1.5, (5, k)).astype(np.float32)
    want = ou.codes_from_dequantized(ou.run(qmodel, xf)[0], s_y, y_zp)
    x = ou.run(
        ou.make_model(
            [ou.helper.make_node("QuantizeLinear", ["f", "s", "z"], ["q"])],
            [("f", np.float32, [5, k])],
            [("q", x_zp.dtype, None)],
            {"s": s_x, "z": x_zp},
        ),
        xf,
    )[0]
    rq = Requant.from_scale(conv_scale(s_x, s_w, s_y), int(y_zp), y_zp.dtype)
    got = fully_connected(x, int(x_zp), w, bias, rq, w_zp=w_zp)
    np.testing.assert_array_equal(got, want)
    diff_cases("fully_connected", want.size)


def test_conv2d_acc_per_channel_weight_zero_point():
    """Per-channel w_zp (no onnxruntime kernel takes it) against a direct loop."""
    rng = np.random.default_rng(3)
    x = _codes(rng, (1, 5, 4, 2), np.uint8)
    w = _codes(rng, (3, 2, 2, 2), np.uint8)
    w_zp = np.array([0, 100, 255])
    acc = conv2d_acc(x, 17, w, [1, 2, 3], w_zp=w_zp, pads=(1, 0, 0, 1))
    xp = np.pad(x.astype(np.int64) - 17, ((0, 0), (1, 0), (0, 1), (0, 0)))
    for i in range(acc.shape[1]):
        for j in range(acc.shape[2]):
            for o in range(3):
                ref = (
                    np.sum(xp[0, i : i + 2, j : j + 2] * (w[o].astype(np.int64) - w_zp[o])) + o + 1
                )
                assert acc[0, i, j, o] == ref


@pytest.mark.parametrize("block", ["default", "one-row"])
@pytest.mark.parametrize("x_dtype", [np.uint8, np.int8])
def test_conv2d_lraspp_dilated_depthwise(x_dtype, block, monkeypatch, diff_cases):
    """LR-ASPP's CPU layers at a quarter of their channels: 5x5 depthwise, dilation 2, on
    32x32, in float32 sums (row blocks, or one output row a block) against QLinearConv."""
    import bamboo.runtime.conv as kconv

    if block == "one-row":
        monkeypatch.setattr(kconv, "DEPTHWISE_BLOCK", 1)
    p = dict(
        n=1,
        h=32,
        w=32,
        c=240,
        o=240,
        kh=5,
        kw=5,
        stride=(1, 1),
        dilation=(2, 2),
        pads=(4, 4, 4, 4),
        groups=240,
        x_dtype=x_dtype,
        per_channel=True,
        w_kind="sym",
        seed=11,
    )
    want, got = _run_conv(p)
    np.testing.assert_array_equal(got, want)
    diff_cases("conv2d", want.size)


def test_depthwise_float32_sums_are_exact_at_their_bound():
    """Worst-case depthwise operands: 16x16 and 17x17 taps of |x - zp| = 255 and |w| = 128
    stay below 2**24 (float32 sums); 17x17 with |w - w_zp| = 255 reach 18,792,225, odd and
    above 2**24, which float32 cannot hold (float64 sums). Each equals the int64 sum."""
    for k, w_dtype, w_zp in ((16, np.int8, 0), (17, np.int8, 0), (17, np.uint8, 255)):
        x = np.zeros((1, k, k, 2), np.uint8)
        w = np.full((2, k, k, 1), -128 if w_dtype == np.int8 else 0, w_dtype)
        acc = conv2d_acc(x, 255, w, w_zp=w_zp, groups=2)
        ref = np.einsum(
            "hwc,chw->c", x[0].astype(np.int64) - 255, w[..., 0].astype(np.int64) - w_zp
        )
        np.testing.assert_array_equal(acc[0, 0, 0], ref)


def test_float64_accumulation_is_exact_for_deep_kernels():
    """Worst-case operands over K = 3*3*2048: float64 sums equal int64 sums."""
    rng = np.random.default_rng(5)
    x = np.where(rng.random((1, 3, 3, 2048)) < 0.5, 0, 255).astype(np.uint8)
    w = np.where(rng.random((4, 3, 3, 2048)) < 0.5, -128, 127).astype(np.int8)
    acc = conv2d_acc(x, 0, w)
    ref = np.einsum("hwc,ohwc->o", x[0].astype(np.int64), w.astype(np.int64))
    np.testing.assert_array_equal(acc[0, 0, 0], ref)


def test_errors_name_the_problem():
    x = np.zeros((1, 4, 4, 6), np.uint8)
    rq = Requant.from_scale(0.01, 0)
    with pytest.raises(QuantizationError, match="groups=4 does not fit x channels 6"):
        conv2d(x, 0, np.zeros((4, 1, 1, 1), np.int8), None, rq, groups=4)
    with pytest.raises(QuantizationError, match="x_zp 300 is outside the uint8 range"):
        conv2d(x, 300, np.zeros((4, 1, 1, 6), np.int8), None, rq)
    with pytest.raises(QuantizationError, match="must hold uint8 or int8 codes, not float32"):
        conv2d(x.astype(np.float32), 0, np.zeros((4, 1, 1, 6), np.int8), None, rq)
    with pytest.raises(QuantizationError, match="accumulator exceeds int32"):
        conv2d(x + 255, 0, np.ones((4, 1, 1, 6), np.int8), np.full(4, 2**31 - 1), rq)
    with pytest.raises(QuantizationError, match=r"requantizer range \[-128, 127\] does not fit"):
        conv2d(x, 0, np.zeros((4, 1, 1, 6), np.int8), None, Requant.from_scale(0.1, 0, np.int8))
