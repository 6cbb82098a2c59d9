"""What the load and the store unit share: one instruction at a time through a DMA engine.

A unit takes an instruction from ``i_insn`` (already checked by the dispatcher) and
holds it while its engine (``unit.dma``, a :class:`~bamboo.hw.dma_read.DMAReader` or
a :class:`~bamboo.hw.dma_write.DMAWriter`) runs: the engine's command is the
instruction's transfer fields (its command fields of the same names). The
instruction ends when the engine reports its status: ``done`` pulses for
``ErrorCode.NONE``, otherwise ``error`` with ``error_code``. Each unit keeps its own
side of the engine's data (hw/load.py, hw/store.py).
"""

from amaranth.hdl import Const, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.registers import ErrorCode
from .isa_layout import instruction_layout
from .queues import entry_layout

__all__ = ["instruction_members", "run_instructions"]


def instruction_members(config):
    """The members every DMA instruction unit has besides its buffer ports and ``m_axi``.

    ``i_insn`` (In stream of :func:`~bamboo.hw.queues.entry_layout`); pulses ``done``
    and ``error`` with ``error_code`` (Out 8, valid with ``error``); ``busy`` (Out 1,
    an instruction is held); ``window_base`` and ``window_size`` (In, the DMA window,
    passed to the engine).
    """
    return {
        "i_insn": In(stream.Signature(entry_layout())),
        "done": Out(1),
        "error": Out(1),
        "error_code": Out(8),
        "busy": Out(1),
        "window_base": In(config.axi_addr_width),
        "window_size": In(config.axi_addr_width),
    }


def run_instructions(m, unit, opcode, *, hold=Const(0, 1)):
    """Adds ``unit.dma`` to ``m`` and runs ``opcode`` instructions from ``unit.i_insn`` on it.

    ``unit`` has the :func:`instruction_members`, ``m_axi`` (connected to the engine's)
    and ``dma``. Every field of the engine's command that the instruction layout also
    has follows the held instruction; the caller drives any other (the load unit's
    ``elem_log2``). While ``hold`` is high the engine's status waits (the load unit
    finishing its last LUT chunk), so ``done`` and ``error`` follow the unit's last write.

    Returns
    -------
    View of ``instruction_layout(opcode)``
        The instruction being executed, a register taken from ``i_insn``.
    """
    m.submodules.dma = dma = unit.dma
    wiring.connect(m, dma.m_axi, wiring.flipped(unit.m_axi))
    m.d.comb += [dma.window_base.eq(unit.window_base), dma.window_size.eq(unit.window_size)]

    layout = instruction_layout(opcode)
    cur = Signal(layout)
    cmd = dma.i_cmd.payload
    for name, _ in cmd.shape():
        if name in layout.members:
            m.d.comb += getattr(cmd, name).eq(getattr(cur, name))

    # ``done``, ``error`` and ``error_code`` are registers, set in the cycle the engine's
    # status is taken: the queue's token logic starts from flip-flops, not from the
    # engine's state decode and the status compare.
    status = dma.o_status
    m.d.sync += [unit.done.eq(0), unit.error.eq(0)]
    with m.FSM():
        with m.State("IDLE"):
            m.d.comb += unit.i_insn.ready.eq(1)
            with m.If(unit.i_insn.valid):
                m.d.sync += cur.eq(unit.i_insn.payload.word[: layout.size])
                m.next = "CMD"
        with m.State("CMD"):
            m.d.comb += [dma.i_cmd.valid.eq(1), unit.busy.eq(1)]
            with m.If(dma.i_cmd.ready):
                m.next = "RUN"
        with m.State("RUN"):
            m.d.comb += [unit.busy.eq(1), status.ready.eq(~hold)]
            with m.If(status.valid & ~hold):
                ok = status.payload.error == ErrorCode.NONE
                m.d.sync += [
                    unit.done.eq(ok),
                    unit.error.eq(~ok),
                    unit.error_code.eq(status.payload.error),
                ]
                m.next = "IDLE"
    return cur
