"""The model zoo: every network builds at a reduced size, quantizes, and runs integer.

Checks follow docs/numerics.md, "Which quantized graph to expect": QDQ around
every Conv (int8 per-channel weights, int32 bias, output straight into a
QuantizeLinear), and no float Conv/Gemm/Add/Mul/pool left once onnxruntime has
optimized the graph at EXTENDED.
"""

import time

import numpy as np
import pytest

pytest.importorskip("torch", reason="the model zoo needs torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage", reason="calibration photos come from scikit-image")

from bamboo.compiler.reference import reference_session  # noqa: E402
from bamboo.models import calibration, export, quantize, zoo  # noqa: E402

# Ops a float zoo graph may contain (what the quantizer and the compiler must handle).
FLOAT_OPS = {
    "Conv",
    "Gemm",
    "Relu",
    "Clip",
    "HardSigmoid",
    "Sigmoid",
    "LeakyRelu",
    "Mul",
    "Add",
    "GlobalAveragePool",
    "AveragePool",
    "MaxPool",
    "Concat",
    "Reshape",
    "Transpose",
    "Flatten",
    "Slice",
    "Split",
    "Resize",
}
SLOW = {"efficientnet_b4"}  # the quantizer alone takes ~25 s on its 500 tensors


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def _session(path):
    return reference_session(path)


def _per_channel_problems(model):
    """Conv weights whose DequantizeLinear is not per output channel (axis 0, one scale each)."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    problems = []
    for conv in (n for n in g.node if n.op_type == "Conv"):
        dq = producer[conv.input[1]]
        cout = inits[dq.input[0]].dims[0]
        scale = inits[dq.input[1]]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if cout > 1 and (list(scale.dims) != [cout] or axis != 0):
            problems.append(f"{conv.name}: weight scale dims {list(scale.dims)}, axis {axis}")
        zp = onnx.numpy_helper.to_array(inits[dq.input[2]])
        if np.any(zp != 0):
            problems.append(f"{conv.name}: weights not symmetric")
    return problems


@pytest.mark.parametrize("name", _params(sorted(zoo.ZOO)))
def test_zoo_model_quantizes_to_integer(name):
    entry = zoo.ZOO[name]
    res, width = entry.test_resolution, entry.test_width
    start = time.perf_counter()
    fpath = zoo.build_float(name, res, width)
    qpath = zoo.build_quantized(name, res, width)
    print(f"{name}: build+quantize {time.perf_counter() - start:.1f} s at {res} px, width {width}")

    fmodel = onnx.load(str(fpath))
    assert fmodel.opset_import[0].version == export.OPSET
    assert {n.op_type for n in fmodel.graph.node} <= FLOAT_OPS
    assert [i.name for i in fmodel.graph.input] == ["input"]

    qmodel = onnx.load(str(qpath))
    assert quantize.conv_qdq_problems(qmodel) == []
    assert _per_channel_problems(qmodel) == []
    # uint8 activations everywhere: every QuantizeLinear's zero point is uint8.
    inits = {t.name: t for t in qmodel.graph.initializer}
    for q in (n for n in qmodel.graph.node if n.op_type == "QuantizeLinear"):
        assert inits[q.input[2]].data_type == onnx.TensorProto.UINT8, q.name
    # Relu and Clip(0, 6) vanish into the producers' output ranges.
    assert not {n.op_type for n in qmodel.graph.node} & {"Relu", "Clip"}
    assert quantize.float_ops_after_optimization(qpath) == []

    x = calibration.photos(res, count=1)
    fout = _session(fpath).run(None, {"input": x})
    qout = _session(qpath).run(None, {"input": x})
    assert [o.shape for o in qout] == [o.shape for o in fout]
    assert all(np.isfinite(o).all() and np.ptp(o) > 0 for o in qout)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "shufflenet_v2", "tiny_yolov3"])
def test_qoperator_format(name):
    entry = zoo.ZOO[name]
    path = zoo.build_quantized(name, entry.test_resolution, entry.test_width, format="qoperator")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops
    assert quantize.float_ops_after_optimization(path) == []
    x = calibration.photos(entry.test_resolution, count=1)
    assert all(np.isfinite(o).all() for o in _session(path).run(None, {"input": x}))


def test_cache_reuses_files_and_keys_on_parameters():
    first = zoo.build_quantized("squeezenet1_1", 32, 0.25)
    mtime = first.stat().st_mtime_ns
    assert zoo.build_quantized("squeezenet1_1", 32, 0.25) == first
    assert first.stat().st_mtime_ns == mtime
    assert first.parent == zoo.cache_dir()
    assert first.name.startswith("squeezenet1_1-32-0.25-") and first.name.endswith(".qdq.onnx")
    other = zoo._path("squeezenet1_1", 32, 0.5, 0, "qdq")
    assert other.name.split("-")[3] != first.name.split("-")[3]
    assert zoo._path("squeezenet1_1", 32, 0.25, 1, "qdq") != zoo._path(
        "squeezenet1_1", 32, 0.25, 0, "qdq"
    )


def test_tiny_yolo_stride1_pool_has_its_own_padding():
    entry = zoo.ZOO["tiny_yolov3"]
    model = onnx.load(str(zoo.build_float("tiny_yolov3", entry.test_resolution, entry.test_width)))
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in p.attribute} for p in pools]
    assert [a["strides"] for a in attrs].count([1, 1]) == 1
    assert [a.get("pads") for a in attrs if a["strides"] == [1, 1]] == [[0, 0, 1, 1]]
    assert "Pad" not in {n.op_type for n in model.graph.node}
    assert "Resize" in {n.op_type for n in model.graph.node}


def test_edge_pad_fold_matches_onnxruntime():
    h = onnx.helper
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 6)).astype(np.float32)
    graph = h.make_graph(
        [
            h.make_node("Pad", ["x", "pads"], ["p"], mode="edge"),
            h.make_node("MaxPool", ["p"], ["y"], kernel_shape=[2, 3], strides=[1, 2]),
        ],
        "g",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64), "pads")],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    want = reference_session(model).run(None, {"x": x})[0]
    folded = export.fold_edge_pad_into_maxpool(model)
    assert [n.op_type for n in folded.graph.node] == ["MaxPool"]
    got = reference_session(folded).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)


def test_graph_stats_counts_conv_and_gemm():
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.zeros((8, 2, 3, 3), np.float32), "w")  # groups 2
    g = onnx.numpy_helper.from_array(np.zeros((10, 8), np.float32), "g")
    graph = h.make_graph(
        [
            h.make_node("Conv", ["x", "w"], ["c"], group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
            h.make_node("GlobalAveragePool", ["c"], ["p"]),
            h.make_node("Flatten", ["p"], ["f"]),
            h.make_node("Gemm", ["f", "g"], ["y"], transB=1),
        ],
        "g",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (1, 4, 8, 8))],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [w, g],
    )
    stats = zoo.graph_stats(h.make_model(graph, opset_imports=[h.make_opsetid("", 13)]))
    assert stats == {"params": 8 * 2 * 9 + 80, "macs": 8 * 4 * 4 * 2 * 9 + 80}


def test_calibration_photos_are_deterministic():
    a = calibration.photos(24, 40, count=3)
    assert a.shape == (3, 3, 24, 40) and a.dtype == np.float32
    assert -1.0 <= a.min() < -0.5 and 0.5 < a.max() <= 1.0
    np.testing.assert_array_equal(a, calibration.photos(24, 40, count=3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: zoo.build_float("resnet50"), "model must be one of"),
        (
            lambda: zoo.build_float("tiny_yolov3", 48),
            "tiny_yolov3 resolution must be a positive multiple of 32, not 48",
        ),
        (lambda: zoo.build_float("mobilenet_v2", 32, 0), "width must be positive, not 0"),
        (
            lambda: zoo.build_quantized("mobilenet_v2", 32, 0.25, format="int4"),
            "format must be one of ('qdq', 'qoperator'), not 'int4'",
        ),
        (lambda: calibration.photos(8, count=0), "count must be in 1..8, not 0"),
    ],
)
def test_arguments_are_validated(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_cli_prints_the_built_path(capsys):
    from bamboo.models.__main__ import main

    assert main(["squeezenet1_1", "--resolution", "32", "--width", "0.25"]) == 0
    assert capsys.readouterr().out.strip() == str(zoo.build_quantized("squeezenet1_1", 32, 0.25))
    assert main(["tiny_yolov3", "--resolution", "40"]) == 2
