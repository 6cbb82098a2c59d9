"""The load unit: LOAD instructions through a DMAReader into the INP, WGT, PARAM and LUT buffers.

The DMA engine (hw/dma_read.py) emits the padded tile as bus-wide chunks, ``part`` 0
first for elements wider than the bus. This unit gathers the parts of a word in a
staging register and writes the whole word with its last part (INP, WGT and PARAM
write ports are one word wide), and writes LUT chunks a byte per cycle into the
post-processing tables (holding the DMA meanwhile). An instruction is done when the
engine reports its status, which follows its last chunk (and waits for the last LUT
byte); an error status (an AXI error response) is reported instead of done. Taking
instructions and reporting status is the store unit's too (hw/dma_insn.py).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
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
        cur = run_instructions(m, self, Opcode.LOAD, hold=lut_busy)
        log2 = lambda n: (n - 1).bit_length()  # noqa: E731
        elog2 = Signal(4)
        with m.Switch(cur.buffer):
            for buf in BUFFERS:
                with m.Case(buf):
                    m.d.comb += elog2.eq(log2(elem_bytes(cfg, buf)))
        m.d.comb += dma.i_cmd.payload.elem_log2.eq(elog2)

        # Chunks: gather the parts of a word, write it with its last part.
        chunk = dma.o_data.payload
        words = (Buffer.INP, Buffer.WGT, Buffer.PARAM)  # written a word at a time
        widest = max(elem_bytes(cfg, buf) for buf in words)
        parts = max(1, widest // bus)
        stage = Signal(8 * bus * parts)
        whole = Cat(
            *[
                Mux(chunk.part == k, chunk.data, stage[8 * bus * k : 8 * bus * (k + 1)])
                for k in range(parts)
            ]
        )
        take = dma.o_data.valid & dma.o_data.ready
        m.d.comb += dma.o_data.ready.eq(~lut_busy)
        with m.If(take):
            for k in range(parts):
                with m.If(chunk.part == k):
                    m.d.sync += stage[8 * bus * k : 8 * bus * (k + 1)].eq(chunk.data)
        for port, buf in zip((self.inp_w, self.wgt_w, self.param_w), words):
            e = elem_bytes(cfg, buf)
            m.d.comb += [
                port.en.eq(take & (cur.buffer == buf) & (chunk.part == max(1, e // bus) - 1)),
                port.addr.eq(chunk.addr),
                port.data.eq(whole[: 8 * e]),
            ]

        # LUT chunks: one byte per cycle into every lane's table.
        lut_data = Signal(8 * bus)
        lut_addr = Signal.like(self.lut_w.addr)
        lut_k = Signal(range(bus))
        log_bus = log2(bus)
        with m.If(take & (cur.buffer == Buffer.LUT)):
            m.d.sync += [
                lut_busy.eq(1),
                lut_k.eq(0),
                lut_data.eq(chunk.data),
                lut_addr.eq((chunk.addr << 8) + (chunk.part << log_bus)),
            ]
        with m.If(lut_busy):
            m.d.comb += [
                self.lut_w.en.eq(1),
                self.lut_w.addr.eq(lut_addr + lut_k),
                self.lut_w.data.eq(lut_data.word_select(lut_k, 8)),
            ]
            m.d.sync += lut_k.eq(lut_k + 1)
            with m.If(lut_k == bus - 1):
                m.d.sync += lut_busy.eq(0)

        return m
