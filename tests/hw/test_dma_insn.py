"""hw/dma_insn.py: an instruction unit around a stand-in DMA engine. The engine's
command carries the instruction's fields of the same names; done or error follows
the engine's status, held while ``hold`` is high."""

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from bamboo.arch import PRESETS, isa
from bamboo.arch.registers import ErrorCode
from bamboo.hw.axi import AXI4Signature
from bamboo.hw.dma_insn import instruction_members, run_instructions

CONFIG = PRESETS["tiny"]
_CMD = data.StructLayout({"dram_addr": 32, "y_size": 12, "x_stride": 20, "elem_log2": 4})


class _Engine(wiring.Component):
    """Only ports: the testbench plays the engine."""

    def __init__(self):
        aw = CONFIG.axi_addr_width
        super().__init__(
            {
                "i_cmd": In(stream.Signature(_CMD)),
                "o_status": Out(stream.Signature(data.StructLayout({"error": 8}))),
                "window_base": In(aw),
                "window_size": In(aw),
                "m_axi": Out(AXI4Signature.from_config(CONFIG, write=False)),
            }
        )

    def elaborate(self, platform):
        return Module()


class _Unit(wiring.Component):
    def __init__(self):
        self.dma = _Engine()
        super().__init__(
            {
                **instruction_members(CONFIG),
                "hold": In(1),
                "m_axi": Out(AXI4Signature.from_config(CONFIG, write=False)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        run_instructions(m, self, isa.Opcode.LOAD, hold=self.hold)
        return m


def test_command_fields_and_status():
    dut = _Unit()
    eng = dut.dma
    cases = [
        (dict(dram_addr=0x1234, y_size=7, x_stride=99), ErrorCode.NONE, 0),
        (dict(dram_addr=0xFFFF_FF00, y_size=4095, x_stride=1), ErrorCode.AXI_ERROR, 3),
        (dict(dram_addr=8, y_size=1, x_stride=(1 << 20) - 1), ErrorCode.DMA_OUT_OF_WINDOW, 1),
    ]

    async def bench(ctx):
        ctx.set(dut.window_size, 1 << 20)
        for fields, code, hold in cases:
            word = isa.encode(isa.Opcode.LOAD, **fields)
            ctx.set(dut.i_insn.payload, {"word": word, "index": 0, "fault": 0})
            ctx.set(dut.i_insn.valid, 1)
            assert ctx.get(dut.i_insn.ready) and not ctx.get(dut.busy)
            await ctx.tick()
            ctx.set(dut.i_insn.valid, 0)
            assert ctx.get(dut.busy) and ctx.get(eng.i_cmd.valid)
            assert {k: ctx.get(getattr(eng.i_cmd.payload, k)) for k in fields} == fields
            ctx.set(eng.i_cmd.ready, 1)
            await ctx.tick()
            ctx.set(eng.i_cmd.ready, 0)
            assert not ctx.get(eng.i_cmd.valid) and not ctx.get(dut.i_insn.ready)
            ctx.set(eng.o_status.payload.error, code)
            ctx.set(eng.o_status.valid, 1)
            ctx.set(dut.hold, 1)
            for _ in range(hold):  # the status waits while held
                assert not ctx.get(eng.o_status.ready)
                assert not (ctx.get(dut.done) or ctx.get(dut.error))
                await ctx.tick()
            ctx.set(dut.hold, 0)
            assert ctx.get(eng.o_status.ready)
            assert not (ctx.get(dut.done) or ctx.get(dut.error))
            await ctx.tick()
            ctx.set(eng.o_status.valid, 0)
            # The pulses are registered: out in the cycle after the status is taken.
            assert not ctx.get(dut.busy)
            assert ctx.get(dut.done) == (code == ErrorCode.NONE)
            assert ctx.get(dut.error) == (code != ErrorCode.NONE)
            if code != ErrorCode.NONE:
                assert ctx.get(dut.error_code) == code
            await ctx.tick()
            assert not (ctx.get(dut.done) or ctx.get(dut.error))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
