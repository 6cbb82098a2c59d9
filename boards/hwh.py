"""The hardware handoff (``.hwh``) of the block design ``bamboo.tcl`` builds, without Vivado.

PYNQ's ``Overlay`` reads the ``.hwh`` Vivado writes beside the bitstream into the
``ip_dict`` (register windows), ``interrupt_controllers``/``interrupt_pins`` (the
``axi_intc`` path) and ``clock_dict`` the runtime and PYNQ itself use. Without Vivado
there is no ``.hwh``; this module writes the part of one PYNQ reads, from the block
design the Tcl dry run recorded (``dry_run_design.txt``: cells, nets, interface nets,
address assignments and exclusions, PS properties) and the accelerator's ports from
the generated Verilog. Tests parse it with PYNQ's own parser (``tests/pynq_board``),
so the names the runtime looks up (``bamboo``, ``bamboo/irq``) are checked against
the block design through the real library. A real build copies Vivado's ``.hwh``
instead; what Vivado adds (the full PS configuration, every IP parameter) PYNQ does
not need for this design.

Ref: the layout of Vivado 2022.1's ``.hwh`` (``EDKSYSTEM``/``MODULES``/``MODULE``
with ``PARAMETERS``, ``PORTS``/``CONNECTIONS``, ``BUSINTERFACES``/``PORTMAPS``,
``MEMORYMAP``/``MEMRANGE``) as in PYNQ v3.0.1's ``boards/ZCU104/base/base.hwh``.
"""

import shlex
from xml.sax.saxutils import quoteattr

from .psip import IP_TABLES
from .tcl import ps_names
from .verilog import TOP_NAME, interfaces, parse_ports

__all__ = ["handoff", "read_design"]

#: IP versions Vivado 2022.1 (PYNQ 3.0.1's) instantiates for the unversioned VLNVs.
_VERSIONS = {
    "xilinx.com:ip:zynq_ultra_ps_e": "3.4",
    "xilinx.com:ip:processing_system7": "5.5",
    "xilinx.com:ip:proc_sys_reset": "5.0",
    "xilinx.com:ip:smartconnect": "1.0",
    "xilinx.com:ip:axi_intc": "4.1",
}
_AXIMM = "xilinx.com:interface:aximm:1.0"


def read_design(text):
    """The dry run's ``dry_run_design.txt`` as ``{"cells", "props", "nets", "intf", "addr",
    "exclude"}``."""
    design = {"cells": {}, "props": {}, "nets": [], "intf": [], "addr": [], "exclude": []}
    for line in text.splitlines():
        words = shlex.split(line)
        kind, rest = words[0], words[1:]
        if kind == "cell":
            design["cells"][rest[0]] = (rest[1], rest[2])
            design["props"][rest[0]] = {}
        elif kind == "prop":
            design["props"][rest[0]][rest[1]] = rest[2]
        elif kind == "net":
            design["nets"].append(rest)  # driver first, then every pin
        elif kind == "intf":
            design["intf"].append(rest)
        elif kind == "addr":
            space, seg, offset, size = rest
            design["addr"].append((space, seg, int(offset, 0), int(size, 0)))
        elif kind == "exclude":
            design["exclude"].append(tuple(rest))
        else:
            raise ValueError(f"unknown line in the recorded design: {line!r}")
    return design


def _attrs(**kw):
    return " ".join(f"{k}={quoteattr(str(v))}" for k, v in kw.items())


class _Cell:
    """One MODULE of the handoff: its ports, bus interfaces and address map."""

    def __init__(self, name, kind, vlnv, props):
        self.name, self.kind, self.props = name, kind, dict(props)
        self.ports = {}  # name -> (dir, width, sigis, [connections])
        self.busifs = {}  # name -> (type, {logical: physical})
        self.memranges = []
        if kind == "module":
            self.vlnv = f"xilinx.com:module_ref:{vlnv}:1.0"
            self.table = None
        else:
            self.vlnv = f"{vlnv}:{_VERSIONS[vlnv]}"
            self.table = IP_TABLES[vlnv]

    @property
    def modtype(self):
        return self.vlnv.split(":")[2]

    def pin(self, name):
        return next(p for p in self.table["pins"] if p.name == name)

    def xml(self, ps):
        is_ps = self.name == ps
        head = _attrs(
            FULLNAME=f"/{self.name}",
            INSTANCE=self.name,
            IPTYPE="PERIPHERAL",
            IS_ENABLE=1,
            MODCLASS="PROCESSOR" if is_ps else "PERIPHERAL",
            MODTYPE=self.modtype,
            VLNV=self.vlnv,
        )
        if is_ps:
            head += " " + _attrs(IS_PL="FALSE")
        out = [f"    <MODULE {head}>", "      <PARAMETERS>"]
        out += [f"        <PARAMETER {_attrs(NAME=k, VALUE=v)}/>" for k, v in self.props.items()]
        out += ["      </PARAMETERS>", "      <PORTS>"]
        for name, (direction, width, sigis, conns) in self.ports.items():
            extra = {} if width == 1 else {"LEFT": width - 1, "RIGHT": 0}
            out.append(f"        <PORT {_attrs(DIR=direction, NAME=name, SIGIS=sigis, **extra)}>")
            out.append("          <CONNECTIONS>")
            out += [f"            <CONNECTION {_attrs(INSTANCE=c, PORT=p)}/>" for c, p in conns]
            out += ["          </CONNECTIONS>", "        </PORT>"]
        out += ["      </PORTS>", "      <BUSINTERFACES>"]
        for name, (btype, portmap) in self.busifs.items():
            busname = f"{self.name}_{name}"
            out.append(
                f"        <BUSINTERFACE "
                f"{_attrs(BUSNAME=busname, NAME=name, TYPE=btype, VLNV=_AXIMM)}>"
            )
            out.append("          <PORTMAPS>")
            out += [
                f"            <PORTMAP {_attrs(LOGICAL=lg, PHYSICAL=ph)}/>"
                for lg, ph in portmap.items()
            ]
            out += ["          </PORTMAPS>", "        </BUSINTERFACE>"]
        out.append("      </BUSINTERFACES>")
        if self.memranges:
            out.append("      <MEMORYMAP>")
            out += [f"        <MEMRANGE {m}/>" for m in self.memranges]
            out.append("      </MEMORYMAP>")
        out.append("    </MODULE>")
        return out


def _sigis(pin):
    name = pin.lower()
    if "irq" in name or name == "intr":
        return "INTERRUPT"
    if "clk" in name:
        return "clk"
    if "reset" in name or "rst" in name:
        return "rst"
    return "undef"


def handoff(design_text, verilog_text, board, config, *, name="bamboo", top=TOP_NAME):
    """The ``.hwh`` text of the recorded block design.

    Parameters
    ----------
    design_text : str
        ``dry_run_design.txt`` of the dry run of ``bamboo.tcl``.
    verilog_text : str
        The accelerator's Verilog (its ports and interface attributes).
    """
    design = read_design(design_text)
    ps = ps_names(board)
    _, divider = board.pl_clock(config.clock_mhz)
    cells = {
        c: _Cell(c, kind, vlnv, design["props"][c]) for c, (kind, vlnv) in design["cells"].items()
    }
    ps_cell = next(c for c, (kind, vlnv) in design["cells"].items() if vlnv == ps["vlnv"])
    accel = next(c for c, (kind, vlnv) in design["cells"].items() if kind == "module")
    # What Vivado adds to the PS's parameters and PYNQ reads: the port widths
    # (EmbeddedDevice.set_axi_port_width) and the PL clock dividers (clock_dict).
    props = cells[ps_cell].props
    if board.ps == "zynqmp":
        for n in range(3):
            if f"PSU__MAXIGP{n}__DATA_WIDTH" in props:
                props[f"C_MAXIGP{n}_DATA_WIDTH"] = props[f"PSU__MAXIGP{n}__DATA_WIDTH"]
        for n in range(7):
            if f"PSU__SAXIGP{n}__DATA_WIDTH" in props:
                props[f"C_SAXIGP{n}_DATA_WIDTH"] = props[f"PSU__SAXIGP{n}__DATA_WIDTH"]
        props["PSU__CRL_APB__PL0_REF_CTRL__DIVISOR0"] = divider
        props["PSU__CRL_APB__PL0_REF_CTRL__DIVISOR1"] = 1
        for n in range(1, 4):  # unused: disabled, at the IP's default 100 MHz
            props.setdefault(f"PSU__FPGA_PL{n}_ENABLE", 0)
            props.setdefault(f"PSU__CRL_APB__PL{n}_REF_CTRL__DIVISOR0", 15)
            props.setdefault(f"PSU__CRL_APB__PL{n}_REF_CTRL__DIVISOR1", 1)
    else:
        props["PCW_FCLK0_PERIPHERAL_DIVISOR0"] = divider
        props["PCW_FCLK0_PERIPHERAL_DIVISOR1"] = 1

    # The accelerator's ports from its Verilog; its AXI interfaces with their port maps.
    ports = parse_ports(verilog_text, top)
    for intf_name, intf in interfaces(ports).items():
        if intf["vlnv"] == _AXIMM:
            btype = "MASTER" if intf["mode"] == "master" else "SLAVE"
            cells[accel].busifs[intf_name] = (btype, dict(intf["signals"]))
    for port, (direction, width, _attrs_) in ports.items():
        cells[accel].ports[port] = ["I" if direction == "input" else "O", width, _sigis(port), []]
    # Scalar nets, as Vivado writes them: the driver lists its loads, each load its driver.
    for driver, *pins in design["nets"]:
        for pin in pins:
            cell, pname = pin.split("/")
            c = cells[cell]
            if pname not in c.ports:
                direction = c.pin(pname).direction
                c.ports[pname] = [direction, 1, _sigis(pname), []]
            others = [o for o in pins if o != pin] if pin == driver else [driver]
            c.ports[pname][3] += [tuple(o.split("/")) for o in others]
    for pair in design["intf"]:
        for pin in pair:
            cell, iname = pin.split("/")
            c = cells[cell]
            if iname not in c.busifs:
                btype = "MASTER" if c.pin(iname).direction == "master" else "SLAVE"
                c.busifs[iname] = (btype, {})
    # Address maps: the PS's data space reaches the registers through its one master
    # port; the accelerator's m_axi reaches the PS's memory segments.
    for space, seg, offset, size in design["addr"]:
        master_cell, master_space = space.split("/")
        if master_cell == ps_cell:
            master = ps["m_axi"]
            target, slave, block = seg.split("/")
            memtype = "REGISTER"
            block = "reg0" if cells[target].kind == "module" else "Reg"
        else:
            master = master_space
            target, _, block_path = seg.partition("/")
            block = block_path.split("/")[-1]
            segs = IP_TABLES[design["cells"][target][1]]["segments"]
            slave = next(i for i, names in segs.items() if block_path in names)
            memtype = "REGISTER" if block.endswith("LPS_OCM") else "MEMORY"
        cells[master_cell].memranges.append(
            _attrs(
                ADDRESSBLOCK=block,
                BASENAME="C_BASEADDR",
                BASEVALUE=f"0x{offset:08X}",
                HIGHNAME="C_HIGHADDR",
                HIGHVALUE=f"0x{offset + size - 1:08X}",
                INSTANCE=target,
                IS_DATA="TRUE",
                IS_INSTRUCTION="TRUE",
                MASTERBUSINTERFACE=master,
                MEMTYPE=memtype,
                SLAVEBUSINTERFACE=slave,
            )
        )
    arch = "zynquplus" if board.ps == "zynqmp" else "zynq"
    speed = "-" + board.speed.split("-")[0]
    out = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>',
        '<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="(not built: bamboo dry run)" '
        'VIVADOVERSION="2022.1">',
        f"  <SYSTEMINFO {_attrs(ARCH=arch, DEVICE=board.device, NAME=name)} "
        f"{_attrs(PACKAGE=board.package, SPEEDGRADE=speed)}/>",
        "  <EXTERNALPORTS/>",
        "  <EXTERNALINTERFACES/>",
        "  <MODULES>",
    ]
    for cell in cells.values():
        out += cell.xml(ps_cell)
    out += ["  </MODULES>", "</EDKSYSTEM>", ""]
    return "\n".join(out)
