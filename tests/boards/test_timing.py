"""The static timing estimate (boards/timing.py): its arithmetic on hand-made netlists,
its delay table against the vendored Vivado reports, and a Yosys netlist end to end."""

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

import pytest
from bamboo.boards.timing import XCZU3EG_1, TimingError, analyze

T = XCZU3EG_1
CALIBRATION = (
    Path(__file__).resolve().parents[2] / "boards" / "calibration" / "vivado_xczu3eg_1.csv"
)


class Netlist:
    """A flattened Yosys JSON module built by hand: ``add(type, name, pins, **params)``
    with pins ``{"I0": ("in", bits), "O": ("out", bits)}``; bits are ints (nets)."""

    def __init__(self):
        self.cells, self.netnames, self.ports = {}, {}, {}

    def add(self, ctype, name, pins, **params):
        self.cells[name] = {
            "type": ctype,
            "parameters": params,
            "port_directions": {
                p: {"in": "input", "out": "output"}[d] for p, (d, _) in pins.items()
            },
            "connections": {
                p: list(b) if isinstance(b, (list, tuple)) else [b] for p, (_, b) in pins.items()
            },
        }

    def name(self, name, bits):
        self.netnames[name] = {"hide_name": 0, "bits": list(bits)}

    def ff(self, name, d, q, ce=None):
        pins = {"C": ("in", 1), "D": ("in", d), "Q": ("out", q), "R": ("in", "0")}
        if ce is not None:
            pins["CE"] = ("in", ce)
        self.add("FDRE", f"$ff_{name}", pins)
        self.name(name, [q])

    def lut(self, k, name, ins, out):
        self.add(
            f"LUT{k}", name, {**{f"I{i}": ("in", b) for i, b in enumerate(ins)}, "O": ("out", out)}
        )

    def module(self):
        return {"cells": self.cells, "netnames": self.netnames, "ports": self.ports}


def test_lut_chain():
    """FF -> LUT6 -> LUT6 -> LUT4 -> FF: clock-to-Q, three LUTs, routing, setup."""
    n = Netlist()
    n.ff("src", d=10, q=11)
    n.lut(6, "l1", [11, 11, 11, 11, 11, 11], 12)
    n.lut(6, "l2", [12] * 6, 13)
    n.lut(4, "l3", [13] * 4, 14)
    n.add("LUT2", "other", {"I0": ("in", 14), "I1": ("in", 14), "O": ("out", 15)})
    n.ff("dst", d=14, q=16)
    n.ff("dst2", d=15, q=17)
    r = analyze(n.module())
    # Net 11 drives one cell (six pins of l1 count once per pin: fanout 6); 12, 13 fanout 6
    # and 4; 14 drives `other` (2 pins) and dst: fanout 3.
    expect_dst = (
        T.ff_clk_q
        + T.route(6)
        + T.lut["LUT6"]
        + T.route(6)
        + T.lut["LUT6"]
        + T.route(4)
        + T.lut["LUT4"]
        + T.route(3)
        + T.ff_setup_d
    )
    # `other` is a LUT whose only load is dst2's D: packed in its slice, local routing.
    expect_dst2 = expect_dst + T.lut["LUT2"] + T.route_local
    assert r.paths[0].ns == pytest.approx(expect_dst2, abs=1e-3)
    assert (r.paths[0].start, r.paths[0].end) == ("src", "dst2")
    assert r.paths[1].ns == pytest.approx(expect_dst, abs=1e-3)
    assert r.paths[1].levels == 3 and r.paths[0].levels == 4
    assert r.period_ns == pytest.approx(expect_dst2 + T.clock_uncertainty, abs=1e-3)
    assert r.fmax_mhz == pytest.approx(1000 / r.period_ns, abs=0.1)
    assert "estimated Fmax" in r.render() and "src  ->  dst2" in r.render()


def test_lut_packed_with_its_flip_flop():
    """A LUT whose only load is a flip-flop sits in its slice: local routing."""
    n = Netlist()
    n.ff("a", d=1, q=2)
    n.lut(1, "inv", [2], 3)
    n.ff("b", d=3, q=4)
    r = analyze(n.module())
    assert r.paths[0].ns == pytest.approx(
        T.ff_clk_q + T.route(1) + T.lut["LUT1"] + T.route_local + T.ff_setup_d
    )


def test_carry_chain():
    """A 16-bit adder as four CARRY4: S[0] of the first to O[3] of the last, the carry
    cascade between them on dedicated routing."""
    n = Netlist()
    bits = iter(range(100, 1000))
    q = [next(bits) for _ in range(16)]
    for i, b in enumerate(q):
        n.ff(f"x{i}", d=next(bits), q=b)
    ci = "0"
    outs = []
    for k in range(4):
        s = [next(bits) for _ in range(4)]
        for i in range(4):
            n.lut(2, f"s{k}_{i}", [q[4 * k + i], q[4 * k + i]], s[i])
        co = [next(bits) for _ in range(4)]
        o = [next(bits) for _ in range(4)]
        n.add(
            "CARRY4",
            f"c{k}",
            {
                "CI": ("in", ci),
                "CYINIT": ("in", "0"),
                "DI": ("in", ["0"] * 4),
                "S": ("in", s),
                "CO": ("out", co),
                "O": ("out", o),
            },
        )
        ci = co[3]
        outs += o
    for i, b in enumerate(outs):
        n.ff(f"sum{i}", d=b, q=next(bits))
    r = analyze(n.module())
    worst = r.paths[0]
    # x0 -> LUT2 (fanout 2: both pins) -> S[0] of c0 -> CO[3] -> 2 x CI->CO[3] -> CI->O[3].
    expect = (
        T.ff_clk_q
        + T.route(2)
        + T.lut["LUT2"]
        + T.route_local
        + T.carry_s_co
        + 2 * (T.route_cascade + T.carry_ci_co / 2)
        + T.route_cascade
        + T.carry_ci_o
        + T.route(1)
        + T.ff_setup_d
    )
    assert worst.ns == pytest.approx(expect, abs=1e-3)
    # S[0..3] of the first carry tie, as do O[0..3] of the last.
    assert worst.start in {f"x{i}" for i in range(4)}
    assert worst.end in {f"sum{i}" for i in range(12, 16)}
    assert [c.split()[0] for c in worst.cells] == ["FDRE", "LUT2"] + ["CARRY4"] * 4 + ["FDRE"]


def _dsp(n, name, a, b, p, **params):
    n.add(
        "DSP48E2",
        name,
        {"CLK": ("in", 1), "A": ("in", a), "B": ("in", b), "CEP": ("in", "1"), "P": ("out", p)},
        **params,
    )


@pytest.mark.parametrize("areg,mreg,preg", [(1, 1, 1), (1, 0, 1), (0, 0, 0), (1, 1, 0)])
def test_dsp_pipeline_registers(areg, mreg, preg):
    """The DSP48E2's stages: each register present per AREG/BREG, MREG, PREG ends one
    path and starts the next; without registers the multiply-add is one path."""
    n = Netlist()
    n.ff("a", d=1, q=2)
    n.ff("b", d=3, q=4)
    _dsp(n, "mac", [2], [4], [5], AREG=areg, BREG=areg, MREG=mreg, PREG=preg)
    n.ff("p", d=5, q=6)
    r = analyze(n.module(), count=50)
    # The worst arrival per end point: {end: ns}.
    expect = {}
    a = T.ff_clk_q + T.route(1) + T.dsp_in
    if areg:
        expect["mac.a_d"] = expect["mac.b_d"] = a + T.dsp_setup_in
        a = T.dsp_in_clk
    a += T.dsp_preadd_bypass + T.dsp_mult + T.dsp_m_data
    if mreg:
        expect["mac.m_d"] = a + T.dsp_setup_m
        a = T.dsp_in_clk
    a += T.dsp_alu
    if preg:
        # The ALU's end point also takes the P feedback (accumulation) from PREG.
        expect["mac.alu"] = max(a, T.dsp_clk_p + T.dsp_alu) + T.dsp_setup_p
        a = T.dsp_clk_p
    else:
        a += T.dsp_out_p
    expect["p"] = a + T.route(1) + T.ff_setup_d
    got = {}
    for p in r.paths:
        got[p.end] = max(got.get(p.end, 0), p.ns)
    assert got == pytest.approx(expect, abs=1e-3)
    assert r.paths[0].ns == pytest.approx(max(expect.values()), abs=1e-3)


def test_dsp_preadder_and_cascade():
    """With the pre-adder in use (AMULTSEL=AD) and no ADREG, the pre-adder's delay is in
    the multiplier stage; PCOUT -> PCIN is dedicated routing into the next ALU."""
    n = Netlist()
    n.ff("a", d=1, q=2)
    n.add(
        "DSP48E2",
        "d0",
        {"A": ("in", [2]), "B": ("in", [2]), "D": ("in", [2]), "PCOUT": ("out", [7])},
        AMULTSEL="AD",
        ADREG=0,
        MREG=1,
        AREG=1,
        BREG=1,
        DREG=1,
        PREG=1,
    )
    n.add(
        "DSP48E2",
        "d1",
        {"PCIN": ("in", [7]), "P": ("out", [8])},
        PREG=0,
        MREG=0,
        AREG=0,
        BREG=0,
        CREG=0,
        OPMODEREG=0,
        ALUMODEREG=0,
        CARRYINREG=0,
        CARRYINSELREG=0,
        INMODEREG=0,
    )
    n.ff("p", d=8, q=9)
    r = analyze(n.module(), count=20)
    by_end = {p.end: p.ns for p in r.paths}
    assert by_end["d0.m_d"] == pytest.approx(
        T.dsp_in_clk + T.dsp_preadd + T.dsp_mult + T.dsp_m_data + T.dsp_setup_m, abs=1e-3
    )
    assert by_end["p"] == pytest.approx(
        T.dsp_clk_p + T.route_cascade + T.dsp_pcin_alu + T.dsp_out_p + T.route(1) + T.ff_setup_d,
        abs=1e-3,
    )


@pytest.mark.parametrize("reg", [0, 1])
def test_block_ram_output_register(reg):
    n = Netlist()
    n.ff("addr", d=1, q=2)
    n.add(
        "RAMB36E2",
        "mem",
        {"CLKARDCLK": ("in", 1), "ADDRARDADDR": ("in", [2]), "DOUTADOUT": ("out", [3])},
        DOA_REG=reg,
    )
    n.lut(3, "use", [3, 3, 3], 4)
    n.ff("q", d=4, q=5, ce=3)
    r = analyze(n.module())
    clk_do = T.bram_clk_do_reg if reg else T.bram_clk_do
    assert r.paths[0].ns == pytest.approx(
        clk_do + T.route(4) + T.lut["LUT3"] + T.route_local + T.ff_setup_d, abs=1e-3
    )
    assert (r.paths[0].start, r.paths[0].end) == ("mem", "q")
    into_ram = [p for p in r.paths if p.end == "mem"]
    assert into_ram[0].ns == pytest.approx(T.ff_clk_q + T.route(1) + T.bram_setup, abs=1e-3)


def test_lutram_read_and_write():
    """RAM32M16: ADDRA reads DOA asynchronously; DIA, WE and ADDRH (the write address)
    end at the write clock; DOA starts at it."""
    n = Netlist()
    n.ff("ra", d=1, q=2)
    n.lut(1, "l1", [2], 20)  # two LUTs before ADDRA: later than the clock's DO
    n.lut(1, "l2", [20], 21)
    n.ff("wa", d=3, q=4)
    n.add(
        "RAM32M16",
        "lr",
        {
            "WCLK": ("in", 1),
            "ADDRA": ("in", [21]),
            "ADDRH": ("in", [4]),
            "DIA": ("in", [4]),
            "WE": ("in", 4),
            "DOA": ("out", [5]),
        },
    )
    n.ff("q", d=5, q=6)
    r = analyze(n.module(), count=20)
    by = {(p.start, p.end): p.ns for p in r.paths}
    into = T.ff_clk_q + 3 * T.route(1) + 2 * T.lut["LUT1"]
    assert into > T.lutram_clk_do
    assert by[("ra", "q")] == pytest.approx(
        into + T.lutram_read + T.route(1) + T.ff_setup_d, abs=1e-3
    )
    assert by[("wa", "lr")] == pytest.approx(T.ff_clk_q + T.route(3) + T.lutram_setup, abs=1e-3)
    assert ("ra", "lr") not in by  # ADDRA is a read port only


def test_high_fanout_costs_routing():
    n = Netlist()
    n.ff("en", d=1, q=2)
    for i in range(256):
        n.ff(f"r{i}", d=100 + i, q=1000 + i, ce=2)
    r = analyze(n.module())
    assert r.paths[0].ns == pytest.approx(T.ff_clk_q + T.route(256) + T.ff_setup_ce, abs=1e-3)
    assert T.route(256) == pytest.approx(T.route_base + 8 * T.route_per_octave)


def test_combinational_loop_and_unknown_cells_are_errors():
    n = Netlist()
    n.lut(1, "a", [2], 3)
    n.lut(1, "b", [3], 2)
    n.name("loop_net", [2])
    with pytest.raises(TimingError, match="combinational loop .*loop_net"):
        analyze(n.module())
    m = Netlist()
    m.add("URAM288", "u", {"DOUT_A": ("out", [2])})
    with pytest.raises(TimingError, match="no timing model for cell 'u' of type 'URAM288'"):
        analyze(m.module())


# The table against the Vivado reports it cites -------------------------------------------------


def _calibration():
    nets, arcs = [], {}
    with open(CALIBRATION) as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        for row in rows:
            if row["kind"] == "net":
                nets.append((int(row["fanout_or_count"]), float(row["delay_ns"]), row["name"]))
            else:
                arcs[row["name"]] = (
                    int(row["fanout_or_count"]),
                    float(row["delay_ns"]),
                    float(row["median_ns"]),
                    float(row["max_ns"]),
                )
    return nets, arcs


def test_routing_term_is_an_upper_envelope_of_routed_nets():
    """The routing estimate covers the 90th percentile of every fanout octave with at
    least five nets between slices in the Vivado reports, and their mean fit is below it."""
    nets, _ = _calibration()
    between = [(fo, d) for fo, d, _ in nets if fo > 1 or d >= 0.1]
    assert len(between) >= 100
    octaves = defaultdict(list)
    for fo, d in between:
        octaves[math.ceil(math.log2(fo))].append(d)
    checked = 0
    for k, ds in sorted(octaves.items()):
        if len(ds) < 5:
            continue
        ds.sort()
        p90 = ds[int(0.9 * (len(ds) - 1))]
        assert T.route(2**k) >= p90, (2**k, p90, T.route(2**k))
        checked += 1
    assert checked >= 7
    xs = [math.log2(fo) for fo, _ in between]
    ys = [d for _, d in between]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    base = my - slope * mx
    print(
        f"mean fit {base:.3f} + {slope:.3f} log2(fo); table {T.route_base} + "
        f"{T.route_per_octave} log2(fo)"
    )
    assert base < T.route_base and slope < T.route_per_octave
    local = sorted(d for fo, d, drv in nets if fo == 1 and drv.startswith("LUT"))
    assert statistics.median(local) <= T.route_local


def test_cell_delays_match_the_reports():
    """Every table entry taken from Vivado [V] lies within the reported range; LUT delays
    are the slowest pin's median of their size."""
    _, arcs = _calibration()

    def arc(name):
        return arcs[name]

    for k in range(1, 7):
        medians = [v[2] for name, v in arcs.items() if name.startswith(f"LUT{k}:Prop_I")]
        assert T.lut[f"LUT{k}"] == pytest.approx(max(medians), abs=0.005), k
    assert T.ff_clk_q == pytest.approx(arc("FDRE:Prop_C_Q")[2], abs=0.002)
    assert T.ff_setup_d == arc("FDRE:Setup_C_D")[2]
    assert T.ff_setup_ce == arc("FDRE:Setup_C_CE")[2]
    assert T.ff_setup_sr == arc("FDRE:Setup_C_R")[2]
    assert T.carry_ci_co == arc("CARRY8:Prop_CARRY8_CI_CO[]")[2]
    assert T.carry_ci_inner == arc("CARRY8:Prop_CARRY8_CI_CO[]")[3]
    assert T.carry_ci_o == arc("CARRY8:Prop_CARRY8_CI_O[]")[3]
    assert T.carry_s_co == arc("CARRY8:Prop_CARRY8_S[]_CO[]")[3]
    assert T.carry_s_o == arc("CARRY8:Prop_CARRY8_S[]_O[]")[3]
    assert T.carry_di_co == arc("CARRY8:Prop_CARRY8_DI[]_CO[]")[3]
    assert T.carry_di_o == arc("CARRY8:Prop_CARRY8_DI[]_O[]")[3]
    assert T.mux_data == arc("MUXF7:Prop_I0_O")[3]
    for field, name in [
        ("dsp_in", "DSP_A_B_DATA:Prop_DSP_A_B_DATA_B[]_B2_DATA[]"),
        ("dsp_in_clk", "DSP_A_B_DATA:Prop_DSP_A_B_DATA_CLK_B2_DATA[]"),
        ("dsp_preadd_bypass", "DSP_PREADD_DATA:Prop_DSP_PREADD_DATA_B2_DATA[]_B2B1[]"),
        ("dsp_mult", "DSP_MULTIPLIER:Prop_DSP_MULTIPLIER_B2B1[]_U[]"),
        ("dsp_m_data", "DSP_M_DATA:Prop_DSP_M_DATA_U[]_U_DATA[]"),
        ("dsp_alu", "DSP_ALU:Prop_DSP_ALU_U_DATA[]_ALU_OUT[]"),
        ("dsp_pcin_alu", "DSP_ALU:Prop_DSP_ALU_PCIN[]_ALU_OUT[]"),
        ("dsp_out_p", "DSP_OUTPUT:Prop_DSP_OUTPUT_ALU_OUT[]_P[]"),
        ("dsp_out_pcout", "DSP_OUTPUT:Prop_DSP_OUTPUT_ALU_OUT[]_PCOUT[]"),
        ("dsp_setup_p", "DSP_OUTPUT:Setup_DSP_OUTPUT_CLK_ALU_OUT[]"),
    ]:
        assert getattr(T, field) == arc(name)[2], field


def test_dsp_figures_agree_with_ds925():
    """DS925 (-1, 0.85 V): 645 MHz with every register; the MREG setup is what makes the
    multiplier stage exactly that, and the pre-adder is the 338/456 MHz difference."""
    mult_stage = T.dsp_in_clk + T.dsp_preadd_bypass + T.dsp_mult + T.dsp_m_data + T.dsp_setup_m
    assert 1000 / mult_stage == pytest.approx(645, abs=1)
    assert T.dsp_preadd == pytest.approx(1000 / 338 - 1000 / 456, abs=0.001)
    assert T.dsp_in_clk + T.dsp_alu + T.dsp_setup_p < mult_stage


def test_yosys_netlist_end_to_end(tmp_path):
    """A registered INT8 MAC through Yosys (synth_xilinx -family xcup): the netlist the
    resources flow writes scores without unknown cells, and the worst path is the DSP's."""
    from bamboo.boards.platforms import board
    from bamboo.boards.resources import NETLIST, synthesize
    from test_board_resources import mac_verilog

    v = mac_verilog(tmp_path / "mac.v")
    work = tmp_path / "y"
    synthesize(v, board("ultra96"), "mac", workdir=work)
    r = analyze(work / NETLIST)
    print(r.render())
    assert r.paths and 100 < r.fmax_mhz < 1000
    assert any("DSP48E2" in c for c in r.paths[0].cells)


# In the resources flow ---------------------------------------------------------------------------


def test_estimate_scores_the_netlist_yosys_writes(tmp_path, monkeypatch):
    """``estimate`` runs the analysis on the netlist beside Yosys's statistics and keeps
    Fmax and the worst paths in the result (Yosys replaced by a hand-made netlist)."""
    import json

    import bamboo.boards.resources as resources
    from bamboo.arch.config import preset
    from bamboo.boards.platforms import board
    from board_standin import PortStandIn

    monkeypatch.setenv("BAMBOO_BUILD", str(tmp_path / "build"))

    def fake_yosys(design, b, top, *, workdir):
        n = Netlist()
        n.ff("a", d=1, q=2)
        n.lut(6, "l", [2], 3)
        n.ff("b", d=3, q=4)
        (Path(workdir) / resources.NETLIST).write_text(json.dumps({"modules": {"top": n.module()}}))
        return {"FDRE": 2, "LUT6": 1}, 1, 0.1

    monkeypatch.setattr(resources, "synthesize", fake_yosys)
    r = resources.estimate(
        "ultra96", config=preset("tiny"), accelerator=PortStandIn, folder=tmp_path / "work"
    )
    ns = T.ff_clk_q + T.route(1) + T.lut["LUT6"] + T.route_local + T.ff_setup_d
    assert r.period_ns == pytest.approx(ns + T.clock_uncertainty, abs=1e-3)
    assert r.fmax_mhz == pytest.approx(1000 / r.period_ns, abs=0.1)
    assert r.worst_paths[0]["start"] == "a" and r.worst_paths[0]["end"] == "b"
    text = r.timing()
    assert text.startswith(f"estimated Fmax: {r.fmax_mhz:.0f} MHz") and "a  ->  b" in text
    assert resources._timing(tmp_path, board("pynqz2")) == {}  # 7-series: no table
    r.fmax_mhz = None
    assert "none (the delay table is for UltraScale+ only)" in r.timing()


@pytest.mark.parametrize("name", ["ultra96", "ultra96v1"])
def test_recorded_ultrascale_estimates_have_timing(name):
    """The committed estimates of the Ultra96 boards carry Fmax and ten named paths
    (`make resources BOARD=... RECORD=1`; tests/boards/test_board_resources.py checks
    that they are of the design as it is now). zcu104 and kv260 get theirs at their next
    `make resources` (a record without timing reruns Yosys); not recorded yet."""
    from bamboo.boards.resources import recorded

    r = recorded(name)
    assert r.fmax_mhz is not None and r.timing_table == T.name, (
        f"run `make resources BOARD={name} RECORD=1` and commit boards/estimates/{name}.json"
    )
    assert len(r.worst_paths) == 10
    assert r.worst_paths[0]["ns"] + T.clock_uncertainty == pytest.approx(r.period_ns, abs=2e-3)
    assert all(p["start"] and p["end"] for p in r.worst_paths)
    print(r.timing())


# One component alone (boards/components.py) ------------------------------------------------------


def test_registered_ports():
    """``registered_ports``: an input port starts at a flip-flop's clock-to-out, an
    output port ends at its setup; by default both are 0 ns."""
    n = Netlist()
    n.lut(6, "l", [2], 3)
    n.ports = {"a": {"direction": "input", "bits": [2]}, "y": {"direction": "output", "bits": [3]}}
    plain = analyze(n.module())
    reg = analyze(n.module(), registered_ports=True)
    assert (reg.paths[0].start, reg.paths[0].end) == ("port a", "port y")
    assert reg.paths[0].ns == pytest.approx(plain.paths[0].ns + T.ff_clk_q + T.ff_setup_d, abs=1e-3)


def test_component_estimate(tmp_path, monkeypatch):
    """A small component through Yosys and the estimate: a registered 16-bit adder whose
    worst path is input port -> carry chain -> register; then the cache."""
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from bamboo.boards import components

    class Adder(wiring.Component):
        a: In(16)
        b: In(16)
        s: Out(17)

        def elaborate(self, platform):
            m = Module()
            total = Signal(17)
            m.d.sync += total.eq(self.a + self.b)
            m.d.comb += self.s.eq(total)
            return m

    monkeypatch.setitem(components.COMPONENTS, "adder", lambda cfg: Adder())
    r = components.component_estimate("ultra96", "adder", folder=tmp_path)
    assert (r.dsp, r.bram36) == (0, 0) and r.ff == 17 and r.lut >= 8
    worst = r.worst_paths[0]
    # The sum register drives the output port: Yosys names it ``s``.
    assert worst["start"][0] in "ab" and worst["end"].startswith("s[")
    assert any("CARRY" in c for c in worst["cells"])
    assert worst["cells"][0].startswith("port ")
    # Ports registered: at least a clock-to-out, a carry chain and a setup.
    assert r.period_ns > T.ff_clk_q + T.carry_s_co + T.ff_setup_d
    assert f"estimated Fmax: {r.fmax_mhz:.0f} MHz" in r.render()
    assert components.component_estimate("ultra96", "adder", folder=tmp_path) == r


def test_component_cli_errors(capsys):
    from bamboo.boards.resources import main

    assert main(["ultra96", "--component", "nonesuch"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bamboo: error: unknown component 'nonesuch'; one of: vector")
    assert main(["pynqz2", "--component", "vector"]) == 1
    assert "the timing estimate is for UltraScale+ only" in capsys.readouterr().err
    assert main(["ultra96", "--component", "vector", "--record"]) == 1
    assert "--record is for the whole design" in capsys.readouterr().err


_BIG = {"vector", "compute", "postproc", "array"}  # tens of seconds each to elaborate


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in _BIG else n
        for n in (
            "vector",
            "compute",
            "postproc",
            "load",
            "store",
            "fetcher",
            "dispatcher",
            "queue",
            "bus",
            "regfile",
            "control",
            "executor",
            "array",
            "fma1",
            "fma2",
            "requantizer",
        )
    ],
)
def test_components_elaborate(name):
    """Every registered component elaborates at ultra96 with its ports (no Yosys; the
    big units in the slow set)."""
    from bamboo.boards.components import component_rtlil
    from bamboo.boards.platforms import board

    text, digest = component_rtlil(name, board("ultra96").config())
    assert f"module \\{name}" in text and len(digest) == 20
