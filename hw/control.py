"""Run and error control of the accelerator: start, the end of a run, its error, the watchdog.

:class:`RunControl` is the engine side of the register file (``hw/regfile.py``'s
:class:`~bamboo.hw.regfile.ControlSignature`): it samples the run parameters at
``start``, holds the units in reset (``abort``) outside a run, decides how the run
ends and reports it. The ways a run ends (hw/top.py's docstring has the whole story):

* ``finished`` (FINISH or the last instruction dispatched, every queue idle): ``done``;
* a dispatcher error: the state QUIESCE lets the instructions dispatched before it
  finish (until every queue is idle or waits for a token), then ``error`` with the
  dispatcher's code and index;
* a unit error (the load or store unit's own, or an AXI error response it receives):
  the cycle after its pulse, with that unit's instruction index; it wins over a
  dispatcher error, being older;
* ``watchdog`` cycles without ``progress``: ``TIMEOUT`` with the index of the oldest
  instruction waiting for a token;
* ``soft_reset``: silently.

Every end goes through DRAIN: the units are held in reset until the bus is quiet
(``bus_idle``), or for ``watchdog`` cycles, after which ``force`` resets the bus too.

Timing: ``abort`` is a register (it fans out into the reset of every unit), and so are
the watchdog's ``progress`` and limit flags and the drain counter's flags; the decisions
that end a run read registers and a few strobes only.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arch.registers import ErrorCode
from .pipeline import register
from .queues import INDEX_BITS
from .regfile import ControlSignature

__all__ = ["RunControl", "status_names"]

#: The queues whose state run control watches (arch/isa.py QUEUES).
_QUEUES = ("load", "compute", "store")


def status_names():
    """The register file's per-unit busy and stall strobes (``fetch_busy``, ...), which
    run control passes through from its ``status`` inputs."""
    return sorted(
        name
        for name, member in ControlSignature().members.items()
        if name.endswith(("_busy", "_stall"))
    )


class RunControl(wiring.Component):
    """The top FSM: IDLE -> RUN (-> QUIESCE) -> DRAIN -> IDLE.

    Parameters
    ----------
    config : AcceleratorConfig
    watchdog : int
        Cycles without ``progress`` before ``TIMEOUT``; also the longest DRAIN.

    Attributes
    ----------
    engine : In(ControlSignature())
        The register file's engine port.
    status : In(...)
        The per-unit busy and stall strobes (:func:`status_names`), passed to ``engine``.
    go : Out(1)
        Pulse, the cycle after ``start``: the run parameters are valid.
    insn_base, insn_count, window_base, window_size : Out
        Sampled at ``start`` (``window_size`` saturated to the AXI address width).
    abort : Out(1)
        Registered: the units are held in reset (IDLE, DRAIN).
    force : Out(1)
        The bus did not go quiet within ``watchdog`` cycles of DRAIN: reset it too.
    disp_error, disp_code, disp_index : In
        The dispatcher's error pulse with its code and the instruction's index.
    all_dispatched : In(1)
    {load,compute,store}_idle, _stall, _index : In
        Each queue: nothing issued and empty; the head waits for a token; the index of
        the head or of the issued instruction.
    load_error, load_code, load_resp_error, store_error, store_code, store_resp_error : In
        A unit's error pulse and code, and an AXI error response it receives (acted on
        two cycles after it arrives: the unit reports it only after its transfer).
    progress : In(1)
        Something moved (a bus handshake, a unit busy, an instruction), this cycle or,
        as hw/top.py registers the signs, the one before: the watchdog does not mind.
    bus_idle : In(1)
    finish_irq : In(1)
        Pulse: a FINISH with ``irq`` set was executed; ``done`` then interrupts.
    """

    def __init__(self, config, *, watchdog):
        self.config = config
        self.watchdog = watchdog
        eng = ControlSignature()
        aw = config.axi_addr_width
        ports = {
            "engine": In(eng),
            "status": In(wiring.Signature({n: In(1) for n in status_names()})),
            "go": Out(1),
            "insn_base": Out(aw),
            "insn_count": Out(eng.members["insn_count"].shape),
            "window_base": Out(aw),
            "window_size": Out(aw),
            "abort": Out(1, init=1),
            "force": Out(1),
            "disp_error": In(1),
            "disp_code": In(ErrorCode),
            "disp_index": In(INDEX_BITS),
            "all_dispatched": In(1),
            "progress": In(1),
            "bus_idle": In(1),
            "finish_irq": In(1),
        }
        for q in _QUEUES:
            ports.update({f"{q}_idle": In(1), f"{q}_stall": In(1), f"{q}_index": In(INDEX_BITS)})
        for u in ("load", "store"):
            ports.update(
                {f"{u}_error": In(1), f"{u}_code": In(ErrorCode), f"{u}_resp_error": In(1)}
            )
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        eng = self.engine
        aw = self.config.axi_addr_width
        watchdog = self.watchdog
        for name in status_names():
            m.d.comb += getattr(eng, name).eq(getattr(self.status, name))

        err_code, err_index = Signal(ErrorCode), Signal.like(eng.err_insn)
        silent = Signal()  # a soft reset ended the run: no done, no error
        finish_irq = Signal()  # this run has executed a FINISH with irq set
        m.d.comb += [eng.error_code.eq(err_code), eng.err_insn.eq(err_index)]
        with m.If(self.finish_irq):
            m.d.sync += finish_irq.eq(1)

        # The oldest failing unit, registered: acted on two cycles after its pulse (or the
        # AXI error response's RVALID & RREADY, BVALID & BREADY), which end the units'
        # status and data-path cones. The failing instruction stays issued (its queue
        # waits for ``done``), so no run can finish in between.
        # The pulses, codes and indexes are registered as they come (they are late
        # signals, the AXI responses' handshakes among them) and combined a cycle later.
        # Pulses have a reset; codes and indexes are datapath registers.
        heard = {}
        for name in ("load_error", "load_resp_error", "store_error", "store_resp_error"):
            heard[name] = Signal(name=f"heard_{name}")
            m.d.sync += heard[name].eq(getattr(self, name))
        for name in ("load_code", "store_code", "load_index", "store_index"):
            heard[name] = register(m, getattr(self, name), f"heard_{name}")
        load_fail = heard["load_error"] | heard["load_resp_error"]
        unit_error = Signal()
        unit_code, unit_index = Signal(ErrorCode), Signal.like(err_index)
        m.d.sync += [
            unit_error.eq(load_fail | heard["store_error"] | heard["store_resp_error"]),
            unit_code.eq(
                Mux(
                    load_fail,
                    Mux(heard["load_error"], heard["load_code"], ErrorCode.AXI_ERROR),
                    Mux(heard["store_error"], heard["store_code"], ErrorCode.AXI_ERROR),
                )
            ),
            unit_index.eq(Mux(load_fail, heard["load_index"], heard["store_index"])),
        ]
        idle = {q: getattr(self, f"{q}_idle") for q in _QUEUES}
        stall = {q: getattr(self, f"{q}_stall") for q in _QUEUES}
        index = {q: getattr(self, f"{q}_index") for q in _QUEUES}
        # Both as registers, a cycle late: the queues' handshakes stay off the FSM's
        # decisions. Neither flag falls once it holds (all dispatched and every queue idle
        # or waiting: nothing left runs to push a token), so a cycle late is only later.
        finished, quiescent = Signal(), Signal()
        m.d.sync += [
            finished.eq(self.all_dispatched & idle["load"] & idle["compute"] & idle["store"]),
            quiescent.eq(
                (idle["load"] | stall["load"])
                & (idle["compute"] | stall["compute"])
                & (idle["store"] | stall["store"])
            ),
        ]
        # The oldest instruction waiting for a token (TIMEOUT's ERR_INSN), in two registered
        # steps (the stalls and the 32-bit comparisons, then the choice): it stays off the
        # error registers' path, and a TIMEOUT comes after a whole watchdog period of the
        # same stalls.
        waiting = Signal.like(err_index)
        stall_r = {q: register(m, stall[q], f"{q}_stall_r") for q in _QUEUES}
        index_r = {q: register(m, index[q], f"{q}_index_r") for q in _QUEUES}
        before = {
            (o, q): register(m, index[o] < index[q], f"{o}_before_{q}")
            for q in _QUEUES
            for o in _QUEUES
            if o != q
        }
        m.d.sync += waiting.eq(register(m, self.disp_index, "disp_index_r"))
        for q in ("store", "load", "compute"):
            older = [stall_r[o] & before[o, q] for o in _QUEUES if o != q]
            with m.If(stall_r[q] & ~Cat(*older).any()):
                m.d.sync += waiting.eq(index_r[q])

        # Watchdog: registered progress, and the limit as a flag set one count early.
        moved = Signal(init=1)
        idle_cycles = Signal(range(watchdog + 1))
        stuck = Signal()
        m.d.sync += moved.eq(self.progress | self.abort)
        with m.If(moved):
            m.d.sync += [idle_cycles.eq(0), stuck.eq(0)]
        with m.Elif(~stuck):
            m.d.sync += [idle_cycles.eq(idle_cycles + 1), stuck.eq(idle_cycles == watchdog - 1)]
        # DRAIN's counter with its flags (nonzero, at the limit) as registers.
        drain_cycles = Signal(range(watchdog + 1))
        drained, drain_limit = Signal(), Signal()

        m.d.sync += self.go.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(eng.start):
                    wide = eng.window_size[aw:].any()
                    m.d.sync += [
                        self.go.eq(1),
                        self.abort.eq(0),
                        self.insn_base.eq(eng.insn_base),
                        self.insn_count.eq(eng.insn_count),
                        self.window_base.eq(eng.window_base),
                        self.window_size.eq(Mux(wide, (1 << aw) - 1, eng.window_size)),
                        err_code.eq(ErrorCode.NONE),
                        silent.eq(0),
                        finish_irq.eq(0),
                    ]
                    m.next = "RUN"
            # RUN, and QUIESCE after a dispatch error (the instructions dispatched before it
            # finish; a unit error among them is the older one): both end at once on a soft
            # reset or a unit error.
            for state in ("RUN", "QUIESCE"):
                with m.State(state):
                    m.d.comb += eng.busy.eq(1)
                    to_drain = Signal(name=f"{state.lower()}_ends")
                    with m.If(to_drain):
                        m.d.sync += self.abort.eq(1)
                        m.next = "DRAIN"
                    with m.If(eng.soft_reset):
                        m.d.comb += to_drain.eq(1)
                        m.d.sync += silent.eq(1)
                    with m.Elif(unit_error):
                        m.d.comb += to_drain.eq(1)
                        m.d.sync += [err_code.eq(unit_code), err_index.eq(unit_index)]
                    if state == "RUN":
                        with m.Elif(self.disp_error):
                            m.d.sync += [err_code.eq(self.disp_code), err_index.eq(self.disp_index)]
                            m.next = "QUIESCE"
                        with m.Elif(stuck):
                            m.d.comb += to_drain.eq(1)
                            m.d.sync += [err_code.eq(ErrorCode.TIMEOUT), err_index.eq(waiting)]
                        with m.Elif(finished & ~self.go):
                            m.d.comb += to_drain.eq(1)
                    else:
                        with m.Elif(quiescent | stuck):
                            m.d.comb += to_drain.eq(1)
            with m.State("DRAIN"):
                m.d.comb += eng.busy.eq(1)
                m.d.sync += [
                    drain_cycles.eq(drain_cycles + 1),
                    drained.eq(1),
                    drain_limit.eq(drain_cycles == watchdog - 1),
                ]
                with m.If(eng.soft_reset):
                    m.d.sync += silent.eq(1)
                with m.If((self.bus_idle & drained) | drain_limit):
                    m.d.comb += self.force.eq(drain_limit)
                    m.d.sync += [drain_cycles.eq(0), drained.eq(0), drain_limit.eq(0)]
                    with m.If(~silent & ~eng.soft_reset):
                        ok = err_code == ErrorCode.NONE
                        m.d.comb += [
                            eng.done.eq(ok),
                            eng.done_irq.eq(ok & finish_irq),
                            eng.error.eq(~ok),
                        ]
                    m.next = "IDLE"
        return m
