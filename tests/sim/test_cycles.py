"""The cycle model (bamboo.sim.cycles, bamboo.arch.timing) against the RTL.

* The pure formulas against the hardware's own: ``arch.timing.conv_cycles`` equals
  ``hw.compute.conv_cycles`` (itself asserted equal to the RTL by tests/hw/test_compute.py)
  over many shapes; ``vec_cycles`` equals ``hw.vector.VectorUnit.cycles``.
* The DMA model against the write engine measured in amaranth.sim (tests/hw/test_dma.py's
  bench), within 5 %.
* The event simulation's invariants on compiled programs (makespan between the busiest
  unit and the sum of all units).
* ``@pytest.mark.sim``: programs compiled by the back end for >= 20 layer shapes on the
  ``tiny`` config run on the whole Accelerator (hw/top.py, cocotb, Verilator); the
  ``CYCLES`` counter of every run within 5 % of the model's cycles.
"""

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from bamboo.arch import isa, preset
from bamboo.arch import timing as T
from bamboo.arch.config import AcceleratorConfig
from bamboo.compiler.backend import lower_graph
from bamboo.compiler.partition import partition
from bamboo.sim import cycles
from configs import TINY_PACKED, WATCHDOG
from isa_graphs import add_graph, conv_graph, fc_graph, gap_graph, maxpool_graph, mul_graph

TINY = preset("tiny")

#: Layer shapes through the RTL (conv, depthwise, pointwise, FC, pools, add, mul).
RTL_LAYERS = {
    "conv3x3_s1": lambda: conv_graph(9, 8, 6, 10),
    "conv3x3_s2": lambda: conv_graph(9, 7, 5, 9, stride=2),
    "conv3x3_wide": lambda: conv_graph(12, 12, 8, 8, seed=1),
    "conv5x5_s2_dilated": lambda: conv_graph(13, 12, 8, 8, k=5, stride=2, dilation=2, pad=3),
    "conv_tiled": lambda: conv_graph(40, 37, 24, 40, seed=3),
    # a 3-channel stride-2 stem over its kernel columns as channels (stem.py; 16 rows)
    "stem_column_taps": lambda: conv_graph(24, 22, 3, 16, stride=2, seed=6),
    "conv_lut_clamp": lambda: conv_graph(5, 5, 4, 6, lut=True, clamp=(3, 200)),
    "int8_conv3x3_s2": lambda: conv_graph(9, 7, 5, 9, stride=2, signed=True, seed=7),
    "pointwise": lambda: conv_graph(6, 6, 20, 12, k=1, pad=0),
    "pointwise_16x16": lambda: conv_graph(16, 16, 8, 16, k=1, pad=0, seed=2),
    "pointwise_wide": lambda: conv_graph(8, 8, 300, 20, k=1, pad=0, seed=4),
    "int8_pointwise_lut": lambda: conv_graph(6, 6, 20, 12, k=1, pad=0, signed=True, lut=True),
    "depthwise_s1": lambda: conv_graph(8, 8, 6, 6, group=6),
    "depthwise_s2": lambda: conv_graph(33, 30, 20, 20, group=20, stride=2, seed=5),
    "depthwise_5x5": lambda: conv_graph(11, 10, 9, 9, k=5, group=9),
    "depthwise_7x7_s2": lambda: conv_graph(15, 14, 6, 6, k=7, stride=2, group=6),
    "int8_depthwise": lambda: conv_graph(8, 8, 6, 6, group=6, signed=True, seed=8),
    "grouped_conv": lambda: conv_graph(8, 8, 12, 6, group=3, seed=9),
    "fc_64x10": lambda: fc_graph(64, 10),
    "fc_200x30": lambda: fc_graph(200, 30, seed=1),
    "gap_large": lambda: gap_graph(19, 17, 10),  # past the 15x15 window: all-ones CONVs
    "gap_banded": lambda: gap_graph(40, 36, 10),  # rows in bands, chained in ACC
    "gap": lambda: gap_graph(7, 7, 40),
    "maxpool": lambda: maxpool_graph(17, 16, 5),
    "add": lambda: add_graph(15, 14, 9),
    "int8_add": lambda: add_graph(5, 6, 7, signed=True),
    "mul_channel": lambda: mul_graph(6, 5, 10),
}

#: The cocotb AxiRam behind the RTL test.
AXIRAM = T.BOARDS["cocotb"]


def _compiled(name, config=TINY):
    """A layer of RTL_LAYERS as its own shape (no column-taps rewrite, but for
    ``stem_column_taps``, which is the rewritten conv)."""
    graph = partition(RTL_LAYERS[name](), fc_on_fabric=True)
    return lower_graph(graph, config, column_taps=name.startswith("stem_"))


def _runs(compiled):
    return [(s.insn_start, s.insn_count) for s in compiled.steps if s.on_fabric]


# Formulas against the hardware's -------------------------------------------------------------


def test_conv_cycles_equals_the_compute_unit_formula():
    pytest.importorskip("amaranth")
    from bamboo.hw.compute import conv_cycles

    configs = [
        TINY,
        preset("ultra96"),
        AcceleratorConfig(rows=8, cols=16),
        AcceleratorConfig(rows=2, cols=4),
        TINY_PACKED,  # post-processing in four lane groups, two for a depthwise pixel
        AcceleratorConfig(rows=8, cols=32, postproc_lanes=8),
    ]
    n = 0
    for config in configs:
        for words in list(range(1, 70)) + [100, 196, 784, 1023]:
            for taps in (1, 2, 3, 4, 5, 9, 18, 27, 50, 255):
                for emit, dw in ((0, False), (words, False), (words, True)):
                    assert T.conv_cycles(config, words, taps, emit, dw) == conv_cycles(
                        config, words, taps, emit, dw
                    ), (config.name, words, taps, emit, dw)
                    n += 1
    assert n > 5000


def test_vec_cycles_equals_the_vector_unit_formula():
    pytest.importorskip("amaranth")
    from bamboo.hw.vector import VectorUnit

    assert (T.VEC_START, T.VEC_LATENCY) == (VectorUnit.START, VectorUnit.LATENCY)
    configs = [preset(n) for n in ("tiny", "ultra96", "pynqz2")]
    for config in configs + [dataclasses.replace(configs[1], vector_lanes=1)]:
        for pixels in (0, 1, 7, 64, 1000):
            for elements in (1, 2, 9, 49):
                assert T.vec_cycles(config, pixels, elements) == VectorUnit.cycles(
                    config, pixels, elements
                )


def test_conv_cycles_rejects_empty_instructions():
    with pytest.raises(ValueError, match="taps and words_per_tap must be positive, not 0, 5"):
        T.conv_cycles(TINY, 5, 0)


def _dma_bench():
    path = Path(__file__).parents[1] / "hw" / "test_dma.py"
    spec = importlib.util.spec_from_file_location("_bamboo_test_dma", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("y,x,stride", [(56, 56, 56), (8, 3, 56), (1, 300, 300)])
def test_store_model_matches_the_write_engine(y, x, stride):
    """The model's STORE engine side (one element per cycle plus a fixed overhead) against
    DMAWriter alone in amaranth.sim: the measured cycles minus the elements stay a small
    constant (the fixed part; the model's store_pre/store_post also hold the store unit's
    and the queue's cycles, fitted on the whole engine). 13: the window check's three
    stages, the burst setup and the last response."""
    pytest.importorskip("amaranth")
    dma = _dma_bench()
    config = AcceleratorConfig(rows=16, cols=32, axi_data_width=128, axi_addr_width=32)
    cmd = dict(dram_addr=0, y_size=y, x_size=x, x_stride=stride, lane=1, sram_addr=0)
    results, _ = dma._store_in_amaranth_sim(config, 16, 32, [cmd], 1, go=1.0)
    measured = results[0][2]
    eng = cycles._Engine(
        config, T.BOARDS["ideal"], config.clock_mhz, cycles.Calibration(store_pre=0, store_post=0)
    )
    model = eng.dma(dict(cmd, opcode=isa.Opcode.STORE), 0)
    print(f"store {y}x{x}: measured {measured}, engine-side model {model:.0f}")
    assert model == y * x and 0 <= measured - model <= 13, (model, measured)


def test_burst_issue_equals_the_bus_arbiter():
    """``BURST_ISSUE_CYCLES`` against hw/bus.py in amaranth.sim: a load unit and a store unit
    that always have a one-beat burst to announce, a memory that always answers at once;
    the port's AR and AW handshakes come ``BURST_ISSUE_CYCLES`` apart."""
    pytest.importorskip("amaranth")
    from amaranth.sim import Simulator
    from bamboo.hw.bus import BusArbiter

    dut = BusArbiter(TINY)
    seen = {"ar": [], "aw": []}

    async def bench(ctx):
        bus, ld, st = dut.m_axi, dut.load, dut.store
        for sig in (
            bus.arready,
            bus.awready,
            bus.wready,
            ld.arvalid,
            ld.rready,
            st.awvalid,
            st.wvalid,
            st.bready,
        ):
            ctx.set(sig, 1)
        ctx.set(st.wstrb, -1)
        pending_r = pending_b = 0
        for cycle in range(40):
            ctx.set(bus.rvalid, int(pending_r > 0))
            ctx.set(bus.rlast, 1)
            ctx.set(bus.bvalid, int(pending_b > 0))
            _, _, ar, aw, r, b = await ctx.tick().sample(
                bus.arvalid & bus.arready,
                bus.awvalid & bus.awready,
                bus.rvalid & bus.rready,
                bus.bvalid & bus.bready,
            )
            pending_r += ar - r
            pending_b += aw - b
            for name, hit in (("ar", ar), ("aw", aw)):
                if hit:
                    seen[name].append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for name, times in seen.items():
        gaps = set(np.diff(times[2:]))
        assert gaps == {T.BURST_ISSUE_CYCLES}, (name, times)


def test_program_region_is_instruction_aligned():
    """The fetcher faults on an INSN_BASE that is not a multiple of INSN_BYTES."""
    for name in ("conv3x3_s1", "conv3x3_s2", "fc_64x10"):
        assert _compiled(name).plan.regions["program"][0] % isa.INSN_BYTES == 0


# The event simulation ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["conv_tiled", "depthwise_s2", "pointwise_wide", "add", "gap"])
@pytest.mark.parametrize("memory", ["ideal", "ultra96"])
def test_model_bounds(name, memory):
    config = preset("ultra96")
    compiled = _compiled(name, config)
    report = cycles.model_compiled(compiled, T.BOARDS[memory])
    busiest = max(report.busy.values())
    assert busiest <= report.total <= sum(report.busy.values()) + 100 * len(compiled.words)
    assert report.macs == compiled.stats["macs"]
    assert 0 <= report.utilization <= 1 and (report.utilization > 0) == (report.macs > 0)
    text = cycles.render(report)
    assert "FPS" in text and report.layers[0].node in text


def test_slower_memory_is_never_faster():
    compiled = _compiled("conv_tiled", preset("ultra96"))
    fast = cycles.model_compiled(compiled, T.BOARDS["ideal"]).total
    slow = cycles.model_compiled(compiled, T.BOARDS["ultra96"]).total
    slower = cycles.model_compiled(
        compiled, T.MemoryTiming("slow", bandwidth_gbps=0.5, read_latency_ns=400)
    ).total
    assert fast <= slow <= slower


def test_ultra96_memory_figures():
    mem = T.BOARDS["ultra96"]
    u96 = preset("ultra96")
    # 3.2 GB/s sustained = 75 % of the LPDDR4's 4.26 GB/s; the 128-bit port caps at 16 B/cycle.
    assert abs(mem.bandwidth_gbps / 4.264 - 0.75) < 0.01
    assert mem.bytes_per_cycle(u96, 250.0) == pytest.approx(12.8)
    assert mem.bytes_per_cycle(u96, 187.5) == pytest.approx(16.0)


# Against the RTL ---------------------------------------------------------------------------------


def _top_usable():
    """None if hw/top.py can run programs here, else why not."""
    try:
        from bamboo.hw.top import Accelerator  # noqa: F401
        from bamboo.sim.harness import find_simulators
    except Exception as exc:  # the top is work in progress: say exactly what fails
        return f"hw/top.py does not import: {exc!r}"
    if not find_simulators()["verilator"].available:
        return "Verilator is not available"
    return None


def _has_vector_unit():
    import bamboo.hw.top as top

    return "VectorUnit" in vars(top)


def _rtl_cycle_errors(tmp_path, config, names, top, counts=None):
    """Run the compiled layers ``names`` on ``top`` (the Accelerator for ``config``) in
    Verilator; ``({name: [relative model error per run]}, [names refused], the Verilog's
    name)``; ``counts`` (a dict) receives ``{name: [{"rtl": CYCLES, "model": model
    cycles} per run]}``."""
    why = _top_usable()
    if why:
        pytest.skip(why)
    from bamboo.sim.harness import generate_verilog, run_cocotb

    cases, models = [], {}
    for name in names:
        compiled = _compiled(name, config)
        plan = compiled.plan
        image = np.zeros(plan.footprint, np.uint8)
        w0 = plan.regions["weights"][0]
        image[w0 : w0 + len(compiled.weights)] = np.frombuffer(compiled.weights, np.uint8)
        p0 = plan.regions["program"][0]
        image[p0 : p0 + len(compiled.program)] = np.frombuffer(compiled.program, np.uint8)
        np.save(tmp_path / f"{name}.npy", image)
        runs = _runs(compiled)
        vec = any(
            isa.decode(w)["opcode"] == isa.Opcode.VEC and isa.decode(w)["out_h"]
            for w in compiled.words
        )
        cases.append(
            {
                "name": name,
                "image": str(tmp_path / f"{name}.npy"),
                "runs": runs,
                "program_offset": p0,
                "vec": vec,
            }
        )
        models[name] = [
            cycles.simulate(config, compiled.words[f : f + c], AXIRAM)[1][-1] for f, c in runs
        ]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    report = tmp_path / "cycles_report.json"
    verilog = generate_verilog(top, "bamboo_top")
    run_cocotb(
        verilog,
        os.path.join(os.path.dirname(__file__), "cocotb_cycles.py"),
        "verilator",
        name="bamboo_top",
        extra_env={"CYCLES_CASES": tmp_path / "cases.json", "CYCLES_REPORT": report},
    )
    got = json.loads(report.read_text())
    errors, refused = {}, []
    for case in cases:
        for run, model in zip(got[case["name"]], models[case["name"]], strict=True):
            if case["vec"] and run["status"]["error"] and not _has_vector_unit():
                refused.append(case["name"])
                continue
            assert run["status"]["done"] and not run["status"]["error"], (case["name"], run)
            errors.setdefault(case["name"], []).append((model - run["CYCLES"]) / run["CYCLES"])
            if counts is not None:
                counts.setdefault(case["name"], []).append({"rtl": run["CYCLES"], "model": model})
    print(
        config.name, json.dumps({k: [round(e, 4) for e in v] for k, v in errors.items()}, indent=1)
    )
    return errors, refused, verilog.stem


@pytest.mark.sim
def test_model_matches_rtl_cycle_counters(tmp_path):
    from bamboo.hw.top import Accelerator

    errors, refused, _ = _rtl_cycle_errors(tmp_path, TINY, list(RTL_LAYERS), Accelerator(TINY))
    out = Path(__file__).parents[2] / "build" / "sim" / "cycles_errors.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(errors, indent=1))
    assert len(errors) >= 15, errors
    bad = {k: v for k, v in errors.items() if any(abs(e) > 0.05 for e in v)}
    assert not bad, bad
    if refused:
        pytest.skip(
            f"{len(refused)} VEC layers refused by the RTL (hw/top.py has no vector "
            f"unit yet): {sorted(set(refused))}; {len(errors)} layers within 5 %"
        )


#: A few layers of every unit for ``make test``; the slow set runs all of RTL_LAYERS.
ULTRA96_FAST = ("conv3x3_s2", "pointwise_16x16", "depthwise_s2", "add", "gap")
#: Layers of several output tiles, whose emits a second ACC bank overlaps (cycle model,
#: TINY_PACKED: 7.3 % and 4.8 % fewer cycles than with one bank).
PINGPONG_LAYERS = ("depthwise_5x5", "conv3x3_wide")


@pytest.mark.sim
def test_model_matches_grouped_postproc_rtl_cycle_counters(tmp_path):
    """Post-processing with fewer lanes than columns (``TINY_PACKED``: 4 lanes, 16
    columns) and two ACC banks: the emit's four cycles a pixel (two for a depthwise
    CONV's 8 channels), the group register's
    cycle of latency and the emits overlapping the next tile, against the CYCLES counter,
    within 5 % on every run. The Verilog of tests/hw/test_top.py's packed accelerator (one
    build)."""
    from bamboo.hw.top import Accelerator

    names = ULTRA96_FAST + ("pointwise_wide", "conv3x3_s1") + PINGPONG_LAYERS
    top = Accelerator(TINY_PACKED, watchdog=WATCHDOG)
    counts = {}
    errors, refused, _ = _rtl_cycle_errors(tmp_path, TINY_PACKED, names, top, counts)
    assert not refused and set(errors) == set(names), (refused, sorted(errors))
    bad = {k: v for k, v in errors.items() if any(abs(e) > 0.05 for e in v)}
    assert not bad, bad
    # Two ACC banks: where a layer has several output tiles, each emit overlaps the next
    # tile's MACs. The RTL beats the one-bank model (itself within 3 % of one-bank RTL,
    # test_model_matches_rtl_cycle_counters) by more than that model's error.
    one = dataclasses.replace(TINY_PACKED, acc_banks=1)
    for name in PINGPONG_LAYERS:
        compiled = _compiled(name, one)
        serial = sum(
            cycles.simulate(one, compiled.words[f : f + c], AXIRAM)[1][-1]
            for f, c in _runs(compiled)
        )
        rtl = sum(r["rtl"] for r in counts[name])
        assert rtl < 0.96 * serial, (name, rtl, serial)


def _ultra96_top():
    from bamboo.hw.top import Accelerator

    # The watchdog of tests/hw/test_top.py: the same Verilog, so one Verilator build.
    return Accelerator(preset("ultra96"), watchdog=4096)


@pytest.mark.sim
@pytest.mark.parametrize(
    "names",
    [
        pytest.param(ULTRA96_FAST, id="fast"),
        pytest.param(tuple(RTL_LAYERS), id="all", marks=pytest.mark.slow),
    ],
)
def test_model_matches_ultra96_rtl_cycle_counters(tmp_path, names):
    """The cycle model against the CYCLES counter of the ultra96 RTL (8 x 32 packed,
    depthwise blocks and row groups, two vector lanes): every run within 5 %. The full
    set records its figures for the bench (``bamboo.bench.RTL_RECORD``)."""
    counts = {}
    errors, refused, design = _rtl_cycle_errors(
        tmp_path, preset("ultra96"), names, _ultra96_top(), counts
    )
    assert not refused and set(errors) == set(names), (refused, sorted(errors))
    worst = max(abs(e) for v in errors.values() for e in v)
    print(
        f"ultra96: {sum(map(len, errors.values()))} runs of {len(errors)} layers, "
        f"worst model error {worst:.2%}"
    )
    bad = {k: v for k, v in errors.items() if any(abs(e) > 0.05 for e in v)}
    assert not bad, bad
    if set(names) == set(RTL_LAYERS):
        from bamboo.bench import record_rtl_cycles

        record_rtl_cycles("layers", counts, design)


@pytest.mark.slow
def test_bench_mobilenet_v2_targets():
    """``python -m bamboo.bench``'s figures for MobileNetV2-1.0@224 on ultra96: compile under
    3 s and one simulated frame under 20 s of CPU time; the cycle model's projection."""
    import io

    from bamboo.bench import bench_model

    out = io.StringIO()
    row = bench_model("mobilenet_v2@224x1.0", out=out)
    print(out.getvalue())
    assert row["compile_cpu_s"] < 3.0 and row["isa_sim_cpu_s"] < 20.0, row
    assert row["bitexact"] and row["instructions"] > 0 and row["macs"] > 300e6
    assert 0 < row["fps_187_5mhz"] < row["fps_250mhz"]
    # The projection is at min(design clock, estimated Fmax), and says which.
    assert row["projected_mhz"] == min(row["design_mhz"], row["fmax_estimate_mhz"])
    projected = f"{row['projected_mhz']:g}".replace(".", "_")
    assert row[f"fps_{projected}mhz"] <= row["fps_250mhz"]
