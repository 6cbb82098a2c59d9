"""Every zoo model and the face detector: compiled, inspected, and bit-exact with onnxruntime.

Golden side: onnxruntime 1.32 (CPU, x86) at ORT_ENABLE_EXTENDED on the quantized file.
Before a result is called golden, the optimized graph must run integer kernels
(docs/numerics.md, "Which quantized graph to expect"): no float Conv/Gemm/Add/
pool left, and a DequantizeLinear may feed only the graph output, a code move
(Slice) or HardSigmoid, which has no quantized kernel and stays float between DQ and
Q (the executor reproduces it by a table measured on onnxruntime).

Sizes are the zoo's reduced test sizes (``ZooModel.test_resolution``/``test_width``,
as tests/models/test_zoo.py); inputs are two real calibration photos. Outputs are
compared as float32 bit patterns.
"""

import numpy as np
import pytest

pytest.importorskip("torch", reason="the model zoo needs torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage", reason="calibration photos come from scikit-image")

import ortutil  # noqa: E402
from bamboo.compiler import executor  # noqa: E402
from bamboo.compiler.cli_inspect import compile_model  # noqa: E402
from bamboo.compiler.inspect import render  # noqa: E402
from bamboo.models import calibration, faces, zoo  # noqa: E402

# tests/models/test_zoo.py keeps efficientnet_b4's build out of `make test`; here it stays
# in the fast path (its reduced QDQ build takes seconds) so the whole zoo is covered.
QOPERATOR_FAST = (
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "shufflenet_v2",
    "tiny_yolov3",
)
# Float ops onnxruntime leaves between DequantizeLinear and QuantizeLinear on purpose
# (linear Resize stays float even with equal parameters: tests/runtime/test_resize.py).
FLOAT_ISLANDS = frozenset({"HardSigmoid", "Resize"})
CODE_MOVES = frozenset({"Slice", "Reshape", "Transpose", "Flatten", "Split", "MaxPool"})
PHOTOS = 2


def _assert_integer_kernels(model):
    """Fail unless onnxruntime's EXTENDED graph runs every Conv/Gemm/Add/Mul/pool as an
    integer kernel; return the optimized op types."""
    opt = ortutil.optimized_model(model)
    ops = ortutil.op_types(opt)
    float_left = sorted(set(ops) & (ortutil.FLOAT_OPS - FLOAT_ISLANDS))
    assert not float_left, f"float compute left after EXTENDED optimization: {float_left}"
    assert "QLinearConv" in ops, f"no integer convolution ran: {sorted(set(ops))}"
    consumers = {}
    for n in opt.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    outputs = {o.name for o in opt.graph.output}
    for n in opt.graph.node:
        if n.op_type == "DequantizeLinear":
            users = set(consumers.get(n.output[0], []))
            assert users <= FLOAT_ISLANDS | CODE_MOVES and (users or n.output[0] in outputs), (
                f"DequantizeLinear {n.name!r} feeds float {sorted(users)}"
            )
    return ops


def _check(path, images, diff_cases, kernel):
    model = onnx.load(str(path))
    _assert_integer_kernels(model)
    graph = compile_model(path)
    text = render(graph, title=str(path))
    assert text.startswith(f"{path}: {len(graph.nodes)} nodes")
    assert all(n.name in text for n in graph.nodes) and "bytes crossing PS/PL" in text
    sess = ortutil.session(model)
    (name,) = [i.name for i in sess.get_inputs()]
    for k in range(len(images)):
        feed = {name: images[k : k + 1]}
        ref = sess.run(None, feed)
        out = executor.run(graph, feed)
        assert [o.name for o in sess.get_outputs()] == [o.onnx_name for o in graph.outputs]
        for got, want, spec in zip(out, ref, graph.outputs):
            assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
            differ = np.count_nonzero(got.view(np.uint32) != want.view(np.uint32))
            assert differ == 0, f"{spec.onnx_name}: {differ} of {got.size} values differ"
            diff_cases(kernel, got.size)


def _zoo(name, fmt, diff_cases):
    entry = zoo.ZOO[name]
    path = zoo.build_quantized(name, entry.test_resolution, entry.test_width, format=fmt)
    _check(path, calibration.photos(entry.test_resolution, count=PHOTOS), diff_cases, f"zoo:{fmt}")


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_qdq_bit_exact(name, diff_cases):
    _zoo(name, "qdq", diff_cases)


@pytest.mark.parametrize(
    "name",
    [
        n if n in QOPERATOR_FAST else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(zoo.ZOO)
    ],
)
def test_zoo_qoperator_bit_exact(name, diff_cases):
    _zoo(name, "qoperator", diff_cases)


@pytest.fixture(scope="module")
def face_images():
    return faces.calibration_images(PHOTOS)


def test_face_detector_qdq_bit_exact(face_images, diff_cases):
    _check(faces.build_quantized("qdq"), face_images, diff_cases, "zoo:qdq")


@pytest.mark.slow
def test_face_detector_qoperator_bit_exact(face_images, diff_cases):
    _check(faces.build_quantized("qoperator"), face_images, diff_cases, "zoo:qoperator")


def test_integer_kernel_check_catches_float_compute():
    entry = zoo.ZOO["mobilenet_v1"]
    path = zoo.build_float("mobilenet_v1", entry.test_resolution, entry.test_width)
    with pytest.raises(AssertionError, match="float compute left"):
        _assert_integer_kernels(onnx.load(str(path)))
