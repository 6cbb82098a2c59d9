"""DMA engines: burst generator and window check in amaranth.sim, the engines in RTL.

The burst generator is compared with a Python model and checked for the AXI rules
(no burst crosses 4 KiB, at most ``max_beats`` beats, the beats of every row fetched
once). The read and write engines run through the cocotb harness on Verilator and
Icarus against cocotbext-axi's AxiRam (``cocotb_dma.py``).
"""

import gc
import json
import os
import pathlib
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from bamboo.arch.config import AcceleratorConfig
from bamboo.arch.registers import ErrorCode
from bamboo.hw.axi import AXI4Signature
from bamboo.hw.dma import BurstGenerator, WindowCheck
from bamboo.hw.dma_read import DMAReader
from bamboo.hw.dma_write import DMAWriter

# Four-row array, 8 output channels, 128-bit bus: loads cover elements narrower than
# (4 B), equal to (16 B) and wider than the bus (32 B, 256 B); stores pack 4-byte
# elements four to a beat from one of two lanes.
RTL_CONFIG = AcceleratorConfig(
    name="dma-test", rows=4, cols=8, axi_data_width=128, axi_addr_width=32
)


def reference_bursts(addr, row_bytes, stride, rows, bus, max_beats):
    """(addr, len, last) of every burst of a 2-D transfer: rows split at 4 KiB and max_beats."""
    out = []
    for y in range(rows):
        a = addr + y * stride
        end = a + row_bytes
        while a < end:
            start = a - a % bus
            stop = min(end, (a // 4096 + 1) * 4096, start + max_beats * bus)
            out.append((start, -(-(stop - start) // bus) - 1, False))
            a = stop
    out[-1] = out[-1][:2] + (True,)
    return out


def check_axi_rules(bursts, addr, row_bytes, stride, rows, bus, max_beats):
    """Every burst stays in a page and the length limit, and covers each row's beats once."""
    fetched = []
    for start, length, _ in bursts:
        beats = length + 1
        assert start % bus == 0 and beats <= max_beats
        assert start // 4096 == (start + beats * bus - 1) // 4096, f"{start:#x}+{beats} crosses 4K"
        fetched += range(start // bus, start // bus + beats)
    wanted = []
    for y in range(rows):
        a = addr + y * stride
        wanted += range(a // bus, -(-(a + row_bytes) // bus))
    assert fetched == wanted


def _run_bursts(bus, max_beats, commands, seed):
    """Bursts emitted by a BurstGenerator for ``commands``, with a random o_burst ready."""
    dut = BurstGenerator(32, bus, 24, 30, max_beats)
    rng = random.Random(seed)
    got = []

    async def drive(ctx):
        for addr, row_bytes, stride, rows in commands:
            for name, value in (
                ("addr", addr),
                ("row_bytes", row_bytes),
                ("stride", stride),
                ("rows", rows),
            ):
                ctx.set(getattr(dut.i_cmd.payload, name), value)
            ctx.set(dut.i_cmd.valid, 1)
            await ctx.tick().until(dut.i_cmd.ready)
            ctx.set(dut.i_cmd.valid, 0)
            got.append([])
            while True:
                ctx.set(dut.o_burst.ready, rng.random() < 0.7)
                valid, ready = ctx.get(dut.o_burst.valid), ctx.get(dut.o_burst.ready)
                payload = ctx.get(dut.o_burst.payload)
                await ctx.tick()
                if valid and ready:
                    got[-1].append((payload.addr, payload.len, payload.last))
                    if payload.last:
                        break
            assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.run()
    return got


@pytest.mark.parametrize("bus,max_beats", [(8, 256), (16, 256), (16, 16), (4, 3)])
def test_burst_generator_matches_model(bus, max_beats):
    rng = random.Random(bus * 1000 + max_beats)
    commands = [
        (4096 - bus, bus * 3, 0, 1),
        (0, 4096, 4096, 2),
        (4095 & -bus, 1, 1, 1),
        (0x1234 & -bus, 20000, 0, 1),
    ]
    for _ in range(40):
        align = rng.choice([1, 4, bus])
        addr = (
            rng.choice(
                [rng.randrange(0, 1 << 20), rng.randrange(1, 64) * 4096 - rng.randrange(0, 256)]
            )
            // align
            * align
        )
        row_bytes = rng.choice([rng.randint(1, 64), rng.randint(1, 9000)]) // align * align or align
        stride = row_bytes + rng.choice([0, align, 4096, 37 * align])
        commands.append((addr, row_bytes, stride, rng.randint(1, 5)))
    got = _run_bursts(bus, max_beats, commands, seed=bus)
    for command, bursts in zip(commands, got, strict=True):
        assert bursts == reference_bursts(*command, bus, max_beats), command
        check_axi_rules(bursts, *command, bus, max_beats)


def test_window_check():
    bus = 16
    dut = WindowCheck(32, bus, 9)
    rng = random.Random(7)
    base, size = 0x10000, 0x20000
    cases = [
        (size - 64, 1, 4, 1, 4, ErrorCode.NONE),
        (size - 63 + 15, 1, 4, 1, 4, None),
        (size - 48, 1, 4, 1, 4, ErrorCode.DMA_OUT_OF_WINDOW),
        (0, 2, 1, 0xFFFFF, 4, None),
        (0xFFFFFFF0, 1, 1, 1, 4, None),
        (8, 1, 1, 1, 4, ErrorCode.MALFORMED_INSTRUCTION),
        (4, 1, 1, 1, 2, ErrorCode.NONE),
        (0, 0, 5, 0xFFFFF, 4, ErrorCode.NONE),
        (0, 1, 1, 1, 10, ErrorCode.MALFORMED_INSTRUCTION),
    ]
    for _ in range(200):
        cases.append(
            (
                rng.randrange(0, 1 << 32, 4),
                rng.randint(0, 4095),
                rng.randint(0, 4095),
                rng.randint(0, (1 << 20) - 1),
                rng.choice([2, 3, 4, 5, 9]),
                None,
            )
        )
        cases.append(
            (
                rng.randrange(0, size, 16),
                rng.randint(0, 20),
                rng.randint(0, 64),
                rng.randint(0, 300),
                rng.choice([2, 4, 9]),
                None,
            )
        )

    def model(dram, y, x, stride, log2):
        if log2 > 9 or (base + dram) % min(1 << log2, bus):
            return ErrorCode.MALFORMED_INSTRUCTION
        if y and x and dram + ((y - 1) * stride + x) * (1 << log2) > size:
            return ErrorCode.DMA_OUT_OF_WINDOW
        return ErrorCode.NONE

    async def bench(ctx):
        ctx.set(dut.window_base, base)
        ctx.set(dut.window_size, size)
        for dram, y, x, stride, log2, want in cases:
            for sig, v in (
                (dut.dram_addr, dram),
                (dut.y_size, y),
                (dut.x_size, x),
                (dut.x_stride, stride),
                (dut.elem_log2, log2),
            ):
                ctx.set(sig, v)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for _ in range(WindowCheck.LATENCY - 1):
                await ctx.tick()
            assert ctx.get(dut.done)
            assert ctx.get(dut.error) == model(dram, y, x, stride, log2), (dram, y, x, stride)
            if want is not None:
                assert ctx.get(dut.error) == want
            assert ctx.get(dut.addr) == base + dram & 0xFFFFFFFF
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _store_in_amaranth_sim(config, elem_bytes, word_bytes, commands, seed, go=0.7):
    """Run DMAWriter over ``commands`` against a Python AXI4 write subordinate.

    Returns (memory, status, cycles) after each command, and the OUT words. Every
    channel is ready/valid with probability ``go``; the subordinate checks WLAST
    against AWLEN and the 4 KiB rule, and answers B one cycle after WLAST at best.
    """
    dut = DMAWriter(config, elem_bytes=elem_bytes, word_bytes=word_bytes)
    rng = random.Random(seed)
    words = np.random.default_rng(seed).integers(0, 256, (1 << 16, word_bytes), dtype=np.uint8)
    mem = np.zeros(SIM_MEM, np.uint8)
    bus = config.axi_data_bytes
    results = []
    axi = dut.m_axi

    async def bench(ctx):
        ctx.set(dut.window_base, SIM_BASE)
        ctx.set(dut.window_size, SIM_SIZE)
        bursts, w_q, beat, pending_b, data_q, data_valid = [], [], 0, 0, [], False
        for cmd in commands:
            for name, value in cmd.items():
                ctx.set(getattr(dut.i_cmd.payload, name), value)
            ctx.set(dut.i_cmd.valid, 1)
            await ctx.tick().until(dut.i_cmd.ready)
            ctx.set(dut.i_cmd.valid, 0)
            cycles = 0
            while True:
                cycles += 1
                ctx.set(axi.awready, rng.random() < go)
                ctx.set(axi.wready, rng.random() < go)
                ctx.set(axi.bvalid, pending_b > 0 and rng.random() < go)
                ctx.set(dut.o_req.ready, rng.random() < go)
                data_valid = data_valid or (bool(data_q) and rng.random() < go)
                ctx.set(dut.i_data.valid, data_valid)
                if data_valid:
                    addr, lane = data_q[0]
                    elem = words[addr][lane * elem_bytes : (lane + 1) * elem_bytes]
                    ctx.set(dut.i_data.payload, int.from_bytes(elem.tobytes(), "little"))
                ctx.set(dut.o_status.ready, 1)
                if ctx.get(axi.awvalid) and ctx.get(axi.awready):
                    addr, length = ctx.get(axi.awaddr), ctx.get(axi.awlen)
                    assert addr // 4096 == (addr + (length + 1) * bus - 1) // 4096
                    bursts.append((addr, length))
                if ctx.get(axi.wvalid) and ctx.get(axi.wready):
                    # W may lead AW (A3.3.1): keep beats until their burst is known.
                    w_q.append((ctx.get(axi.wdata), ctx.get(axi.wstrb), ctx.get(axi.wlast)))
                while w_q and bursts:
                    addr, length = bursts[0]
                    wdata, strb, wlast = w_q.pop(0)
                    data = wdata.to_bytes(bus, "little")
                    for i in range(bus):
                        if strb >> i & 1:
                            mem[addr + beat * bus + i - SIM_BASE] = data[i]
                    assert wlast == (beat == length)
                    beat += 1
                    if beat > length:
                        bursts.pop(0)
                        beat, pending_b = 0, pending_b + 1
                if ctx.get(axi.bvalid) and ctx.get(axi.bready):
                    pending_b -= 1
                if ctx.get(dut.o_req.valid) and ctx.get(dut.o_req.ready):
                    req = ctx.get(dut.o_req.payload)
                    data_q.append((req.sram_addr, req.lane))
                if data_valid and ctx.get(dut.i_data.ready):
                    data_q.pop(0)
                    data_valid = False
                done = ctx.get(dut.o_status.valid)
                status = ctx.get(dut.o_status.payload.error)
                await ctx.tick()
                if done:
                    results.append((mem.copy(), status, cycles))
                    break
            assert not bursts and not w_q and not data_q and pending_b == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results, words


SIM_BASE, SIM_SIZE, SIM_MEM = 0x1000, 0xE000, 0x10000


@pytest.mark.parametrize("elem_bytes,word_bytes", [(32, 64), (4, 8), (16, 16)])
def test_writer_element_sizes(elem_bytes, word_bytes):
    """Stores of elements narrower than, as wide as and wider than the 128-bit bus."""
    rng = random.Random(elem_bytes)
    commands = []
    for i in range(8):
        x, y = rng.randint(1, 9), rng.randint(1, 4)
        stride = x + rng.choice([0, 1, 5])
        extent = ((y - 1) * stride + x) * elem_bytes
        addr = rng.choice(
            [
                8192 - SIM_BASE - rng.randrange(0, 8) * min(elem_bytes, 16),
                rng.randrange(0, SIM_SIZE - extent, min(elem_bytes, 16)),
            ]
        )
        commands.append(
            dict(
                dram_addr=addr,
                y_size=y,
                x_size=x,
                x_stride=stride,
                lane=rng.randrange(word_bytes // elem_bytes),
                sram_addr=rng.randrange(0, 60000),
            )
        )
    commands.append(dict(commands[0], dram_addr=SIM_SIZE - elem_bytes + min(elem_bytes, 16)))
    results, words = _store_in_amaranth_sim(RTL_CONFIG, elem_bytes, word_bytes, commands, 3)
    mem = np.zeros(SIM_MEM, np.uint8)
    for cmd, (got, status, _) in zip(commands, results, strict=True):
        if (
            cmd["dram_addr"] + ((cmd["y_size"] - 1) * cmd["x_stride"] + cmd["x_size"]) * elem_bytes
            > SIM_SIZE
        ):
            assert status == ErrorCode.DMA_OUT_OF_WINDOW
        else:
            assert status == ErrorCode.NONE
            y, x, e = cmd["y_size"], cmd["x_size"], elem_bytes
            elems = words[
                cmd["sram_addr"] + np.arange(y * x), cmd["lane"] * e : (cmd["lane"] + 1) * e
            ].reshape(y, x, e)
            idx = (
                cmd["dram_addr"]
                + (np.arange(y)[:, None, None] * cmd["x_stride"] + np.arange(x)[None, :, None]) * e
                + np.arange(e)
            )
            mem[idx] = elems
        assert np.array_equal(got, mem), cmd


def test_writer_efficiency():
    """A 56x56 tile of 16-byte pixels (ultra96 INP/OUT lane) stores at a beat per cycle."""
    cmd = dict(dram_addr=0, y_size=56, x_size=56, x_stride=56, lane=1, sram_addr=0)
    config = AcceleratorConfig(rows=16, cols=32, axi_data_width=128, axi_addr_width=32)
    results, _ = _store_in_amaranth_sim(config, 16, 32, [cmd], 1, go=1.0)
    _, status, cycles = results[0]
    assert status == ErrorCode.NONE
    efficiency = 56 * 56 * 16 / (cycles * 16)
    print(f"store 56x56x16: {cycles} cycles, {efficiency:.3f} of the bus")
    assert efficiency > 0.95


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_constructor_validation():
    with pytest.raises(ValueError, match="max_beats must be from 1 to 256, not 257"):
        BurstGenerator(32, 16, 20, 20, 257)
    with pytest.raises(ValueError, match="max_elem_bytes must be a power of two, not 24"):
        DMAReader(RTL_CONFIG, max_elem_bytes=24)
    with pytest.raises(ValueError, match="word_bytes must be a multiple of elem_bytes"):
        DMAWriter(RTL_CONFIG, elem_bytes=8, word_bytes=12)
    with pytest.raises(ValueError, match="data_width must be a power of two"):
        AXI4Signature(32, 48)
    sig = AXI4Signature.from_config(RTL_CONFIG, write=False)
    assert "araddr" in sig.members and "awaddr" not in sig.members
    assert sig == AXI4Signature(32, 128, write=False)
    gc.collect()  # report the refused components' UnusedElaboratable inside this test


class DMATestTop(wiring.Component):
    """A DMAReader and a DMAWriter sharing one AXI4 port (the RTL test's design)."""

    def __init__(self, config):
        self._reader = DMAReader(config)
        self._writer = DMAWriter(config)
        r, w = self._reader.signature.members, self._writer.signature.members
        super().__init__(
            {
                "m_axi": Out(AXI4Signature.from_config(config)),
                "window_base": In(config.axi_addr_width),
                "window_size": In(config.axi_addr_width),
                "rd_cmd": r["i_cmd"],
                "rd_data": r["o_data"],
                "rd_status": r["o_status"],
                "wr_cmd": w["i_cmd"],
                "wr_req": w["o_req"],
                "wr_data": w["i_data"],
                "wr_status": w["o_status"],
            }
        )

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = rd = self._reader
        m.submodules.writer = wr = self._writer
        for engine in (rd, wr):
            m.d.comb += [
                engine.window_base.eq(self.window_base),
                engine.window_size.eq(self.window_size),
            ]
            for name, member in engine.m_axi.signature.members.items():
                ours, theirs = getattr(self.m_axi, name), getattr(engine.m_axi, name)
                m.d.comb += ours.eq(theirs) if member.flow == wiring.Out else theirs.eq(ours)
        for ours, theirs in (
            ("rd_cmd", rd.i_cmd),
            ("rd_data", rd.o_data),
            ("rd_status", rd.o_status),
            ("wr_cmd", wr.i_cmd),
            ("wr_req", wr.o_req),
            ("wr_data", wr.i_data),
            ("wr_status", wr.o_status),
        ):
            port = getattr(self, ours)
            if self.signature.members[ours].flow == wiring.In:
                wiring.connect(m, wiring.flipped(port), theirs)
            else:
                wiring.connect(m, theirs, wiring.flipped(port))
        return m


# Amaranth's Verilog (through Yosys) trips Verilator lint warnings that are fatal by
# default (WIDTHEXPAND/WIDTHTRUNC...); harmless here.
_LINT_OFF = "".join(
    f"/* verilator lint_off {w} */\n" for w in ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE")
)


@pytest.mark.sim
def test_rtl_dma_against_axi_ram(simulator, tmp_path):
    from bamboo.sim.harness import generate_verilog, run_cocotb

    name = "bamboo_dma_test"
    source = generate_verilog(DMATestTop(RTL_CONFIG), name)
    linted = source.with_name(f"{source.stem}-lint.v")
    if not linted.exists():  # write-then-rename: both simulator runs may get here at once
        tmp = linted.with_suffix(f".tmp{os.getpid()}")
        # Icarus misses the time-0 event Yosys uses to wake `always @*` blocks whose inputs
        # never change (an FSM output while the state stays 0 reads as X); `always_comb`
        # runs once at time 0 by definition (IEEE 1800-2017 9.2.2.2.2).
        tmp.write_text(_LINT_OFF + source.read_text().replace("always @*", "always_comb"))
        tmp.replace(linted)
    report = tmp_path / "efficiency.json"
    result = run_cocotb(
        linted,
        pathlib.Path(__file__).with_name("cocotb_dma.py"),
        simulator,
        name=name,
        extra_env={
            "DMA_CONFIG": json.dumps(RTL_CONFIG.to_dict()),
            "DMA_SEED": 1,
            "DMA_VECTORS": 12,
            "DMA_REPORT": report,
        },
    )
    assert result.tests == 7
    efficiency = json.loads(report.read_text())
    # One 16-byte pixel per beat: the 128-bit bus must run nearly full.
    assert efficiency["56x56x16"]["efficiency"] > 0.9, efficiency
