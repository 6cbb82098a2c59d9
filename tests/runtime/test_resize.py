"""Resize kernels (runtime/resize.py) against onnxruntime: every nearest and linear mode,
by scales and by sizes, on codes (the uint8/int8 Resize onnxruntime runs directly) and in
QDQ (float Resize between DequantizeLinear and QuantizeLinear)."""

import numpy as np
import ortutil as ou
import pytest
from bamboo.runtime import resize as rs

helper = ou.helper
SCALES = (0.5, 0.75, 1.0, 4 / 3, 1.5, 2.0, 2.5, 3.0, 4.0)
CASES = 160


@pytest.fixture(params=["one-block", "row-blocks"])
def blocks(request, monkeypatch):
    """The linear kernel whole, or one output row a block (its blocking must change no bit)."""
    if request.param == "row-blocks":
        monkeypatch.setattr(rs, "BLOCK_ELEMENTS", 1)
    return request.param


def _case(rng, dtype):
    """One random Resize: shape, attributes, scales or sizes, output size."""
    h, w = (int(v) for v in rng.integers(1, 10, 2))
    mode = str(rng.choice(["nearest", "linear"]))
    attrs = {
        "mode": mode,
        "coordinate_transformation_mode": str(rng.choice(rs.COORDINATE_MODES[:4])),
    }
    if mode == "nearest":
        attrs["nearest_mode"] = str(rng.choice(rs.NEAREST_MODES[:4]))
    if rng.random() < 0.5:
        sh, sw = (float(v) for v in rng.choice(SCALES, 2))
        oh, ow = int(np.float32(sh) * np.float32(h)), int(np.float32(sw) * np.float32(w))
        if min(oh, ow) < 1:
            return None
        inputs = {"sc": np.array([1, 1, sh, sw], np.float32)}
    else:
        oh, ow = (int(v) for v in rng.integers(1, 19, 2))
        sh, sw = np.float32(oh) / np.float32(h), np.float32(ow) / np.float32(w)
        inputs = {"sz": np.array([1, 3, oh, ow], np.int64)}
    x = rng.integers(0, 256, (1, 3, h, w)).astype(np.uint8).view(dtype)
    return x, attrs, inputs, (oh, sh), (ow, sw)


def _resize_inputs(src, inputs):
    return [src, "", "sc"] if "sc" in inputs else [src, "", "", "sz"]


def _kernel(x, attrs, hmap, wmap, requant=None):
    xn = ou.nchw_to_nhwc(x)
    (oh, sh), (ow, sw), h, w = hmap, wmap, x.shape[2], x.shape[3]
    ctm = attrs["coordinate_transformation_mode"]
    if attrs["mode"] == "nearest":
        nm = attrs["nearest_mode"]
        y = rs.resize_nearest(
            xn, rs.nearest_map(oh, h, sh, ctm, nm), rs.nearest_map(ow, w, sw, ctm, nm)
        )
    else:
        y = rs.resize_linear(
            xn, rs.linear_map(oh, h, sh, ctm), rs.linear_map(ow, w, sw, ctm), requant
        )
    return ou.nhwc_to_nchw(y)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_resize_on_codes(dtype, blocks, diff_cases):
    """QOperator graphs: Resize on the codes themselves (linear truncates)."""
    rng = np.random.default_rng(20)
    n = 0
    for _ in range(CASES):
        case = _case(rng, dtype)
        if case is None:
            continue
        x, attrs, inputs, hmap, wmap = case
        node = helper.make_node("Resize", _resize_inputs("x", inputs), ["y"], **attrs)
        model = ou.make_model([node], [("x", dtype, x.shape)], [("y", dtype, None)], inputs)
        want = ou.run(model, x)[0]
        np.testing.assert_array_equal(_kernel(x, attrs, hmap, wmap), want, err_msg=str(attrs))
        n += want.size
    diff_cases("resize_codes", n)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("same", [True, False], ids=["same-q", "requant"])
def test_resize_qdq_float(dtype, same, blocks, diff_cases):
    """QDQ: onnxruntime keeps DequantizeLinear -> float Resize -> QuantizeLinear (even with
    equal parameters; checked here) and the kernel reproduces its float arithmetic."""
    rng = np.random.default_rng(21 + same)
    n = 0
    for k in range(CASES):
        case = _case(rng, dtype)
        if case is None:
            continue
        x, attrs, inputs, hmap, wmap = case
        info = np.iinfo(dtype)
        s_in = np.float32(rng.uniform(0.005, 0.2))
        z_in = dtype(rng.integers(info.min, info.max + 1))
        s_out, z_out = (
            (s_in, z_in)
            if same
            else (np.float32(rng.uniform(0.005, 0.2)), dtype(rng.integers(info.min, info.max + 1)))
        )
        nodes = [
            helper.make_node("DequantizeLinear", ["x", "si", "zi"], ["xf"]),
            helper.make_node("Resize", _resize_inputs("xf", inputs), ["yf"], **attrs),
            helper.make_node("QuantizeLinear", ["yf", "so", "zo"], ["y"]),
        ]
        inits = {**inputs, "si": s_in, "zi": np.asarray(z_in), "so": s_out, "zo": np.asarray(z_out)}
        model = ou.make_model(nodes, [("x", dtype, x.shape)], [("y", dtype, None)], inits)
        if k == 0 and attrs["mode"] == "linear":
            assert "DequantizeLinear" in ou.op_types(ou.optimized_model(model))
        want = ou.run(model, x)[0]
        if attrs["mode"] == "nearest":
            # Nearest picks codes; a requantization after it is a table (the compiler's lut).
            got = _kernel(x, attrs, hmap, wmap)
            if not same:
                xf = (got.astype(np.int32) - int(z_in)).astype(np.float32) * s_in
                q = np.rint((xf / s_out).astype(np.float32)).astype(np.int64) + int(z_out)
                got = np.clip(q, info.min, info.max).astype(dtype)
        else:
            got = _kernel(x, attrs, hmap, wmap, (s_in, int(z_in), s_out, int(z_out)))
        np.testing.assert_array_equal(got, want, err_msg=str(attrs))
        n += want.size
    diff_cases("resize_qdq", n)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize10_is_asymmetric_simple(mode, diff_cases):
    """Resize-10 (and Upsample): asymmetric coordinates, nearest by truncation."""
    rng = np.random.default_rng(23)
    n = 0
    for sh, sw in [(2.0, 2.0), (3.0, 1.0), (1.5, 2.5), (0.5, 0.75)]:
        x = rng.integers(0, 256, (1, 2, 6, 8)).astype(np.uint8)
        node = helper.make_node("Resize", ["x", "sc"], ["y"], mode=mode)
        model = ou.make_model(
            [node],
            [("x", np.uint8, x.shape)],
            [("y", np.uint8, None)],
            {"sc": np.array([1, 1, sh, sw], np.float32)},
            opset=10,
        )
        want = ou.run(model, x)[0]
        oh, ow = int(np.float32(sh) * 6), int(np.float32(sw) * 8)
        attrs = {
            "mode": mode,
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "simple",
        }
        np.testing.assert_array_equal(_kernel(x, attrs, (oh, sh), (ow, sw)), want)
        n += want.size
    diff_cases("resize_codes", n)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("same", [True, False], ids=["same-q", "requant"])
def test_resize_lraspp_upsampling(dtype, same, diff_cases):
    """LR-ASPP's last Resize at a third of its size (21 logits, 8x half-pixel bilinear,
    QDQ): maps large enough for many blocks at the default block size."""
    rng = np.random.default_rng(24)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (1, 21, 24, 24)).astype(dtype)
    s_in, z_in = np.float32(0.173), dtype(rng.integers(info.min, info.max + 1))
    s_out, z_out = (s_in, z_in) if same else (np.float32(0.0911), dtype(info.min + 3))
    attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    inputs = {"sc": np.array([1, 1, 8, 8], np.float32)}
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "si", "zi"], ["xf"]),
        helper.make_node("Resize", _resize_inputs("xf", inputs), ["yf"], **attrs),
        helper.make_node("QuantizeLinear", ["yf", "so", "zo"], ["y"]),
    ]
    inits = {**inputs, "si": s_in, "zi": np.asarray(z_in), "so": s_out, "zo": np.asarray(z_out)}
    model = ou.make_model(nodes, [("x", dtype, x.shape)], [("y", dtype, None)], inits)
    want = ou.run(model, x)[0]
    assert want.shape == (1, 21, 192, 192) and rs.BLOCK_ELEMENTS * 4 < want.size
    got = _kernel(x, attrs, (192, 8.0), (192, 8.0), (s_in, int(z_in), s_out, int(z_out)))
    np.testing.assert_array_equal(got, want)
    diff_cases("resize_qdq", want.size)


def test_linear_on_codes_truncates():
    """The codes path converts by truncation, not rounding: a 2x half-pixel resize of
    [0, 1] gives 0.25 and 0.75 between them, both truncated to 0."""
    x = np.array([0, 1], np.uint8).reshape(1, 1, 2, 1)
    m = rs.linear_map(4, 2, 2.0, "half_pixel")
    y = rs.resize_linear(x, rs.linear_map(1, 1, 1.0, "half_pixel"), m)
    assert y.reshape(-1).tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize(
    "ctm, nm, f",
    [
        ("asymmetric", "floor", 2),
        ("asymmetric", "floor", 3),
        ("asymmetric", "simple", 4),
        ("half_pixel", "round_prefer_floor", 2),
        ("pytorch_half_pixel", "round_prefer_ceil", 2),
        ("half_pixel", "round_prefer_floor", 3),
    ],
)
def test_pixel_repeats(ctm, nm, f):
    """The nearest maps the fabric runs (README's operator table)."""
    assert rs.repeat_factor(rs.nearest_map(7 * f, 7, f, ctm, nm), 7) == f


@pytest.mark.parametrize("f", [1, 2, 3])
def test_repeat_factor(f):
    assert rs.repeat_factor(np.arange(5 * f) // f, 5) == f
    assert rs.repeat_factor(rs.nearest_map(5 * f, 5, f, "half_pixel", "round_prefer_ceil"), 5) == f
    # asymmetric rounding shifts by half a pixel: [0, 1, 1, 2, 2, ...], not a repeat
    assert (
        rs.repeat_factor(rs.nearest_map(10, 5, 2.0, "asymmetric", "round_prefer_ceil"), 5) is None
    )


def test_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="coordinate_transformation_mode must be one of"):
        rs.source_coords(4, 2, 2.0, "tf_crop_and_resize")
    with pytest.raises(ValueError, match="nearest_mode must be one of"):
        rs.nearest_map(4, 2, 2.0, "half_pixel", "nearest")
