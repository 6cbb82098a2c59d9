"""The store unit: STORE instructions through a DMAWriter, reading the OUT buffer.

The DMA engine (hw/dma_write.py) requests OUT words in order on ``o_req``; this unit
reads them through the OUT buffer's synchronous read port and answers on
``i_data``, holding the read port's data while the engine is not ready (a read
port keeps its data when not enabled, so no skid buffer is needed). An instruction
is done when the engine reports its status, after the last write response. Taking
instructions and reporting status is the load unit's too (hw/dma_insn.py).
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Opcode
from .axi import AXI4Signature
from .dma_insn import instruction_members, run_instructions
from .dma_write import DMAWriter

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
    error_code : Out(8)
    window_base, window_size : In(config.axi_addr_width)
        The DMA window (:func:`~bamboo.hw.dma_insn.instruction_members`).
    out_r : In(memory.ReadPort.Signature(...))
        The OUT buffer's read port (flipped: this unit drives address and enable).
    m_axi : Out(AXI4Signature(read=False, write=True))
    busy : Out(1)
    """

    def __init__(self, config):
        self.config = config
        self.dma = DMAWriter(config)
        super().__init__(
            {
                **instruction_members(config),
                "out_r": In(
                    memory.ReadPort.Signature(
                        addr_width=config.buffer_addr_width(config.output_buffer_depth),
                        shape=out_layout(config),
                    )
                ),
                "m_axi": Out(AXI4Signature.from_config(config, read=False)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        dma = self.dma
        run_instructions(m, self, Opcode.STORE)

        # OUT reads: one request in flight, its word held until the engine takes it.
        held = Signal()
        req = dma.o_req.valid & dma.o_req.ready
        m.d.comb += [
            dma.o_req.ready.eq(~held | dma.i_data.ready),
            self.out_r.en.eq(req),
            self.out_r.addr.eq(dma.o_req.payload),
            dma.i_data.valid.eq(held),
            dma.i_data.payload.eq(self.out_r.data.as_value()),
        ]
        with m.If(req):
            m.d.sync += held.eq(1)
        with m.Elif(dma.i_data.ready):
            m.d.sync += held.eq(0)
        return m
