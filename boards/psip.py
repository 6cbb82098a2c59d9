"""Pin tables of the Vivado IP the block design instantiates, for the Tcl dry run.

Each table lists a cell's pins and interface pins as Vivado names them in a block
design, and the ``CONFIG.*`` property that makes a PS pin exist (``pl_ps_irq0``
appears only with ``PSU__USE__IRQ0 1``). The dry run (:mod:`.tclcheck`) rejects
any other name, and any CONFIG key not listed here.

Ref: PG201 (Zynq UltraScale+ MPSoC Processing System), "Port Descriptions" and
     UG1085 table 35-2 (S_AXI_GP2 is S_AXI_HP0_FPD).
Ref: PG082 (Processing System 7), "Port Descriptions".
Ref: PG164 (Processor System Reset), PG247 (SmartConnect), PG099 (AXI Interrupt Controller).
"""

__all__ = ["IP_TABLES", "Pin"]


class Pin:
    """One pin: ``kind`` ``"pin"`` (direction ``I``/``O``) or ``"intf"`` (``master``/``slave``).

    ``needs`` is ``(CONFIG key, value)`` that enables the pin, or None; ``clock`` names
    the clock pin that must be connected when an interface is enabled.
    """

    def __init__(self, name, kind, direction, needs=None, clock=None, vlnv=None):
        self.name, self.kind, self.direction = name, kind, direction
        self.needs, self.clock, self.vlnv = needs, clock, vlnv


def _zynqmp():
    pins = []
    masters = [
        ("M_AXI_HPM0_FPD", "maxihpm0_fpd_aclk", 0),
        ("M_AXI_HPM1_FPD", "maxihpm1_fpd_aclk", 1),
        ("M_AXI_HPM0_LPD", "maxihpm0_lpd_aclk", 2),
    ]
    for intf, clk, n in masters:
        cond = (f"PSU__USE__M_AXI_GP{n}", "1")
        pins += [Pin(intf, "intf", "master", cond, clk, "aximm"), Pin(clk, "pin", "I", cond)]
    slaves = [
        ("S_AXI_HPC0_FPD", "saxihpc0_fpd_aclk"),
        ("S_AXI_HPC1_FPD", "saxihpc1_fpd_aclk"),
        ("S_AXI_HP0_FPD", "saxihp0_fpd_aclk"),
        ("S_AXI_HP1_FPD", "saxihp1_fpd_aclk"),
        ("S_AXI_HP2_FPD", "saxihp2_fpd_aclk"),
        ("S_AXI_HP3_FPD", "saxihp3_fpd_aclk"),
        ("S_AXI_LPD", "saxi_lpd_aclk"),
    ]
    for n, (intf, clk) in enumerate(slaves):
        cond = (f"PSU__USE__S_AXI_GP{n}", "1")
        pins += [Pin(intf, "intf", "slave", cond, clk, "aximm"), Pin(clk, "pin", "I", cond)]
    for n in range(4):
        pins += [
            Pin(f"pl_clk{n}", "pin", "O", (f"PSU__FPGA_PL{n}_ENABLE", "1")),
            Pin(f"pl_resetn{n}", "pin", "O", ("PSU__USE__FABRIC__RST", "1")),
        ]
    pins += [
        Pin("pl_ps_irq0", "pin", "I", ("PSU__USE__IRQ0", "1")),
        Pin("pl_ps_irq1", "pin", "I", ("PSU__USE__IRQ1", "1")),
    ]
    keys = {"PSU__USE__FABRIC__RST", "PSU__USE__IRQ0", "PSU__USE__IRQ1"}
    keys |= {f"PSU__USE__M_AXI_GP{n}" for n in range(3)}
    keys |= {f"PSU__MAXIGP{n}__DATA_WIDTH" for n in range(3)}
    keys |= {f"PSU__USE__S_AXI_GP{n}" for n in range(7)}
    keys |= {f"PSU__SAXIGP{n}__DATA_WIDTH" for n in range(7)}
    for n in range(4):
        keys |= {
            f"PSU__FPGA_PL{n}_ENABLE",
            f"PSU__CRL_APB__PL{n}_REF_CTRL__FREQMHZ",
            f"PSU__CRL_APB__PL{n}_REF_CTRL__SRCSEL",
        }
    # Ref: UG1085 table 10-1: the PL sees the PS through these segments of HP0.
    segments = {
        "S_AXI_HP0_FPD": [
            "SAXIGP2/HP0_DDR_LOW",
            "SAXIGP2/HP0_DDR_HIGH",
            "SAXIGP2/HP0_LPS_OCM",
            "SAXIGP2/HP0_QSPI",
        ]
    }
    defaults = {
        "PSU__USE__FABRIC__RST": "1",
        "PSU__USE__M_AXI_GP0": "1",
        "PSU__USE__M_AXI_GP1": "1",
        "PSU__FPGA_PL0_ENABLE": "1",
    }
    return {
        "pins": pins,
        "keys": keys,
        "segments": segments,
        "spaces": ["Data"],
        "defaults": defaults,
        "external": [],
        "clock": ("pl_clk0", "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"),
    }


def _zynq7():
    pins = []
    for n in range(2):
        cond = (f"PCW_USE_M_AXI_GP{n}", "1")
        pins += [
            Pin(f"M_AXI_GP{n}", "intf", "master", cond, f"M_AXI_GP{n}_ACLK", "aximm"),
            Pin(f"M_AXI_GP{n}_ACLK", "pin", "I", cond),
        ]
    for n in range(4):
        cond = (f"PCW_USE_S_AXI_HP{n}", "1")
        pins += [
            Pin(f"S_AXI_HP{n}", "intf", "slave", cond, f"S_AXI_HP{n}_ACLK", "aximm"),
            Pin(f"S_AXI_HP{n}_ACLK", "pin", "I", cond),
        ]
    for n in range(4):
        pins += [
            Pin(f"FCLK_CLK{n}", "pin", "O", (f"PCW_EN_CLK{n}_PORT", "1")),
            Pin(f"FCLK_RESET{n}_N", "pin", "O", (f"PCW_EN_RST{n}_PORT", "1")),
        ]
    pins += [
        Pin("IRQ_F2P", "pin", "I", ("PCW_USE_FABRIC_INTERRUPT", "1")),
        Pin("DDR", "intf", "master", None, None, "ddrx"),
        Pin("FIXED_IO", "intf", "master", None, None, "fixedio"),
    ]
    keys = {"PCW_USE_FABRIC_INTERRUPT", "PCW_IRQ_F2P_INTR"}
    keys |= {f"PCW_USE_M_AXI_GP{n}" for n in range(2)}
    keys |= {f"PCW_USE_S_AXI_HP{n}" for n in range(4)}
    keys |= {f"PCW_S_AXI_HP{n}_DATA_WIDTH" for n in range(4)}
    for n in range(4):
        keys |= {
            f"PCW_EN_CLK{n}_PORT",
            f"PCW_EN_RST{n}_PORT",
            f"PCW_FPGA{n}_PERIPHERAL_FREQMHZ",
            f"PCW_FCLK{n}_PERIPHERAL_CLKSRC",
        }
    segments = {"S_AXI_HP0": ["S_AXI_HP0/HP0_DDR_LOWOCM"]}
    defaults = {"PCW_USE_M_AXI_GP0": "1", "PCW_EN_CLK0_PORT": "1", "PCW_EN_RST0_PORT": "1"}
    return {
        "pins": pins,
        "keys": keys,
        "segments": segments,
        "spaces": ["Data"],
        "defaults": defaults,
        "external": ["DDR", "FIXED_IO"],
        "clock": ("FCLK_CLK0", "PCW_FPGA0_PERIPHERAL_FREQMHZ"),
    }


def _reset():
    pins = [
        Pin(n, "pin", "I")
        for n in (
            "slowest_sync_clk",
            "ext_reset_in",
            "aux_reset_in",
            "mb_debug_sys_rst",
            "dcm_locked",
        )
    ]
    pins += [
        Pin(n, "pin", "O")
        for n in (
            "mb_reset",
            "bus_struct_reset",
            "peripheral_reset",
            "interconnect_aresetn",
            "peripheral_aresetn",
        )
    ]
    return {
        "pins": pins,
        "keys": {"C_AUX_RESET_HIGH", "C_EXT_RESET_HIGH"},
        "segments": {},
        "spaces": [],
        "defaults": {},
        "external": [],
        "required": ["slowest_sync_clk", "ext_reset_in"],
    }


def _smartconnect():
    pins = [Pin("aclk", "pin", "I"), Pin("aresetn", "pin", "I")]
    for n in range(16):
        pins.append(Pin(f"S{n:02d}_AXI", "intf", "slave", ("NUM_SI", f">{n}"), "aclk", "aximm"))
        pins.append(Pin(f"M{n:02d}_AXI", "intf", "master", ("NUM_MI", f">{n}"), "aclk", "aximm"))
    return {
        "pins": pins,
        "keys": {"NUM_SI", "NUM_MI", "NUM_CLKS"},
        "segments": {},
        "spaces": [],
        "defaults": {"NUM_SI": "1", "NUM_MI": "2"},
        "external": [],
        "required": ["aclk", "aresetn"],
    }


def _intc():
    pins = [
        Pin("s_axi", "intf", "slave", None, "s_axi_aclk", "aximm"),
        Pin("s_axi_aclk", "pin", "I"),
        Pin("s_axi_aresetn", "pin", "I"),
        Pin("intr", "pin", "I"),
        Pin("irq", "pin", "O"),
    ]
    return {
        "pins": pins,
        "keys": {"C_IRQ_CONNECTION", "C_IRQ_IS_LEVEL", "C_NUM_INTR_INPUTS"},
        "segments": {},
        "spaces": [],
        "defaults": {},
        "external": [],
        "required": ["s_axi_aclk", "s_axi_aresetn", "intr", "s_axi"],
    }


#: VLNV (without version) -> table.
IP_TABLES = {
    "xilinx.com:ip:zynq_ultra_ps_e": _zynqmp(),
    "xilinx.com:ip:processing_system7": _zynq7(),
    "xilinx.com:ip:proc_sys_reset": _reset(),
    "xilinx.com:ip:smartconnect": _smartconnect(),
    "xilinx.com:ip:axi_intc": _intc(),
}
