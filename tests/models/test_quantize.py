"""The golden side of int8-activation QDQ models: :func:`bamboo.models.quantize.uint8_twin`.

onnxruntime on x86 runs part of an int8-activation QDQ graph in float (a QuantizeLinear
with two DequantizeLinear consumers is not rewritten to uint8, and a Conv between a
rewritten and a kept pair keeps mixed types), so its output is not the model's integer
result. These tests pin that behaviour on a tiny EfficientNet-style block (Conv, SiLU,
squeeze-excite, residual Add), and check that the uint8 twin is the same model, runs
entirely on onnxruntime's integer kernels, and that Bamboo equals it bit for bit.
"""

import numpy as np
import ortutil as ou
import pytest
from bamboo.compiler import executor
from bamboo.compiler.onnx_import import import_onnx
from bamboo.models.quantize import uint8_twin
from ortutil import helper

C = 8


def _block():
    """x -> Conv3x3 -> SiLU -> SE (GAP, 1x1, SiLU, 1x1, Sigmoid, Mul) -> Conv1x1 -> + x."""
    rng = np.random.default_rng(13)
    w = {
        "w0": rng.normal(0, 0.3, (C, C, 3, 3)),
        "b0": rng.normal(0, 0.1, C),
        "w1": rng.normal(0, 0.5, (4, C, 1, 1)),
        "b1": rng.normal(0, 0.1, 4),
        "w2": rng.normal(0, 0.5, (C, 4, 1, 1)),
        "b2": rng.normal(0, 0.1, C),
        "w3": rng.normal(0, 0.3, (C, C, 1, 1)),
        "b3": rng.normal(0, 0.1, C),
    }
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        mk("Sigmoid", ["c0"], ["s0"]),
        mk("Mul", ["c0", "s0"], ["a0"]),
        mk("GlobalAveragePool", ["a0"], ["g"]),
        mk("Conv", ["g", "w1", "b1"], ["c1"]),
        mk("Sigmoid", ["c1"], ["s1"]),
        mk("Mul", ["c1", "s1"], ["a1"]),
        mk("Conv", ["a1", "w2", "b2"], ["c2"]),
        mk("Sigmoid", ["c2"], ["s2"]),
        mk("Mul", ["a0", "s2"], ["se"]),
        mk("Conv", ["se", "w3", "b3"], ["c3"]),
        mk("Add", ["c3", "x"], ["y"]),
    ]
    inits = {k: v.astype(np.float32) for k, v in w.items()}
    return ou.make_model(
        nodes, [("x", np.float32, (1, C, 6, 6))], [("y", np.float32, (1, C, 6, 6))], inits
    )


def _inputs(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, C, 6, 6), dtype=np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def int8_model():
    return ou.quantize_qdq(_block(), [{"x": x} for x in _inputs(8, 0)], activation_type="int8")


def test_onnxruntime_runs_int8_activation_qdq_partly_in_float(int8_model):
    """The premise: at EXTENDED the int8 graph keeps float Conv/Mul/Sigmoid nodes."""
    ops = ou.op_types(ou.optimized_model(int8_model))
    assert {"Conv", "Mul", "Sigmoid"} <= set(ops) & ou.FLOAT_OPS, ops


def test_uint8_twin_is_the_same_model_and_runs_integer_only(int8_model):
    twin = uint8_twin(int8_model)
    ops = ou.assert_integer_graph(twin)
    assert "QLinearConv" in ops and "QLinearMul" in ops, ops
    # Same dequantized values everywhere: the float reference (no fusion) agrees bit for bit.
    for x in _inputs(3, 1):
        (a,) = ou.run(int8_model, x, level="disable")
        (b,) = ou.run(twin, x, level="disable")
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    # Weights keep their int8 zero points; only activation pairs changed.
    zps = {t.name: t.data_type for t in twin.graph.initializer if t.name.endswith("_uint8_twin")}
    assert zps and set(zps.values()) == {ou.onnx.TensorProto.UINT8}
    weights = {t.name for t in int8_model.graph.initializer}
    assert [
        n.input[2]
        for n in twin.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
    ] == [
        n.input[2]
        for n in int8_model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
    ]


def test_bamboo_equals_onnxruntime_on_the_uint8_twin(int8_model):
    graph = import_onnx(int8_model)
    twin = ou.session(uint8_twin(int8_model))
    floaty = ou.session(int8_model)
    differs_from_float_fallback = 0
    for x in _inputs(16, 2):
        (want,) = twin.run(None, {"x": x})
        (got,) = executor.run(graph, x)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
        (f,) = floaty.run(None, {"x": x})
        differs_from_float_fallback += np.count_nonzero(f != want)
    # Not asserted either way: on some inputs the float fallback rounds differently.
    print("onnxruntime's int8 run differs from the twin in", differs_from_float_fallback)


def test_uint8_twin_leaves_uint8_and_qoperator_models_alone():
    u8 = ou.qdq_single_op("Relu", [((1, 2, 2, 2), 0.1, 10)], (0.1, 10))
    assert uint8_twin(u8) == u8
    x = np.arange(-4, 4, dtype=np.int8).reshape(1, 2, 2, 2)
    qop = ou.qlinear_conv(
        x.shape, np.int8, 0.05, 3, np.ones((2, 2, 1, 1), np.int8), 0.02, 0, None, 0.1, -2
    )
    assert uint8_twin(qop) == qop


def test_inspect_notes_where_onnxruntime_would_run_int8_in_float(int8_model):
    """The user is told, not left to find the difference: the int8 file's graph carries a
    note naming the uint8 twin; its twin (all integer in onnxruntime) does not."""
    (note,) = [n for n in import_onnx(int8_model).notes if n.startswith("int8 activations")]
    assert "uint8_twin" in note
    assert not [n for n in import_onnx(uint8_twin(int8_model)).notes if "int8 activations" in n]
