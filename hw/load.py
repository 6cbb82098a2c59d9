"""The load unit: LOAD instructions through a DMAReader into the INP, WGT, PARAM and LUT buffers.

The DMA engine (hw/dma_read.py) emits the padded tile as bus-wide chunks, ``part`` 0
first for elements wider than the bus. This unit gathers the parts of a word in a
staging register and writes the whole word the cycle after its last part (INP, WGT
and PARAM write ports are one word wide, driven from registers), and writes LUT
chunks a byte per cycle into the post-processing tables (holding the DMA meanwhile).
An instruction is done when the engine reports its status, which follows its last
chunk by two cycles (so the last word is written; the status waits for the last LUT
byte too); an error status (an AXI error response) is reported instead of done.
Taking instructions and reporting status is the store unit's too (hw/dma_insn.py).
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Buffer, Opcode
from ..arch.layout import BUFFERS, PARAM_DEPTH, PARAM_LANE_BYTES, elem_bytes
from .array import weight_layout
from .axi import AXI4Signature
from .dma_insn import instruction_members, run_instructions
from .dma_read import DMAReader
from .postproc import LutWriteSignature

__all__ = ["LoadUnit", "param_layout"]


def param_layout(config):
    """One PARAM word: ``cols`` 64-bit lanes (arch/layout.py)."""
    return unsigned(8 * PARAM_LANE_BYTES * config.cols)


class LoadUnit(wiring.Component):
    """Executes LOAD.

    Attributes
    ----------
    i_insn : In(stream.Signature(entry_layout()))
        A LOAD, already checked by the dispatcher.
    done : Out(1)
        Pulse: the instruction's last word is written.
    error : Out(1)
        Pulse instead of ``done``: the DMA reported ``error_code``.
    error_code : Out(8)
    window_base, window_size : In(config.axi_addr_width)
        The DMA window (:func:`~bamboo.hw.dma_insn.instruction_members`).
    inp_w, wgt_w, param_w : In(memory.WritePort.Signature(...))
        Buffer write ports (flipped: this unit drives them).
    lut_w : Out(LutWriteSignature(config.lut_slots))
    m_axi : Out(AXI4Signature(read=True, write=False))
    busy : Out(1)
    """

    def __init__(self, config):
        self.config = config
        R, C = config.rows, config.cols
        aw = config.buffer_addr_width
        self.dma = DMAReader(config)
        super().__init__(
            {
                **instruction_members(config),
                "inp_w": In(
                    memory.WritePort.Signature(
                        addr_width=aw(config.input_buffer_depth),
                        shape=data.ArrayLayout(unsigned(8), R),
                    )
                ),
                "wgt_w": In(
                    memory.WritePort.Signature(
                        addr_width=aw(config.weight_buffer_depth), shape=weight_layout(R, C)
                    )
                ),
                "param_w": In(
                    memory.WritePort.Signature(
                        addr_width=aw(PARAM_DEPTH), shape=param_layout(config)
                    )
                ),
                "lut_w": Out(LutWriteSignature(config.lut_slots)),
                "m_axi": Out(AXI4Signature.from_config(config, write=False)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        bus = cfg.axi_data_bytes
        dma = self.dma
        lut_busy = Signal()
        c_valid = Signal(name="chunk_valid")  # a taken chunk waits in ``chunk``
        cur = run_instructions(m, self, Opcode.LOAD, hold=lut_busy | c_valid)
        log2 = lambda n: (n - 1).bit_length()  # noqa: E731
        elog2 = Signal(4)
        with m.Switch(cur.buffer):
            for buf in BUFFERS:
                with m.Case(buf):
                    m.d.comb += elog2.eq(log2(elem_bytes(cfg, buf)))
        m.d.comb += dma.i_cmd.payload.elem_log2.eq(elog2)

        # Chunks: a taken chunk is registered first (``c_*``), so the bus's ``rvalid``
        # ends in a few flip-flops rather than in the enables of every part of every
        # ``stage`` (4096 for a 16 x 32 WGT word); the registered part selects the slice
        # of ``stage`` it fills, and the word is written the cycle after its last part.
        # The write ports are driven from registers (enable and address one set per
        # buffer, for their fanout over the buffer's RAMs; the data is ``stage``). The
        # engine's status waits while a chunk is in ``c_*`` (``hold``), so ``done``
        # follows the last write as before. A LUT chunk stops the stream until its bytes
        # are written (``lut_busy``), read from ``chunk`` meanwhile.
        is_lut = Signal(name="lut_is_buf")
        m.d.sync += is_lut.eq(cur.buffer == Buffer.LUT)
        # ``stall``: the LUT chunk in ``chunk`` or its bytes still being written, a
        # register of its own (``ready`` fans out over the read engine's state).
        take = dma.o_data.valid & dma.o_data.ready
        stall = Signal(name="lut_stall")
        lut_k = Signal(range(bus))
        m.d.comb += dma.o_data.ready.eq(~stall)
        m.d.sync += stall.eq(is_lut & (take | c_valid | (lut_busy & (lut_k != bus - 1))))
        chunk = Signal.like(dma.o_data.payload, name="chunk", reset_less=True)
        # ``chunk`` loads whenever the stream is not stalled (whether or not a chunk is
        # taken: ``c_valid`` says), so ``take`` does not fan out over its enables.
        m.d.sync += c_valid.eq(take)
        with m.If(~stall):
            m.d.sync += chunk.eq(dma.o_data.payload)
        for name, buf in (("inp", Buffer.INP), ("wgt", Buffer.WGT), ("param", Buffer.PARAM)):
            port = getattr(self, f"{name}_w")
            e = elem_bytes(cfg, buf)
            parts = max(1, e // bus)
            stage = Signal(8 * e, name=f"{name}_stage")
            en = Signal(name=f"{name}_en")
            addr = Signal.like(port.addr, name=f"{name}_addr")
            # ``cur.buffer == buf`` as a register: ``cur`` is held from the instruction's
            # accept, and its first chunk comes cycles later (the engine's command, the
            # window check), so the copy is current before any chunk arrives.
            is_buf = Signal(name=f"{name}_is_buf")
            m.d.sync += is_buf.eq(cur.buffer == buf)
            mine = c_valid & is_buf
            for k in range(parts):
                with m.If(mine & (chunk.part == k)):
                    m.d.sync += stage[8 * bus * k : 8 * bus * (k + 1)].eq(chunk.data)
            m.d.sync += [en.eq(mine & (chunk.part == parts - 1)), addr.eq(chunk.addr)]
            m.d.comb += [port.en.eq(en), port.addr.eq(addr), port.data.eq(stage)]

        # LUT chunks: one byte per cycle into every lane's table.
        lut_addr = Signal.like(self.lut_w.addr)
        log_bus = log2(bus)
        with m.If(c_valid & is_lut):
            m.d.sync += [
                lut_busy.eq(1),
                lut_k.eq(0),
                lut_addr.eq((chunk.addr << 8) + (chunk.part << log_bus)),
            ]
        with m.If(lut_busy):
            m.d.comb += [
                self.lut_w.en.eq(1),
                self.lut_w.addr.eq(lut_addr + lut_k),
                self.lut_w.data.eq(chunk.data.word_select(lut_k, 8)),
            ]
            m.d.sync += lut_k.eq(lut_k + 1)
            with m.If(lut_k == bus - 1):
                m.d.sync += lut_busy.eq(0)

        return m
