"""IR passes one by one, the partitioner, ``bamboo inspect`` and the IR switches."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
from bamboo.arch.errors import BambooError
from bamboo.compiler import ir, passes
from bamboo.compiler.cli_inspect import add_inspect_parser, compile_model
from bamboo.compiler.errors import IRError
from bamboo.compiler.inspect import render, summary
from bamboo.compiler.onnx_import import import_onnx
from bamboo.compiler.partition import CPU, FABRIC, find_squeeze_excite, partition
from test_frontend import ROOT, _Net, convnet, qdq, se_gemm, senet


@pytest.fixture(scope="module")
def se_graph():
    return import_onnx(qdq(senet(), (1, 3, 8, 8), "senet"))


@pytest.fixture(scope="module")
def conv_graph():
    return import_onnx(qdq(convnet(), (1, 3, 16, 16), "convnet"))


def test_channel_shuffle_becomes_one_op(se_graph):
    before = [n.op for n in se_graph.nodes]
    assert before.count("transpose") >= 3
    g = passes.recognize_channel_shuffle(se_graph)
    ops = [n.op for n in g.nodes]
    assert ops.count("shuffle") == 1 and "transpose" not in ops
    (sh,) = [n for n in g.nodes if n.op == "shuffle"]
    assert sh.attrs["groups"] == 2
    ir.verify(g)


def test_fuse_activation_folds_luts_into_convs(conv_graph):
    g = passes.fuse_activation(conv_graph)
    luts = [n for n in conv_graph.nodes if n.op == "lut"]
    assert luts and not [n for n in g.nodes if n.op == "lut"]
    fused = [n for n in g.nodes if n.op == "conv" and n.attrs.get("lut") is not None]
    assert {n.attrs["lut_fn"] for n in fused} == {"LeakyRelu", "Sigmoid"}
    assert all(n.fused for n in fused)
    ir.verify(g)


def test_fuse_clamp_narrows_the_requantizer():
    n = _Net(4)
    # Symmetric int8 activations keep ReLU as a clamp at the zero point.
    y = n.conv("x", 3, 4, 3, act="relu")
    import ortutil

    fm = n.model((1, 3, 6, 6), [y])
    m = ortutil.quantize_qdq(
        fm,
        [
            {"x": np.random.default_rng(0).uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)}
            for _ in range(2)
        ],
        activation_type="int8",
    )
    g = passes.fuse_activation(import_onnx(m))
    (conv,) = [n for n in g.nodes if n.op == "conv"]
    zp = g.tensors[conv.outputs[0]].q.zp
    assert conv.attrs["rq"].qmin >= zp
    from bamboo.compiler import executor

    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 6, 6)).astype(np.float32)
    (ref,) = ortutil.run(m, {"x": x})
    (out,) = executor.run(g, {"x": x})
    assert np.array_equal(out, ref)


def test_fold_views_and_cancel_transposes(conv_graph):
    g = passes.cancel_transposes(passes.fold_views(conv_graph))
    ir.verify(g)
    assert sum(n.op == "view" for n in g.nodes) <= sum(n.op == "view" for n in conv_graph.nodes)


def test_squeeze_excite_on_cpu_and_option(se_graph):
    g = passes.compile_graph(se_graph)
    se = find_squeeze_excite(g)
    assert len(se) == 1
    inner = next(iter(se.values()))
    by = {n.name: n for n in g.nodes}
    assert all(by[k].target == CPU for k in inner if by[k].op != "view")
    assert all(
        n.target == FABRIC for n in g.nodes if n.op in ("conv", "mul") and n.name not in inner
    )
    g2 = passes.compile_graph(se_graph, fabric_options={"se_on_fabric": True})
    assert all(n.target == FABRIC for n in g2.nodes)
    assert len(summary(g2)["segments"]) == 1


def test_squeeze_excite_with_gemm():
    g = passes.compile_graph(import_onnx(qdq(se_gemm(), (1, 3, 8, 8), "se_gemm")))
    se = find_squeeze_excite(g)
    assert len(se) == 1
    by = {n.name: n for n in g.nodes}
    assert [by[k].op for k in reversed(se[next(iter(se))]) if by[k].op != "view"] == ["fc", "fc"]
    assert {n.op for n in g.nodes if n.target == CPU} == {"fc", "view"} or {
        n.op for n in g.nodes if n.target == CPU
    } == {"fc"}
    assert "transpose" not in {n.op for n in g.nodes}


def silu_senet(seed=3):
    """EfficientNet's squeeze-excite: GAP, 1x1 conv, SiLU (x * Sigmoid(x)), 1x1 conv,
    Sigmoid, channel Mul."""
    n = _Net(seed)
    x = n.conv("x", 3, 16, 3)
    g = n.node("GlobalAveragePool", [x])
    s1 = n.conv(g, 16, 4, 1, act=None)
    a = n.node("Mul", [s1, n.node("Sigmoid", [s1])])
    s2 = n.conv(a, 4, 16, 1, act=None)
    y = n.node("Mul", [x, n.node("Sigmoid", [s2])])
    return n.model((1, 3, 8, 8), [y])


def test_squeeze_excite_with_silu_inside_goes_to_cpu():
    from bamboo.compiler import executor
    from ortutil import run

    m = qdq(silu_senet(), (1, 3, 8, 8), "silu_senet")
    g = passes.compile_graph(import_onnx(m))
    se = find_squeeze_excite(g)
    assert len(se) == 1
    by = {n.name: n for n in g.nodes}
    inner = se[next(iter(se))]
    # The SiLU became one table in the reduce conv, the gate Sigmoid is in the expand conv.
    assert sorted(by[k].op for k in inner) == ["conv", "conv"]
    assert sorted(str(by[k].attrs.get("lut_fn")) for k in inner) == ["Sigmoid", "Sigmoid+Mul"]
    assert {n.name for n in g.nodes if n.target == CPU} == set(inner)
    assert [seg[0] for seg in summary(g)["segments"]] == [FABRIC, CPU, FABRIC]
    x = np.random.default_rng(4).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)
    assert np.array_equal(executor.run(g, {"x": x})[0], run(m, {"x": x})[0])


def silu_convnet(seed=5):
    """Conv -> SiLU as ``x * Sigmoid(x)`` -> Conv -> SiLU written ``Sigmoid(x) * x``."""
    n = _Net(seed)
    x = n.conv("x", 3, 8, 3, act=None)
    a = n.node("Mul", [x, n.node("Sigmoid", [x])])
    z = n.conv(a, 8, 8, 3, stride=2, act=None)
    return n.model((1, 3, 12, 12), [n.node("Mul", [n.node("Sigmoid", [z]), z])])


def hardswish_convnet(seed=6):
    """Conv -> HardSwish by parts, ``x * HardSigmoid(x)`` (as onnxruntime inlines it), twice;
    the second conv's output is also a graph output, so its table stays a separate node."""
    n = _Net(seed)
    x = n.conv("x", 3, 8, 3, act=None)
    a = n.node("Mul", [x, n.node("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)])
    z = n.conv(a, 8, 8, 1, act=None)
    y = n.node("Mul", [n.node("HardSigmoid", [z], alpha=1.0 / 6, beta=0.5), z])
    return n.model((1, 3, 10, 10), [y, z])


@pytest.mark.parametrize(
    "make, shape, fn, in_conv",
    [
        (silu_convnet, (1, 3, 12, 12), "Sigmoid+Mul", [True, True]),
        (hardswish_convnet, (1, 3, 10, 10), "HardSigmoid+Mul", [True, False]),
    ],
)
def test_fuse_unary_mul_makes_one_table_in_the_conv(make, shape, fn, in_conv):
    from bamboo.compiler import executor
    from ortutil import run

    m = qdq(make(), shape, make.__name__)
    g0 = import_onnx(m)
    assert [n.op for n in g0.nodes].count("mul") == 2  # the quantizer kept the Mul apart
    g1 = passes.fuse_unary_mul(g0)
    ir.verify(g1)
    assert not [n for n in g1.nodes if n.op == "mul"]
    luts = [n for n in g1.nodes if n.op == "lut"]
    assert [n.attrs["fn"] for n in luts] == [fn, fn]
    assert all(len(n.fused) == 1 for n in luts)
    g = passes.compile_graph(g0, verify=True)
    assert [n.op for n in g.nodes] == ["conv", "conv"] + ["lut"] * in_conv.count(False)
    convs = [n for n in g.nodes if n.op == "conv"]
    assert [n.attrs.get("lut_fn") for n in convs] == [fn if f else None for f in in_conv]
    assert [n.attrs["fn"] for n in g.nodes if n.op == "lut"] == [fn] * in_conv.count(False)
    assert all(n.target == FABRIC for n in g.nodes)
    rng = np.random.default_rng(7)
    for _ in range(4):
        x = rng.uniform(-1.5, 1.5, shape).astype(np.float32)
        ours, theirs = executor.run(g, {"x": x}), run(m, {"x": x})
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert np.array_equal(a, b)


def test_fuse_unary_mul_table_is_every_code_through_both_nodes():
    from bamboo.runtime.elementwise import lut_apply, mul_channel

    g0 = import_onnx(qdq(silu_convnet(), (1, 3, 12, 12), "silu_convnet"))
    by = {n.name: n for n in g0.nodes}
    mul = next(n for n in g0.nodes if n.op == "mul")
    sig = next(by[k] for k in by if by[k].op == "lut" and by[k].outputs[0] in mul.inputs)
    t, s, y = (g0.tensors[k] for k in (sig.inputs[0], sig.outputs[0], mul.outputs[0]))
    codes = np.arange(256, dtype=np.uint8)
    want = mul_channel(
        codes,
        np.float32(t.q.scale),
        t.q.zp,
        lut_apply(codes, sig.attrs["table"]),
        np.float32(s.q.scale),
        s.q.zp,
        np.float32(y.q.scale),
        y.q.zp,
    )
    (new,) = [n for n in passes.fuse_unary_mul(g0).nodes if n.name == mul.name]
    assert new.op == "lut" and new.inputs == (sig.inputs[0],)
    assert np.array_equal(new.attrs["table"], want)
    # The Sigmoid's own output rounding counts: a SiLU table measured in float from t to y
    # (what an unquantized x * Sigmoid(x) island gives) is a different table.
    from bamboo.compiler.lut import build_lut

    silu = build_lut("SiLU", np.float32(t.q.scale), t.q.zp, np.float32(y.q.scale), y.q.zp)
    assert np.count_nonzero(silu != new.attrs["table"]) > 0


def test_fuse_unary_mul_keeps_a_table_with_other_readers():
    n = _Net(8)
    x = n.conv("x", 3, 8, 3, act=None)
    s = n.node("Sigmoid", [x])
    y = n.node("Mul", [x, s])
    m = qdq(n.model((1, 3, 8, 8), [y, s]), (1, 3, 8, 8), "silu_shared_sigmoid")
    g0 = import_onnx(m)
    assert passes.fuse_unary_mul(g0) is g0
    g = passes.compile_graph(g0)
    assert [n.op for n in g.nodes].count("mul") == 1


def test_fc_and_softmax_on_cpu(conv_graph):
    g = passes.compile_graph(conv_graph)
    t = {n.op: n.target for n in g.nodes}
    assert t["fc"] == CPU and t["softmax"] == CPU and t["conv"] == FABRIC
    s = summary(g)
    # fabric segment, then the CPU tail: one crossing in, two out (FC input, pooled map output)
    assert [seg[0] for seg in s["segments"]] == [FABRIC, CPU]
    assert s["bytes_per_frame"] == 16 * 16 * 3 + 16 + 16 * 4 * 4


def test_partition_schedule_keeps_topological_order(se_graph):
    g = partition(passes.recognize_channel_shuffle(se_graph))
    ir.verify(g)


def test_approx_leaky_shift_is_opt_in(conv_graph):
    exact = passes.compile_graph(conv_graph)
    assert not any(n.attrs.get("approx") for n in exact.nodes)
    approx = passes.compile_graph(conv_graph, approx=("leaky-shift",))
    (n,) = [n for n in approx.nodes if n.attrs.get("approx") == "leaky-shift"]
    assert 0 <= n.attrs["approx_wrong_codes"] <= 256
    assert "approx leaky-shift" in render(approx)


def test_verify_catches_broken_ir(conv_graph):
    bad = conv_graph.replace(nodes=tuple(reversed(conv_graph.nodes)))
    with pytest.raises(IRError, match="before anything writes it"):
        ir.verify(bad)
    with pytest.raises(IRError, match="unknown op"):
        ir.Node("n", "frobnicate", (), ())


def test_node_params_are_immutable(conv_graph):
    conv = conv_graph.nodes[0]
    with pytest.raises(ValueError):
        conv.attrs["w"][0, 0, 0, 0] = 1
    with pytest.raises(TypeError):
        conv.attrs["w"] = None


def test_dump_and_verify_switches(conv_graph, monkeypatch, capsys):
    monkeypatch.setenv("BAMBOO_DUMP_IR", "1")
    monkeypatch.setenv("BAMBOO_VERIFY_IR", "1")
    passes.compile_graph(conv_graph)
    err = capsys.readouterr().err
    for name, _ in passes.pipeline():
        assert f"after {name}" in err


def test_inspect_table(tmp_path, capsys):
    path = tmp_path / "se.onnx"
    path.write_bytes(qdq(senet(), (1, 3, 8, 8), "senet").SerializeToString())
    parser = argparse.ArgumentParser()
    add_inspect_parser(parser.add_subparsers())
    args = parser.parse_args(["inspect", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for word in (
        "shuffle",
        "squeeze-excite",
        "segments:",
        "transitions:",
        "bytes crossing PS/PL per frame",
        "HardSwish",
    ):
        assert word in out


def test_inspect_errors_are_bambooerrors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(BambooError):
        compile_model(str(bad))


def test_cli_prints_one_line(tmp_path):
    from bamboo import cli

    if "inspect" not in cli.build_parser().format_help():
        pytest.skip("bamboo inspect is not wired into bamboo/cli.py yet")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    r = subprocess.run(
        [sys.executable, "-m", "bamboo", "inspect", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
