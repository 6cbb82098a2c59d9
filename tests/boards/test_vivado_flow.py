"""The Vivado flow without Vivado: generation, Verilator lint, the Tcl dry run and its checks."""

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bamboo.arch.config import preset
from bamboo.boards.platforms import BOARDS, BoardError, board
from bamboo.boards.tclcheck import dry_run
from bamboo.boards.verilog import TOP_NAME, interfaces, parse_ports
from bamboo.boards.vivado import EXIT_NO_VIVADO, build_root, check, generate, lint
from board_standin import accelerator_factory

needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh is not installed")


def small_config(b):
    """The tiny array with the board's bus widths and clock: the board plumbing, quickly."""
    c = b.config()
    return dataclasses.replace(
        preset("tiny"),
        axi_data_width=c.axi_data_width,
        axi_addr_width=c.axi_addr_width,
        clock_mhz=c.clock_mhz,
    )


@functools.cache
def small_project(name):
    """Generated once per board and test process (elaborating the design takes seconds)."""
    b = board(name)
    return generate(
        name,
        config=small_config(b),
        accelerator=accelerator_factory(),
        folder=build_root() / "boards-test" / name,
    )


@needs_tclsh
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dry_run_passes(name):
    project = check(small_project(name))
    assert set(project.checks) == {"verilator lint", "tcl dry run"}
    folder, config, b = project.folder, project.config, project.board
    assert json.loads((folder / "config.json").read_text()) == config.to_dict()
    assert (folder / "config_id").read_text() == f"0x{config.config_id:08x}\n"
    tcl = project.tcl.read_text()
    assert f"-part {b.part}" in tcl and f"-offset 0x{b.reg_base:08X}" in tcl
    assert "write_hw_platform -fixed -include_bit" in tcl
    period = f"{1000 / config.clock_mhz:.4f}"
    assert f"-period {period}" in project.xdc.read_text()
    assert f"set expected_period {period}" in tcl


# The AXI4 / AXI4-Lite signals (ARM IHI 0022, without the optional REGION and USER
# signals: HAS_REGION 0), written out here rather than taken from hw/axi.py.
_AXI4 = {
    "AW": "ID ADDR LEN SIZE BURST LOCK CACHE PROT QOS VALID READY",
    "W": "DATA STRB LAST VALID READY",
    "B": "ID RESP VALID READY",
    "AR": "ID ADDR LEN SIZE BURST LOCK CACHE PROT QOS VALID READY",
    "R": "ID DATA RESP LAST VALID READY",
}
_AXI4LITE = {
    "AW": "ADDR PROT VALID READY",
    "W": "DATA STRB VALID READY",
    "B": "RESP VALID READY",
    "AR": "ADDR PROT VALID READY",
    "R": "DATA RESP VALID READY",
}


def _axi_signals(table):
    """``{LOGICAL: driven by the manager}``: VALID and payload flow with the channel,
    READY against it."""
    out = {}
    for channel, names in table.items():
        forward = channel in ("AW", "W", "AR")
        for name in names.split():
            out[channel + name] = forward != (name == "READY")
    return out


def test_verilog_interfaces():
    project = small_project("ultra96")
    text = project.verilog.read_text()
    ports = parse_ports(text)
    intfs = interfaces(ports)
    assert set(intfs) == {"s_axi", "m_axi", "clk", "rst", "irq"}
    s, m = intfs["s_axi"], intfs["m_axi"]
    assert (s["mode"], m["mode"]) == ("slave", "master")
    assert (s["declared_mode"], m["declared_mode"]) == ("slave s_axi", "master m_axi")
    # Port by port: each AXI port claims exactly its own signal, with the direction the
    # AXI specification gives it, and every signal of the protocol is claimed once.
    for bus, table, manager in [("s_axi", _AXI4LITE, False), ("m_axi", _AXI4, True)]:
        spec = _axi_signals(table)
        claimed = {}
        for port, (direction, _width, attrs) in ports.items():
            if not port.startswith(bus + "__"):
                continue
            info = attrs.get("X_INTERFACE_INFO", "")
            suffix = port[len(bus) + 2 :].upper()
            assert info == f"xilinx.com:interface:aximm:1.0 {bus} {suffix}", port
            logical = info.split()[-1]
            assert logical not in claimed, f"{logical} claimed by {claimed[logical]} and {port}"
            claimed[logical] = port
            assert direction == ("output" if spec[logical] == manager else "input"), port
        assert set(claimed) == set(spec), set(spec) ^ set(claimed)
        # Mode and parameters on one port of the interface only.
        assert sum("X_INTERFACE_MODE" in ports[p][2] for p in claimed.values()) == 1
        assert sum("X_INTERFACE_PARAMETER" in ports[p][2] for p in claimed.values()) == 1
    assert s["parameters"]["PROTOCOL"] == "AXI4LITE" and m["parameters"]["PROTOCOL"] == "AXI4"
    assert int(m["parameters"]["DATA_WIDTH"]) == project.config.axi_data_width
    assert intfs["clk"]["parameters"]["ASSOCIATED_BUSIF"] == "s_axi:m_axi"
    assert intfs["rst"]["parameters"]["POLARITY"] == "ACTIVE_HIGH"
    assert intfs["irq"]["parameters"]["SENSITIVITY"] == "LEVEL_HIGH"
    # No attribute twice on a port, and only the ports carry them (not Yosys's aliases).
    for line in text.splitlines():
        assert line.count("X_INTERFACE") <= 1, line
    assert text.count("X_INTERFACE_INFO") == len(
        [p for p in ports.values() if "X_INTERFACE_INFO" in p[2]]
    )


# What Yosys writes when Amaranth has merged the attributes of three outputs tied to
# one constant (amaranth-lang/amaranth#1616): all three claim AWLOCK.
_MERGED = """module bamboo_top(m_axi__arid, m_axi__awid, m_axi__awlock);
  (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 m_axi AWLOCK" *)
  output m_axi__arid;
  wire m_axi__arid;
  (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 m_axi AWLOCK" *)
  output m_axi__awid;
  (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 m_axi AWLOCK" *)
  output m_axi__awlock;
  (* X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 m_axi AWLOCK" *)
  wire \\m_axi__awlock$3 ;
endmodule
"""


def test_merged_attributes_are_refused_and_rewritten_by_port_name():
    from bamboo.boards.verilog import annotate_ports

    with pytest.raises(ValueError, match="AWLOCK is claimed by both"):
        interfaces(parse_ports(_MERGED))
    table = {
        p: {"X_INTERFACE_INFO": f"xilinx.com:interface:aximm:1.0 m_axi {p[7:].upper()}"}
        for p in ("m_axi__arid", "m_axi__awid", "m_axi__awlock")
    }
    fixed = annotate_ports(_MERGED, table)
    assert interfaces(parse_ports(fixed))["m_axi"]["signals"] == {
        "ARID": "m_axi__arid",
        "AWID": "m_axi__awid",
        "AWLOCK": "m_axi__awlock",
    }
    assert fixed.count("X_INTERFACE_INFO") == 3
    with pytest.raises(ValueError, match="not declared"):
        annotate_ports(_MERGED, {"m_axi__arqos": {}})


MUTATIONS = [
    (
        "[get_bd_intf_pins ctl_ic/M00_AXI] [get_bd_intf_pins bamboo/s_axi]",
        "[get_bd_intf_pins ctl_ic/M00_AXI] [get_bd_intf_pins bamboo/s_axil]",
        "cell bamboo has no intf s_axil",
    ),
    ("ps/pl_ps_irq0", "ps/pl_ps_irq", "cell ps has no pin pl_ps_irq"),
    (
        "CONFIG.PSU__USE__IRQ0 {1}",
        "CONFIG.PSU__USE__IRQ0 {0}",
        "exists only with CONFIG.PSU__USE__IRQ0 = 1",
    ),
    (
        "CONFIG.PSU__USE__M_AXI_GP1 {0}",
        "CONFIG.PSU__USE__M_AXI_GP1 {1}",
        "maxihpm1_fpd_aclk is not connected",
    ),
    (
        "CONFIG.PSU__SAXIGP2__DATA_WIDTH",
        "CONFIG.PSU__SAXIGP2_DATA_WIDTH",
        "has no CONFIG.PSU__SAXIGP2_DATA_WIDTH",
    ),
    (
        "[get_bd_pins rst_pl/peripheral_reset] [get_bd_pins bamboo/rst]",
        "[get_bd_pins rst_pl/peripheral_reset] [get_bd_pins rst_pl/peripheral_aresetn] "
        "[get_bd_pins bamboo/rst]",
        "2 drivers",
    ),
    (
        "[get_bd_intf_pins mem_ic/M00_AXI] [get_bd_intf_pins ps/S_AXI_HP0_FPD]",
        "[get_bd_intf_pins mem_ic/M00_AXI] [get_bd_intf_pins ps/M_AXI_HPM0_LPD]",
        "exists only with CONFIG.PSU__USE__M_AXI_GP2 = 1",
    ),
    ("ps/SAXIGP2/HP0_DDR_LOW", "ps/SAXIGP3/HP1_DDR_LOW", "no segment"),
    ("-part xczu3eg-sbva484-1-i", "-part xczu3eg-sbva484-1-e", "expected xczu3eg-sbva484-1-i"),
    ("write_hw_platform -fixed -include_bit", "write_hw_platform -include_bit", "needs -fixed"),
    (
        "[get_bd_pins bamboo/irq] [get_bd_pins intc/intr]",
        "[get_bd_pins bamboo/irq]",
        "needs two pins",
    ),
    (
        "connect_bd_net [get_bd_pins rst_pl/peripheral_aresetn] [get_bd_pins intc/s_axi_aresetn]",
        "",
        "intc/s_axi_aresetn is not connected",
    ),
    ("CONFIG.NUM_MI {2}", "CONFIG.NUM_MI {1}", "exists only with CONFIG.NUM_MI = >1"),
    ("-offset 0xA0000000", "-offset 0xA0000800", "not aligned"),
]


@needs_tclsh
@pytest.mark.parametrize("old,new,message", MUTATIONS, ids=[m[2] for m in MUTATIONS])
def test_dry_run_catches_a_wrong_name(tmp_path, old, new, message):
    project = small_project("ultra96")
    tcl = project.tcl.read_text()
    assert tcl.count(old) == 1, old
    mutated = tmp_path / "bamboo.tcl"
    mutated.write_text(tcl.replace(old, new))
    shutil.copy(project.verilog, tmp_path / project.verilog.name)
    with pytest.raises(BoardError, match="Tcl dry run of bamboo.tcl failed: .*" + message):
        dry_run(mutated, tmp_path / project.verilog.name, project.board, project.config, TOP_NAME)


@needs_tclsh
@pytest.mark.parametrize(
    "old,new,message",
    [
        ("aximm:1.0 s_axi ", "aximm:1.0 s_axi_ctl ", "cell bamboo has no intf s_axi"),
        ("irq", "interrupt", "cell bamboo has no pin irq"),
    ],
)
def test_dry_run_checks_the_verilog_ports(tmp_path, old, new, message):
    """The Tcl's accelerator pin names are checked against the Verilog Vivado will read."""
    project = small_project("ultra96")
    shutil.copy(project.tcl, tmp_path / "bamboo.tcl")
    verilog = tmp_path / project.verilog.name
    text = project.verilog.read_text()
    if old == "irq":  # rename the port itself
        import re

        text = re.sub(r"\birq\b", new, text)
    else:
        text = text.replace(old, new)
    verilog.write_text(text)
    with pytest.raises(BoardError, match=message):
        dry_run(tmp_path / "bamboo.tcl", verilog, project.board, project.config, TOP_NAME)


def test_lint_reports_errors(tmp_path):
    broken = tmp_path / "broken.v"
    broken.write_text(f"module {TOP_NAME}(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(BoardError, match="Verilator lint of .* failed"):
        lint(broken)


def _run_cli(args, env):
    # A fresh build folder, but the shared Verilog cache (elaborated designs by RTLIL hash).
    shared = build_root() / "boards-verilog"
    shared.mkdir(parents=True, exist_ok=True)
    link = Path(env["BAMBOO_BUILD"]) / "boards-verilog"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(shared)
    return subprocess.run(
        [sys.executable, "-m", "bamboo.boards.vivado", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@needs_tclsh
def test_cli_without_vivado_exits_2_saying_what_to_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VIVADO"}
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "vivado").exists()
    )
    env["BAMBOO_BUILD"] = str(tmp_path)
    out = _run_cli(["ultra96", "--config", "tiny"], env)
    assert out.returncode == EXIT_NO_VIVADO, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("bamboo:")]
    assert len(errors) == 1 and "Vivado not found" in errors[0]
    folder = tmp_path / "ultra96" / "config-tiny"
    assert f"cd {folder} && vivado -mode batch -source bamboo.tcl" in out.stderr
    assert "verilator lint: ok" in out.stdout and "tcl dry run: ok" in out.stdout
    for f in ("bamboo_top.v", "bamboo.tcl", "bamboo.xdc", "config.json", "config_id"):
        assert (folder / f).is_file()


@needs_tclsh
def test_cli_runs_vivado_when_given(tmp_path):
    fake = tmp_path / "vivado"
    fake.write_text('#!/bin/sh\necho "$PWD $@" > "$(dirname "$0")/called"\nexit 0\n')
    fake.chmod(0o755)
    env = dict(os.environ, VIVADO=str(fake), BAMBOO_BUILD=str(tmp_path / "build"))
    out = _run_cli(["ultra96", "--config", "tiny"], env)
    assert out.returncode == 0, out.stderr
    called = (tmp_path / "called").read_text()
    assert "-mode batch" in called and "-source bamboo.tcl" in called
    assert called.startswith(str(tmp_path / "build" / "ultra96" / "config-tiny"))


@pytest.mark.slow
@needs_tclsh
@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dry_run_of_the_board_preset(name):
    """The real configuration of every board through generation, lint and the dry run."""
    project = check(generate(name, accelerator=accelerator_factory()))
    assert project.config.name == board(name).preset


@needs_tclsh
def test_dry_run_log_cannot_pass_for_a_build():
    project = check(small_project("ultra96"))
    log = (project.folder / "dry_run.log").read_text().splitlines()
    script_lines = [ln for ln in log if "bamboo:" in ln]
    assert script_lines and all(
        ln.startswith("DRY RUN, nothing built or timed: ") for ln in script_lines
    )
    assert any("slack untimed" in ln for ln in script_lines)
    assert log[-1].endswith("nothing was built or timed")
    assert any("bamboo.xsa is PL-only" in ln for ln in script_lines)


@needs_tclsh
@pytest.mark.parametrize(
    "installed,applied",
    [
        ({"em.avnet.com:ultra96v2:part0:1.0": "xczu3eg-sbva484-1-e"}, None),  # the -e part
        ({"avnet.com:ultra96v2:part0:1.2": "xczu3eg-sbva484-1-i"}, "avnet.com:ultra96v2:part0:1.2"),
        (
            {
                "Avnet-tria:ultra96v2:part0:1.3": "xczu3eg-sbva484-1-i",
                "em.avnet.com:ultra96v2:part0:1.0": "xczu3eg-sbva484-1-e",
            },
            "Avnet-tria:ultra96v2:part0:1.3",
        ),
    ],
)
def test_board_files_of_every_version_match_only_with_the_board_part(tmp_path, installed, applied):
    project = small_project("ultra96")
    shutil.copy(project.verilog, tmp_path / project.verilog.name)
    shutil.copy(project.tcl, tmp_path / "bamboo.tcl")
    log = dry_run(
        tmp_path / "bamboo.tcl",
        tmp_path / project.verilog.name,
        project.board,
        project.config,
        TOP_NAME,
        board_files=installed,
    )
    if applied:
        assert f"board preset {applied} applied" in log and "PL-only" not in log
    else:
        assert "board preset" not in log and "bamboo.xsa is PL-only" in log


@needs_tclsh
def test_every_hp0_segment_is_assigned_or_excluded(tmp_path):
    project = small_project("ultra96")
    tcl = project.tcl.read_text()
    design = (check(project).folder / "dry_run_design.txt").read_text()
    assert "exclude bamboo/m_axi ps/SAXIGP2/HP0_DDR_HIGH" in design
    for seg in ("HP0_DDR_LOW", "HP0_QSPI", "HP0_LPS_OCM"):
        assert f"bamboo/m_axi ps/SAXIGP2/{seg}" in design
    start = tcl.index("exclude_bd_addr_seg")
    end = tcl.index("\n", tcl.index("HP0_DDR_HIGH", start))
    (tmp_path / "bamboo.tcl").write_text(tcl[:start] + tcl[end + 1 :])
    shutil.copy(project.verilog, tmp_path / project.verilog.name)
    with pytest.raises(BoardError, match="HP0_DDR_HIGH is neither assigned nor excluded"):
        dry_run(
            tmp_path / "bamboo.tcl",
            tmp_path / project.verilog.name,
            project.board,
            project.config,
            TOP_NAME,
        )
