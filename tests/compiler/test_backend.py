"""The back end: capability check, weight layouts, memory plan, tiling bounds, tokens, CLI.

The token check is independent of the compiler: it decodes the program, runs the load,
compute and store queues concurrently with random instruction durations (a token pop
waits for the matching push), and asserts that every buffer word and DRAM byte is read
only after the instruction writing it ended and overwritten only after its readers ended.
"""

import numpy as np
import pytest
from bamboo.arch import isa, preset
from bamboo.arch.layout import PARAM_WORDS_USED
from bamboo.compiler import ir
from bamboo.compiler.backend import compile_artifact, fabric_reason, lower_graph
from bamboo.compiler.backend.memplan import check_plan
from bamboo.compiler.backend.pack import dense_weights, depthwise_weights, param_words
from bamboo.compiler.partition import partition
from isa_graphs import check_bounds, conv_graph, gap_graph, zoo_graph

CONFIGS = ["tiny", "ultra96"]


# Layouts ------------------------------------------------------------------------------------


def test_wgt_word_layout_matches_docs():
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (10, 3, 3, 7)).astype(np.int8)
    R, C = 4, 8
    words = dense_weights(w, R, C).view(np.int8)  # (ob, ib, kh, kw, C*R)
    for ob, blk, ky, kx, c, r in [(0, 0, 0, 0, 0, 0), (1, 1, 2, 1, 1, 2), (0, 1, 1, 2, 7, 2)]:
        o, i = ob * C + c, blk * R + r
        want = w[o, ky, kx, i] if o < 10 and i < 7 else 0
        assert words[ob, blk, ky, kx, c * R + r] == want
    d = rng.integers(-127, 128, (6, 3, 3, 1)).astype(np.int8)
    dwords = depthwise_weights(d, R, C).view(np.int8).reshape(2, 3, C, R)
    assert dwords[1, 2, 1, 0] == d[5, 2, 0, 0] and dwords[1, 2, 1, 2] == d[5, 2, 2, 0]
    assert (dwords[:, :, :, 3] == 0).all() and (dwords[:, :, R:] == 0).all()


@pytest.mark.parametrize(
    "channels,groups,step,kw", [(16, 2, 2, 3), (8, 2, 1, 4), (8, 1, 1, 5), (16, 4, 2, 2)]
)
def test_depthwise_word_layout_groups_and_passes(channels, groups, step, kw):
    """Channel ``c`` of group ``c // N``, kernel row ``ky``: WGT word ``ky // G`` of the
    group, column ``(c % N) * step``, row ``(ky % G) * B / G + kx``; all else 0."""
    rng = np.random.default_rng(channels + groups + kw)
    R, C, kh = 8, 32, 5
    d = rng.integers(-127, 128, (21, kh, kw, 1)).astype(np.int8)
    words = depthwise_weights(d, R, C, step, channels, groups).view(np.int8)
    nb, passes = -(-21 // channels), -(-kh // groups)
    assert words.shape == (nb, passes, C * R)
    want = np.zeros((nb, passes, C, R), np.int8)
    for c in range(21):
        for ky in range(kh):
            want[
                c // channels,
                ky // groups,
                (c % channels) * step,
                (ky % groups) * (R // groups) : (ky % groups) * (R // groups) + kw,
            ] = d[c, ky, :, 0]
    assert np.array_equal(words.reshape(want.shape), want)
    with pytest.raises(ValueError):
        depthwise_weights(d, R, C, step, channels, groups=R)  # kw wider than a group


def test_param_word_layout():
    words = param_words(np.array([-5, 7]), np.array([0x800001, 0xFFFFFF]), np.array([-40, 300]), 4)
    lanes = words.view("<u8").reshape(-1)
    assert lanes[0] == (2**32 - 5) | (0x800001 << 32) | ((-40 & 0xFF) << 56)
    assert lanes[1] == 7 | (0xFFFFFF << 32) | (127 << 56)  # e clamped to 127


# Capability check -----------------------------------------------------------------------------


def test_unlowerable_nodes_go_to_cpu_with_a_reason():
    cfg = preset("tiny")
    g = partition(gap_graph(16, 513, 4))  # a row past half of INP (512 words)
    assert (
        fabric_reason(g.nodes[0], g, cfg)
        == "global pool: a row of 513 pixels does not fit half the input buffer"
    )
    compiled = lower_graph(g, cfg)
    node = compiled.graph.nodes[0]
    assert node.target == "cpu" and node.reason.startswith("back end: global pool: a row of 513")
    assert compiled.words == [] and compiled.steps[0].target == "cpu"
    grouped = partition(conv_graph(8, 8, 8, 8, group=2))
    assert fabric_reason(grouped.nodes[0], grouped, cfg) is None  # as dense, zero blocks


def test_depthwise_dilated_in_w_runs_widened_on_the_fabric():
    """dilation_w > 1 (the engine steps one column) becomes a zero-stuffed kernel: the
    model's taps every dilation_w-th column, the MAC count still the model's. A kernel
    that cannot widen within the ISA (15 columns) stays on the CPU with the reason."""
    from bamboo.compiler.inspect import macs

    cfg = preset("ultra96")
    g = partition(conv_graph(14, 13, 20, 20, k=5, dilation=2, pad=4, group=20))
    assert fabric_reason(g.nodes[0], g, cfg) == "depthwise needs dilation_w 1"
    node = lower_graph(g, cfg).graph.nodes[0]
    w, w0 = node.attrs["w"], g.nodes[0].attrs["w"]
    assert node.target == "fabric" and node.attrs["dilation"] == (2, 1)
    assert w.shape == (20, 5, 9, 1) and node.attrs["kernel"] == (5, 9)
    assert np.array_equal(w[:, :, ::2], w0) and not w[:, :, 1::2].any()
    assert macs(g, node) == macs(g, g.nodes[0]) == 14 * 13 * 20 * 25
    wide = partition(conv_graph(30, 30, 8, 8, k=5, dilation=4, pad=8, group=8))
    node = lower_graph(wide, cfg).graph.nodes[0]
    assert node.target == "cpu" and node.reason == "back end: depthwise needs dilation_w 1"
    assert node.attrs["w"].shape == (8, 5, 5, 1)


# Memory plan, bounds, tokens --------------------------------------------------------------------


def _model(name):
    return zoo_graph(name)[1]


def _accesses(f, c):
    """``[(space, lo, hi, is_write)]`` of one decoded instruction (word or byte ranges)."""
    op, out = f["opcode"], []
    if op == isa.Opcode.LOAD:
        eb = {0: c.rows, 1: c.rows * c.cols, 2: c.cols * 8, 3: 256}[f["buffer"]]
        n = (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * (
            f["pad_left"] + f["x_size"] + f["pad_right"]
        )
        name = ["inp", "wgt", "param", "lut"][f["buffer"]]
        out.append((name, f["sram_addr"], f["sram_addr"] + n, True))
        for y in range(f["y_size"]):
            a = f["dram_addr"] + y * f["x_stride"] * eb
            out.append(("dram", a, a + f["x_size"] * eb, False))
    elif op == isa.Opcode.STORE:
        out.append(("out", f["sram_addr"], f["sram_addr"] + f["y_size"] * f["x_size"], False))
        for y in range(f["y_size"]):
            a = f["dram_addr"] + y * f["x_stride"] * c.rows
            out.append(("dram", a, a + f["x_size"] * c.rows, True))
    elif op == isa.Opcode.CONV:
        dw = f["mode"] == isa.ConvMode.DEPTHWISE
        # depthwise: ceil(kernel_h / G) WGT words; every block of its channels read
        taps = (
            c.depthwise_passes(f["kernel_h"], f["kernel_w"])
            if dw
            else f["kernel_h"] * f["kernel_w"] * f["in_blocks"]
        )
        blocks = -(-c.depthwise_channels // c.rows) if dw else f["in_blocks"]
        last = (
            f["inp_addr"]
            + (blocks - 1) * f["inp_block_stride"]
            + ((f["out_h"] - 1) * f["stride_h"] + (f["kernel_h"] - 1) * f["dilation_h"]) * f["in_w"]
            + (f["out_w"] - 1) * f["stride_w"]
            + (f["kernel_w"] - 1) * f["dilation_w"]
        )
        out += [
            ("inp", f["inp_addr"], last + 1, False),
            ("wgt", f["wgt_addr"], f["wgt_addr"] + taps, False),
        ]
        if f["acc_emit"]:
            out += [
                ("param", f["param_addr"], f["param_addr"] + 1, False),
                ("out", f["out_addr"], f["out_addr"] + f["out_h"] * f["out_w"], True),
            ]
            if f["act"] == isa.Activation.LUT:
                out.append(("lut", f["lut_slot"], f["lut_slot"] + 1, False))
    elif op == isa.Opcode.VEC and f["out_h"] and f["out_w"]:
        p = f["out_h"] * f["out_w"]
        last = (
            f["src_a"]
            + ((f["out_h"] - 1) * f["stride_h"] + f["kernel_h"] - 1) * f["in_w"]
            + (f["out_w"] - 1) * f["stride_w"]
            + f["kernel_w"]
            - 1
        )
        nb = {isa.VecOp.ADD: p, isa.VecOp.MUL: p, isa.VecOp.MUL_CHANNEL: 1}.get(f["vop"], 0)
        out += [
            ("inp", f["src_a"], last + 1, False),
            ("inp", f["src_b"], f["src_b"] + nb, False),
            ("param", f["param_addr"], f["param_addr"] + 1, False),
            ("out", f["out_addr"], f["out_addr"] + p, True),
        ]
        if f["act"] == isa.Activation.LUT:
            out.append(("lut", f["lut_slot"], f["lut_slot"] + 1, False))
    return out


def race_check(words, config, footprint, seed):
    """Run the queues concurrently (random durations); assert no read/write race. Returns
    the makespan over the sum of durations (< 1 when queues overlap)."""
    rng = np.random.default_rng(seed)
    fifo = {k: [] for k in ("l2c", "c2l", "c2s", "s2c")}
    used = {k: 0 for k in fifo}
    pops = {
        "load": {"pop_next": "c2l"},
        "compute": {"pop_prev": "l2c", "pop_next": "s2c"},
        "store": {"pop_prev": "c2s"},
    }
    pushes = {
        "load": {"push_next": "l2c"},
        "compute": {"push_prev": "c2l", "push_next": "c2s"},
        "store": {"push_prev": "s2c"},
    }
    decoded = [isa.decode(w) for w in words]
    queues = {"load": [], "compute": [], "store": []}
    for i, f in enumerate(decoded):
        q = {isa.Opcode.LOAD: "load", isa.Opcode.STORE: "store"}.get(f["opcode"], "compute")
        queues[q].append(i)
    times, free, ptr = {}, {q: 0.0 for q in queues}, {q: 0 for q in queues}
    while any(ptr[q] < len(queues[q]) for q in queues):
        progressed = False
        for q, todo in queues.items():
            while ptr[q] < len(todo):
                i = todo[ptr[q]]
                f = decoded[i]
                need = [k for bit, k in pops[q].items() if f[bit]]
                if any(len(fifo[k]) <= used[k] for k in need):
                    break
                start = max([free[q]] + [fifo[k][used[k]] for k in need])
                for k in need:
                    used[k] += 1
                end = start + float(rng.integers(1, 20))
                for bit, k in pushes[q].items():
                    if f[bit]:
                        fifo[k].append(end)
                times[i], free[q], ptr[q] = (start, end), end, ptr[q] + 1
                progressed = True
        assert progressed, "the queues deadlock"
    assert all(len(fifo[k]) == used[k] for k in fifo), "tokens left over"
    sizes = {
        "inp": config.input_buffer_depth,
        "wgt": config.weight_buffer_depth,
        "param": PARAM_WORDS_USED,
        "lut": config.lut_slots,
        "out": config.output_buffer_depth,
        "dram": footprint,
    }
    wend = {k: np.full(n, -1.0) for k, n in sizes.items()}
    rend = {k: np.full(n, -1.0) for k, n in sizes.items()}
    for i, f in enumerate(decoded):
        start, end = times[i]
        for space, lo, hi, write in _accesses(f, config):
            assert start >= wend[space][lo:hi].max(initial=-1), f"RAW race on {space} at {i}"
            if write:
                assert start >= rend[space][lo:hi].max(initial=-1), f"WAR race on {space} at {i}"
                wend[space][lo:hi] = end
            else:
                rend[space][lo:hi] = np.maximum(rend[space][lo:hi], end)
    finish = max(t[1] for t in times.values())
    return finish / sum(t[1] - t[0] for t in times.values())


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("model", ["digits", "mobilenet_v2"])
def test_model_plan_bounds_and_tokens(model, config):
    cfg = preset(config)
    compiled = lower_graph(_model(model), cfg)
    plan = check_plan(compiled.plan)
    acts = [b for b in plan.buffers.values() if b.region == "activations"]
    assert sum(b.size for b in acts) > plan.regions["activations"][1], "no buffer was reused"
    for b in plan.buffers.values():
        assert b.offset % cfg.axi_data_bytes == 0
    for word in compiled.words:
        check_bounds(word, cfg)
    assert compiled.stats["footprint"] == plan.footprint
    for step in compiled.steps:
        if step.on_fabric:
            seg = compiled.words[step.insn_start : step.insn_start + step.insn_count]
            ratio = race_check(seg, cfg, plan.footprint, seed=len(seg))
            assert ratio < 0.9  # loads, compute and stores overlap


def test_conv_loop_order_overlaps_and_tiles():
    cfg = preset("tiny")
    g = partition(conv_graph(40, 37, 24, 40, seed=3))
    compiled = lower_graph(g, cfg)
    convs = [isa.decode(w) for w in compiled.words if w & 0xF == isa.Opcode.CONV]
    assert len(convs) > 1 and max(f["out_h"] * f["out_w"] for f in convs) <= 128
    assert race_check(compiled.words, cfg, compiled.plan.footprint, 0) < 0.8


def test_compile_cli(tmp_path):
    import argparse

    from bamboo.arch.artifact import read_artifact
    from bamboo.compiler.cli_compile import add_compile_parser

    onnx = pytest.importorskip("onnx")
    import ortutil
    from test_frontend import convnet, qdq

    model = qdq(convnet(), (1, 3, 16, 16), "convnet")
    src = tmp_path / "convnet.onnx"
    onnx.save(model, str(src))
    parser = argparse.ArgumentParser()
    add_compile_parser(parser.add_subparsers())
    args = parser.parse_args(["compile", str(src), "--config", "tiny", "--quiet"])
    assert args.func(args) == 0
    a = read_artifact((tmp_path / "convnet.bmb").read_bytes(), config_id=preset("tiny").config_id)
    meta = a.metadata
    assert meta.steps and len(a.program) % isa.INSN_BYTES == 0
    assert a.ioquant.inputs[0].name == "x"
    del ortutil


def test_compile_artifact_is_deterministic():
    g = partition(conv_graph(8, 8, 6, 10))
    cfg = preset("ultra96")
    assert compile_artifact(g, cfg) == compile_artifact(g, cfg)
    assert isinstance(ir, object)


FRONTEND_NETS = {  # name: (builder name, input shape, partition options)
    "convnet": ("convnet", (1, 3, 16, 16), {}),
    "senet": ("senet", (1, 3, 8, 8), {}),
    "senet_se_on_fabric": ("senet", (1, 3, 8, 8), {"se_on_fabric": True}),
    "se_gemm_se_on_fabric": ("se_gemm", (1, 3, 8, 8), {"se_on_fabric": True}),
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("net", sorted(FRONTEND_NETS))
def test_frontend_nets_bit_exact(net, config):
    """Concat (with LUT), slice, squeeze-excite, LUT activations; unlowered nodes on the CPU."""
    pytest.importorskip("onnxruntime")
    import test_frontend
    from bamboo.compiler.onnx_import import import_onnx
    from bamboo.compiler.passes import compile_graph
    from isa_graphs import run_both

    builder, shape, opts = FRONTEND_NETS[net]
    model = test_frontend.qdq(getattr(test_frontend, builder)(), shape, builder)
    graph = compile_graph(import_onnx(model), fabric_options=opts)
    ref, got, _, compiled = run_both(graph, preset(config), partitioned=True)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    for n in compiled.graph.nodes:
        assert n.reason, n.name  # every placement says why


def _zoo_names():
    try:
        from bamboo.models.zoo import ZOO
    except ImportError:  # torch missing: zoo_graph skips each case with the reason
        return ["mobilenet_v2"]
    return sorted(ZOO)


@pytest.mark.parametrize("name", _zoo_names())
def test_every_zoo_model_compiles(name):
    """Every zoo model (test size) compiles for ultra96 into an artifact that loads back."""
    from bamboo.arch.artifact import read_artifact

    cfg = preset("ultra96")
    _, graph = zoo_graph(name)
    blob = compile_artifact(graph, cfg)
    art = read_artifact(blob, config_id=cfg.config_id)
    assert len(art.program) % isa.INSN_BYTES == 0 and len(art.program) > 0
