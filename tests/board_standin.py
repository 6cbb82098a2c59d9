"""The accelerator top the board-flow tests build, and a small design with its ports.

``accelerator_factory`` is always ``hw.top.Accelerator``: a broken ``hw.top`` fails these
tests instead of being replaced silently. :class:`PortStandIn` (register file and DMA engines
behind the accelerator's ports) is a small real design for tests that need a quick Yosys run,
such as the timing estimate's end-to-end test; it never stands in for ``hw.top``.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from bamboo.hw.axi import AXI4Signature
from bamboo.hw.regfile import AXI4LiteSignature, RegisterFile
from bamboo.hw.top import Accelerator


class PortStandIn(wiring.Component):
    """RegisterFile plus the DMA engines' AXI4 ports: the port set of ``hw.top.Accelerator``.

    The board flow needs nothing
    but the ports (``s_axi``, ``m_axi``, ``irq``) and the ``sync`` domain.
    """

    def __init__(self, config):
        self.config = config
        super().__init__(
            {
                "s_axi": In(AXI4LiteSignature(config.axil_addr_width)),
                "m_axi": Out(AXI4Signature.from_config(config)),
                "irq": Out(1),
            }
        )

    def elaborate(self, platform):
        from bamboo.hw.dma_read import DMAReader
        from bamboo.hw.dma_write import DMAWriter

        m = Module()
        m.submodules.regs = regs = RegisterFile(self.config)
        m.submodules.rd = rd = DMAReader(self.config)
        m.submodules.wr = wr = DMAWriter(self.config)
        wiring.connect(m, wiring.flipped(self.s_axi), regs.s_axi)
        m.d.comb += self.irq.eq(regs.irq)
        for engine in (rd, wr):
            m.d.comb += [
                engine.window_base.eq(regs.engine.window_base),
                engine.window_size.eq(regs.engine.window_size),
            ]
            for name, member in engine.m_axi.signature.members.items():
                ours, theirs = getattr(self.m_axi, name), getattr(engine.m_axi, name)
                m.d.comb += ours.eq(theirs) if member.flow == Out else theirs.eq(ours)
        return m


def accelerator_factory():
    """The accelerator class the board flow elaborates."""
    return Accelerator
