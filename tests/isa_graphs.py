"""Single-layer IR graphs and the artifact runner shared by the back-end and ISA-simulator tests.

Graphs are built directly in the IR (random int8 weights, int32 bias, per-channel
requantizers), so each test pins one op on the fabric; :func:`run_both` runs the
reference executor (``compiler.executor.run``, raw codes) and the compiled artifact on
the instruction simulator, CPU steps through ``executor.run_node``.
"""

import numpy as np
import pytest
from bamboo.compiler import executor, ir
from bamboo.compiler.backend import artifact_writer, lower_graph
from bamboo.compiler.partition import partition
from bamboo.runtime.requant import Requant, conv_scale, pool_scale
from bamboo.sim.isa import run_artifact

__all__ = [
    "zoo_graph",
    "add_graph",
    "check_bounds",
    "conv_graph",
    "fc_graph",
    "gap_graph",
    "maxpool_graph",
    "mul_graph",
    "random_feeds",
    "run_both",
    "sim_outputs",
]


def _t(name, shape, scale, zp, dtype="uint8", layout=ir.NHWC):
    return ir.Tensor(name, tuple(shape), ir.QType(dtype, float(np.float32(scale)), int(zp)), layout)


def _graph(nodes, tensors, inputs, outputs, name="g"):
    def spec(t):
        shape = ir.logical_shape(tensors[t])
        return ir.IOSpec(t, t, shape, False)

    g = ir.Graph(
        tuple(nodes),
        {t.name: t for t in tensors.values()},
        tuple(spec(t) for t in inputs),
        tuple(spec(t) for t in outputs),
        name,
    )
    return ir.verify(g)


def _types(signed):
    """``(dtype, offset)``: codes drawn in 0..255 minus the offset."""
    return ("int8", 128) if signed else ("uint8", 0)


def conv_graph(
    h,
    w,
    cin,
    cout,
    k=3,
    stride=1,
    pad=None,
    group=1,
    seed=0,
    dilation=1,
    lut=False,
    clamp=None,
    signed=False,
    pads=None,
):
    """One conv; ``pads`` (top, left, bottom, right) overrides the symmetric ``pad``."""
    rng = np.random.default_rng(seed)
    dt, off = _types(signed)
    pad = k // 2 if pad is None else pad
    pads = (pad,) * 4 if pads is None else tuple(pads)
    ho = (h + pads[0] + pads[2] - dilation * (k - 1) - 1) // stride + 1
    wo = (w + pads[1] + pads[3] - dilation * (k - 1) - 1) // stride + 1
    x = _t("x", (1, h, w, cin), 0.02, int(rng.integers(0, 256)) - off, dt)
    y = _t("y", (1, ho, wo, cout), 0.05, int(rng.integers(0, 256)) - off, dt)
    wt = rng.integers(-127, 128, (cout, k, k, cin // group)).astype(np.int8)
    s_w = rng.uniform(0.002, 0.01, cout).astype(np.float32)
    bias = rng.integers(-3000, 3000, cout).astype(np.int32)
    # With a LUT the requantizer's zero point differs from the output's (the table maps).
    rq_zp = (y.q.zp + off + 77) % 256 - off if lut else y.q.zp
    rq = Requant.from_scale(
        conv_scale(x.q.scale, s_w, y.q.scale),
        rq_zp,
        dt,
        None if clamp is None else (clamp[0] - off, clamp[1] - off),
    )
    attrs = {
        "w": wt,
        "w_zp": np.zeros(cout, np.int8),
        "bias": bias,
        "rq": rq,
        "lut": rng.integers(0, 256, 256).astype(np.uint8).view(dt) if lut else None,
        "kernel": (k, k),
        "stride": (stride, stride),
        "dilation": (dilation, dilation),
        "pads": pads,
        "group": group,
    }
    node = ir.Node("conv", "conv", ("x",), ("y",), attrs)
    return _graph([node], {"x": x, "y": y}, ["x"], ["y"])


def fc_graph(k, o, seed=0):
    rng = np.random.default_rng(seed)
    x = _t("x", (1, k), 0.02, 100, layout=ir.ND)
    y = _t("y", (1, o), 0.05, 120, layout=ir.ND)
    s_w = rng.uniform(0.002, 0.01, o).astype(np.float32)
    attrs = {
        "w": rng.integers(-127, 128, (o, k)).astype(np.int8),
        "w_zp": np.zeros(o, np.int8),
        "bias": rng.integers(-3000, 3000, o).astype(np.int32),
        "rq": Requant.from_scale(conv_scale(x.q.scale, s_w, y.q.scale), y.q.zp),
        "lut": None,
    }
    return _graph([ir.Node("fc", "fc", ("x",), ("y",), attrs)], {"x": x, "y": y}, ["x"], ["y"])


def add_graph(h, w, c, seed=0, signed=False):
    rng = np.random.default_rng(seed)
    dt, off = _types(signed)
    a = _t("a", (1, h, w, c), rng.uniform(0.01, 0.05), rng.integers(0, 256) - off, dt)
    b = _t("b", (1, h, w, c), rng.uniform(0.01, 0.05), rng.integers(0, 256) - off, dt)
    y = _t("y", (1, h, w, c), rng.uniform(0.02, 0.08), rng.integers(0, 256) - off, dt)
    node = ir.Node("add", "add", ("a", "b"), ("y",), {})
    return _graph([node], {"a": a, "b": b, "y": y}, ["a", "b"], ["y"])


def mul_graph(h, w, c, seed=0, elementwise=False):
    rng = np.random.default_rng(seed)
    a = _t("a", (1, h, w, c), 0.03, rng.integers(0, 256))
    s = _t("s", (1, h, w, c) if elementwise else (1, 1, 1, c), 0.004, rng.integers(0, 256))
    y = _t("y", (1, h, w, c), 0.02, rng.integers(0, 256))
    node = ir.Node("mul", "mul", ("a", "s"), ("y",), {})
    return _graph([node], {"a": a, "s": s, "y": y}, ["a", "s"], ["y"])


def maxpool_graph(h, w, c, k=3, stride=2, pad=1, signed=False):
    dt, _ = _types(signed)
    x = _t("x", (1, h, w, c), 0.02, 7, dt)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    y = _t("y", (1, ho, wo, c), 0.02, 7, dt)
    node = ir.Node(
        "pool",
        "maxpool",
        ("x",),
        ("y",),
        {
            "kernel": (k, k),
            "stride": (stride, stride),
            "pads": (pad,) * 4,
            "dilation": (1, 1),
            "ceil_mode": False,
        },
    )
    return _graph([node], {"x": x, "y": y}, ["x"], ["y"])


def gap_graph(h, w, c, signed=False):
    dt, off = _types(signed)
    x = _t("x", (1, h, w, c), 0.02, 90 - off, dt)
    y = _t("y", (1, 1, 1, c), 0.015, 80 - off, dt)
    rq = Requant.from_scale(pool_scale(x.q.scale, y.q.scale, h * w), y.q.zp, dt)
    node = ir.Node("gap", "gap", ("x",), ("y",), {"rq": rq})
    return _graph([node], {"x": x, "y": y}, ["x"], ["y"])


def resize_graph(h, w, c, fh, fw, signed=False):
    """Nearest resize by integer factors (a pixel repeat: the fabric's data movement)."""
    dt, _ = _types(signed)
    x = _t("x", (1, h, w, c), 0.02, 7, dt)
    y = _t("y", (1, h * fh, w * fw, c), 0.02, 7, dt)
    node = ir.Node(
        "up",
        "resize",
        ("x",),
        ("y",),
        {
            "mode": "nearest",
            "rows": np.arange(h * fh) // fh,
            "cols": np.arange(w * fw) // fw,
            "scale": (fh, fw),
            "requant": None,
        },
    )
    return _graph([node], {"x": x, "y": y}, ["x"], ["y"])


def random_feeds(graph, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in graph.inputs:
        t = graph.tensors[spec.tensor]
        lo, hi = t.q.qmin, t.q.qmax
        feeds[spec.onnx_name] = rng.integers(lo, hi + 1, spec.onnx_shape).astype(t.q.np_dtype)
    return feeds


def sim_outputs(graph, blob, feeds, config):
    """Outputs (ONNX layout, codes) of the artifact ``blob`` on the simulator."""
    values = {}
    for spec in graph.inputs:
        t = graph.tensors[spec.tensor]
        x = np.asarray(feeds[spec.onnx_name]).astype(t.q.np_dtype)
        values[spec.tensor] = (
            np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if t.layout == ir.NHWC else x
        )
    by_name = {n.name: n for n in graph.nodes}

    def cpu(nodes, vals):
        for name in nodes:
            node = by_name[name]
            vals[node.outputs[0]] = executor.run_node(node, vals, graph)

    values, machine = run_artifact(blob, values, config, cpu)
    outs = []
    for spec in graph.outputs:
        t = graph.tensors[spec.tensor]
        y = values[spec.tensor]
        outs.append(np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if t.layout == ir.NHWC else y)
    return outs, machine


def run_both(graph, config, feeds=None, partitioned=False, column_taps=False, **popts):
    """``(reference outputs, simulator outputs, machine, compiled)`` for ``graph``.

    ``column_taps`` off by default: a single layer keeps its own shape on the fabric
    (tests/compiler/test_stem.py turns it on; the zoo tests compile as users do)."""
    g = graph if partitioned else partition(graph, **popts)
    feeds = random_feeds(g) if feeds is None else feeds
    ref = executor.run(g, feeds, raw=True)
    compiled = lower_graph(g, config, column_taps=column_taps)
    blob = artifact_writer.build(compiled)
    got, machine = sim_outputs(compiled.graph, blob, feeds, config)
    return ref, got, machine, compiled


def check_bounds(word, config):
    """Assert that one instruction stays inside every on-chip buffer of ``config``.

    Written from the ISA tables independently of the compiler and the simulator: the
    last word each buffer access touches, from the fields alone.
    """
    from bamboo.arch import isa
    from bamboo.arch.layout import PARAM_WORDS_USED

    c = config
    f = isa.decode(word)
    op = f["opcode"]
    depth = {
        isa.Buffer.INP: c.input_buffer_depth,
        isa.Buffer.WGT: c.weight_buffer_depth,
        isa.Buffer.PARAM: PARAM_WORDS_USED,
        isa.Buffer.LUT: c.lut_slots,
    }
    if op == isa.Opcode.LOAD:
        n = (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * (
            f["pad_left"] + f["x_size"] + f["pad_right"]
        )
        assert f["y_size"] and f["x_size"] and f["sram_addr"] + n <= depth[f["buffer"]], f
    elif op == isa.Opcode.STORE:
        assert f["sram_addr"] + f["y_size"] * f["x_size"] <= c.output_buffer_depth, f
        assert f["lane"] < c.cols // c.rows, f
    elif op == isa.Opcode.CONV:
        p = f["out_h"] * f["out_w"]
        assert p <= c.acc_buffer_depth and f["out_addr"] + p <= c.output_buffer_depth, f
        dw = f["mode"] == isa.ConvMode.DEPTHWISE
        # depthwise: ceil(kernel_h / G) WGT words; every block of its channels read
        taps = (
            c.depthwise_passes(f["kernel_h"], f["kernel_w"])
            if dw
            else f["kernel_h"] * f["kernel_w"] * f["in_blocks"]
        )
        blocks = -(-c.depthwise_channels // c.rows) if dw else f["in_blocks"]
        assert f["wgt_addr"] + taps <= c.weight_buffer_depth, f
        assert f["param_addr"] < PARAM_WORDS_USED, f
        last = (
            f["inp_addr"]
            + (blocks - 1) * f["inp_block_stride"]
            + ((f["out_h"] - 1) * f["stride_h"] + (f["kernel_h"] - 1) * f["dilation_h"]) * f["in_w"]
            + (f["out_w"] - 1) * f["stride_w"]
            + (f["kernel_w"] - 1) * f["dilation_w"]
        )
        assert last < c.input_buffer_depth, f
        if f["act"] == isa.Activation.LUT:
            assert f["lut_slot"] < c.lut_slots, f
    elif op == isa.Opcode.VEC and f["out_h"] and f["out_w"]:
        p = f["out_h"] * f["out_w"]
        assert f["out_addr"] + p <= c.output_buffer_depth, f
        last = (
            f["src_a"]
            + ((f["out_h"] - 1) * f["stride_h"] + f["kernel_h"] - 1) * f["in_w"]
            + (f["out_w"] - 1) * f["stride_w"]
            + f["kernel_w"]
            - 1
        )
        assert last < c.input_buffer_depth and f["src_b"] + p <= c.input_buffer_depth, f
        assert f["param_addr"] < PARAM_WORDS_USED, f


def zoo_graph(name):
    """``(onnx path, compiled IR graph)`` of ``digits`` or a zoo model at its test size."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch", reason="the model zoo needs torch")
    from bamboo.compiler.onnx_import import import_onnx
    from bamboo.compiler.passes import compile_graph
    from bamboo.models import digits, zoo

    if name == "digits":
        path = digits.build_quantized()
    else:
        e = zoo.ZOO[name]
        path = zoo.build_quantized(name, e.test_resolution, e.test_width)
    return path, compile_graph(import_onnx(onnx.load(str(path))))
