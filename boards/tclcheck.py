"""Dry run of the Vivado Tcl under ``tclsh``, with every Vivado command replaced by a checking stub.

Without Vivado the generated ``bamboo.tcl`` still runs, line by line, in a plain
Tcl interpreter: each Vivado command is a stub that checks its arguments against
what Vivado would have — the part, the IP cells' pin tables (:mod:`.psip`), the
pins and interfaces of the accelerator read from the generated Verilog's port
attributes — and records the design. ``validate_bd_design`` then checks the
design the way Vivado's validation would at its simplest: every required input
driven, every enabled AXI port's clock connected, master to slave, one driver
per net, both address maps assigned. The run commands check their order
(synthesis before implementation, the bitstream step, ``write_hw_platform
-fixed -include_bit``) and the files copied out.

A wrong name anywhere (``bamboo/s_axil``, ``ps/pl_ps_irq``) fails with the line.
Every line the script prints under the stubs starts ``DRY RUN, nothing built or
timed:`` (slack reads ``untimed``), so its log cannot pass for a build's.
"""

import re
import shutil
import subprocess
from pathlib import Path

from .platforms import BoardError
from .psip import IP_TABLES
from .tcl import ps_names
from .verilog import interfaces, parse_ports

__all__ = ["dry_run"]


def _tcl_list(items):
    return " ".join("{" + str(i) + "}" for i in items)


def _database(board, config, verilog_path, top, board_files=None):
    """Tcl that sets the stubs' tables: IP pins, the accelerator's ports, expected values."""
    lines = []
    for vlnv, table in IP_TABLES.items():
        pins = []
        for p in table["pins"]:
            needs = "" if p.needs is None else _tcl_list(p.needs)
            pins.append(
                _tcl_list([p.name, p.kind, p.direction, needs, p.clock or "", p.vlnv or ""])
            )
        segs = []
        for intf, names in table["segments"].items():
            segs += [intf, _tcl_list(names)]
        defaults = []
        for k, v in table["defaults"].items():
            defaults += [k, v]
        lines.append(
            f"dict set ::ip_tables {vlnv} [dict create "
            f"pins {{{_tcl_list(pins)}}} keys {{{' '.join(sorted(table['keys']))}}} "
            f"segments {{{_tcl_list(segs)}}} defaults {{{_tcl_list(defaults)}}} "
            f"external {{{' '.join(table['external'])}}} "
            f"required {{{' '.join(table.get('required', []))}}} "
            f"clock {{{' '.join(table.get('clock', ()))}}}]"
        )
    text = Path(verilog_path).read_text()
    ports = parse_ports(text, top)
    intfs = interfaces(ports)
    in_intf = {
        p for i in intfs.values() if i["vlnv"].endswith("aximm:1.0") for p in i["signals"].values()
    }
    pins = [
        _tcl_list([name, "pin", "I" if d == "input" else "O", "", "", ""])
        for name, (d, _w, _a) in ports.items()
        if name not in in_intf
    ]
    busifs = []
    for name, intf in intfs.items():
        if intf["vlnv"].endswith("aximm:1.0"):
            if intf["mode"] is None:
                raise BoardError(f"interface {name!r} has no AWVALID, so no direction")
            pins.append(_tcl_list([name, "intf", intf["mode"], "", "clk", "aximm"]))
            busifs.append(name)
    clock = intfs.get("clk", {"parameters": {}})["parameters"].get("ASSOCIATED_BUSIF", "")
    lines.append(
        f"dict set ::modules {top} [dict create file {Path(verilog_path).name} "
        f"pins {{{_tcl_list(pins)}}} busif {{{' '.join(busifs)}}} "
        f"associated {{{' '.join(clock.split(':'))}}}]"
    )
    mhz, _ = board.pl_clock(config.clock_mhz)
    lines += [
        f"set ::expect_part {board.part}",
        f"set ::expect_ps {ps_names(board)['vlnv']}",
        f"set ::expect_mhz {mhz}",
        f"set ::expect_reg_base 0x{board.reg_base:08X}",
        "set ::expect_cell bamboo",
        f"set ::expect_clock_name {ps_names(board)['clock_name']}",
    ]
    for board_part, part in (board_files or {}).items():
        lines.append(f"dict set ::installed_board_parts {{{board_part}}} {part}")
    return "\n".join(lines) + "\n"


def _failure(stderr, script):
    """``message, at line N: command`` from a Tcl error trace."""
    lines = stderr.splitlines()
    message = next((ln for ln in lines if ln.strip()), "no message")
    message = message.removeprefix("DRY RUN FAILED: ")
    command = None
    for i, ln in enumerate(lines):
        if ln.strip().startswith('"') and not ln.strip().startswith('"error'):
            command = ln.strip().strip('"')
        m = re.search(rf'\(file "[^"]*{re.escape(script)}" line (\d+)\)', ln)
        if m:
            return f"{message} (at {script} line {m[1]}: {command})"
    return message


_STUBS = Path(__file__).with_name("vivado_stub.tcl")


def dry_run(tcl_path, verilog_path, board, config, top, *, tclsh=None, board_files=None):
    """Run ``tcl_path`` under ``tclsh`` with the checking stubs; return its log.

    Every line the script prints is marked as a dry run's. The block design the
    script built is written to ``dry_run_design.txt`` beside it (:mod:`.hwh` turns it
    into the hardware handoff). ``board_files`` (``{board part: part}``) are the
    Vivado board files the run pretends are installed (none by default).

    Raises
    ------
    BoardError
        When ``tclsh`` is missing or a check fails (the message names the line).
    """
    tclsh = tclsh or shutil.which("tclsh")
    if tclsh is None:
        raise BoardError("the Tcl dry run needs `tclsh` (Debian: apt-get install tcl)")
    tcl_path = Path(tcl_path).resolve()
    db = tcl_path.with_name("dry_run_db.tcl")
    db.write_text(_database(board, config, verilog_path, top, board_files))
    driver = tcl_path.with_name("dry_run.tcl")
    driver.write_text(
        f"source {{{_STUBS}}}\nsource {{{db}}}\n"
        f"if {{[catch {{source {{{tcl_path}}}}} msg opts]}} {{\n"
        f'    puts stderr "DRY RUN FAILED: $msg"\n'
        f"    puts stderr [dict get $opts -errorinfo]\n    _exit 1\n}}\n"
        f"bamboo_stub_finish\n"
    )
    out = subprocess.run(
        [tclsh, str(driver)], capture_output=True, text=True, timeout=120, cwd=tcl_path.parent
    )
    log = out.stdout + out.stderr
    (tcl_path.with_name("dry_run.log")).write_text(log)
    if out.returncode != 0:
        raise BoardError(
            f"Tcl dry run of {tcl_path.name} failed: {_failure(out.stderr, tcl_path.name)}"
        )
    return log
