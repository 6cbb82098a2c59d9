"""The board-level Verilog: the accelerator with the port attributes Vivado's IP Integrator reads.

A block design instantiates the accelerator as a module reference
(``create_bd_cell -type module -reference bamboo_top``). Vivado turns ports into
interface pins from their ``X_INTERFACE_INFO`` attributes: ``s_axi__awaddr`` with
``xilinx.com:interface:aximm:1.0 s_axi AWADDR`` becomes part of the AXI pin
``accel/s_axi``. :class:`BoardTop` puts those attributes on the Amaranth signals
(Amaranth copies ``Signal.attrs`` onto the Verilog port declarations) and makes
the clock and reset explicit ports, so they carry attributes too.

The reset is active high (``rst``, Amaranth's ``sync`` domain reset); the block
design drives it from ``proc_sys_reset/peripheral_reset``.

Ref: UG994 (Vivado IP Integrator), "Inferring Interfaces in a Module Reference".
"""

import hashlib
import os
import re
from pathlib import Path

from amaranth.hdl import ClockDomain, Module, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In

__all__ = ["TOP_NAME", "BoardTop", "interfaces", "parse_ports", "write_atomic", "write_verilog"]

#: Module name of the board top level in the Verilog and the block design.
TOP_NAME = "bamboo_top"

_AXIMM = "xilinx.com:interface:aximm:1.0"
# Part of the Verilog cache key: bump when the text processing below changes.
_REV = "ports-only-1"


class BoardTop(wiring.Component):
    """The accelerator with explicit ``clk``/``rst`` and Vivado interface attributes.

    Parameters
    ----------
    accel : wiring.Component
        The accelerator: ``m_axi`` (AXI4 manager), ``s_axi`` (AXI4-Lite subordinate)
        and ``irq``, clocked by the ``sync`` domain. No ``FREQ_HZ`` goes on the
        clock: the block design propagates the PS clock's real frequency
        (249.9975 MHz, not 250), and a fixed value there would fail validation.

    Attributes
    ----------
    clk, rst : In(1)
        The ``sync`` domain's clock and active-high synchronous reset.
    s_axi, m_axi, irq
        ``accel``'s ports, unchanged.
    """

    def __init__(self, accel):
        members = dict(accel.signature.members)
        for name in ("s_axi", "m_axi", "irq"):
            if name not in members:
                raise ValueError(f"the accelerator has no {name!r} port; it has {sorted(members)}")
        if "clk" in members or "rst" in members:
            raise ValueError("the accelerator must be clocked by its sync domain, "
                             "not by clk/rst ports")
        self.accel = accel
        super().__init__({"clk": In(1), "rst": In(1), **members})
        self._annotate()

    def _annotate(self):
        def put(sig, info, param=None):
            sig.attrs["X_INTERFACE_INFO"] = info
            if param is not None:
                sig.attrs["X_INTERFACE_PARAMETER"] = param

        lite, full = self.s_axi.signature.flip(), self.m_axi.signature
        for n, (bus, mode, sig) in enumerate([("s_axi", "slave", lite), ("m_axi", "master", full)]):
            for i, (name, _member) in enumerate(sig.members.items()):
                port = getattr(getattr(self, bus), name)
                param = None
                if i == 0:
                    port.attrs["X_INTERFACE_MODE"] = f"{mode} {bus}"
                    param = _aximm_parameters(bus, sig)
                put(port, f"{_AXIMM} {bus} {name.upper()}", param)
        put(self.clk, "xilinx.com:signal:clock:1.0 clk CLK",
            "XIL_INTERFACENAME clk, ASSOCIATED_BUSIF s_axi:m_axi, ASSOCIATED_RESET rst")
        put(self.rst, "xilinx.com:signal:reset:1.0 rst RST",
            "XIL_INTERFACENAME rst, POLARITY ACTIVE_HIGH")
        put(self.irq, "xilinx.com:signal:interrupt:1.0 irq INTERRUPT",
            "XIL_INTERFACENAME irq, SENSITIVITY LEVEL_HIGH")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain()
        m.d.comb += [cd.clk.eq(self.clk), cd.rst.eq(self.rst)]
        m.submodules.accel = accel = self.accel
        wiring.connect(m, wiring.flipped(self.s_axi), accel.s_axi)
        wiring.connect(m, wiring.flipped(self.m_axi), accel.m_axi)
        m.d.comb += self.irq.eq(accel.irq)
        return m


def _aximm_parameters(bus, sig):
    names = set(sig.members)

    def width(name):
        return Shape.cast(sig.members[name].shape).width

    lite = "awlen" not in names
    params = {"XIL_INTERFACENAME": bus, "PROTOCOL": "AXI4LITE" if lite else "AXI4",
              "DATA_WIDTH": width("wdata"),
              "ADDR_WIDTH": width("awaddr")}
    if not lite:
        params.update({"ID_WIDTH": width("awid"), "MAX_BURST_LENGTH": 256,
                       "SUPPORTS_NARROW_BURST": 0, "HAS_REGION": 0})
    return ", ".join(f"{k} {v}" for k, v in params.items())


def write_verilog(top, path, cache):
    """Write the Verilog of ``top`` (a :class:`BoardTop`) to ``path``, reusing a cached copy.

    The cache (``<cache>/<key>.v``) is keyed by the RTLIL text of the design and
    the Amaranth version: converting the ultra96 configuration to Verilog takes
    minutes, its RTLIL seconds. Boards with the same configuration share an entry.

    Returns
    -------
    str
        The hash of the Verilog text (what later steps cache their results by).
    """
    import amaranth
    from amaranth.back import rtlil, verilog

    path = Path(path)
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(rtlil.convert(top, name=TOP_NAME, emit_src=False).encode()
                         + amaranth.__version__.encode() + _REV.encode()).hexdigest()[:20]
    cached = cache / f"{key}.v"
    if not cached.exists():
        text = _ports_only(verilog.convert(top, name=TOP_NAME, emit_src=False))
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(cached)
    text = cached.read_text()
    write_atomic(path, text)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file, so readers never see half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _ports_only(text):
    """Drop the interface attributes Yosys copies onto internal aliases of the ports.

    Amaranth names a port's internal alias after it (``\\clk$59``) and Yosys gives
    the alias the port's attributes; only the port declaration should carry them.
    """
    out, pending = [], []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("(*") and stripped.endswith("*)"):
            pending.append(line)
            continue
        if pending and not re.match(r"\s*(input|output|inout)\b", line):
            pending = [a for a in pending if "X_INTERFACE" not in a]
        out += pending
        out.append(line)
        pending = []
    return "".join(out + pending)


_ATTR = re.compile(r'\(\*\s*(\w+)\s*=\s*"([^"]*)"\s*\*\)')
_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?"
                   r"(\\?\S+?)\s*;")


def parse_ports(text, module=TOP_NAME):
    """Ports of ``module`` in Yosys-written Verilog: ``{name: (direction, width, attrs)}``.

    Independent of Amaranth: it reads the file Vivado will read, so a check built
    on it tests what Vivado sees.
    """
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", text, re.MULTILINE)
    if start is None:
        raise ValueError(f"no module {module!r} in the Verilog")
    end = text.index("endmodule", start.end())
    ports, attrs = {}, {}
    for line in text[start.end():end].splitlines():
        found = _ATTR.findall(line)
        if found and line.strip().startswith("(*"):
            attrs.update(found)
            line = _ATTR.sub("", line)
        decl = _DECL.match(line)
        if decl:
            width = 1 if decl[2] is None else abs(int(decl[2]) - int(decl[3])) + 1
            ports[decl[4]] = (decl[1], width, dict(attrs))
        if line.strip() and not line.strip().startswith("(*"):
            attrs = {}
    return ports


def interfaces(ports):
    """Interfaces Vivado infers from ``parse_ports`` output.

    Returns
    -------
    dict
        ``{name: {"vlnv": ..., "mode": "master"/"slave"/None, "signals": {LOGICAL: port},
        "parameters": {...}}}``.
    """
    out = {}
    for port, (direction, _width, attrs) in ports.items():
        info = attrs.get("X_INTERFACE_INFO")
        if info is None:
            continue
        vlnv, name, logical = info.split()
        intf = out.setdefault(name, {"vlnv": vlnv, "mode": None, "signals": {},
                                     "parameters": {}})
        if intf["vlnv"] != vlnv:
            raise ValueError(f"interface {name!r} mixes {intf['vlnv']} and {vlnv}")
        intf["signals"][logical] = port
        param = attrs.get("X_INTERFACE_PARAMETER")
        if param:
            for item in param.split(","):
                key, _, value = item.strip().partition(" ")
                intf["parameters"][key] = value.strip()
        if vlnv == _AXIMM and logical == "AWVALID":
            intf["mode"] = "master" if direction == "output" else "slave"
    return out
