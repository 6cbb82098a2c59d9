"""The store unit: STORE instructions through a DMAWriter, reading the OUT buffer.

The DMA engine (hw/dma_write.py) requests elements (an OUT word and a lane) in order
on ``o_req``; this unit reads the words through the OUT buffer's synchronous read port,
keeps the requested lane of each and answers from a small FIFO on ``i_data``: up to
``READ_AHEAD`` elements are read ahead of the engine, so the read enable never waits on
the engine's decision of the same cycle. An instruction
is done when the engine reports its status, after the last write response. Taking
instructions and reporting status is the load unit's too (hw/dma_insn.py).
"""

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Opcode
from .axi import AXI4Signature
from .dma_insn import instruction_members, run_instructions
from .dma_write import DMAWriter
from .flagfifo import FlagFIFO

__all__ = ["READ_AHEAD", "StoreUnit", "out_layout"]

#: OUT elements read ahead of the DMA engine: the read in flight plus the FIFO's.
#: Four keep one element a cycle flowing with the enable decided from registers alone.
READ_AHEAD = 4


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

        # OUT reads run ahead of the engine into a small FIFO. The read enable depends
        # on registers only (a credit per free FIFO slot, counting the read in flight),
        # not on the engine taking an element in this cycle: that decision would otherwise
        # reach every OUT block RAM's enable through the W packer's logic. The lane is
        # picked as the word leaves the block RAM, so the FIFO holds elements and the
        # packer reads them through no lane multiplexer.
        m.submodules.ahead = ahead = FlagFIFO(width=len(dma.i_data.payload), depth=READ_AHEAD)
        credits = Signal(range(READ_AHEAD + 1), init=READ_AHEAD)
        has_credit = Signal(init=1)
        in_flight = Signal()
        # The lane of the word in flight (the engine checked it against ``lanes``).
        lane = Signal(range(max(dma.lanes, 2)))
        req = dma.o_req.valid & has_credit
        pop = ahead.r_en & ahead.r_rdy
        m.d.comb += [
            dma.o_req.ready.eq(has_credit),
            self.out_r.en.eq(req),
            self.out_r.addr.eq(dma.o_req.payload.sram_addr),
            ahead.w_en.eq(in_flight),
            ahead.w_data.eq(self.out_r.data.as_value().word_select(lane, len(ahead.w_data))),
            dma.i_data.valid.eq(ahead.r_rdy),
            dma.i_data.payload.eq(ahead.r_data),
            ahead.r_en.eq(dma.i_data.ready),
        ]
        m.d.sync += [in_flight.eq(req), lane.eq(dma.o_req.payload.lane[: len(lane)])]
        # The credit count's candidates come from registers; ``req`` and ``pop`` select.
        with m.Switch(Cat(req, pop)):
            with m.Case(0b01):
                m.d.sync += [credits.eq(credits - 1), has_credit.eq(credits != 1)]
            with m.Case(0b10):
                m.d.sync += [credits.eq(credits + 1), has_credit.eq(1)]
        return m
