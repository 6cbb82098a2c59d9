"""The golden onnxruntime session (bamboo.compiler.reference): exact integer kernels on
every x86 processor, VNNI or not, and the rewrite it makes stays the same model."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import ortutil as ou  # noqa: E402
from bamboo.compiler.reference import _exact_matmuls, reference_session  # noqa: E402
from bamboo.runtime.conv import conv2d, fully_connected  # noqa: E402
from bamboo.runtime.requant import Requant, conv_scale  # noqa: E402

S_X, S_W, S_Y = np.float32(0.02), np.float32(0.002), np.float32(0.3)


def _codes(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("x_dtype", [np.uint8, np.int8])
def test_saturating_products_are_exact(x_dtype):
    """Deep products of large codes (pairs of u8 x s8 products past int16, which AVX2's
    VPMADDUBSW saturates) equal the exact kernels for QLinearConv, QGemm and
    QLinearMatMul, whatever the processor."""
    rng = np.random.default_rng(1)
    x_zp, y_zp = (130, 128) if x_dtype == np.uint8 else (3, 1)
    rq = Requant.from_scale(conv_scale(S_X, S_W, S_Y), y_zp, x_dtype)
    x = np.full((1, 10, 10, 64), np.iinfo(x_dtype).max, x_dtype)
    x[0, ::2] = _codes(rng, x_dtype, (5, 10, 64))
    w = _codes(rng, np.int8, (8, 3, 3, 64))  # OHWI
    model = ou.qlinear_conv(
        (1, 64, 10, 10), x_dtype, S_X, x_zp, w.transpose(0, 3, 1, 2).copy(), S_W, 0, None, S_Y, y_zp
    )
    sess = reference_session(model)
    got = ou.nchw_to_nhwc(sess.run(None, {sess.get_inputs()[0].name: ou.nhwc_to_nchw(x)})[0])
    np.testing.assert_array_equal(got, conv2d(x, x_zp, w, None, rq))

    a = x.reshape(-1, 64 * 10)[:, :256].copy()
    wf = _codes(rng, np.int8, (16, 256))
    want = fully_connected(a, x_zp, wf, None, rq)
    bias = np.zeros(16, np.int32)
    for m in (
        ou.qlinear_matmul(a.shape, x_dtype, S_X, x_zp, wf.T.copy(), S_W, 0, S_Y, y_zp),
        ou.qgemm(a.shape, x_dtype, S_X, x_zp, wf, S_W, 0, bias, S_Y, y_zp),
    ):
        sess = reference_session(m)
        np.testing.assert_array_equal(sess.run(None, {sess.get_inputs()[0].name: a})[0], want)


def test_matmul_weights_shift_only_when_exact():
    """uint8 x int8 QLinearMatMul weights become uint8 with the zero point moved by 128
    (the same integers); int8 activations keep their weights."""
    rng = np.random.default_rng(2)
    w = _codes(rng, np.int8, (32, 4))
    u8 = _exact_matmuls(ou.qlinear_matmul((2, 32), np.uint8, S_X, 128, w, S_W, 0, S_Y, 128))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in u8.graph.initializer}
    (node,) = u8.graph.node
    b, b_zp = inits[node.input[3]], inits[node.input[5]]
    assert b.dtype == b_zp.dtype == np.uint8
    np.testing.assert_array_equal(b.astype(int) - int(b_zp), w.astype(int))
    s8 = ou.qlinear_matmul((2, 32), np.int8, S_X, 0, w, S_W, 0, S_Y, 0)
    assert _exact_matmuls(s8) is s8
