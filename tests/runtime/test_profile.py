"""``bamboo profile`` and ``bamboo.runtime.profiling``: rows, totals, table, JSON, PNG.

Cross-checks: the rows follow the artifact's schedule; the fabric MACs of every conv
layer equal what the instruction simulator counted executing it (``sim.isa.layer_stats``,
a separate implementation from the cycle model's ``insn_costs``); CPU MACs equal the IR
weights' sizes; transfer totals equal the session's counters. The hardware-counter
column is exercised on the RTL by tests/runtime/test_session.py
(``test_rtl_runs_digits_end_to_end``).
"""

import io
import json
import sys

import numpy as np
import pytest
from bamboo.arch import preset
from bamboo.arch.artifact import read_artifact
from bamboo.compiler.backend import lower_graph
from bamboo.runtime.errors import RuntimeBambooError
from bamboo.runtime.profiling import profile, render, save_chart
from bamboo.runtime.session import Session
from test_session import Backend, _compiled


@pytest.fixture
def digits():
    _, graph, blob = _compiled("digits")
    x = np.random.default_rng(7).standard_normal((1, 1, 32, 32)).astype(np.float32)
    return graph, blob, x


def test_rows_follow_the_schedule_and_the_simulator(digits):
    from bamboo.sim.isa import layer_stats
    from isa_graphs import sim_outputs

    graph, blob, x = digits
    meta = read_artifact(blob).metadata
    with Session(blob, backend="isa") as sess:
        prof = profile(sess, x, repeat=2)
        st = sess.stats()
    assert prof.frames == 2 and prof.backend == "isa" and prof.memory == "ultra96"
    fabric = [r for r in prof.rows if r.where == "fabric"]
    cpu = [r for r in prof.rows if r.where == "cpu"]
    assert [r.name for r in fabric] == [
        ly.node for ly in sorted(meta.layers, key=lambda ly: ly.first)
    ]
    assert [r.name for r in cpu] == [n for s in meta.steps if not s.on_fabric for n in s.nodes]
    assert all(r.cycles is not None and r.source == "model" for r in fabric)
    assert all(r.seconds > 0 and r.source == "measured" for r in cpu)
    # Conv MACs: the cycle model against the simulator executing the program.
    codes = {
        graph.inputs[0].onnx_name: np.random.default_rng(1)
        .integers(0, 256, (1, 1, 32, 32))
        .astype(np.uint8)
    }
    lowered = lower_graph(graph, preset("ultra96")).graph  # with the back end's CPU nodes
    _, machine = sim_outputs(lowered, blob, codes, preset("ultra96"))
    executed = layer_stats(machine.stats, meta.layers)
    convs = [r for r in fabric if r.op == "conv"]
    assert convs and all(r.macs == executed[r.name]["macs"] > 0 for r in convs)
    by_name = {n.name: n for n in lowered.nodes}
    fcs = [r for r in cpu if by_name[r.name].op == "fc"]
    assert fcs and all(r.macs == by_name[r.name].attrs["w"].size for r in fcs)
    t = prof.totals
    assert t["model_cycles"] == sum(s.model_cycles for s in prof.segments) > 0
    assert t["model_seconds"] == pytest.approx(t["model_cycles"] / 250e6)
    assert t["counter_cycles"] is None and t["fabric_source"] == "model"
    assert (
        t["ps_to_pl"]["bytes"]
        == st["ps_to_pl"]["bytes"] / 2
        == sum(s.in_bytes for s in prof.segments)
        > 0
    )
    assert t["pl_to_ps"]["bytes"] == sum(s.out_bytes for s in prof.segments) > 0
    assert t["projected_frame_seconds"] == pytest.approx(sum(t["projected_split"].values()))
    text = render(prof)
    assert "instruction simulator time, not fabric time" in text
    assert all(r.name in text for r in prof.rows)
    assert f"segment {prof.segments[0].step}:" in text


def test_cli_table_json_and_png(digits, tmp_path, capsys):
    from bamboo.cli import main

    _, blob, x = digits
    path = tmp_path / "digits.bmb"
    path.write_bytes(blob)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(
            [
                "profile",
                str(path),
                "--input",
                str(tmp_path / "x.npy"),
                "--png",
                str(tmp_path / "p.png"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "cycle model behind ultra96 memory" in text and "PS->PL 1 transfers" in text
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["profile", str(path), "--json", "--memory", "ideal", "--frames", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["memory"] == "ideal" and data["backend"] == "isa"
    assert data["throughput"]["outputs_equal"] and data["throughput"]["frames"] == 2
    assert {r["where"] for r in data["rows"]} == {"fabric", "cpu"}


def test_cli_errors_are_one_line(digits, tmp_path, capsys):
    from bamboo.runtime.cli_profile import main

    _, blob, _ = digits
    path = tmp_path / "digits.bmb"
    path.write_bytes(blob)
    for argv, message in (
        ([str(tmp_path / "nope.bmb")], "cannot read artifact"),
        ([str(path), "--memory", "sdram"], "memory must be one of"),
        ([str(path), "--pace", "--backend", "board"], "isa backend only"),
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_png_without_matplotlib_is_a_clear_error(digits, monkeypatch, tmp_path):
    _, blob, x = digits
    with Session(blob, backend="isa") as sess:
        prof = profile(sess, x)
    for mod in (
        "matplotlib",
        "matplotlib.figure",
        "matplotlib.backends.backend_agg",
        "matplotlib.patches",
    ):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(RuntimeBambooError, match="--png needs matplotlib"):
        save_chart(prof, tmp_path / "p.png")


def test_without_the_cycle_model_rows_say_so(digits, monkeypatch):
    """A board install may lack bamboo.sim: fabric rows then carry no cycles."""
    import bamboo.sim

    _, blob, x = digits
    monkeypatch.setitem(sys.modules, "bamboo.sim.cycles", None)
    monkeypatch.delattr(bamboo.sim, "cycles", raising=False)
    with Session(blob, backend="isa") as sess:
        prof = profile(sess, x)
    assert all(r.cycles is None for r in prof.rows)
    assert prof.totals["model_cycles"] is None and prof.totals["projected_frame_seconds"] is None
    assert "no cycle model" in render(prof)


def test_profile_on_the_fake_board(digits, tmp_path, monkeypatch):
    be = Backend("board", tmp_path, monkeypatch)
    _, blob, x = digits
    sess = be.session(blob)
    sess.run(None, x)
    prof = profile(sess)  # the frames already run
    assert prof.backend == "board" and prof.frames == 1
    assert "measured on the board" in render(prof)
    with pytest.raises(RuntimeBambooError, match="ran no frame"):
        sess.reset_stats()
        profile(sess)
    be.close()


def test_json_is_serializable(digits):
    _, blob, x = digits
    with Session(blob, backend="isa") as sess:
        prof = profile(sess, x)
    out = io.StringIO()
    json.dump(prof.to_dict(), out)
    assert json.loads(out.getvalue())["totals"]["segments"] == len(prof.segments)
