"""Dense prediction heads through the front end, the back end and the simulator.

A segmentation head (1x1 Conv, bilinear Resize 2x, Softmax over channels) and a
detection head (Sigmoid, the Reshape/Transpose/Reshape of YOLO/SSD heads, Concat of two
scales along the anchors), quantized QDQ by onnxruntime: compiled graph outputs equal
onnxruntime's (the reference executor) and the instruction simulator's; the per-pixel
argmax users take of the segmentation logits is measured on the CPU.
"""

import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import ortutil  # noqa: E402
import test_frontend as tf  # noqa: E402
from bamboo.arch import preset  # noqa: E402
from bamboo.compiler import executor  # noqa: E402
from bamboo.compiler.onnx_import import import_onnx  # noqa: E402
from bamboo.compiler.passes import compile_graph  # noqa: E402
from isa_graphs import run_both  # noqa: E402


def heads(seed=5, ctm="half_pixel"):
    n = tf._Net(seed)
    x = n.conv("x", 3, 8, 3, stride=2)  # 16x16 -> 8x8
    seg = n.conv(x, 8, 5, 1, act=None)
    up = n.node(
        "Resize",
        [seg, "", n.const(np.array([1, 1, 2, 2], np.float32), "scales")],
        mode="linear",
        coordinate_transformation_mode=ctm,
    )
    sm = n.node("Softmax", [up], axis=1)  # over the classes
    outs = []
    for k, stride in enumerate((1, 2)):
        f = n.conv(x, 8, 8, 3, stride=stride) if stride > 1 else x
        hw = (8 // stride) ** 2
        det = n.node("Sigmoid", [n.conv(f, 8, 12, 1, act=None)])  # 2 anchors x 6
        r = n.node("Reshape", [det, n.const(np.array([1, 2, 6, hw], np.int64), "shape")])
        t = n.node("Transpose", [r], perm=[0, 1, 3, 2])
        outs.append(n.node("Reshape", [t, n.const(np.array([1, 2 * hw, 6], np.int64), "shape")]))
    cat = n.node("Concat", outs, axis=1)
    return n.model((1, 3, 16, 16), [sm, cat])


@pytest.mark.parametrize("ctm", ["half_pixel", "align_corners"])
def test_heads_bit_exact(ctm, diff_cases):
    model = tf.qdq(heads(ctm=ctm), (1, 3, 16, 16), f"heads-{ctm}")
    graph = compile_graph(import_onnx(model))
    ops = {(n.op, n.target) for n in graph.nodes}
    assert ("softmax", "cpu") in ops and ("resize", "cpu") in ops
    assert any(n.op == "conv" and n.attrs["lut"] is not None for n in graph.nodes)  # Sigmoid
    x = tf.calib((1, 3, 16, 16), count=1, seed=3)[0]["x"]
    want = ortutil.run(model, x)
    got = executor.run(graph, x)
    for w, g in zip(want, got):
        assert w.shape == g.shape and np.array_equal(w.view(np.uint32), g.view(np.uint32))
        diff_cases("heads:executor", w.size)
    ref, sim, _, _ = run_both(graph, preset("ultra96"), partitioned=True)
    assert all(np.array_equal(a, b) for a, b in zip(ref, sim))


def test_argmax_over_channels_measured(capsys):
    """Per-pixel argmax of 21-class uint8 logits at 512x512 (LR-ASPP's output), on the
    CPU with numpy: printed, not asserted (performance figures come from commands)."""
    codes = np.random.default_rng(0).integers(0, 256, (1, 21, 512, 512), dtype=np.uint8)
    t0 = time.process_time()
    labels = codes.argmax(axis=1)
    dt = time.process_time() - t0
    assert labels.shape == (1, 512, 512) and labels.max() < 21
    with capsys.disabled():
        print(f"\nargmax over 21 channels of 512x512 uint8: {dt * 1e3:.1f} ms CPU here")


def _qdq(name, scale, zp, dtype):
    """Initializers and the Q/DQ pair of value ``name`` (codes ``{name}_q``, dequantized
    ``{name}_dq``)."""
    inits = {f"{name}_s": np.float32(scale), f"{name}_z": np.asarray(zp, dtype)}
    mk = ortutil.helper.make_node
    return inits, [
        mk("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"]),
        mk("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"]),
    ]


def _bit_exact_everywhere(model, shape, tmp_path, seed):
    """Executor and ``Session(backend="isa")`` against onnxruntime (EXTENDED)."""
    from bamboo.compiler import api
    from bamboo.runtime.session import Session

    path = tmp_path / "m.onnx"
    ortutil.onnx.save(model, str(path))
    graph = import_onnx(model)
    rng = np.random.default_rng(seed)
    with Session(api.compile(path), backend="isa") as sess:
        for _ in range(3):
            x = rng.normal(0, 2, shape).astype(np.float32)
            (want,) = ortutil.run(model, x)
            for got in (executor.run(graph, x)[0], sess.run(None, {"x": x})[0]):
                assert got.shape == want.shape and np.array_equal(
                    got.view(np.uint32), want.view(np.uint32)
                )
    return graph


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_float_reduce_mean_head_runs_as_onnxruntime(dtype, tmp_path):
    """SqueezeNet's head: DQ -> float ReduceMean(2, 3) -> Reshape is the model's output; no
    QuantizeLinear follows, onnxruntime averages the dequantized floats, and so does the
    CPU (``IOSpec.mean_axes``), named in the notes ``inspect`` prints."""
    zero = 0 if dtype == np.uint8 else -128
    i_init, i_nodes = _qdq("x", 0.05, zero + 128, dtype)
    c_init, c_nodes = _qdq("c", 0.031, zero + 3, dtype)
    rng = np.random.default_rng(3)
    mk = ortutil.helper.make_node
    inits = {
        **i_init,
        **c_init,
        "w": rng.integers(-127, 128, (24, 4, 1, 1)).astype(np.int8),
        "ws": np.float32(0.01),
        "wz": np.zeros((), np.int8),
        "axes": np.array([2, 3], np.int64),
        "shape": np.array([-1, 24], np.int64),
    }
    nodes = [
        *i_nodes,
        mk("DequantizeLinear", ["w", "ws", "wz"], ["wdq"]),
        mk("Conv", ["x_dq", "wdq"], ["c"]),
        *c_nodes,
        mk("ReduceMean", ["c_dq", "axes"], ["m"], keepdims=1),
        mk("Reshape", ["m", "shape"], ["y"]),
    ]
    model = ortutil.make_model(
        nodes, [("x", np.float32, ("batch", 4, 5, 7))], [("y", np.float32, ("batch", 24))], inits
    )
    graph = _bit_exact_everywhere(model, (1, 4, 5, 7), tmp_path, 4)
    assert graph.outputs[0].mean_axes == (2, 3) and graph.outputs[0].onnx_shape == (1, 24)
    assert any("float ReduceMean" in note for note in graph.notes)


def test_float_op_then_nearest_resize_quantizes_before_the_copy(tmp_path):
    """YOLO-style neck: DQ -> float HardSwish -> nearest Resize -> Q. Copying elements
    commutes with quantizing them: a table for HardSwish, then the resize on codes."""
    i_init, i_nodes = _qdq("x", 0.04, 120, np.uint8)
    r_init, r_nodes = _qdq("r", 0.03, 20, np.uint8)
    mk = ortutil.helper.make_node
    inits = {**i_init, **r_init, "scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [
        *i_nodes,
        mk("HardSwish", ["x_dq"], ["h"]),
        mk(
            "Resize",
            ["h", "", "scales"],
            ["r"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        *r_nodes,
        mk("Identity", ["r_dq"], ["y"]),
    ]
    model = ortutil.make_model(
        nodes, [("x", np.float32, (1, 3, 4, 4))], [("y", np.float32, (1, 3, 8, 8))], inits
    )
    graph = _bit_exact_everywhere(model, (1, 3, 4, 4), tmp_path, 5)
    assert [n.op for n in graph.nodes][:2] == ["lut", "resize"]
