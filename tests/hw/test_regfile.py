# amaranth: UnusedElaboratable=no
"""RegisterFile: every register through the AXI4-Lite port, in amaranth.sim and in RTL.

The amaranth.sim tests drive the bus with a small cycle-accurate manager below;
the RTL tests run ``cocotb_regfile.py`` with cocotbext-axi's AxiLiteMaster on
Verilator and Icarus through ``bamboo.sim.harness``. Expected values come from
the test (the constants, the driven strobes), never read back from the design.
"""

import os
import pathlib
import random

import pytest
from amaranth.sim import Simulator
from bamboo.arch import registers as regs
from bamboo.arch.config import preset
from bamboo.arch.registers import ErrorCode, decode, encode
from bamboo.hw.regfile import RESP_OKAY, RESP_SLVERR, RegisterFile

CFG = preset("tiny")
OFF = {r.name: r.offset for r in regs.REGISTERS}
RW_REGS = [r.name for r in regs.REGISTERS if r.access == "RW"]
RO_REGS = [r.name for r in regs.REGISTERS if r.access == "RO"]


def run(dut, body):
    """Simulate ``body(ctx, bus)`` against ``dut`` on a 100 MHz clock.

    ``bus.pulses`` counts the cycles ``start`` and ``soft_reset`` were high.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    pulses = {"start": 0, "soft_reset": 0}

    async def bench(ctx):
        bus = Bus(ctx, dut)
        bus.pulses = pulses
        await body(ctx, bus)

    async def monitor(ctx):
        while True:
            await ctx.tick()
            for name in pulses:
                pulses[name] += ctx.get(getattr(dut.engine, name))

    sim.add_testbench(bench)
    sim.add_testbench(monitor, background=True)
    sim.run()


class Bus:
    """A cycle-accurate AXI4-Lite manager for amaranth.sim testbenches."""

    def __init__(self, ctx, dut):
        self.ctx, self.dut, self.s = ctx, dut, dut.s_axi

    async def write(self, addr, data, strb=0xF, aw_delay=0, w_delay=0, b_delay=0):
        """Write one word; AW and W go valid after their own delays. Returns BRESP."""
        ctx, s = self.ctx, self.s
        ctx.set(s.awaddr, addr)
        ctx.set(s.wdata, data)
        ctx.set(s.wstrb, strb)
        aw_left = w_left = True
        cycle = 0
        while aw_left or w_left:
            ctx.set(s.awvalid, aw_left and cycle >= aw_delay)
            ctx.set(s.wvalid, w_left and cycle >= w_delay)
            aw_fire = ctx.get(s.awvalid) and ctx.get(s.awready)
            w_fire = ctx.get(s.wvalid) and ctx.get(s.wready)
            await ctx.tick()
            aw_left, w_left = aw_left and not aw_fire, w_left and not w_fire
            cycle += 1
        ctx.set(s.awvalid, 0)
        ctx.set(s.wvalid, 0)
        return await self._response(s.bvalid, s.bready, b_delay, s.bresp)

    async def read(self, addr, r_delay=0):
        """Read one word. Returns (RDATA, RRESP)."""
        ctx, s = self.ctx, self.s
        ctx.set(s.araddr, addr)
        ctx.set(s.arvalid, 1)
        while True:
            ready = ctx.get(s.arready)
            await ctx.tick()
            if ready:
                break
        ctx.set(s.arvalid, 0)
        return await self._response(s.rvalid, s.rready, r_delay, s.rdata, s.rresp)

    async def _response(self, valid, ready, delay, *payload):
        ctx = self.ctx
        while not ctx.get(valid):
            await ctx.tick()
        # Back-pressure: the response must hold still while the manager is not ready.
        held = [ctx.get(p) for p in payload]
        for _ in range(delay):
            await ctx.tick()
            assert ctx.get(valid) and [ctx.get(p) for p in payload] == held
        ctx.set(ready, 1)
        await ctx.tick()
        ctx.set(ready, 0)
        return held[0] if len(held) == 1 else tuple(held)

    async def reg(self, name):
        data, resp = await self.read(OFF[name])
        assert resp == RESP_OKAY, name
        return data

    async def set(self, name, value):
        assert await self.write(OFF[name], value) == RESP_OKAY, name


def test_reset_values():
    async def body(ctx, bus):
        assert await bus.reg("ID") == int.from_bytes(b"BAMB", "big")
        assert decode("HW_VERSION", await bus.reg("HW_VERSION")) == {
            "major": regs.HW_VERSION_MAJOR,
            "minor": regs.HW_VERSION_MINOR,
        }
        assert await bus.reg("ISA_VERSION") == regs.ISA_VERSION
        assert await bus.reg("CONFIG_ID") == CFG.config_id
        for name in RW_REGS + ["CTRL", "STATUS", "IRQ_STATUS", "ERR_INSN", "CYCLES_LO"]:
            assert await bus.reg(name) == 0, name
        assert not ctx.get(bus.dut.irq)

    run(RegisterFile(CFG), body)


def test_config_id_follows_config():
    cfg = preset("ultra96")

    async def body(ctx, bus):
        assert await bus.reg("CONFIG_ID") == cfg.config_id

    run(RegisterFile(cfg), body)


def test_rw_round_trip_and_outputs():
    rng = random.Random(1)
    values = {name: rng.getrandbits(32) for name in RW_REGS}

    async def body(ctx, bus):
        for name, value in values.items():
            await bus.set(name, value)
        for name, value in values.items():
            assert await bus.reg(name) == value, name
        eng = bus.dut.engine
        for signal in ("insn_base", "window_base", "window_size"):
            lo, hi = values[f"{signal.upper()}_LO"], values[f"{signal.upper()}_HI"]
            assert ctx.get(getattr(eng, signal)) == hi << 32 | lo, signal
        assert ctx.get(eng.insn_count) == values["INSN_COUNT"]
        # WSTRB: only the enabled byte lanes change.
        await bus.write(OFF["SCRATCH"], 0xAABBCCDD, strb=0b0101)
        old = values["SCRATCH"]
        assert await bus.reg("SCRATCH") == (old & 0xFF00FF00) | 0x00BB00DD
        # CTRL.irq_enable is the only stored CTRL bit.
        await bus.set("CTRL", encode("CTRL", irq_enable=1))
        assert decode("CTRL", await bus.reg("CTRL"))["irq_enable"] == 1
        assert ctx.get(eng.irq_enable)

    run(RegisterFile(CFG), body)


def test_ro_ignores_writes():
    async def body(ctx, bus):
        before = {name: await bus.reg(name) for name in RO_REGS}
        for name in RO_REGS:
            await bus.set(name, 0xFFFFFFFF)
        assert {name: await bus.reg(name) for name in RO_REGS} == before

    run(RegisterFile(CFG), body)


def test_start_and_soft_reset_pulse_once():
    async def body(ctx, bus):
        eng = bus.dut.engine
        for field in ("start", "soft_reset"):
            await bus.set("CTRL", encode("CTRL", **{field: 1}))
            await ctx.tick().repeat(3)
            assert bus.pulses[field] == 1, field
            assert decode("CTRL", await bus.reg("CTRL"))[field] == 0
        # Writing 0 pulses nothing; a start written while busy is refused.
        await bus.set("CTRL", 0)
        ctx.set(eng.busy, 1)
        await bus.set("CTRL", encode("CTRL", start=1))
        await bus.set("CTRL", encode("CTRL", soft_reset=1))
        await ctx.tick().repeat(3)
        assert bus.pulses == {"start": 1, "soft_reset": 2}

    run(RegisterFile(CFG), body)


def test_counters_count_and_clear_on_start():
    async def body(ctx, bus):
        eng = bus.dut.engine
        await bus.set("CTRL", encode("CTRL", start=1))
        pattern = [random.Random(2).random() < 0.5 for _ in range(40)]
        ctx.set(eng.busy, 1)
        for i, bit in enumerate(pattern):
            ctx.set(eng.fetch_busy, bit)
            ctx.set(eng.store_stall, i % 3 == 0)
            await ctx.tick()
        ctx.set(eng.busy, 0)
        ctx.set(eng.fetch_busy, 0)
        ctx.set(eng.store_stall, 0)
        assert await bus.reg("CYCLES_LO") == len(pattern)
        assert await bus.reg("CYCLES_HI") == 0
        assert await bus.reg("FETCH_BUSY") == sum(pattern)
        assert await bus.reg("STORE_STALL") == len(range(0, 40, 3))
        for unit in regs.UNITS:
            if unit not in ("fetch", "store"):
                assert await bus.reg(f"{unit.upper()}_BUSY") == 0
        await bus.set("CTRL", encode("CTRL", start=1))
        assert await bus.reg("CYCLES_LO") == 0
        assert await bus.reg("FETCH_BUSY") == 0

    run(RegisterFile(CFG), body)


def test_wide_counter_reads_consistently():
    dut = RegisterFile(CFG)

    async def body(ctx, bus):
        # Preload just below a carry into the high word, then count across it while reading.
        ctx.set(dut._counters["busy"], 0xFFFF_FFF0)
        ctx.set(dut.engine.busy, 1)
        lo = await bus.reg("CYCLES_LO")  # latches the high word
        for _ in range(40):
            await ctx.tick()  # the counter carries meanwhile
        assert lo >= 0xFFFF_FFF0
        assert await bus.reg("CYCLES_HI") == 0  # the high word as it was when LO was read
        lo = await bus.reg("CYCLES_LO")
        assert await bus.reg("CYCLES_HI") == 1 and lo < 0x100

    run(dut, body)


def test_status_errors_and_irq():
    async def body(ctx, bus):
        eng, irq = bus.dut.engine, bus.dut.irq

        async def pulse(**inputs):
            for k, v in inputs.items():
                ctx.set(getattr(eng, k), v)
            await ctx.tick()
            for k in inputs:
                ctx.set(getattr(eng, k), 0)

        # A run that ends without a FINISH.irq: STATUS.done, no interrupt source.
        await pulse(done=1)
        assert decode("STATUS", await bus.reg("STATUS"))["done"] == 1
        assert await bus.reg("IRQ_STATUS") == 0
        await pulse(done=1, done_irq=1)
        assert decode("STATUS", await bus.reg("STATUS"))["done"] == 1
        assert decode("IRQ_STATUS", await bus.reg("IRQ_STATUS")) == {"done": 1, "error": 0}
        assert not ctx.get(irq)  # pending, but not enabled
        await bus.set("CTRL", encode("CTRL", irq_enable=1))
        assert ctx.get(irq)
        await bus.set("IRQ_STATUS", encode("IRQ_STATUS", error=1))  # the other bit: no effect
        assert ctx.get(irq)
        await bus.set("IRQ_STATUS", encode("IRQ_STATUS", done=1))
        assert not ctx.get(irq)
        assert decode("STATUS", await bus.reg("STATUS"))["done"] == 1  # sticky until start

        await pulse(error=1, error_code=ErrorCode.DMA_OUT_OF_WINDOW, err_insn=1234)
        status = decode("STATUS", await bus.reg("STATUS"))
        assert status == {
            "busy": 0,
            "done": 1,
            "error": 1,
            "error_code": ErrorCode.DMA_OUT_OF_WINDOW,
        }
        assert await bus.reg("ERR_INSN") == 1234
        assert ctx.get(irq)
        # Start clears the status but leaves the unacknowledged interrupt pending.
        await bus.set("CTRL", encode("CTRL", start=1, irq_enable=1))
        assert await bus.reg("STATUS") == 0 and await bus.reg("ERR_INSN") == 0
        assert ctx.get(irq)
        await bus.set("CTRL", encode("CTRL", soft_reset=1, irq_enable=1))
        assert await bus.reg("IRQ_STATUS") == 0 and not ctx.get(irq)
        ctx.set(eng.busy, 1)
        assert decode("STATUS", await bus.reg("STATUS"))["busy"] == 1

    run(RegisterFile(CFG), body)


@pytest.mark.parametrize("unmapped_error", [False, True])
def test_unmapped_addresses(unmapped_error):
    expect = RESP_SLVERR if unmapped_error else RESP_OKAY
    mapped = set(OFF.values())
    holes = [a for a in (0x0A0, 0x07C, 0xFFC, 0x800) if a not in mapped]

    async def body(ctx, bus):
        for addr in holes:
            assert await bus.write(addr, 0xFFFFFFFF) == expect
            assert await bus.read(addr) == (0, expect)
        assert await bus.read(OFF["ID"]) == (regs.MAGIC, RESP_OKAY)

    run(RegisterFile(CFG, unmapped_error=unmapped_error), body)


def test_write_channel_order_and_back_pressure():
    rng = random.Random(3)

    async def body(ctx, bus):
        for i in range(24):
            value = rng.getrandbits(32)
            delays = dict(
                aw_delay=rng.randrange(4), w_delay=rng.randrange(4), b_delay=rng.randrange(4)
            )
            assert await bus.write(OFF["SCRATCH"], value, **delays) == RESP_OKAY
            assert await bus.read(OFF["SCRATCH"], r_delay=rng.randrange(4)) == (value, RESP_OKAY)

    run(RegisterFile(CFG), body)


def test_constructor_validates():
    with pytest.raises(ValueError, match="config must be an AcceleratorConfig, not 'tiny'"):
        RegisterFile("tiny")
    with pytest.raises(ValueError, match="unmapped_error must be a bool, not 1"):
        RegisterFile(CFG, unmapped_error=1)


# Amaranth's Verilog (through Yosys) trips Verilator lint warnings that are fatal by
# default: WIDTHEXPAND/WIDTHTRUNC on `x == 6'h25` and `! x[11:2]`. They are harmless
# here; silence them in the file until the harness passes -Wno-fatal itself.
_LINT_OFF = "".join(
    f"/* verilator lint_off {w} */\n" for w in ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE")
)


@pytest.mark.sim
def test_rtl_with_cocotbext_axi(simulator):
    from bamboo.sim.harness import generate_verilog, run_cocotb

    name = "bamboo_regfile"
    source = generate_verilog(RegisterFile(CFG), name)
    linted = source.with_name(f"{source.stem}-lint.v")
    if not linted.exists():  # write-then-rename: both simulator runs may get here at once
        tmp = linted.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(_LINT_OFF + source.read_text())
        tmp.replace(linted)
    result = run_cocotb(
        linted,
        pathlib.Path(__file__).with_name("cocotb_regfile.py"),
        simulator,
        name=name,
        extra_env={"REGFILE_CONFIG": CFG.name, "REGFILE_SEED": 1},
    )
    assert result.tests == 3
