"""The board-level Verilog: the accelerator with the port attributes Vivado's IP Integrator reads.

A block design instantiates the accelerator as a module reference
(``create_bd_cell -type module -reference bamboo_top``). Vivado turns ports into
interface pins from their ``X_INTERFACE_INFO`` attributes: ``s_axi__awaddr`` with
``xilinx.com:interface:aximm:1.0 s_axi AWADDR`` becomes part of the AXI pin
``accel/s_axi``. :class:`BoardTop` lists those attributes port by port
(:attr:`BoardTop.port_attrs`) and makes the clock and reset explicit ports, so they
carry attributes too; :func:`write_verilog` writes them onto the port declarations
by port name (:func:`annotate_ports`), because Amaranth's own copy of
``Signal.attrs`` merges the attributes of ports driven by one value.

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

__all__ = [
    "TOP_NAME",
    "BoardTop",
    "annotate_ports",
    "interfaces",
    "parse_ports",
    "write_atomic",
    "write_verilog",
]

#: Module name of the board top level in the Verilog and the block design.
TOP_NAME = "bamboo_top"

_AXIMM = "xilinx.com:interface:aximm:1.0"
# Part of the Verilog cache key: bump when the text processing below changes.
_REV = "by-port-name-1"


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
            raise ValueError(
                "the accelerator must be clocked by its sync domain, not by clk/rst ports"
            )
        self.accel = accel
        super().__init__({"clk": In(1), "rst": In(1), **members})
        self._annotate()

    def _annotate(self):
        """Fill :attr:`port_attrs`, ``{verilog port name: {attribute: value}}``, one entry a port.

        The same attributes go on the Amaranth signals (so the RTLIL, and the design
        hash the resource estimates are keyed by, is what it always was), but the
        Verilog is annotated from this table by port name (:func:`annotate_ports`):
        Amaranth's RTLIL back end merges the attributes of outputs driven by the same
        value (amaranth-lang/amaranth#1616), so ``m_axi__arid``, ``m_axi__awid`` and
        ``m_axi__arlock``, all tied to 0, would otherwise all claim ``AWLOCK``.
        """
        self.port_attrs = {}

        def put(sig, port, info, param=None, mode=None):
            attrs = {} if mode is None else {"X_INTERFACE_MODE": mode}
            attrs["X_INTERFACE_INFO"] = info
            if param is not None:
                attrs["X_INTERFACE_PARAMETER"] = param
            sig.attrs.update(attrs)
            self.port_attrs[port] = attrs

        lite, full = self.s_axi.signature.flip(), self.m_axi.signature
        for bus, mode, sig in [("s_axi", "slave", lite), ("m_axi", "master", full)]:
            for i, name in enumerate(sig.members):
                port = getattr(getattr(self, bus), name)
                first = i == 0
                put(
                    port,
                    f"{bus}__{name}",
                    f"{_AXIMM} {bus} {name.upper()}",
                    _aximm_parameters(bus, sig) if first else None,
                    f"{mode} {bus}" if first else None,
                )
        put(
            self.clk,
            "clk",
            "xilinx.com:signal:clock:1.0 clk CLK",
            "XIL_INTERFACENAME clk, ASSOCIATED_BUSIF s_axi:m_axi, ASSOCIATED_RESET rst",
        )
        put(
            self.rst,
            "rst",
            "xilinx.com:signal:reset:1.0 rst RST",
            "XIL_INTERFACENAME rst, POLARITY ACTIVE_HIGH",
        )
        put(
            self.irq,
            "irq",
            "xilinx.com:signal:interrupt:1.0 irq INTERRUPT",
            "XIL_INTERFACENAME irq, SENSITIVITY LEVEL_HIGH",
        )

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
    params = {
        "XIL_INTERFACENAME": bus,
        "PROTOCOL": "AXI4LITE" if lite else "AXI4",
        "DATA_WIDTH": width("wdata"),
        "ADDR_WIDTH": width("awaddr"),
    }
    if not lite:
        params.update(
            {
                "ID_WIDTH": width("awid"),
                "MAX_BURST_LENGTH": 256,
                "SUPPORTS_NARROW_BURST": 0,
                "HAS_REGION": 0,
            }
        )
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
    key = hashlib.sha256(
        rtlil.convert(top, name=TOP_NAME, emit_src=False).encode()
        + amaranth.__version__.encode()
        + _REV.encode()
    ).hexdigest()[:20]
    cached = cache / f"{key}.v"
    if not cached.exists():
        text = annotate_ports(verilog.convert(top, name=TOP_NAME, emit_src=False), top.port_attrs)
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


def annotate_ports(text, port_attrs, module=TOP_NAME):
    """Put the interface attributes on ``module``'s port declarations by port name.

    Every ``X_INTERFACE_*`` attribute Yosys wrote in ``module`` is dropped first:
    those on the ports may have been merged across ports driven by the same value
    (amaranth-lang/amaranth#1616), and Yosys also copies them onto internal aliases
    named after the ports (``\\clk$59``). Then each port in ``port_attrs``
    (``{port: {attribute: value}}``) gets exactly its own attributes.

    Raises
    ------
    ValueError
        A port of ``port_attrs`` is not declared in ``module``.
    """
    start = re.search(rf"^module\s+{re.escape(module)}\s*\(", text, re.MULTILINE)
    if start is None:
        raise ValueError(f"no module {module!r} in the Verilog")
    end = text.index("endmodule", start.end())
    out, done = [], set()
    for line in text[start.end() : end].splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("(*") and stripped.endswith("*)") and "X_INTERFACE" in stripped:
            continue
        decl = _DECL.match(line)
        if decl and decl[4] in port_attrs:
            indent = line[: len(line) - len(line.lstrip())]
            out += [f'{indent}(* {k} = "{v}" *)\n' for k, v in port_attrs[decl[4]].items()]
            done.add(decl[4])
        out.append(line)
    missing = sorted(set(port_attrs) - done)
    if missing:
        raise ValueError(f"ports {missing} are not declared in module {module!r}")
    return text[: start.end()] + "".join(out) + text[end:]


_ATTR = re.compile(r'\(\*\s*(\w+)\s*=\s*"([^"]*)"\s*\*\)')
_DECL = re.compile(
    r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?"
    r"(\\?\S+?)\s*;"
)


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
    for line in text[start.end() : end].splitlines():
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
        ``{name: {"vlnv": ..., "mode": "master"/"slave"/None, "declared_mode": the
        X_INTERFACE_MODE value or None, "signals": {LOGICAL: port}, "parameters": {...}}}``.

    Raises
    ------
    ValueError
        Two ports claim one logical signal, or an interface's mode or parameters
        are on more than one port (Vivado would refuse or silently pick one).
    """
    out = {}
    for port, (direction, _width, attrs) in ports.items():
        info = attrs.get("X_INTERFACE_INFO")
        if info is None:
            continue
        vlnv, name, logical = info.split()
        intf = out.setdefault(
            name,
            {"vlnv": vlnv, "mode": None, "declared_mode": None, "signals": {}, "parameters": {}},
        )
        if intf["vlnv"] != vlnv:
            raise ValueError(f"interface {name!r} mixes {intf['vlnv']} and {vlnv}")
        if logical in intf["signals"]:
            raise ValueError(
                f"{name} {logical} is claimed by both {intf['signals'][logical]} and {port}"
            )
        intf["signals"][logical] = port
        param = attrs.get("X_INTERFACE_PARAMETER")
        if param:
            if intf["parameters"]:
                raise ValueError(
                    f"interface {name!r} has X_INTERFACE_PARAMETER on more than one port ({port})"
                )
            for item in param.split(","):
                key, _, value = item.strip().partition(" ")
                intf["parameters"][key] = value.strip()
        mode = attrs.get("X_INTERFACE_MODE")
        if mode is not None:
            if intf["declared_mode"] is not None:
                raise ValueError(
                    f"interface {name!r} has X_INTERFACE_MODE on more than one port ({port})"
                )
            intf["declared_mode"] = mode
        if vlnv == _AXIMM and logical == "AWVALID":
            intf["mode"] = "master" if direction == "output" else "slave"
    return out
