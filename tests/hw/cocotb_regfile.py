"""cocotb tests of the RegisterFile's Verilog, run by tests/hw/test_regfile.py.

Drives the bus with cocotbext-axi's AxiLiteMaster under random back-pressure on
every channel (so AW and W arrive in either order and B/R wait on a slow
manager) and plays the engine from Python. Expected values are this file's own.
The top level is ``RegisterFile(preset(REGFILE_CONFIG))``.
"""

import os
import random

import cocotb
from bamboo.arch import registers as regs
from bamboo.arch.config import preset
from bamboo.arch.registers import ErrorCode, decode, encode
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

__all__ = []

CFG = preset(os.environ.get("REGFILE_CONFIG", "tiny"))
SEED = int(os.environ.get("REGFILE_SEED", "1"))
OFF = {r.name: r.offset for r in regs.REGISTERS}
ENGINE_INPUTS = (
    "busy",
    "done",
    "done_irq",
    "error",
    "error_code",
    "err_insn",
    *(f"{u}_{w}" for u in regs.UNITS for w in ("busy", "stall")),
)


async def setup(dut):
    """Start the clock, reset, and return an AxiLiteMaster on ``s_axi__*``."""
    Clock(dut.clk, 10, unit="ns").start()
    for name in ENGINE_INPUTS:
        getattr(dut, f"engine__{name}").value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    # Amaranth flattens the s_axi interface to s_axi__awaddr...: prefix "s_axi_" + "_" + name.
    return AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)


def pauses(rng, p):
    """An endless random pause pattern: back-pressure with probability ``p`` per cycle."""
    while True:
        yield rng.random() < p


async def rd(axil, name_or_addr):
    addr = OFF[name_or_addr] if isinstance(name_or_addr, str) else name_or_addr
    resp = await axil.read(addr, 4)
    assert resp.resp == AxiResp.OKAY, (hex(addr), resp.resp)
    return int.from_bytes(resp.data, "little")


async def wr(axil, name_or_addr, value):
    addr = OFF[name_or_addr] if isinstance(name_or_addr, str) else name_or_addr
    resp = await axil.write(addr, value.to_bytes(4, "little"))
    assert resp.resp == AxiResp.OKAY, (hex(addr), resp.resp)


@cocotb.test()
async def identity_and_reset_values(dut):
    axil = await setup(dut)
    assert await rd(axil, "ID") == int.from_bytes(b"BAMB", "big")
    assert decode("HW_VERSION", await rd(axil, "HW_VERSION")) == {
        "major": regs.HW_VERSION_MAJOR,
        "minor": regs.HW_VERSION_MINOR,
    }
    assert await rd(axil, "ISA_VERSION") == regs.ISA_VERSION
    assert await rd(axil, "CONFIG_ID") == CFG.config_id
    for r in regs.REGISTERS:
        if r.name not in ("ID", "HW_VERSION", "ISA_VERSION", "CONFIG_ID"):
            assert await rd(axil, r.name) == 0, r.name
    # Unmapped: zero, OKAY, writes dropped.
    await wr(axil, 0x0A0, 0xFFFFFFFF)
    assert await rd(axil, 0x0A0) == 0


@cocotb.test()
async def random_traffic_under_back_pressure(dut):
    axil = await setup(dut)
    rng = random.Random(SEED)
    wif, rif = axil.write_if, axil.read_if
    for channel in (wif.aw_channel, wif.w_channel, wif.b_channel, rif.ar_channel, rif.r_channel):
        channel.set_pause_generator(pauses(rng, 0.5))

    # Watch the handshakes: AW ahead of W and W ahead of AW must both happen.
    order = {"aw_first": 0, "w_first": 0}

    async def watch():
        aw = w = 0
        while True:
            await RisingEdge(dut.clk)
            aw += int(dut.s_axi__awvalid.value) & int(dut.s_axi__awready.value)
            w += int(dut.s_axi__wvalid.value) & int(dut.s_axi__wready.value)
            order["aw_first"] += aw > w
            order["w_first"] += w > aw

    watcher = cocotb.start_soon(watch())
    rw = [r.name for r in regs.REGISTERS if r.access == "RW"]
    model = {name: 0 for name in rw}
    for _ in range(60):
        name = rng.choice(rw)
        if rng.random() < 0.6:
            model[name] = rng.getrandbits(32)
            await wr(axil, name, model[name])
        else:
            assert await rd(axil, name) == model[name], name
    # Overlapping transactions: several writes and reads in flight at once.
    values = {name: rng.getrandbits(32) for name in rw}
    for task in [cocotb.start_soon(wr(axil, n, v)) for n, v in values.items()]:
        await task
    reads = [cocotb.start_soon(rd(axil, n)) for n in values]
    got = [await task for task in reads]
    assert got == list(values.values())
    watcher.cancel()
    assert order["aw_first"] and order["w_first"], order
    lo, hi = values["INSN_BASE_LO"], values["INSN_BASE_HI"]
    assert int(dut.engine__insn_base.value) == hi << 32 | lo


@cocotb.test()
async def run_error_and_interrupt(dut):
    axil = await setup(dut)
    starts = []

    async def count_starts():
        while True:
            await RisingEdge(dut.clk)
            starts.append(int(dut.engine__start.value))

    cocotb.start_soon(count_starts())
    await wr(axil, "CTRL", encode("CTRL", start=1, irq_enable=1))
    await ClockCycles(dut.clk, 2)
    assert sum(starts) == 1
    # Play a run: 50 busy cycles, the compute unit busy on every other one.
    dut.engine__busy.value = 1
    for i in range(50):
        dut.engine__compute_busy.value = i % 2
        await RisingEdge(dut.clk)
    dut.engine__busy.value = 0
    dut.engine__compute_busy.value = 0
    dut.engine__done.value = 1
    dut.engine__done_irq.value = 1
    await RisingEdge(dut.clk)
    dut.engine__done.value = 0
    dut.engine__done_irq.value = 0
    await RisingEdge(dut.clk)
    assert int(dut.irq.value) == 1
    assert decode("STATUS", await rd(axil, "STATUS"))["done"] == 1
    assert await rd(axil, "CYCLES_LO") == 50 and await rd(axil, "CYCLES_HI") == 0
    assert await rd(axil, "COMPUTE_BUSY") == 25
    await wr(axil, "IRQ_STATUS", encode("IRQ_STATUS", done=1))
    assert int(dut.irq.value) == 0

    # An error: code and instruction index captured, interrupt raised.
    dut.engine__error.value = 1
    dut.engine__error_code.value = int(ErrorCode.ILLEGAL_OPCODE)
    dut.engine__err_insn.value = 77
    await RisingEdge(dut.clk)
    dut.engine__error.value = 0
    dut.engine__err_insn.value = 0
    await RisingEdge(dut.clk)
    status = decode("STATUS", await rd(axil, "STATUS"))
    assert (status["error"], status["error_code"]) == (1, ErrorCode.ILLEGAL_OPCODE)
    assert await rd(axil, "ERR_INSN") == 77
    assert decode("IRQ_STATUS", await rd(axil, "IRQ_STATUS")) == {"done": 0, "error": 1}
    assert int(dut.irq.value) == 1
    await wr(axil, "CTRL", encode("CTRL", soft_reset=1, irq_enable=1))
    assert int(dut.irq.value) == 0
    assert await rd(axil, "STATUS") == 0 and await rd(axil, "COMPUTE_BUSY") == 0
