"""The reference executor against onnxruntime (ORT_ENABLE_EXTENDED, x86): equal bit for bit.

Golden side: onnxruntime on the quantized model; before a result is called golden,
the optimized graph must hold no float Conv/Gemm/Add (elementwise HardSigmoid /
HardSwish stay float between DQ and Q in onnxruntime, and the executor reproduces
them by tables measured on onnxruntime itself).
"""

import numpy as np
import ortutil
import pytest
from bamboo.compiler import executor
from bamboo.compiler.onnx_import import import_onnx
from bamboo.compiler.passes import compile_graph
from test_frontend import convnet, qdq, se_gemm, senet, ultraface_qdq

# Conv/Gemm/Add must run as integer kernels; elementwise float between DQ and Q is allowed.
COMPUTE_FLOAT = {
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "Add",
    "FusedConv",
    "FusedGemm",
    "AveragePool",
    "GlobalAveragePool",
    "Softmax",
}


def _assert_integer_compute(model):
    ops = ortutil.op_types(ortutil.optimized_model(model))
    assert not set(ops) & COMPUTE_FLOAT, f"float compute remains: {ops}"


def _compare(model, graph, feeds, diff_cases, kernel):
    for f in feeds:
        ref = ortutil.run(model, f)
        out = executor.run(graph, f)
        assert len(out) == len(ref)
        for a, b in zip(out, ref):
            assert a.shape == b.shape and a.dtype == b.dtype
            assert np.array_equal(a, b), f"{np.count_nonzero(a != b)} of {a.size} differ"
            diff_cases(kernel, a.size)


@pytest.mark.parametrize(
    "name,build,shape",
    [
        ("convnet", convnet, (1, 3, 16, 16)),
        ("senet", senet, (1, 3, 8, 8)),
        ("se_gemm", se_gemm, (1, 3, 8, 8)),
    ],
)
def test_small_nets_bit_exact(name, build, shape, diff_cases):
    model = qdq(build(), shape, name)
    _assert_integer_compute(model)
    graph = compile_graph(import_onnx(model), verify=True)
    rng = np.random.default_rng(11)
    feeds = [{"x": rng.uniform(-1.5, 1.5, shape).astype(np.float32)} for _ in range(4)]
    _compare(model, graph, feeds, diff_cases, f"executor:{name}")


@pytest.mark.parametrize("opset,per_channel", [(11, False), (21, True)])
def test_opset_range_bit_exact(opset, per_channel, diff_cases):
    model = qdq(convnet(opset=opset), (1, 3, 16, 16), f"convnet-op{opset}", per_channel)
    assert model.opset_import[0].version >= opset
    graph = compile_graph(import_onnx(model), verify=True)
    x = np.random.default_rng(opset).uniform(-1.5, 1.5, (1, 3, 16, 16)).astype(np.float32)
    _compare(model, graph, [{"x": x}], diff_cases, f"executor:convnet-opset{opset}")


def test_raw_codes_round_trip():
    model = qdq(convnet(), (1, 3, 16, 16), "convnet")
    graph = compile_graph(import_onnx(model))
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    t = graph.tensors[graph.inputs[0].tensor]
    from bamboo.runtime.quant import dequantize, quantize

    codes = quantize(x, np.float32(t.q.scale), t.q.zp)
    raw = executor.run(graph, {"x": codes}, raw=True)
    flt = executor.run(graph, {"x": x})
    for r, f, spec in zip(raw, flt, graph.outputs):
        to = graph.tensors[spec.tensor]
        assert r.dtype == np.uint8
        assert np.array_equal(dequantize(r, np.float32(to.q.scale), to.q.zp), f)


def test_ultraface_reduced_bit_exact(diff_cases):
    model, feeds = ultraface_qdq(120, 160)
    ortutil.assert_integer_graph(model)
    graph = compile_graph(import_onnx(model), verify=True)
    _compare(model, graph, feeds[:2], diff_cases, "executor:ultraface120x160")


@pytest.mark.slow
def test_ultraface_full_size_bit_exact(diff_cases):
    model, feeds = ultraface_qdq(240, 320)
    graph = compile_graph(import_onnx(model))
    _compare(model, graph, feeds, diff_cases, "executor:ultraface240x320")


def test_qoperator_model_bit_exact(diff_cases):
    """A QOperator graph (onnxruntime's own EXTENDED output of the convnet) runs the same."""
    model = ortutil.optimized_model(qdq(convnet(), (1, 3, 16, 16), "convnet"))
    ops = set(ortutil.op_types(model))
    assert {
        "QLinearConv",
        "QLinearAdd",
        "QLinearConcat",
        "QGemm",
        "QLinearSoftmax",
        "QLinearLeakyRelu",
        "QLinearSigmoid",
        "QLinearGlobalAveragePool",
    } <= ops
    graph = compile_graph(import_onnx(model), verify=True)
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.uniform(-1.5, 1.5, (1, 3, 16, 16)).astype(np.float32)} for _ in range(3)]
    _compare(model, graph, feeds, diff_cases, "executor:qoperator")


def test_qoperator_senet_bit_exact(diff_cases):
    """QLinearMul (squeeze-excite) and a float HardSigmoid island between DQ and Q."""
    model = ortutil.optimized_model(qdq(senet(), (1, 3, 8, 8), "senet"))
    assert "QLinearMul" in ortutil.op_types(model)
    graph = compile_graph(import_onnx(model), verify=True)
    rng = np.random.default_rng(4)
    feeds = [{"x": rng.uniform(-1.5, 1.5, (1, 3, 8, 8)).astype(np.float32)} for _ in range(3)]
    _compare(model, graph, feeds, diff_cases, "executor:qoperator-senet")


def test_qlinear_matmul_and_qgemm_bit_exact(diff_cases):
    rng = np.random.default_rng(6)
    w = rng.integers(-127, 128, (24, 10)).astype(np.int8)
    x = rng.integers(0, 256, (3, 24)).astype(np.uint8)
    models = [
        ortutil.qlinear_matmul(
            (3, 24), np.uint8, 0.03, 120, w, np.float32(0.02), np.int8(0), 0.4, 100
        ),
        ortutil.qgemm(
            (3, 24),
            np.uint8,
            0.03,
            120,
            np.ascontiguousarray(w.T),
            np.full(10, 0.02, np.float32),
            0,
            rng.integers(-500, 500, 10),
            0.4,
            100,
        ),
    ]
    for m in models:
        g = compile_graph(import_onnx(m), verify=True)
        assert [n.op for n in g.nodes] == ["fc"]
        (ref,) = ortutil.run(m, x)
        (out,) = executor.run(g, {g.inputs[0].onnx_name: x})
        assert np.array_equal(out, ref)
        diff_cases("executor:qoperator-fc", out.size)


@pytest.mark.parametrize(
    "kernel, stride, pads, x_zp",
    [
        ((3, 3), (1, 1), (1, 1, 1, 1), 128),
        ((2, 2), (2, 2), (0, 0, 0, 0), 127),
        ((2, 2), (1, 1), (0, 0, 1, 1), 3),
    ],
)
def test_qlinear_average_pool_bit_exact(kernel, stride, pads, x_zp, diff_cases):
    """onnxruntime's QLinearAveragePool sums in float; the CPU kernel is that float form
    (the integer form was off on exact ties with an odd zero point: a 2x2 pool's quarter)."""
    rng = np.random.default_rng(8)
    m = ortutil.qlinear_avg_pool(
        (1, 8, 6, 6), np.uint8, 0.05, x_zp, 0.05, x_zp, kernel, strides=stride, pads=pads
    )
    g = compile_graph(import_onnx(m), verify=True)
    for _ in range(3):
        x = rng.integers(0, 256, (1, 8, 6, 6)).astype(np.uint8)
        (ref,) = ortutil.run(m, x)
        (out,) = executor.run(g, {g.inputs[0].onnx_name: x})
        np.testing.assert_array_equal(out, ref)
        diff_cases("executor:qlinear-avgpool", out.size)


@pytest.mark.parametrize(
    "size,kernel,stride,pad",
    [
        (5, 2, 2, 0),
        (7, 3, 2, 0),
        (7, 3, 2, 1),
        (6, 3, 3, 2),
        (3, 2, 2, 1),
        (8, 3, 3, 1),
        (13, 3, 2, 0),
    ],
)
def test_maxpool_ceil_mode_bit_exact(size, kernel, stride, pad, diff_cases):
    """ceil_mode=1 (SqueezeNet): extra windows over the bottom/right edge, the last one
    starting inside the image or its leading pad, as onnxruntime (checked by shape too)."""
    model = ortutil.qdq_single_op(
        "MaxPool",
        [((1, 4, size, size + 1), 0.05, 128)],
        (0.05, 128),
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=[pad] * 4,
        ceil_mode=1,
    )
    graph = compile_graph(import_onnx(model), verify=True)
    x = np.random.default_rng(size).uniform(-6, 6, (1, 4, size, size + 1)).astype(np.float32)
    _compare(model, graph, [{"x0": x}], diff_cases, "executor:maxpool-ceil")
