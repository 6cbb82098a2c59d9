"""Timing one component alone: ``python -m bamboo.boards.resources ultra96 --component vector``.

A full ``make resources BOARD=ultra96`` takes Yosys six minutes or more; pipelining a
path needs a faster loop. :func:`component_estimate` elaborates one unit of the
accelerator at the board's configuration by itself (:data:`COMPONENTS`, named as the
accelerator's submodules are, so path names read as in the full report less the
``accel.`` prefix), synthesizes it with the same Yosys script (:func:`~bamboo.boards.
resources.synthesize`) and runs the same static timing estimate
(:func:`~bamboo.boards.timing.analyze`).

The component's ports stand for the registers around it in the accelerator: every
input port starts a path at a flip-flop's clock-to-out, every output port ends one at
a flip-flop's setup (``analyze(..., registered_ports=True)``). Where the accelerator
actually drives a port from logic (a FIFO's comb handshake, a block RAM's
unregistered output) the full report is the reference; the component report can only
be optimistic there. Its resource counts are the unit's alone.
"""

import hashlib
import json
from dataclasses import asdict, dataclass

from .platforms import BoardError, check_config
from .platforms import board as get_board
from .verilog import write_atomic
from .vivado import build_root

__all__ = ["COMPONENTS", "ComponentTiming", "component_estimate", "component_rtlil"]

_REV = "component-2"


def _fma(aligned):
    def make(cfg):
        from ..hw.fma import FusedMultiplyAdd
        from ..hw.vector import _X1

        # As the vector unit's lanes: fma1 takes its addend aligned, fma2 aligns its own.
        return FusedMultiplyAdd(_X1, aligned=True) if aligned else FusedMultiplyAdd(9)

    return make


def _unit(module, cls, **kwargs):
    def make(cfg):
        import importlib

        return getattr(importlib.import_module(f"bamboo.hw.{module}"), cls)(cfg, **kwargs)

    return make


def _array(cfg):
    from amaranth.lib import data

    from ..hw.array import SystolicArray

    # As the ComputeUnit builds it (its tag: the ACC address and the first-tap flag).
    return SystolicArray(
        cfg.rows,
        cfg.cols,
        packed=cfg.dsp_packing,
        dw_channels=cfg.depthwise_channels,
        dw_groups=cfg.depthwise_groups,
        tag_shape=data.StructLayout(
            {"addr": cfg.buffer_addr_width(cfg.acc_buffer_depth), "first": 1}
        ),
    )


def _control(cfg):
    from ..hw.control import RunControl
    from ..hw.top import WATCHDOG_CYCLES

    return RunControl(cfg, watchdog=WATCHDOG_CYCLES)


def _executor(cfg):
    from ..hw.compute import ComputeUnit
    from ..hw.executor import ComputeExecutor

    # As the Accelerator builds it, with the ComputeUnit's accumulator stream.
    return ComputeExecutor(cfg, acc=ComputeUnit(cfg).o_acc.signature)


def _queue(cfg):
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    from ..hw.queues import QueueController, entry_layout
    from ..hw.top import QUEUE_DEPTH, queue_fifo

    class Queue(wiring.Component):
        """One instruction queue as the Accelerator builds it: the FIFO and its controller
        (the compute queue's, with both neighbours)."""

        def __init__(self):
            entry = stream.Signature(entry_layout())
            self._ctl = QueueController()
            ctl = self._ctl.signature.members
            super().__init__(
                {
                    "i_insn": In(entry),
                    "level": Out(range(QUEUE_DEPTH + 1)),
                    **{name: ctl[name] for name in ctl if name != "i_insn"},
                }
            )

        def elaborate(self, platform):
            m = Module()
            m.submodules.fifo = q = queue_fifo()
            m.submodules.queue = ctl = self._ctl
            wiring.connect(m, wiring.flipped(self.i_insn), q.w_stream)
            wiring.connect(m, q.r_stream, ctl.i_insn)
            m.d.comb += self.level.eq(q.level)
            for name in ctl.signature.members:
                if name != "i_insn":
                    port, inner = getattr(self, name), getattr(ctl, name)
                    if name == "o_exec":
                        wiring.connect(m, inner, wiring.flipped(port))
                    elif ctl.signature.members[name].flow == In:
                        m.d.comb += inner.eq(port)
                    else:
                        m.d.comb += port.eq(inner)
            return m

    return Queue()


def _requantizer(cfg):
    from ..hw.requantizer import Requantizer

    return Requantizer()


#: Lanes of the depthwise engine timed for a preset without one (``dw_lanes`` 0).
DW_LANES_DEFAULT = 16


def _dwengine(multiplier):
    def make(cfg):
        import dataclasses

        from ..hw.dwengine import DepthwiseEngine

        if not cfg.dw_lanes:  # no preset has the engine yet: time the proposed size
            cfg = dataclasses.replace(cfg, dw_lanes=DW_LANES_DEFAULT)
        return DepthwiseEngine.from_config(cfg, multiplier=multiplier)

    return make


#: ``{name: factory(config) -> wiring.Component}``: the accelerator's units by their
#: submodule names in :class:`~bamboo.hw.top.Accelerator`, plus one instruction ``queue``
#: (a queue's FIFO and its controller, ``fifo`` and ``queue``), the compute unit's
#: ``array``, one vector lane's ``fma1`` and ``fma2`` (:class:`~bamboo.hw.fma.
#: FusedMultiplyAdd`) and ``requantizer``, and the standalone depthwise engine
#: (hw/dwengine.py, not yet in the accelerator) with DSP or LUT multipliers.
COMPONENTS = {
    "vector": _unit("vector", "VectorUnit"),
    "compute": _unit("compute", "ComputeUnit"),
    "postproc": _unit("postproc", "PostProcessor"),
    "load": _unit("load", "LoadUnit"),
    "store": _unit("store", "StoreUnit"),
    "fetcher": _unit("fetch", "Fetcher"),
    "dispatcher": _unit("fetch", "Dispatcher", vector=True),  # as the Accelerator builds it
    "queue": _queue,
    "bus": _unit("bus", "BusArbiter"),
    "regfile": _unit("regfile", "RegisterFile"),
    "control": _control,
    "executor": _executor,
    "array": _array,
    "fma1": _fma(True),
    "fma2": _fma(False),
    "requantizer": _requantizer,
    "dwengine": _dwengine("dsp"),
    "dwengine_lut": _dwengine("lut"),
}


@dataclass
class ComponentTiming:
    """Yosys's cells and the timing estimate of one component (see the module docstring)."""

    board: str
    component: str
    config: str
    design_hash: str
    cells: dict
    dsp: int
    lut: int
    ff: int
    bram36: float
    fmax_mhz: float
    period_ns: float
    timing_table: str
    worst_paths: list
    seconds: float

    def render(self, count=10):
        from .resources import timing_lines

        return (
            f"component {self.component!r} of config {self.config!r} alone "
            f"(ports registered): DSP {self.dsp}, LUT {self.lut}, FF {self.ff}, "
            f"BRAM36 {self.bram36:g} (Yosys {self.seconds:g} s when measured)\n"
            + timing_lines(self, count)
        )


def component_rtlil(name, config):
    """``(rtlil text, design hash)`` of component ``name`` built for ``config``."""
    import amaranth
    from amaranth.back import rtlil

    if name not in COMPONENTS:
        raise BoardError(f"unknown component {name!r}; one of: {', '.join(COMPONENTS)}")
    from amaranth.hdl import Signal, Value

    unit = COMPONENTS[name](config)
    # Every port but the constants of a signature (an always-ready stream's ``ready``).
    ports = [
        v
        for v in (Value.cast(v) for _, _, v in unit.signature.flatten(unit))
        if isinstance(v, Signal)
    ]
    text = rtlil.convert(unit, name=name, ports=ports, emit_src=False)
    digest = hashlib.sha256(
        text.encode() + amaranth.__version__.encode() + _REV.encode()
    ).hexdigest()[:20]
    return text, digest


def component_estimate(board_name, name, *, config=None, folder=None, count=10):
    """:class:`ComponentTiming` of component ``name`` at ``board_name``'s preset (or
    ``config``), cached under ``build/<board>/component-<name>/`` by the design hash."""
    from .resources import NETLIST, _count, _timing_table, synthesize
    from .timing import analyze

    b = get_board(board_name)
    table = _timing_table(b)
    if table is None:
        raise BoardError(
            f"no delay table for {b.name} ({b.yosys_family}): "
            "the timing estimate is for UltraScale+ only"
        )
    config = b.config() if config is None else config
    check_config(b, config)
    text, digest = component_rtlil(name, config)
    folder = build_root() / b.name / f"component-{name}" if folder is None else folder
    cache = folder / f"timing-{digest}.json"
    if cache.exists():
        return ComponentTiming(**json.loads(cache.read_text()))
    work = folder / "yosys"
    work.mkdir(parents=True, exist_ok=True)
    design = work / f"{name}.il"
    write_atomic(design, text)
    cells, _, seconds = synthesize(design, b, name, workdir=work)
    report = analyze(work / NETLIST, table, count=count, registered_ports=True)
    counts = _count(cells, b)
    result = ComponentTiming(
        board=b.name,
        component=name,
        config=config.name,
        design_hash=digest,
        cells=cells,
        dsp=counts["dsp"],
        lut=counts["lut"],
        ff=counts["ff"],
        bram36=counts["bram36"],
        fmax_mhz=report.fmax_mhz,
        period_ns=report.period_ns,
        timing_table=table.name,
        seconds=round(seconds, 1),
        worst_paths=[
            dict(ns=p.ns, levels=p.levels, start=p.start, end=p.end, cells=p.cells)
            for p in report.paths
        ],
    )
    write_atomic(cache, json.dumps(asdict(result), indent=2) + "\n")
    return result
