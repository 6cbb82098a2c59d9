"""Ops of real exports (issue 13): ReduceMean, Pad, constant operands, Relu between DQ and Q.

Each model is a small float graph built with onnx.helper, quantized by onnxruntime's
``quantize_static`` (QDQ), compiled for ultra96 and run through ``Session(backend="isa")``;
the outputs must equal onnxruntime's (ORT_ENABLE_EXTENDED) bit for bit.
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import ortutil  # noqa: E402
from bamboo.arch import preset  # noqa: E402
from bamboo.compiler import errors  # noqa: E402
from bamboo.compiler.backend import compile_artifact  # noqa: E402
from bamboo.compiler.onnx_import import import_onnx  # noqa: E402
from bamboo.compiler.passes import compile_graph  # noqa: E402
from bamboo.runtime.session import Session  # noqa: E402
from test_frontend import _Net, qdq  # noqa: E402


def _session_exact(model, shape, count=3, seed=0):
    """Compile ``model``, run it on the ISA simulator and onnxruntime; return the graph."""
    graph = compile_graph(import_onnx(model), verify=True)
    blob = compile_artifact(graph, preset("ultra96"))
    rng = np.random.default_rng(seed)
    with Session(blob, backend="isa") as s:
        for _ in range(count):
            x = rng.uniform(-2, 2, shape).astype(np.float32)
            ref = ortutil.run(model, {"x": x})
            got = s.run(None, {"x": x})
            for a, b in zip(got, ref):
                assert a.shape == b.shape
                assert np.array_equal(a, b), f"{np.count_nonzero(a != b)} of {a.size} differ"
    return graph


def _head(n, x, c, classes=5):
    w = n.rng.normal(0, 0.3, (classes, c)).astype(np.float32)
    return n.node("Gemm", [x, n.const(w, "w"), n.const(np.zeros(classes, np.float32))], transB=1)


# --- ReduceMean -------------------------------------------------------------------------------


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean_spatial_is_a_global_pool(keepdims, opset):
    n = _Net(20 + keepdims)
    x = n.conv("x", 3, 8, 3, act="relu6")
    if opset >= 18:
        r = n.node("ReduceMean", [x, n.const(np.array([-2, -1], np.int64))], keepdims=keepdims)
    else:
        r = n.node("ReduceMean", [x], axes=[2, 3], keepdims=keepdims)
    if keepdims:
        r = n.node("Flatten", [r], axis=1)
    y = _head(n, r, 8)
    shape = (1, 3, 12, 12)
    g = _session_exact(
        qdq(n.model(shape, [y], opset=opset), shape, f"rmean{keepdims}-{opset}"), shape
    )
    gap = next(v for v in g.nodes if v.op == "gap")
    assert gap.target == "fabric"


def test_reduce_mean_other_axes_is_refused_naming_them():
    n = _Net(22)
    x = n.conv("x", 3, 8, 3)
    y = n.conv(n.node("ReduceMean", [x], axes=[1], keepdims=1), 1, 4, 3, act=None)
    shape = (1, 3, 6, 6)
    with pytest.raises(errors.UnsupportedOpError, match=r"axes \[1\]"):
        import_onnx(qdq(n.model(shape, [y]), shape, "rmean-c"))


# --- Pad --------------------------------------------------------------------------------------


def _pad(n, x, pads, mode="constant", value=None):
    ins = [x, n.const(np.array(pads, np.int64))]
    if value is not None:
        ins.append(n.const(np.float32(value)))
    return n.node("Pad", ins, mode=mode)


def test_pad_folds_into_conv_asymmetric():
    """TF-style asymmetric padding (nn.ZeroPad2d((0, 1, 0, 1)) before a stride-2 Conv)."""
    n = _Net(30)
    x = n.conv("x", 3, 8, 3)
    p = _pad(n, x, [0, 0, 0, 0, 0, 0, 1, 1])
    y = n.conv(p, 8, 8, 3, stride=2, pads=[0, 0, 0, 0], act=None)
    shape = (1, 3, 9, 9)
    g = _session_exact(qdq(n.model(shape, [y]), shape, "pad-conv"), shape)
    assert "pad" not in [v.op for v in g.nodes]
    assert g.nodes[-1].op == "conv" and g.nodes[-1].attrs["pads"] == (0, 0, 1, 1)


def test_pad_folds_into_average_pool():
    n = _Net(31)
    x = n.conv("x", 3, 8, 3)
    p = _pad(n, x, [0, 0, 1, 1, 0, 0, 1, 1], value=0.0)
    y = n.node("AveragePool", [p], kernel_shape=[3, 3], strides=[1, 1])
    shape = (1, 3, 6, 6)
    g = _session_exact(qdq(n.model(shape, [y]), shape, "pad-avgpool"), shape)
    pool = next(v for v in g.nodes if v.op == "avgpool")
    assert "pad" not in [v.op for v in g.nodes]
    assert pool.attrs["pads"] == (1, 1, 1, 1) and pool.attrs["count_include_pad"]


@pytest.mark.parametrize("act", ["relu", None])
def test_pad_before_maxpool(act):
    """Darknet's ZeroPad2d((0, 1, 0, 1)) before a stride-1 MaxPool: after a ReLU the zero
    point is the smallest code (a plain pool pad); otherwise the pool pads with the zero
    point's code on the fabric."""
    n = _Net(32)
    x = n.conv("x", 3, 8, 3, act=act)
    p = _pad(n, x, [0, 0, 0, 0, 0, 0, 1, 1])
    y = n.node("MaxPool", [p], kernel_shape=[2, 2], strides=[1, 1])
    shape = (1, 3, 6, 6)
    g = _session_exact(qdq(n.model(shape, [y]), shape, f"pad-maxpool-{act}"), shape)
    pool = next(v for v in g.nodes if v.op == "maxpool")
    assert "pad" not in [v.op for v in g.nodes]
    assert pool.attrs["pads"] == (0, 0, 1, 1) and pool.target == "fabric"
    zp = g.tensors[pool.inputs[0]].q.zp
    assert pool.attrs.get("pad_value", 0) == zp


@pytest.mark.parametrize("mode", ["reflect", "edge", "constant"])
def test_other_pads_run_on_the_cpu_with_a_reason(mode):
    n = _Net(33)
    x = n.conv("x", 3, 8, 3)
    p = _pad(n, x, [0, 0, 1, 2, 0, 0, 2, 1], mode=mode, value=0.5 if mode == "constant" else None)
    y = n.conv(p, 8, 4, 3, act=None)
    shape = (1, 3, 6, 6)
    g = _session_exact(qdq(n.model(shape, [y]), shape, f"pad-{mode}"), shape)
    pad = next(v for v in g.nodes if v.op == "pad")
    assert pad.target == "cpu" and "Pad" in pad.reason


# --- Relu/Clip between DequantizeLinear and QuantizeLinear --------------------------------------


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_activation_on_a_shared_tensor_is_a_clamp(act):
    """A Conv whose output feeds both a ReLU and an Add keeps the ReLU between DQ and Q
    (the producer's range cannot clamp for both): it becomes a table, bit-exact."""
    n = _Net(40)
    x = n.conv("x", 3, 8, 3, act=None)
    r = (
        n.node("Relu", [x])
        if act == "relu"
        else n.node("Clip", [x, n.const(np.float32(0)), n.const(np.float32(6))])
    )
    y = n.node("Add", [x, n.conv(r, 8, 8, 3, act=None)])
    shape = (1, 3, 6, 6)
    model = qdq(n.model(shape, [y]), shape, f"shared-{act}")
    assert "Relu" in ortutil.op_types(model) or "Clip" in ortutil.op_types(model)
    g = _session_exact(model, shape)
    assert any(v.op == "lut" and v.attrs["fn"] in ("Relu", "Clip") for v in g.nodes)


# --- constant operands --------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_constant_operand(op, per_channel):
    """``x + c`` / ``x * c`` with a quantized constant (scalar: a table on the fabric;
    per channel: the QLinearAdd/QLinearMul formula on the CPU)."""
    n = _Net(50)
    x = n.conv("x", 3, 8, 3, act=None)
    c = n.rng.uniform(0.2, 1.5, (1, 8, 1, 1) if per_channel else ()).astype(np.float32)
    y = n.conv(n.node(op, [x, n.const(c)]), 8, 4, 1, act=None)
    shape = (1, 3, 6, 6)
    model = qdq(n.model(shape, [y]), shape, f"const-{op}-{per_channel}")
    g = _session_exact(model, shape, count=4)
    if per_channel:
        node = next(v for v in g.nodes if v.op == f"{op.lower()}_const")
        assert node.target == "cpu" and node.reason
    else:  # the table fuses into the Conv before it, on the fabric
        node = next(v for v in g.nodes if any(s.startswith(op) for s in v.fused))
        assert node.op == "conv" and node.target == "fabric"


def test_float_constant_operand():
    """A constant the quantizer left in float (DQ -> Add(c) -> Q): onnxruntime adds in float."""
    n = _Net(51)
    x = n.conv("x", 3, 8, 3, act=None)
    c = n.rng.uniform(-1, 1, (1, 8, 1, 1)).astype(np.float32)
    y = n.conv(n.node("Add", [x, n.const(c)]), 8, 4, 1, act=None)
    shape = (1, 3, 6, 6)
    model = qdq(n.model(shape, [y]), shape, "const-float")
    m = onnx.ModelProto.FromString(model.SerializeToString())
    add = next(v for v in m.graph.node if v.op_type == "Add")
    dq = next(v for v in m.graph.node if v.output[0] == add.input[1])
    codes = next(t for t in m.graph.initializer if t.name == dq.input[0])
    from onnx import numpy_helper

    real = numpy_helper.to_array(codes).astype(np.float32)  # any float constant will do
    m.graph.initializer.append(numpy_helper.from_array(real * np.float32(0.01), "cf"))
    add.input[1] = "cf"
    g = _session_exact(m, shape)
    assert any(v.op == "add_const" and v.attrs["operand_scale"] is None for v in g.nodes)


def test_qlinear_matmul_then_constant_bias_add():
    """Older QOperator models: QLinearMatMul, then QLinearAdd of the constant bias codes."""
    from onnx import helper

    rng = np.random.default_rng(52)
    w = rng.integers(-127, 128, (16, 6)).astype(np.int8)
    bias = rng.integers(0, 256, (6,)).astype(np.uint8)
    u8, f32 = (lambda v: np.array(v, np.uint8)), np.float32
    inits = {
        "xs": f32(0.03),
        "xz": u8(120),
        "w": w,
        "ws": f32(0.01),
        "wz": np.array(0, np.int8),
        "ms": f32(0.05),
        "mz": u8(128),
        "b": bias,
        "bs": f32(0.02),
        "bz": u8(128),
        "ys": f32(0.06),
        "yz": u8(125),
    }
    nodes = [
        helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ms", "mz"], ["m"]),
        helper.make_node(
            "QLinearAdd",
            ["m", "ms", "mz", "b", "bs", "bz", "ys", "yz"],
            ["y"],
            domain="com.microsoft",
        ),
    ]
    model = ortutil.make_model(nodes, [("x", np.uint8, [2, 16])], [("y", np.uint8, None)], inits)
    graph = compile_graph(import_onnx(model), verify=True)
    assert [v.op for v in graph.nodes] == ["fc", "add_const"]
    blob = compile_artifact(graph, preset("ultra96"))
    with Session(blob, backend="isa") as s:
        for _ in range(4):
            x = rng.integers(0, 256, (2, 16)).astype(np.uint8)
            (ref,) = ortutil.run(model, {"x": x})
            (got,) = s.run(None, {"x": x})
            np.testing.assert_array_equal(got, ref)
