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
    x = n.conv("x", 3, 8, 3, stride=2)                                   # 16x16 -> 8x8
    seg = n.conv(x, 8, 5, 1, act=None)
    up = n.node("Resize", [seg, "", n.const(np.array([1, 1, 2, 2], np.float32), "scales")],
                mode="linear", coordinate_transformation_mode=ctm)
    sm = n.node("Softmax", [up], axis=1)                                 # over the classes
    outs = []
    for k, stride in enumerate((1, 2)):
        f = n.conv(x, 8, 8, 3, stride=stride) if stride > 1 else x
        hw = (8 // stride) ** 2
        det = n.node("Sigmoid", [n.conv(f, 8, 12, 1, act=None)])        # 2 anchors x 6
        r = n.node("Reshape", [det, n.const(np.array([1, 2, 6, hw], np.int64), "shape")])
        t = n.node("Transpose", [r], perm=[0, 1, 3, 2])
        outs.append(n.node("Reshape", [t, n.const(np.array([1, 2 * hw, 6], np.int64),
                                                   "shape")]))
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
