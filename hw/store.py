"""The store unit: STORE instructions through a DMAWriter, reading the OUT buffer.

The DMA engine (hw/dma_write.py) requests OUT words in order on ``o_req``; this unit
reads them through the OUT buffer's synchronous read port and answers on
``i_data``, holding the read port's data while the engine is not ready (a read
port keeps its data when not enabled, so no skid buffer is needed). An instruction
is done when the engine reports its status, after the last write response.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Opcode
from ..arch.registers import ErrorCode
from .axi import AXI4Signature
from .dma_write import DMAWriter
from .isa_layout import instruction_layout
from .queues import entry_layout

__all__ = ["StoreUnit", "out_layout"]


def out_layout(config):
    """One OUT word: ``cols`` codes."""
    return data.ArrayLayout(unsigned(8), config.cols)


class StoreUnit(wiring.Component):
    """Executes STORE.

    Attributes
    ----------
    i_insn : In(stream.Signature(entry_layout()))
        A STORE, already checked by the dispatcher.
    done, error : Out(1)
        Pulses: finished, or the DMA reported ``error_code`` (an AXI error response).
    out_r : In(memory.ReadPort.Signature(...))
        The OUT buffer's read port (flipped: this unit drives address and enable).
    m_axi : Out(AXI4Signature(read=False, write=True))
    busy : Out(1)
    """

    def __init__(self, config):
        self.config = config
        self.dma = DMAWriter(config)
        super().__init__({
            "i_insn": In(stream.Signature(entry_layout())),
            "done": Out(1), "error": Out(1), "error_code": Out(8), "busy": Out(1),
            "window_base": In(config.axi_addr_width), "window_size": In(config.axi_addr_width),
            "out_r": In(memory.ReadPort.Signature(
                addr_width=config.buffer_addr_width(config.output_buffer_depth),
                shape=out_layout(config))),
            "m_axi": Out(AXI4Signature.from_config(config, read=False)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self.dma
        wiring.connect(m, dma.m_axi, wiring.flipped(self.m_axi))
        m.d.comb += [dma.window_base.eq(self.window_base), dma.window_size.eq(self.window_size)]
        layout = instruction_layout(Opcode.STORE)
        cur = Signal(layout)
        for name in ("sram_addr", "dram_addr", "y_size", "x_size", "x_stride", "lane"):
            m.d.comb += getattr(dma.i_cmd.payload, name).eq(getattr(cur, name))

        # OUT reads: one request in flight, its word held until the engine takes it.
        held = Signal()
        req = dma.o_req.valid & dma.o_req.ready
        m.d.comb += [
            dma.o_req.ready.eq(~held | dma.i_data.ready),
            self.out_r.en.eq(req), self.out_r.addr.eq(dma.o_req.payload),
            dma.i_data.valid.eq(held), dma.i_data.payload.eq(self.out_r.data.as_value()),
        ]
        with m.If(req):
            m.d.sync += held.eq(1)
        with m.Elif(dma.i_data.ready):
            m.d.sync += held.eq(0)

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
                m.d.comb += [self.busy.eq(1), dma.o_status.ready.eq(1)]
                with m.If(dma.o_status.valid):
                    with m.If(dma.o_status.payload.error == ErrorCode.NONE):
                        m.d.comb += self.done.eq(1)
                    with m.Else():
                        m.d.comb += [self.error.eq(1),
                                     self.error_code.eq(dma.o_status.payload.error)]
                    m.next = "IDLE"
        return m
