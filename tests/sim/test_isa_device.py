"""The instruction simulator's register model follows FINISH.irq as the RTL does
(tests/hw/cocotb_top.py ``finish_irq``): only a run that ends at a FINISH with irq set
raises IRQ_STATUS.done; errors always raise IRQ_STATUS.error."""

import pytest
from bamboo.arch import isa
from bamboo.arch.config import preset
from bamboo.arch.registers import decode, encode
from bamboo.sim.isa_device import IsaDevice

FINISH = isa.Opcode.FINISH


@pytest.mark.parametrize(
    "words, irq_done, error",
    [
        ([isa.encode(FINISH, irq=1)], 1, 0),
        ([isa.encode(FINISH, irq=0)], 0, 0),
        ([isa.encode(FINISH, irq=0), isa.encode(FINISH, irq=1)], 0, 0),  # the first FINISH ends it
        ([isa.encode(isa.Opcode.VEC)], 0, 0),  # INSN_COUNT, no FINISH
        ([7, isa.encode(FINISH, irq=0)], 0, 1),  # illegal opcode
    ],
)
def test_done_interrupt_needs_finish_irq(words, irq_done, error):
    dev = IsaDevice(preset("tiny"))
    buf = dev.allocate(4096)
    buf.write(0, isa.encode_bytes(words))
    dev.write_reg("CTRL", encode("CTRL", irq_enable=1))
    dev.start(buf.physical_address, len(words), (buf.physical_address, buf.size))
    status = decode("STATUS", dev.read_reg("STATUS"))
    assert (status["done"], status["error"]) == (1 - error, error)
    assert decode("IRQ_STATUS", dev.read_reg("IRQ_STATUS")) == {"done": irq_done, "error": error}
    assert dev.regs.irq == bool(irq_done or error)
