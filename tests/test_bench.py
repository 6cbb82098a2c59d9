"""``python -m bamboo.bench``: the figures of one small model, the targets and the files.

The full sweep (``make bench``) builds every zoo model at full resolution; here one
model at test size goes through the same code, and the targets are checked on rows made
up for the purpose.
"""

import json

import pytest

SPEC = "mobilenet_v2@32x0.25"
REQUIRED = (
    "model",
    "resolution",
    "macs",
    "cycles",
    "mac_utilization",
    "dw_utilization",
    "pw_utilization",
    "dram_bytes",
    "ps_pl_bytes",
    "fps_187_5mhz",
    "fps_250mhz",
    "bitexact",
    "fps_100mhz",
    "compile_s",
    "isa_sim_s",
    "dram_compulsory_bytes",
    "cpu_ops",
    "bound",
)


@pytest.fixture(scope="module")
def row():
    pytest.importorskip("torch", reason="the model zoo needs torch")
    from bamboo.bench import bench_model

    return bench_model(SPEC)


def test_one_model_has_every_figure(row):
    from bamboo.models import zoo

    assert set(REQUIRED) <= set(row)
    assert row["model"] == "mobilenet_v2" and row["resolution"] == "32x32"
    assert row["bitexact"] is True  # the ISA simulator against onnxruntime
    stats = zoo.graph_stats(zoo.build_float("mobilenet_v2", 32, 0.25))
    assert row["macs"] == stats["macs"]  # conv + fc MACs of the float ONNX graph
    # the stem's kernel columns laid out by the processor (compiler/backend/stem.py)
    assert row["cpu_ops"] == {"column_taps": 1, "fc": 1} and row["cpu_macs"] == 1280 * 1000
    assert row["cycles"] == row["cycles_250mhz"]
    assert row["dram_compulsory_bytes"] <= row["dram_bytes"]
    assert row["ps_pl_bytes"] == row["exchange_bytes"]
    for k in ("100mhz", "187_5mhz", "250mhz"):
        # the processor side can only slow a frame down; the bound says which side limits
        assert row[f"fps_{k}"] <= row[f"fabric_fps_{k}"] + 0.1
        assert (row[f"bound_{k}"] == "CPU") == (row["cpu_ms"] > 1e3 / row[f"fabric_fps_{k}"])
    assert row["fabric_fps_100mhz"] < row["fabric_fps_250mhz"]
    assert 0 < row["mac_utilization"] < 1 and 0 < row["dw_utilization"] < row["pw_utilization"]
    # FPS at the projected clock: min(design clock, the recorded Fmax estimate).
    from bamboo.bench import timing_estimate

    fmax, _ = timing_estimate("ultra96")
    assert row["design_mhz"] == 250.0 and row["fmax_estimate_mhz"] == fmax
    assert row["projected_mhz"] == round(min(250.0, fmax or 250.0), 1)
    k = f"{row['projected_mhz']:g}".replace(".", "_") + "mhz"
    assert row["fps_projected"] == row[f"fps_{k}"]


def test_projected_clock_is_the_lower_of_design_clock_and_fmax(tmp_path, monkeypatch):
    import bamboo.boards.resources as resources
    from bamboo.arch import preset

    from bamboo.bench import projected_clock

    monkeypatch.setattr(resources, "RECORDED", tmp_path)
    u96 = preset("ultra96")
    assert projected_clock(u96) == (250.0, None, None)
    for name, config, fmax in (
        ("a", "ultra96", 212.4),
        ("b", "ultra96", 230.0),
        ("c", "kv260", 100.0),
        ("d", "ultra96", None),
    ):
        (tmp_path / f"{name}.json").write_text(json.dumps({"config": config, "fmax_mhz": fmax}))
    assert projected_clock(u96) == (212.4, 212.4, "boards/estimates/a.json")
    for name in "ab":
        (tmp_path / f"{name}.json").write_text(json.dumps({"config": "ultra96", "fmax_mhz": 300.0}))
    assert projected_clock(u96) == (250.0, 300.0, "boards/estimates/a.json")


def _row(**kw):
    base = {
        "model": "mobilenet_v2",
        "width": 1.0,
        "resolution": "224x224",
        "fps_250mhz": 120.0,
        "fabric_fps_250mhz": 130.0,
        "bound_250mhz": "compute",
        "dw_utilization": 0.5,
        "pw_utilization": 0.9,
        "mac_utilization": 0.6,
        "cpu_ms": 2.0,
        "cpu_ops": {"fc": 1},
        "cpu_workstation_ms": {"fc": 0.5},
        "host_slowdown": 4.0,
        "fabric_steps": 1,
        "ps_pl_bytes": 1000,
        "memory_stall_share": 0.1,
        "dram_bytes": 1e7,
        "dram_vs_compulsory": 2.0,
        "op_kinds": {
            "depthwise": {
                "utilization": 0.5,
                "share": 0.3,
                "occupancy": 0.6,
                "compute_bound_share": 0.9,
            },
            "pointwise": {
                "utilization": 0.9,
                "share": 0.6,
                "occupancy": 0.95,
                "compute_bound_share": 0.8,
            },
        },
    }
    base.update(kw)
    return base


def test_targets_met_missed_and_why():
    from bamboo.bench import check_targets

    t = {x["target"][:40]: x for x in check_targets([_row()])}
    assert [x["met"] for x in t.values()] == [True, True, True, None]
    assert list(t.values())[-1]["why"] == "not benchmarked"
    slow = _row(
        fps_250mhz=25.0,
        bound_250mhz="CPU",
        cpu_ms=40.0,
        cpu_workstation_ms={"fc": 10.0},
        dw_utilization=0.05,
    )
    slow["op_kinds"]["depthwise"].update(utilization=0.05, occupancy=0.055)
    fps, dw, pw, _ = check_targets([slow])
    assert not fps["met"] and fps["miss"] == pytest.approx(0.75)
    assert fps["why"].startswith("CPU-bound") and "fc x1 10.0 ms" in fps["why"]
    assert not dw["met"] and dw["miss"] == pytest.approx(0.875)
    assert dw["why"].startswith("compute-bound") and "5.5%" in dw["why"]
    assert pw["met"]
    ddr = _row(fps_250mhz=80.0, fabric_fps_250mhz=80.0, bound_250mhz="DMA")
    assert check_targets([ddr])[0]["why"].startswith("DMA-bound")


def test_gen2_targets_both_senses_and_why():
    """Issue #15's targets: FPS at least, DRAM and time shares at most; a miss says by how
    much and what the figure is made of."""
    from bamboo.bench import GEN2_TARGETS, check_gen2_targets, render_markdown

    mbv2 = _row(fps_250mhz=220.0, dram_vs_compulsory=3.0, dram_bytes=3e7, dw_time_share=0.1)
    t = {x["target"]: x for x in check_gen2_targets([mbv2])}
    assert len(t) == len(GEN2_TARGETS)
    fps, dram, dw = (t[text] for *_, text in GEN2_TARGETS[:3])
    assert fps["met"] and dw["met"]
    assert not dram["met"] and dram["miss"] == pytest.approx(0.2)
    assert "30.0 MB/frame against 10.0 MB" in dram["why"]
    # Models not benchmarked are said so, not passed.
    yolo = t["Tiny-YOLOv3@416 >= 30 FPS"]
    assert yolo["met"] is None and yolo["why"] == "not benchmarked"
    b4 = _row(
        model="efficientnet_b4",
        resolution="256x256",
        fps_250mhz=12.0,
        fps_100mhz=4.8,
        fabric_fps_100mhz=4.8,
        bound_100mhz="compute",
        macless_time_share=0.5,
    )
    b4["op_kinds"]["other"] = dict(
        utilization=0.0, share=0.5, occupancy=0.0, compute_bound_share=0.9
    )
    t = {x["target"]: x for x in check_gen2_targets([b4])}
    slow = t["EfficientNet-B4@256 >= 10 FPS at 100 MHz"]
    assert not slow["met"] and slow["miss"] == pytest.approx(0.52)
    assert slow["why"].startswith("compute-bound")
    macless = t["EfficientNet-B4@256 layers without MACs <= 20 % of the fabric time"]
    assert not macless["met"] and macless["miss"] == pytest.approx(1.5)
    assert "without MACs" in macless["why"] and "50%" in macless["why"]
    text = render_markdown([], [], "cmd", gen2=check_gen2_targets([b4]))
    assert "Targets (issue #15" in text and "**missed** (4.8, 52% off)" in text


def test_main_writes_json_and_markdown(tmp_path, capsys):
    pytest.importorskip("torch", reason="the model zoo needs torch")
    from bamboo.bench import main

    assert main([SPEC, "--no-sim", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert len(rows) == 1 and set(REQUIRED) - {"isa_sim_s"} <= set(rows[0])
    assert rows[0]["bitexact"] is None  # --no-sim: nothing to compare
    md = (tmp_path / "results.md").read_text()
    assert md.startswith(f"Generated by `python -m bamboo.bench {SPEC} --no-sim --out ")
    assert "| mobilenet_v2 x0.25 | 32x32 |" in md and "not benchmarked" in md
    assert "Projected clock of `ultra96`: " in md
    assert "Cycle model against the RTL: the `ultra96` accelerator in Verilator" in md
    assert "target: MobileNetV2-1.0@224 >= 100 FPS at 250 MHz: n/a" in capsys.readouterr().out


def test_rtl_record_round_trip_and_text(tmp_path):
    """``record_rtl_cycles`` keeps the other section; the summary and the report's paragraph
    say the worst error, its layer and the command that regenerates the record."""
    from bamboo.bench import (
        RTL_RECORD_COMMAND,
        record_rtl_cycles,
        rtl_cycle_summary,
        rtl_cycle_text,
    )

    path = tmp_path / "rtl.json"
    assert rtl_cycle_summary(path) is None and "no record" in rtl_cycle_text(None)
    record_rtl_cycles(
        "layers",
        {
            "a": [{"rtl": 100, "model": 103}],
            "b": [{"rtl": 200, "model": 190}, {"rtl": 50, "model": 50}],
        },
        "bamboo_top-x",
        path,
    )
    record_rtl_cycles("blocks", {"blk": [{"rtl": 1000, "model": 1010.4}]}, "bamboo_top-y", path)
    s = rtl_cycle_summary(path)
    assert s["layers"]["names"] == 2 and s["layers"]["runs"] == 3
    assert s["layers"]["worst"] == pytest.approx(-0.05) and s["layers"]["worst_name"] == "b"
    assert s["layers"]["mean_abs"] == pytest.approx((0.03 + 0.05) / 3)
    assert s["blocks"]["worst"] == pytest.approx(0.01) and s["blocks"]["design"] == "bamboo_top-y"
    text = rtl_cycle_text(s)
    assert "2 compiled layers (3 fabric runs): worst -5.0% (b)" in text
    assert "1 whole blocks (1 fabric runs): worst +1.0% (blk)" in text
    assert RTL_RECORD_COMMAND in text
    with pytest.raises(ValueError, match="section must be one of"):
        record_rtl_cycles("nets", {}, "d", path)


def test_committed_rtl_record_is_current():
    """The committed record covers every layer of tests/sim/test_cycles.py and every block,
    each within the 5 % the slow tests hold it to (rerun its command after changing them)."""
    import sys
    from pathlib import Path

    from bamboo.models.blocks import BLOCKS

    from bamboo.bench import RTL_RECORD, rtl_cycle_summary

    sys.path.insert(0, str(Path(__file__).parent / "sim"))
    try:
        from test_cycles import RTL_LAYERS
    finally:
        sys.path.pop(0)
    data = json.loads(RTL_RECORD.read_text())
    assert set(data["layers"]["runs"]) == set(RTL_LAYERS)
    assert set(data["blocks"]["runs"]) == set(BLOCKS)
    s = rtl_cycle_summary()
    assert abs(s["layers"]["worst"]) <= 0.05 and abs(s["blocks"]["worst"]) <= 0.05
