"""A static timing estimate of a Yosys netlist for the UltraScale+ fabric (xczu3eg, speed -1).

Yosys's ``sta`` has no timing arcs for the Xilinx cells and there is no Vivado here,
so this module scores the netlist ``synth_xilinx -family xcup`` writes
(``netlist.json``, :mod:`bamboo.boards.resources`) itself: every path from a start
point (a flip-flop's Q, a block RAM's or LUT RAM's data out, a DSP48E2 pipeline
register, a top-level input) through LUTs, carry chains, wide muxes and unregistered
DSP stages to an end point (a flip-flop's D/CE/R, a block RAM or DSP input register,
a LUT RAM write port, a top-level output) is the sum of the cells' delays, a routing
estimate per net and the end point's setup time. Fmax is one over the worst path plus
the clock uncertainty.

It is an **estimate**: Yosys maps differently from Vivado (no retiming, no
``phys_opt`` replication of high-fanout nets, its own LUT packing), and nothing is
placed, so the routing term is a function of the fanout alone (:meth:`DelayTable.route`).
What it is good for: the relative depth of paths in ns rather than cells, the worst
paths by name, and a figure to compare with the 250 MHz target. Only Vivado's
``report_timing`` after ``route_design`` (``make bitstream`` on a machine with
Vivado) settles the clock.

Sources of :data:`XCZU3EG_1`, the delay table:

* ``[V]`` Vivado 2021.2 post-route ``report_timing`` of 282 small designs on
  xczu3eg-sbva484 speed grade -1 (speed file 1.29), from the public
  lakeroad-evaluation repository (MIT); the extracted arcs and nets are vendored in
  ``boards/calibration/vivado_xczu3eg_1.csv`` and ``tests/boards/test_timing.py``
  checks the table against them.
* ``[DS925]`` AMD DS925, Zynq UltraScale+ MPSoC Data Sheet: DC and AC Switching
  Characteristics, DSP48 Slice Switching Characteristics (speed grade -1, 0.85 V):
  FMAX 645 MHz with all registers, 456 MHz without MREG, 338 MHz without MREG and
  ADREG.
* ``[UG573]``/``[UG579]``/``[UG574]``: the UltraScale memory, DSP and CLB user guides
  for which pins are registered under which parameters (DOA_REG, AREG, MREG, PREG...).
* ``[est]``: an estimate, no published number was at hand; the docstring of the
  field says how it was reached.
"""

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .platforms import BoardError

__all__ = [
    "XCZU3EG_1",
    "DelayTable",
    "TimingError",
    "TimingPath",
    "TimingReport",
    "analyze",
    "load_netlist",
]


class TimingError(BoardError):
    """A netlist this estimate cannot score (unknown cell, combinational loop)."""


@dataclass(frozen=True)
class DelayTable:
    """Delays in ns of one device family and speed grade (see the module docstring).

    Attributes
    ----------
    name : str
    ff_clk_q, ff_setup_d, ff_setup_ce, ff_setup_sr : float
        FDRE/FDSE/FDCE/FDPE clock to Q and setup of D, CE and the set/reset pins
        ``[V]`` (Vivado reports negative CE and R setups; kept as reported).
    lut : dict
        ``{"LUT1": ns, ...}``: per LUT size, the slowest per-pin median of ``[V]``
        (Vivado puts critical signals on fast pins, so the median, not the max).
    mux_data, mux_select : float
        MUXF7/F8/F9 data and select to O: data ``[V]`` (0.087 ns), select ``[est]``
        as a LUT6 input plus the data arc.
    carry_ci_co : float
        CARRY8 CI to CO[7] ``[V]`` (0.030 ns), the cascade arc of a long adder; a
        Yosys CARRY4 is half a CARRY8 and gets half of it.
    carry_ci_inner, carry_ci_o : float
        CI to an inner CO and to an O output ``[V]`` (maxima 0.116, 0.146).
    carry_s_co, carry_s_o, carry_di_co, carry_di_o : float
        S and DI inputs to CO and O ``[V]`` (maxima).
    bram_clk_do, bram_clk_do_reg, bram_setup : float
        RAMB36E2/RAMB18E2 clock to DOUT without and with the output register
        (DOA_REG/DOB_REG), and the setup of any input (address, data, enables).
        ``[est]``: 0.830 ns is Vivado's CLK to DOUT on an Alveo U250 (-2) in a public
        report; times 1.2, DS925's DSP FMAX ratio of speed grade -2 to -1 (775/645),
        is 1.0 ns, rounded up to 1.1. With the register, 0.35 ns (DS958 puts the
        registered clock-to-out at 0.29x the unregistered one). Setup 0.45 ns.
    dsp_in, dsp_in_clk, dsp_preadd_bypass, dsp_preadd, dsp_mult, dsp_m_data, dsp_alu,
    dsp_pcin_alu, dsp_out_p, dsp_out_pcout, dsp_setup_p : float
        DSP48E2 internal arcs ``[V]``: pin to the A/B data stage (0.195), its register's
        clock to out (0.263), pre-adder bypass (0.092), multiplier (0.737), M data
        (0.059), ALU from M and from PCIN (0.699, 0.698), ALU to P and PCOUT (0.141,
        0.159), setup of the P register (0.010). ``dsp_preadd`` ``[DS925]``: the
        pre-adder in the path, 1/338 MHz - 1/456 MHz = 0.766 ns.
    dsp_setup_in, dsp_setup_m, dsp_clk_p, dsp_setup_ctrl : float
        ``[est]``: setup of the A/B/C/D/control input registers (0.25), setup of MREG
        (0.40: DS925's 645 MHz with all registers, 1.550 ns, minus the arcs of the
        multiplier stage 0.263 + 0.092 + 0.737 + 0.059), P register clock to out
        (0.35), setup of CE and reset pins (0.35).
    lutram_clk_do, lutram_read, lutram_setup : float
        ``[est]``: distributed RAM (RAM32M16, RAM64M, SRL16E...) write clock to the
        asynchronous read output (0.95), read address to output (a LUT6 plus its wide
        mux, 0.20), setup of data, write enable and write address (0.35).
    route_base, route_per_octave : float
        Routing of a net with fanout ``fo``: ``route_base + route_per_octave *
        log2(fo)``. ``[V]`` calibrated: an upper envelope of the 90th percentile per
        fanout octave of the 101 routed nets between slices in the reports (their mean
        is 0.20 + 0.046 log2 fo). The reports are of small designs; the margin of the
        90th percentile over the mean is all the allowance made for the longer routes
        of a congested device, which is why this is an estimate.
    route_local : float
        A LUT's only load in the same slice (its flip-flop, carry or wide mux):
        Vivado packs them, ``[V]`` fanout-1 LUT nets have a median of 0.028 ns.
    route_cascade : float
        Dedicated cascades (CARRY CO to CI, DSP PCOUT/ACOUT/BCOUT): ``[V]`` 0.007 to
        0.08 ns.
    clock_uncertainty : float
        ``[V]``: 0.035 ns on every reported path.
    """

    name: str
    ff_clk_q: float = 0.096
    ff_setup_d: float = 0.027
    ff_setup_ce: float = -0.043
    ff_setup_sr: float = -0.072
    lut: dict = field(
        default_factory=lambda: {
            "LUT1": 0.05,
            "LUT2": 0.12,
            "LUT3": 0.10,
            "LUT4": 0.13,
            "LUT5": 0.20,
            "LUT6": 0.18,
        }
    )
    mux_data: float = 0.087
    mux_select: float = 0.27
    carry_ci_co: float = 0.030
    carry_ci_inner: float = 0.116
    carry_ci_o: float = 0.146
    carry_s_co: float = 0.248
    carry_s_o: float = 0.295
    carry_di_co: float = 0.177
    carry_di_o: float = 0.264
    bram_clk_do: float = 1.10
    bram_clk_do_reg: float = 0.35
    bram_setup: float = 0.45
    dsp_in: float = 0.195
    dsp_in_clk: float = 0.263
    dsp_preadd_bypass: float = 0.092
    dsp_preadd: float = 0.766
    dsp_mult: float = 0.737
    dsp_m_data: float = 0.059
    dsp_alu: float = 0.699
    dsp_pcin_alu: float = 0.698
    dsp_out_p: float = 0.141
    dsp_out_pcout: float = 0.159
    dsp_setup_p: float = 0.010
    dsp_setup_in: float = 0.25
    dsp_setup_m: float = 0.40
    dsp_clk_p: float = 0.35
    dsp_setup_ctrl: float = 0.35
    lutram_clk_do: float = 0.95
    lutram_read: float = 0.20
    lutram_setup: float = 0.35
    route_base: float = 0.34
    route_per_octave: float = 0.08
    route_local: float = 0.03
    route_cascade: float = 0.03
    clock_uncertainty: float = 0.035

    def route(self, fanout):
        """Estimated routing delay of a general net driving ``fanout`` cell inputs."""
        return self.route_base + self.route_per_octave * math.log2(max(fanout, 1))


#: xczu3eg (Ultra96), speed grade -1: the slowest UltraScale+ grade, so an estimate for
#: the -2 parts (ZCU104, KV260) errs on the slow side.
XCZU3EG_1 = DelayTable("xczu3eg -1")


@dataclass
class TimingPath:
    """One scored path: ``start`` and ``end`` signal names, total ``ns`` (with setup),
    and the ``cells`` it goes through as ``"TYPE name"`` strings, start to end."""

    start: str
    end: str
    ns: float
    cells: list

    @property
    def levels(self):
        """Combinational cells on the path (start and end points excluded)."""
        return max(len(self.cells) - 2, 0)


@dataclass
class TimingReport:
    """The estimate of one netlist: ``period_ns`` of the worst path plus the clock
    uncertainty, ``fmax_mhz`` and the worst ``paths`` (one per start/end signal pair)."""

    table: str
    period_ns: float
    fmax_mhz: float
    paths: list
    start_points: int
    end_points: int

    def render(self, count=10):
        lines = [
            f"estimated Fmax: {self.fmax_mhz:.0f} MHz (worst path {self.period_ns:.3f} ns "
            f"with clock uncertainty; static estimate over the Yosys netlist, delay table "
            f"{self.table}; not Vivado)"
        ]
        for k, p in enumerate(self.paths[:count], 1):
            lines.append(f"{k:>3}. {p.ns:6.3f} ns  {p.levels:>2} levels  {p.start}  ->  {p.end}")
        return "\n".join(lines)


# --- cell models -------------------------------------------------------------------------------
# Each model turns one cell into arcs (input bit -> output bit or internal node, delay),
# start points (node, clock-to-out) and end points (bit, setup). Internal DSP nodes are
# tuples (cell name, stage) next to the integer net bits of the Yosys JSON.

_CLOCK_PINS = {"C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK", "RDCLK", "WRCLK"}
_IGNORED = {"scopeinfo", "BUFG", "BUFGCE", "BUFG_PS", "GND", "VCC", "IBUF", "OBUF"}
_DEDICATED_IN = {"CI", "CIN", "PCIN", "ACIN", "BCIN", "CARRYCASCIN", "MULTSIGNIN"}


class _Graph:
    def __init__(self):
        self.arcs = defaultdict(list)  # node -> [(node, delay, cell)]
        self.starts = {}  # node -> (clock-to-out, cell)
        self.ends = []  # (node, setup, cell, load pin)

    def arc(self, src, dst, delay, cell):
        self.arcs[src].append((dst, delay, cell))

    def start(self, node, delay, cell):
        if node not in self.starts or self.starts[node][0] < delay:
            self.starts[node] = (delay, cell)

    def end(self, node, setup, cell):
        self.ends.append((node, setup, cell))


def _bits(cell, port):
    return [b for b in cell["connections"].get(port, []) if isinstance(b, int)]


def _param(cell, name, default=0):
    """A cell parameter (or, given a dict, an attribute) as an int or a string."""
    params = cell.get("parameters", cell)
    value = params.get(name, default)
    if isinstance(value, str):
        value = value.strip()
        if re.fullmatch(r"[01xz]+", value) and len(value) > 1:
            return int(value.replace("x", "0").replace("z", "0"), 2)
        return value.strip('"')
    return value


def _inputs(cell):
    return [
        p
        for p, d in cell.get("port_directions", {}).items()
        if d == "input" and p not in _CLOCK_PINS
    ]


def _outputs(cell):
    return [p for p, d in cell.get("port_directions", {}).items() if d == "output"]


def _lut(g, t, name, cell, ctype):
    delay = t.lut["LUT1" if ctype == "INV" else ctype]
    for o in _bits(cell, "O"):
        for p in _inputs(cell):
            for b in _bits(cell, p):
                g.arc(b, o, delay, name)


def _mux(g, t, name, cell, ctype):
    for o in _bits(cell, "O"):
        for p in ("I0", "I1"):
            for b in _bits(cell, p):
                g.arc(b, o, t.mux_data, name)
        for b in _bits(cell, "S"):
            g.arc(b, o, t.mux_select, name)


def _carry(g, t, name, cell, ctype):
    n = 8 if ctype == "CARRY8" else 4
    # A CARRY4 is half of a CARRY8: the cascade arc CI -> CO[top] is shared by two.
    ci_top = t.carry_ci_co * n / 8
    co, o = cell["connections"].get("CO", []), cell["connections"].get("O", [])
    for cin in ("CI", "CYINIT", "CI_TOP"):
        for b in _bits(cell, cin):
            for j in range(n):
                if j < len(co) and isinstance(co[j], int):
                    g.arc(b, co[j], ci_top if j == n - 1 else t.carry_ci_inner, name)
                if j < len(o) and isinstance(o[j], int):
                    g.arc(b, o[j], t.carry_ci_o, name)
    for port, to_co, to_o in (
        ("S", t.carry_s_co, t.carry_s_o),
        ("DI", t.carry_di_co, t.carry_di_o),
    ):
        bits = cell["connections"].get(port, [])
        for i, b in enumerate(bits):
            if not isinstance(b, int):
                continue
            for j in range(i, n):
                if j < len(co) and isinstance(co[j], int):
                    g.arc(b, co[j], to_co, name)
                if j < len(o) and isinstance(o[j], int):
                    g.arc(b, o[j], to_o, name)


def _ff(g, t, name, cell, ctype):
    for b in _bits(cell, "Q"):
        g.start(b, t.ff_clk_q, name)
    setups = {"D": t.ff_setup_d, "CE": t.ff_setup_ce}
    for p in _inputs(cell):
        for b in _bits(cell, p):
            g.end(b, setups.get(p, t.ff_setup_sr), name)


def _bram(g, t, name, cell, ctype):
    regs = {"A": _param(cell, "DOA_REG"), "B": _param(cell, "DOB_REG")}
    for p in _outputs(cell):
        side = "A" if "DOUTA" in p or "DOUTPA" in p or p.endswith("A") else "B"
        delay = t.bram_clk_do_reg if regs.get(side) else t.bram_clk_do
        for b in _bits(cell, p):
            g.start(b, delay, name)
    for p in _inputs(cell):
        for b in _bits(cell, p):
            g.end(b, t.bram_setup, name)


def _lutram(g, t, name, cell, ctype):
    """Distributed RAM and shift registers ([UG574]): outputs start at the write clock;
    read addresses reach their outputs through the LUT; the write side (data, enable,
    write address) ends at the clock."""
    for p in _outputs(cell):
        for b in _bits(cell, p):
            g.start(b, t.lutram_clk_do, name)
    letters = sorted(p[4:] for p in _inputs(cell) if re.fullmatch(r"ADDR[A-H]", p))
    write_addr = f"ADDR{letters[-1]}" if letters else None
    srl = ctype.startswith("SRL")
    for p in _inputs(cell):
        m = re.fullmatch(r"ADDR([A-H])", p)
        if m:  # RAM32M/RAM64M(8)/RAM32M16
            reads = [f"DO{m.group(1)}"]
        elif p.startswith("DPRA"):  # RAMnX1D second read port
            reads = ["DPO"]
        elif re.fullmatch(r"A\d*", p):  # RAMnX1S/D port A, SRL address
            reads = ["SPO", "O", "Q"]
        else:
            reads = []
        for q in reads:
            for o in _bits(cell, q):
                for b in _bits(cell, p):
                    g.arc(b, o, t.lutram_read, name)
        if not reads or p == write_addr or (reads == ["SPO", "O", "Q"] and not srl):
            for b in _bits(cell, p):
                g.end(b, t.lutram_setup, name)


def _dsp(g, t, name, cell, ctype):
    """DSP48E2 as its stages ([UG579] figure 2-1): A/B/C/D input registers, pre-adder
    (ADREG), multiplier (MREG), ALU (PREG); each register present per its parameter is
    an end point of the stage before and a start point of the stage after."""

    def node(stage):
        return (name, stage)

    def reg(d, q, present, setup, clk_q):
        if present:
            g.end(d, setup, name)
            g.start(q, clk_q, name)
        else:
            g.arc(d, q, 0.0, name)

    def pins(ports, dst, delay):
        for p in ports:
            for b in _bits(cell, p):
                g.arc(b, dst, delay, name)

    preadd = "AD" in (_param(cell, "AMULTSEL", "A"), _param(cell, "BMULTSEL", "B"))
    use_mult = _param(cell, "USE_MULT", "MULTIPLY") != "NONE"
    for stage, ports, reg_param in (
        ("a", ("A", "ACIN"), "AREG"),
        ("b", ("B", "BCIN"), "BREG"),
        ("c", ("C",), "CREG"),
        ("d", ("D",), "DREG"),
        ("inmode", ("INMODE",), "INMODEREG"),
        ("ctrl", ("OPMODE", "ALUMODE", "CARRYIN", "CARRYINSEL"), None),
    ):
        if not any(_bits(cell, p) for p in ports):
            continue  # tied off: a constant, no path
        pins(ports, node(stage + "_d"), t.dsp_in)
        if reg_param is None:
            present = any(
                _param(cell, r, 1)
                for r in ("OPMODEREG", "ALUMODEREG", "CARRYINREG", "CARRYINSELREG")
            )
        else:
            present = _param(cell, reg_param, 1) > 0
        reg(node(stage + "_d"), node(stage + "_q"), present, t.dsp_setup_in, t.dsp_in_clk)
    for p, stage in (("ACOUT", "a_q"), ("BCOUT", "b_q")):
        for b in _bits(cell, p):
            g.arc(node(stage), b, 0.0, name)
    pre = t.dsp_preadd if preadd else t.dsp_preadd_bypass
    for src in ("a_q", "b_q", "d_q", "inmode_q"):
        g.arc(node(src), node("ad_d"), pre, name)
    reg(
        node("ad_d"),
        node("ad_q"),
        preadd and _param(cell, "ADREG", 1) > 0,
        t.dsp_setup_m,
        t.dsp_in_clk,
    )
    if use_mult:
        g.arc(node("ad_q"), node("m_d"), t.dsp_mult + t.dsp_m_data, name)
        reg(node("m_d"), node("m_q"), _param(cell, "MREG", 1) > 0, t.dsp_setup_m, t.dsp_in_clk)
    else:  # A:B straight to the ALU's X multiplexer
        g.arc(node("a_q"), node("m_q"), 0.0, name)
        g.arc(node("b_q"), node("m_q"), 0.0, name)
    for src in ("m_q", "c_q", "ctrl_q"):
        g.arc(node(src), node("alu"), t.dsp_alu, name)
    pins(("PCIN", "CARRYCASCIN", "MULTSIGNIN"), node("alu"), t.dsp_pcin_alu)
    preg = _param(cell, "PREG", 1) > 0
    if preg:
        g.end(node("alu"), t.dsp_setup_p, name)
        g.start(node("p"), t.dsp_clk_p, name)
        g.arc(node("p"), node("alu"), t.dsp_alu, name)  # P feedback (accumulate)
    for p in _outputs(cell):
        if p in ("ACOUT", "BCOUT"):
            continue
        delay = (
            0.0
            if preg
            else (t.dsp_out_pcout if p.endswith("COUT") or p.startswith("PCOUT") else t.dsp_out_p)
        )
        for b in _bits(cell, p):
            g.arc(node("p") if preg else node("alu"), b, delay, name)
    for p in _inputs(cell):
        if p.startswith(("CE", "RST")):
            for b in _bits(cell, p):
                g.end(b, t.dsp_setup_ctrl, name)


def _model(ctype):
    if re.fullmatch(r"LUT[1-6]|INV", ctype):
        return _lut
    if ctype in ("MUXF7", "MUXF8", "MUXF9"):
        return _mux
    if ctype in ("CARRY4", "CARRY8"):
        return _carry
    if re.fullmatch(r"FD[RSCP]E(_1)?", ctype):
        return _ff
    if ctype.startswith(("RAMB36", "RAMB18")):
        return _bram
    if ctype.startswith(("RAM32", "RAM64", "RAM128", "RAM256", "SRL")):
        return _lutram
    if ctype == "DSP48E2":
        return _dsp
    return None


# --- analysis -----------------------------------------------------------------------------------


def load_netlist(path, top=None):
    """The top module of a Yosys ``write_json`` netlist (flattened)."""
    return _top_module(json.loads(Path(path).read_text()), top)


def _top_module(data, top):
    modules = data["modules"]
    if top is not None:
        return modules[top]
    if len(modules) == 1:
        return next(iter(modules.values()))
    tops = [m for m in modules.values() if _param(m.get("attributes", {}), "top", 0)]
    if len(tops) != 1:
        raise TimingError("the netlist has no single top module; pass top=")
    return tops[0]


def _names(module):
    """``{bit: name}``, preferring user names over Yosys's and shorter ones."""
    best = {}
    for name, net in module.get("netnames", {}).items():
        hidden = bool(net.get("hide_name")) or name.startswith("$")
        bits = net["bits"]
        for i, b in enumerate(bits):
            if not isinstance(b, int):
                continue
            label = name if len(bits) == 1 else f"{name}[{i}]"
            key = (hidden, len(label))
            if b not in best or key < best[b][0]:
                best[b] = (key, label)
    return {b: v[1].lstrip("\\") for b, v in best.items()}


def analyze(netlist, table=XCZU3EG_1, count=10, top=None, registered_ports=False):
    """Score every register-to-register path of a Yosys JSON netlist.

    Parameters
    ----------
    netlist : dict or path
        The parsed ``write_json`` output (the whole file, or one module) or its path.
    table : DelayTable
    count : int
        Worst paths kept, one per (start signal, end signal) pair with bus indices
        dropped, so a 32-bit adder's 32 paths count once.
    registered_ports : bool
        Treat the top-level ports as flip-flops (an input starts at ``ff_clk_q``, an
        output ends at ``ff_setup_d``), for one component timed alone
        (:mod:`bamboo.boards.components`); by default they start and end at 0 ns.

    Returns
    -------
    TimingReport
    """
    if not isinstance(netlist, dict):
        module = load_netlist(netlist, top)
    elif "modules" in netlist:
        module = _top_module(netlist, top)
    else:
        module = netlist
    g = _Graph()
    cells = module.get("cells", {})
    kinds = {}
    for name, cell in cells.items():
        ctype = cell["type"].lstrip("\\$")
        if ctype in _IGNORED:
            if ctype in ("IBUF", "OBUF"):
                for i, o in zip(_bits(cell, "I"), _bits(cell, "O")):
                    g.arc(i, o, 0.0, name)
            continue
        model = _model(ctype)
        if model is None:
            raise TimingError(f"no timing model for cell {name!r} of type {ctype!r}")
        kinds[name] = ctype
        model(g, table, name, cell, ctype)
    for pname, port in module.get("ports", {}).items():
        for b in port["bits"]:
            if not isinstance(b, int):
                continue
            if port["direction"] == "input":
                g.start(b, table.ff_clk_q if registered_ports else 0.0, f"port {pname}")
            else:
                g.end(b, table.ff_setup_d if registered_ports else 0.0, f"port {pname}")
    return _propagate(g, table, module, kinds, count)


def _route_delays(module, kinds, table):
    """``delay(bit, cell)``: the routing estimate from a net to one of its loads."""
    drivers, fanout = {}, defaultdict(int)
    for name, cell in module.get("cells", {}).items():
        if name not in kinds:
            continue
        for p, d in cell.get("port_directions", {}).items():
            if p in _CLOCK_PINS:
                continue
            for b in _bits(cell, p):
                if d == "output":
                    drivers[b] = (kinds[name], p)
                else:
                    fanout[b] += 1
    for port in module.get("ports", {}).values():
        if port["direction"] == "output":
            for b in port["bits"]:
                if isinstance(b, int):
                    fanout[b] += 1

    def delay(bit, cell):
        load = kinds.get(cell, "")
        dtype, dpin = drivers.get(bit, ("", ""))
        if dpin.startswith(_CASCADE_OUT) and load.startswith(("CARRY", "DSP48")):
            return table.route_cascade
        if _is_lut(dtype) and load.startswith("MUXF"):
            return table.route_local  # the LUTs feeding a wide mux: in the slice
        if dtype.startswith("MUXF") and load.startswith("MUXF"):
            return table.route_local
        if fanout[bit] == 1 and _is_lut(dtype) and load.startswith(("FD", "CARRY")):
            return table.route_local
        return table.route(fanout[bit])

    return delay


_CASCADE_OUT = ("CO", "PCOUT", "ACOUT", "BCOUT", "CARRYCASCOUT", "MULTSIGNOUT")


def _is_lut(ctype):
    return bool(re.fullmatch(r"LUT[1-6]|INV", ctype))


def _propagate(g, table, module, kinds, count):
    route = _route_delays(module, kinds, table)
    # A bit's arcs into a cell carry the routing of the net to that cell; arcs out of
    # the DSP's internal nodes (tuples) carry none.
    edges, indeg = defaultdict(list), defaultdict(int)
    for src, outs in g.arcs.items():
        for dst, delay, cell in outs:
            w = delay + (route(src, cell) if isinstance(src, int) else 0.0)
            edges[src].append((dst, w, cell))
            indeg[dst] += 1
    nodes = set(edges) | set(indeg) | set(g.starts)
    arrival = {node: delay for node, (delay, _) in g.starts.items()}
    prev = {node: (None, cell) for node, (_, cell) in g.starts.items()}
    ready = [n for n in nodes if indeg[n] == 0]
    seen = 0
    while ready:
        n = ready.pop()
        seen += 1
        a = arrival.get(n)
        for dst, w, cell in edges.get(n, ()):
            if a is not None and a + w > arrival.get(dst, -math.inf):
                arrival[dst] = a + w
                prev[dst] = (n, cell)
            indeg[dst] -= 1
            if indeg[dst] == 0:
                ready.append(dst)
    if seen < len(nodes):
        names = _names(module)
        stuck = sorted(
            {names.get(n, str(n)) for n in nodes if indeg[n] > 0 and isinstance(n, int)}
        )[:4]
        raise TimingError(
            f"combinational loop through {len(nodes) - seen} nets, e.g. " + ", ".join(stuck)
        )

    scored = []
    for node, setup, cell in g.ends:
        if node in arrival:
            w = route(node, cell) if isinstance(node, int) else 0.0
            scored.append((arrival[node] + w + setup, node, cell))
    scored.sort(key=lambda s: -s[0])
    label = _Labels(module, kinds)
    paths, pairs = [], set()
    for total, node, cell in scored:
        chain = [(node, cell)]
        n = node
        while n is not None:
            p, via = prev.get(n, (None, None))
            chain.append((p, via))
            n = p
        chain.reverse()  # [(None, start cell), ..., (end, end cell)]
        start = label.node(chain[1][0], chain[0][1])
        end = label.end(node, cell)
        key = (re.sub(r"\[\d+\]", "", start), re.sub(r"\[\d+\]", "", end))
        if key in pairs:
            continue
        pairs.add(key)
        via = [label.cell(c) for _, c in chain]
        cells = [v for k, v in enumerate(via) if k == 0 or v != via[k - 1]]
        paths.append(TimingPath(start, end, round(total, 3), cells))
        if len(paths) >= count:
            break
    worst = (scored[0][0] if scored else 0.0) + table.clock_uncertainty
    return TimingReport(
        table=table.name,
        period_ns=round(worst, 3),
        fmax_mhz=round(1000.0 / worst, 1),
        paths=paths,
        start_points=len(g.starts),
        end_points=len(g.ends),
    )


class _Labels:
    """Names of path ends: a register by its Q signal, a RAM or DSP by its cell name."""

    def __init__(self, module, kinds):
        self.names = _names(module)
        self.cells = module.get("cells", {})
        self.kinds = kinds

    def cell(self, cell):
        if cell is None or str(cell).startswith("port "):
            return str(cell)
        return f"{self.kinds.get(cell, '?')} {_clean(cell)}"

    def _register(self, cell):
        if cell in self.kinds and self.kinds[cell].startswith(("FD", "SRL")):
            q = _bits(self.cells[cell], "Q")
            if q and q[0] in self.names:
                return self.names[q[0]]
        return None

    def node(self, node, cell):
        if isinstance(node, tuple):
            return f"{_clean(node[0])}.{node[1]}"
        return self._register(cell) or self.names.get(node) or f"{_clean(cell)}"

    def end(self, node, cell):
        if isinstance(node, tuple):
            return f"{_clean(node[0])}.{node[1]}"
        if str(cell).startswith("port "):
            return str(cell)
        return self._register(cell) or _clean(cell)


def _clean(name):
    return str(name).lstrip("\\")
