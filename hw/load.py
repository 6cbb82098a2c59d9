"""The load unit: LOAD instructions through a DMAReader into the INP, WGT, PARAM and LUT buffers.

The DMA engine (hw/dma_read.py) emits the padded tile as bus-wide chunks, ``part`` 0
first for elements wider than the bus. This unit gathers the parts of a word in a
staging register and writes the whole word with its last part (INP, WGT and PARAM
write ports are one word wide), and writes LUT chunks a byte per cycle into the
post-processing tables (holding the DMA meanwhile). An instruction is done when the
engine reports its status, which follows its last chunk; an error status (an AXI
error response) is reported instead of done.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Buffer, Opcode
from ..arch.layout import PARAM_DEPTH, PARAM_LANE_BYTES
from ..arch.registers import ErrorCode
from .array import weight_layout
from .axi import AXI4Signature
from .dma_read import DMAReader
from .isa_layout import instruction_layout
from .postproc import LUT_ENTRIES, LutWriteSignature
from .queues import entry_layout

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
        super().__init__({
            "i_insn": In(stream.Signature(entry_layout())),
            "done": Out(1), "error": Out(1), "error_code": Out(8), "busy": Out(1),
            "window_base": In(config.axi_addr_width), "window_size": In(config.axi_addr_width),
            "inp_w": In(memory.WritePort.Signature(
                addr_width=aw(config.input_buffer_depth),
                shape=data.ArrayLayout(unsigned(8), R))),
            "wgt_w": In(memory.WritePort.Signature(
                addr_width=aw(config.weight_buffer_depth), shape=weight_layout(R, C))),
            "param_w": In(memory.WritePort.Signature(
                addr_width=aw(PARAM_DEPTH), shape=param_layout(config))),
            "lut_w": Out(LutWriteSignature(config.lut_slots)),
            "m_axi": Out(AXI4Signature.from_config(config, write=False)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C, bus = cfg.rows, cfg.cols, cfg.axi_data_bytes
        m.submodules.dma = dma = self.dma
        wiring.connect(m, dma.m_axi, wiring.flipped(self.m_axi))
        m.d.comb += [dma.window_base.eq(self.window_base), dma.window_size.eq(self.window_size)]

        layout = instruction_layout(Opcode.LOAD)
        cur = Signal(layout)
        log2 = lambda n: (n - 1).bit_length()  # noqa: E731
        elog2 = Signal(4)
        with m.Switch(cur.buffer):
            for buf, e in ((Buffer.INP, R), (Buffer.WGT, R * C),
                           (Buffer.PARAM, C * PARAM_LANE_BYTES), (Buffer.LUT, LUT_ENTRIES)):
                with m.Case(buf):
                    m.d.comb += elog2.eq(log2(e))
        cmd = dma.i_cmd.payload
        for name in ("sram_addr", "dram_addr", "y_size", "x_size", "x_stride", "pad_top",
                     "pad_bottom", "pad_left", "pad_right", "pad_value"):
            m.d.comb += getattr(cmd, name).eq(getattr(cur, name))
        m.d.comb += cmd.elem_log2.eq(elog2)

        # Chunks: gather the parts of a word, write it with its last part.
        chunk = dma.o_data.payload
        widest = max(R, R * C, C * PARAM_LANE_BYTES)
        parts = max(1, widest // bus)
        stage = Signal(8 * bus * parts)
        whole = Cat(*[Mux(chunk.part == k, chunk.data, stage[8 * bus * k:8 * bus * (k + 1)])
                      for k in range(parts)])
        lut_busy = Signal()
        take = dma.o_data.valid & dma.o_data.ready
        m.d.comb += dma.o_data.ready.eq(~lut_busy)
        with m.If(take):
            for k in range(parts):
                with m.If(chunk.part == k):
                    m.d.sync += stage[8 * bus * k:8 * bus * (k + 1)].eq(chunk.data)
        for port, buf, e in ((self.inp_w, Buffer.INP, R), (self.wgt_w, Buffer.WGT, R * C),
                             (self.param_w, Buffer.PARAM, C * PARAM_LANE_BYTES)):
            m.d.comb += [
                port.en.eq(take & (cur.buffer == buf) & (chunk.part == max(1, e // bus) - 1)),
                port.addr.eq(chunk.addr),
                port.data.eq(whole[:8 * e]),
            ]

        # LUT chunks: one byte per cycle into every lane's table.
        lut_data = Signal(8 * bus)
        lut_addr = Signal.like(self.lut_w.addr)
        lut_k = Signal(range(bus))
        log_bus = log2(bus)
        with m.If(take & (cur.buffer == Buffer.LUT)):
            m.d.sync += [lut_busy.eq(1), lut_k.eq(0), lut_data.eq(chunk.data),
                         lut_addr.eq((chunk.addr << 8) + (chunk.part << log_bus))]
        with m.If(lut_busy):
            m.d.comb += [self.lut_w.en.eq(1), self.lut_w.addr.eq(lut_addr + lut_k),
                         self.lut_w.data.eq(lut_data.word_select(lut_k, 8))]
            m.d.sync += lut_k.eq(lut_k + 1)
            with m.If(lut_k == bus - 1):
                m.d.sync += lut_busy.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i_insn.ready.eq(1)
                with m.If(self.i_insn.valid):
                    m.d.sync += cur.eq(self.i_insn.payload.word[:layout.size])
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [dma.i_cmd.valid.eq(1), self.busy.eq(1)]
                with m.If(dma.i_cmd.ready):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), dma.o_status.ready.eq(~lut_busy)]
                with m.If(dma.o_status.valid & ~lut_busy):
                    with m.If(dma.o_status.payload.error == ErrorCode.NONE):
                        m.d.comb += self.done.eq(1)
                    with m.Else():
                        m.d.comb += [self.error.eq(1),
                                     self.error_code.eq(dma.o_status.payload.error)]
                    m.next = "IDLE"
        return m
