"""The Vivado Tcl of a board: project, block design, bitstream, hardware handoff; and its XDC.

The block design (Zynq UltraScale+; Zynq-7000 names in brackets)::

    PS M_AXI_HPM0_FPD [M_AXI_GP0] -> ctl_ic (SmartConnect) -> bamboo/s_axi   @ reg_base
    bamboo/m_axi -> mem_ic (SmartConnect) -> PS S_AXI_HP0_FPD [S_AXI_HP0]   DDR low
    PS pl_clk0 [FCLK_CLK0]   -> every clock;  pl_resetn0 -> proc_sys_reset -> bamboo/rst
    bamboo/irq -> PS pl_ps_irq0 [IRQ_F2P]

When Vivado knows the board (a board file is installed), its PS preset is
applied first (DDR, MIO); the explicit settings below then take precedence, so
the design also builds from the bare part.

The PS IP constrains its own PL clock (``clk_pl_0`` / ``clk_fpga_0``). The flow
checks that clock's period after synthesis against the chosen frequency and adds
``bamboo.xdc`` (a ``create_clock`` on the PS clock pin) only if the IP made none,
so there is never a duplicate clock.
"""

__all__ = ["INTC_OFFSET", "INTC_RANGE", "flow_tcl", "ps_names", "xdc"]

#: The axi_intc's register window: this far above the accelerator's, this long.
INTC_OFFSET, INTC_RANGE = 0x10000, 0x10000

# Ref: UG1085 "PS-PL AXI interfaces": HPM0_FPD is M_AXI_GP0, HP0_FPD is S_AXI_GP2.
_ZYNQMP = {
    "vlnv": "xilinx.com:ip:zynq_ultra_ps_e",
    "rule": "xilinx.com:bd_rule:zynq_ultra_ps_e",
    "m_axi": "M_AXI_HPM0_FPD",
    "m_clk": "maxihpm0_fpd_aclk",
    "s_axi": "S_AXI_HP0_FPD",
    "s_clk": "saxihp0_fpd_aclk",
    "clk": "pl_clk0",
    "resetn": "pl_resetn0",
    "irq": "pl_ps_irq0",
    # What the engine's DMA reaches through S_AXI_HP0_FPD: (segment, offset, range), as
    # PYNQ's base designs map them (ZCU104 base.tcl); the Ultra96's 2 GB of DDR are all
    # in DDR_LOW, so DDR_HIGH is excluded explicitly. Ref: UG1085 table 10-1.
    "ddr_segs": (
        ("SAXIGP2/HP0_DDR_LOW", 0x0000_0000, 0x8000_0000),
        ("SAXIGP2/HP0_QSPI", 0xC000_0000, 0x2000_0000),
        ("SAXIGP2/HP0_LPS_OCM", 0xFF00_0000, 0x0100_0000),
    ),
    "excluded_segs": ("SAXIGP2/HP0_DDR_HIGH",),
    "clock_name": "clk_pl_0",
    # A glob: `[0]` in a filter pattern is a character class, so match the bus.
    "clock_pin": "*/PS8_i/PLCLK*",
}
_ZYNQ7 = {
    "vlnv": "xilinx.com:ip:processing_system7",
    "rule": "xilinx.com:bd_rule:processing_system7",
    "m_axi": "M_AXI_GP0",
    "m_clk": "M_AXI_GP0_ACLK",
    "s_axi": "S_AXI_HP0",
    "s_clk": "S_AXI_HP0_ACLK",
    "clk": "FCLK_CLK0",
    "resetn": "FCLK_RESET0_N",
    "irq": "IRQ_F2P",
    "ddr_segs": (("S_AXI_HP0/HP0_DDR_LOWOCM", None, None),),
    "excluded_segs": (),
    "clock_name": "clk_fpga_0",
    "clock_pin": "*/PS7_i/FCLKCLK*",
}


def ps_names(board):
    """The PS pin names the block design uses on ``board``."""
    return _ZYNQ7 if board.ps == "zynq7" else _ZYNQMP


def _ps_properties(board, config, mhz):
    if board.ps == "zynq7":
        return {
            "PCW_USE_M_AXI_GP0": 1,
            "PCW_USE_S_AXI_HP0": 1,
            "PCW_S_AXI_HP0_DATA_WIDTH": config.axi_data_width,
            "PCW_EN_CLK0_PORT": 1,
            "PCW_EN_RST0_PORT": 1,
            "PCW_FCLK0_PERIPHERAL_CLKSRC": "IO PLL",
            "PCW_FPGA0_PERIPHERAL_FREQMHZ": mhz,
            "PCW_USE_FABRIC_INTERRUPT": 1,
            "PCW_IRQ_F2P_INTR": 1,
        }
    return {
        # HPM0_FPD for the registers (32 bits wide, as pynq expects for MMIO).
        "PSU__USE__M_AXI_GP0": 1,
        "PSU__MAXIGP0__DATA_WIDTH": 32,
        # The default configuration also enables HPM1_FPD, whose clock would dangle.
        "PSU__USE__M_AXI_GP1": 0,
        "PSU__USE__M_AXI_GP2": 0,
        "PSU__USE__S_AXI_GP2": 1,
        "PSU__SAXIGP2__DATA_WIDTH": config.axi_data_width,
        "PSU__FPGA_PL0_ENABLE": 1,
        "PSU__USE__FABRIC__RST": 1,
        "PSU__CRL_APB__PL0_REF_CTRL__SRCSEL": "IOPLL",
        "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": mhz,
        "PSU__USE__IRQ0": 1,
    }


def _dict(props):
    return " ".join(f"CONFIG.{k} {{{v}}}" for k, v in props.items())


def _ddr_addresses(ps):
    """``assign_bd_address`` / ``exclude_bd_addr_seg`` lines of the engine's master."""
    space = "[get_bd_addr_spaces bamboo/m_axi]"
    lines = []
    for seg, offset, size in ps["ddr_segs"]:
        where = "" if offset is None else f"-offset 0x{offset:08X} -range 0x{size:08X} "
        lines.append(
            f"assign_bd_address {where}-target_address_space {space} \\\n"
            f"    [get_bd_addr_segs ps/{seg}] -force"
        )
    for seg in ps["excluded_segs"]:
        lines.append(
            f"exclude_bd_addr_seg -target_address_space {space} \\\n    [get_bd_addr_segs ps/{seg}]"
        )
    return "\n".join(lines) + "\n"


def flow_tcl(board, config, top, verilog_name, *, jobs=2):
    """The Vivado batch script (``vivado -mode batch -source bamboo.tcl``), as text.

    Parameters
    ----------
    board : Board
    config : AcceleratorConfig
        Its ``clock_mhz`` must be one of ``board.clock_choices()``.
    top : str
        Verilog module name of the accelerator.
    verilog_name : str
        File name of the Verilog, beside the script.
    """
    mhz, divider = board.pl_clock(config.clock_mhz)
    period = 1000.0 / mhz
    ps = ps_names(board)
    reg_range = 1 << config.axil_addr_width
    board_parts = " ".join(board.board_parts)
    automation = (
        '{apply_board_preset "1"}'
        if board.ps == "zynqmp"
        else '[list make_external "FIXED_IO, DDR" apply_board_preset $preset '
        "Master Disable Slave Disable]"
    )
    return f"""\
# Bamboo on {board.title} ({board.part}): Vivado project, block design, bitstream, handoff.
# Generated by bamboo.boards.vivado; run `vivado -mode batch -source bamboo.tcl` in this folder.
# Configuration {config.name!r}, config_id 0x{config.config_id:08x}; PL clock {mhz:g} MHz
# = {board.pll_mhz:g} MHz PS PLL / {divider}.
set here [file dirname [file normalize [info script]]]
set bd bamboo
set jobs {jobs}
set expected_period {period:.4f}

create_project -force bamboo_prj $here/vivado -part {board.part}
# Board files name the vendor differently by version (Ultra96-V2: em.avnet.com 1.0 with
# the -e part, avnet.com 1.2, Avnet-tria 1.3): match any vendor, and take only a board
# part of this very part, which set_property board_part would otherwise change.
set preset 0
foreach pattern {{{board_parts}}} {{
    foreach found [lsort -decreasing [get_board_parts -quiet $pattern]] {{
        if {{[get_property PART_NAME [get_board_parts $found]] eq "{board.part}"}} {{
            set_property board_part $found [current_project]
            set preset 1
            puts "bamboo: board preset $found applied"
            break
        }}
    }}
    if {{$preset}} break
}}
if {{!$preset}} {{
    puts "bamboo: no board file for {board.title} with part {board.part} is installed (tried \
{board_parts}); explicit PS settings only: the PS DDR and MIO are not configured, so \
bamboo.xsa is PL-only (not usable for a boot image); bamboo.bit and bamboo.hwh for \
PYNQ are unaffected"
    if {{[info exists ::env(BAMBOO_REQUIRE_BOARD_FILE)]}} {{
        error "bamboo: BAMBOO_REQUIRE_BOARD_FILE is set and no board file matches"
    }}
}}
add_files -norecurse $here/{verilog_name}
update_compile_order -fileset sources_1

create_bd_design $bd
set ps [create_bd_cell -type ip -vlnv {ps["vlnv"]} ps]
if {{$preset || {int(board.ps == "zynq7")}}} {{
    apply_bd_automation -rule {ps["rule"]} -config {automation} $ps
}}
set_property -dict [list {_dict(_ps_properties(board, config, f"{mhz:.10g}"))}] $ps

set bamboo [create_bd_cell -type module -reference {top} bamboo]
set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl]
set ctl_ic [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect ctl_ic]
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{2}}] $ctl_ic
# pynq.Interrupt serves only interrupts that pass through an AXI interrupt controller.
set intc [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_intc intc]
set mem_ic [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect mem_ic]
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] $mem_ic

connect_bd_net [get_bd_pins ps/{ps["clk"]}] [get_bd_pins ps/{ps["m_clk"]}] \\
    [get_bd_pins ps/{ps["s_clk"]}] [get_bd_pins bamboo/clk] [get_bd_pins rst_pl/slowest_sync_clk] \\
    [get_bd_pins ctl_ic/aclk] [get_bd_pins mem_ic/aclk] [get_bd_pins intc/s_axi_aclk]
connect_bd_net [get_bd_pins ps/{ps["resetn"]}] [get_bd_pins rst_pl/ext_reset_in]
connect_bd_net [get_bd_pins rst_pl/peripheral_reset] [get_bd_pins bamboo/rst]
connect_bd_net [get_bd_pins rst_pl/interconnect_aresetn] [get_bd_pins ctl_ic/aresetn] \\
    [get_bd_pins mem_ic/aresetn]
connect_bd_net [get_bd_pins rst_pl/peripheral_aresetn] [get_bd_pins intc/s_axi_aresetn]
connect_bd_intf_net [get_bd_intf_pins ps/{ps["m_axi"]}] [get_bd_intf_pins ctl_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins ctl_ic/M00_AXI] [get_bd_intf_pins bamboo/s_axi]
connect_bd_intf_net [get_bd_intf_pins bamboo/m_axi] [get_bd_intf_pins mem_ic/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins mem_ic/M00_AXI] [get_bd_intf_pins ps/{ps["s_axi"]}]
connect_bd_intf_net [get_bd_intf_pins ctl_ic/M01_AXI] [get_bd_intf_pins intc/s_axi]
connect_bd_net [get_bd_pins bamboo/irq] [get_bd_pins intc/intr]
connect_bd_net [get_bd_pins intc/irq] [get_bd_pins ps/{ps["irq"]}]

assign_bd_address -offset 0x{board.reg_base:08X} -range 0x{reg_range:X} \\
    -target_address_space [get_bd_addr_spaces ps/Data] \\
    [get_bd_addr_segs -of_objects [get_bd_intf_pins bamboo/s_axi]] -force
assign_bd_address -offset 0x{board.reg_base + INTC_OFFSET:08X} -range 0x{INTC_RANGE:X} \\
    -target_address_space [get_bd_addr_spaces ps/Data] \\
    [get_bd_addr_segs -of_objects [get_bd_intf_pins intc/s_axi]] -force
{_ddr_addresses(ps)}validate_bd_design
save_bd_design

set wrapper [make_wrapper -files [get_files $bd.bd] -top]
add_files -norecurse $wrapper
set_property top ${{bd}}_wrapper [current_fileset]
update_compile_order -fileset sources_1

proc bamboo_run {{run args}} {{
    launch_runs $run -jobs $::jobs {{*}}$args
    wait_on_run $run
    if {{[get_property PROGRESS [get_runs $run]] ne "100%"}} {{
        error "bamboo: $run failed: [get_property STATUS [get_runs $run]]"
    }}
}}
bamboo_run synth_1

# The PS IP constrains its PL clock; check it is the clock we chose, else add ours.
open_run synth_1
set clocks [get_clocks -quiet {ps["clock_name"]}]
if {{[llength $clocks] == 0}} {{
    puts "bamboo: the PS IP made no clock {ps["clock_name"]}; adding bamboo.xdc"
    add_files -fileset constrs_1 -norecurse $here/bamboo.xdc
}} else {{
    set period [get_property PERIOD [lindex $clocks 0]]
    if {{abs($period - $expected_period) > 0.01}} {{
        error "bamboo: the PL clock period is $period ns, expected $expected_period ns"
    }}
}}
close_design

bamboo_run impl_1 -to_step write_bitstream
open_run impl_1
report_utilization -file $here/utilization.rpt
report_utilization -hierarchical -file $here/utilization_hier.rpt
report_timing_summary -max_paths 10 -file $here/timing.rpt
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
puts "bamboo: worst setup slack $wns ns at {mhz:g} MHz"

write_hw_platform -fixed -include_bit -force -file $here/bamboo.xsa
file copy -force [lindex [glob $here/vivado/bamboo_prj.runs/impl_1/*.bit] 0] $here/bamboo.bit
file copy -force [lindex [glob $here/vivado/bamboo_prj.gen/sources_1/bd/$bd/hw_handoff/$bd.hwh \\
    $here/vivado/bamboo_prj.srcs/sources_1/bd/$bd/hw_handoff/$bd.hwh] 0] $here/bamboo.hwh
if {{[string is double -strict $wns] && $wns < 0}} {{
    puts "bamboo: TIMING NOT MET (WNS $wns ns); see timing.rpt"
    exit 3
}}
puts "bamboo: wrote $here/bamboo.bit, bamboo.hwh, bamboo.xsa"
"""


def xdc(board, config):
    """Timing constraints of the PL clock, used only if the PS IP does not constrain it."""
    mhz, divider = board.pl_clock(config.clock_mhz)
    ps = ps_names(board)
    return f"""\
# Bamboo on {board.title}: the PL clock is the PS's {ps["clk"]}, {mhz:g} MHz
# ({board.pll_mhz:g} MHz PLL / {divider}). The PS IP normally constrains it as {ps["clock_name"]};
# bamboo.tcl adds this file only when it did not. Only the first PL clock is enabled, so
# the pattern (all of the PS's PL clock pins) has one clocked pin.
create_clock -period {1000.0 / mhz:.4f} -name {ps["clock_name"]} \\
    [get_pins -hierarchical -filter {{NAME =~ {ps["clock_pin"]}}}]
"""
