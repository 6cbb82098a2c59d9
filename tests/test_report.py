"""``bamboo.report``: op kinds, the per-layer cycle table, the processor-side time, the PNGs.

On MobileNetV2 at test size compiled for ``ultra96``: the layer kinds are checked against
the ONNX graph, the table against the cycle model's totals, the PS/PL bytes against what
the runtime's session moves, and the PNGs by their headers.
"""

import functools
import struct

import numpy as np
import pytest
from bamboo.arch import preset
from bamboo.arch.timing import BOARDS, HOSTS, HostTiming
from isa_graphs import zoo_graph

MODEL = "mobilenet_v2"
CLOCK = 250.0


@functools.lru_cache(maxsize=None)
def _compiled():
    from bamboo.compiler.backend import artifact_writer, lower_graph
    from bamboo.sim import cycles

    path, graph = zoo_graph(MODEL)
    compiled = lower_graph(graph, preset("ultra96"))
    report = cycles.model_compiled(compiled, BOARDS["ultra96"], CLOCK)
    return path, compiled, artifact_writer.build(compiled), report


@pytest.fixture(scope="module")
def model():
    return _compiled()


def _onnx_convs(path):
    """``(depthwise, pointwise, other)`` counts of Conv nodes in the ONNX model itself."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    counts = [0, 0, 0]
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        w = n.input[1]
        while w not in weights:  # QDQ: the weight goes through DequantizeLinear
            w = producers[w].input[0]
        cout, cg, kh, kw = weights[w].shape
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if cg == 1 and group > 1:
            counts[0] += 1
        elif kh == kw == 1:
            counts[1] += 1
        else:
            counts[2] += 1
    return tuple(counts)


def test_layer_kinds_match_the_onnx_convolutions(model):
    from bamboo import report

    path, compiled, _, rep = model
    rows = report.layer_rows(compiled, rep)
    kinds = [r.kind for r in rows]
    assert (kinds.count("depthwise"), kinds.count("pointwise"), kinds.count("conv")) == _onnx_convs(
        path
    )
    assert "fc" not in kinds  # the classifier runs on the CPU: no fabric layer
    assert {r.kind for r in rows if r.macs == 0} <= {"other"}


def test_rows_add_up_to_the_cycle_report(model):
    from bamboo.compiler.inspect import macs

    from bamboo import report

    _, compiled, _, rep = model
    rows = report.layer_rows(compiled, rep)
    cfg = compiled.config
    assert sum(r.cycles for r in rows) == rep.total
    assert sum(r.bytes for r in rows) == rep.bytes == compiled.stats["dram_bytes"]
    g = compiled.graph
    assert sum(r.macs for r in rows) == sum(
        macs(g, n) for n in g.nodes if n.op == "conv" and n.target == "fabric"
    )
    for r in rows:
        assert r.macs <= r.array_macs  # the array never does fewer MACs than the layer
        assert 0.0 <= r.utilization <= 1.0
    summary = report.kind_summary(rows, cfg)
    assert abs(sum(v["share"] for v in summary.values()) - 1.0) < 1e-9
    dw = [r for r in rows if r.kind == "depthwise"]
    assert summary["depthwise"]["utilization"] == pytest.approx(
        sum(r.macs for r in dw) / (cfg.macs_per_cycle * sum(r.cycles for r in dw))
    )


def test_cycle_table_lists_every_layer_and_the_total(model):
    from bamboo import report

    _, compiled, _, rep = model
    rows = report.layer_rows(compiled, rep)
    text = report.render_table(rows, rep)
    lines = text.splitlines()
    assert len(lines) == len(rows) + 2
    assert lines[-1].split()[:2] == ["total", str(rep.total)]
    for r, line in zip(rows, lines[1:-1]):
        assert line.split()[-7:-5] == [r.kind, str(r.cycles)]
    top = report.render_table(rows, rep, top=3).splitlines()
    assert [int(line.split()[-6]) for line in top[1:-1]] == sorted(
        (r.cycles for r in rows), reverse=True
    )[:3]


def test_host_time_counts_what_the_session_moves(model):
    """The PS/PL bytes of the processor-side model equal what the runtime copies."""
    from bamboo.runtime.session import Session

    from bamboo import report

    _, _, blob, _ = model
    host = HOSTS["ultra96"]
    t = report.host_time(blob, host, repeats=1)
    assert t["cpu_nodes"] == {"column_taps": 1, "fc": 1} and t["fabric_steps"] == 1
    assert t["workstation_cpu_s"] > 0 and set(t["cpu_node_s"]) == {"column_taps", "fc"}
    assert t["seconds"] == pytest.approx(
        host.seconds(t["workstation_cpu_s"], 1, t["exchange_bytes"])
    )
    with Session(blob, backend="isa") as sess:
        (arg,) = sess.get_inputs()
        sess.run(None, np.zeros(arg.shape, np.float32))
        st = sess.stats()
    assert t["exchange_bytes"] == st["ps_to_pl"]["bytes"] + st["pl_to_ps"]["bytes"]


def test_host_timing_checks_its_arguments():
    with pytest.raises(ValueError, match="slowdown must be positive, not 0"):
        HostTiming("x", slowdown=0, step_us=1.0, copy_bytes_per_us=1.0)
    with pytest.raises(ValueError, match="step_us must not be negative, not -1"):
        HostTiming("x", slowdown=1.0, step_us=-1, copy_bytes_per_us=1.0)
    h = HostTiming("x", slowdown=2.0, step_us=10.0, copy_bytes_per_us=100.0)
    assert h.seconds(1e-3, 3, 1000) == pytest.approx(2e-3 + 30e-6 + 10e-6)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_pngs_are_written(model, tmp_path):
    pytest.importorskip("matplotlib")
    from bamboo import report

    _, compiled, _, rep = model
    rows = report.layer_rows(compiled, rep)
    cfg = compiled.config
    u = report.write_utilization_png(rows, cfg, tmp_path / "u.png", "utilization")
    r = report.write_roofline_png(
        rows, cfg, BOARDS["ultra96"], CLOCK, tmp_path / "r.png", "roofline"
    )
    w, h = _png_size(u)
    assert h == 400 and w >= 600
    assert _png_size(r) == (650, 450)
    assert u.stat().st_size > 5000 and r.stat().st_size > 5000
