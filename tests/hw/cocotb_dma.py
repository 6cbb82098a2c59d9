"""cocotb tests of the DMA engines against cocotbext-axi's AxiRam (run by test_dma.py).

The design is ``test_dma.DMATestTop``: a ``DMAReader`` and a ``DMAWriter`` sharing one
AXI4 port. Every transfer is compared with a numpy model of the 2-D transfer; the
RAM's channels and the engines' streams run with random stalls. Environment:
``DMA_CONFIG`` (the AcceleratorConfig as JSON), ``DMA_SEED``, ``DMA_VECTORS``,
``DMA_REPORT`` (a JSON file for the measured bus efficiency).
"""

import collections
import json
import os
import random

import cocotb
import numpy as np
from bamboo.arch.config import AcceleratorConfig
from bamboo.arch.registers import ErrorCode
from bamboo.hw.dma_read import ReadChunkLayout, ReadCommandLayout
from bamboo.hw.dma_write import ElementRequestLayout, WriteCommandLayout
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiBus, AxiRam

CFG = AcceleratorConfig.from_dict(json.loads(os.environ["DMA_CONFIG"]))
SEED = int(os.environ.get("DMA_SEED", "1"))
VECTORS = int(os.environ.get("DMA_VECTORS", "12"))
W = CFG.axi_data_bytes
STORE_ELEM = CFG.rows
OUT_WORD = CFG.cols
MEM_SIZE = 1 << 20
WINDOW_BASE = 0x40000
WINDOW_SIZE = 0x80000
POISON = WINDOW_BASE + 0x7F000  # a page whose accesses answer SLVERR in the error tests


def _unpack(layout, value):
    return {name: (value >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


class Source:
    """Drives a stream from a queue, idling at random (valid held until the handshake)."""

    def __init__(self, dut, prefix, rng, idle):
        self.valid, self.ready = getattr(dut, f"{prefix}__valid"), getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk, self.rng, self.idle = dut.clk, rng, idle
        self.queue = collections.deque()
        self.valid.value = 0

    async def run(self):
        valid = False
        while True:
            await RisingEdge(self.clk)
            if valid and int(self.ready.value):
                self.queue.popleft()
                valid = False
            if not valid and self.queue and self.rng.random() >= self.idle:
                valid = True
                self.payload.value = self.queue[0]
            self.valid.value = int(valid)


class Sink:
    """Accepts a stream with a random ready; ``on_item`` sees each payload and cycle."""

    def __init__(self, dut, prefix, rng, idle, on_item=None):
        self.valid, self.ready = getattr(dut, f"{prefix}__valid"), getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk, self.rng, self.idle, self.on_item = dut.clk, rng, idle, on_item
        self.items = []
        self.cycle = 0
        self.ready.value = 0

    async def run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if not (self.valid.value.is_resolvable and self.ready.value.is_resolvable):
                raise AssertionError(
                    f"{self.valid._name}={self.valid.value} {self.ready._name}={self.ready.value}"
                )
            if int(self.valid.value) and int(self.ready.value):
                item = int(self.payload.value)
                self.items.append((self.cycle, item))
                if self.on_item:
                    self.on_item(item)
            self.ready.value = int(self.rng.random() >= self.idle)


class Bench:
    """Clock, reset, RAM and stream drivers for one cocotb test."""

    def __init__(self, dut, seed, stall):
        self.dut, self.rng = dut, random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=MEM_SIZE)
        self.stall = stall
        if stall:
            for ch in (
                self.ram.read_if.ar_channel,
                self.ram.read_if.r_channel,
                self.ram.write_if.aw_channel,
                self.ram.write_if.w_channel,
                self.ram.write_if.b_channel,
            ):
                ch.set_pause_generator(self._pauses(stall))
        self.rd_cmd = Source(dut, "rd_cmd", self.rng, stall)
        self.rd_data = Sink(dut, "rd_data", self.rng, stall)
        self.rd_status = Sink(dut, "rd_status", self.rng, 0.0)
        self.wr_cmd = Source(dut, "wr_cmd", self.rng, stall)
        self.wr_data = Source(dut, "wr_data", self.rng, stall)
        self.wr_req = Sink(dut, "wr_req", self.rng, stall, self._answer)
        self.wr_status = Sink(dut, "wr_status", self.rng, 0.0)
        self.out_words = self.np_rng.integers(0, 256, (1 << 16, OUT_WORD), dtype=np.uint8)
        self.bus_active = 0
        dut.window_base.value = WINDOW_BASE
        dut.window_size.value = WINDOW_SIZE

    def _pauses(self, p):
        while True:
            yield self.rng.random() < p

    def _answer(self, request):
        # The writer asks for one element: slice ``lane`` of OUT word ``sram_addr``.
        req = _unpack(ElementRequestLayout(), request)
        lane = slice(req["lane"] * STORE_ELEM, (req["lane"] + 1) * STORE_ELEM)
        word = self.out_words[req["sram_addr"]]
        self.wr_data.queue.append(int.from_bytes(word[lane].tobytes(), "little"))

    async def _watch_bus(self):
        # Counts cycles with any request or write data offered: must stay 0 on refusals.
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            if (
                int(d.m_axi__arvalid.value)
                or int(d.m_axi__awvalid.value)
                or int(d.m_axi__wvalid.value)
            ):
                self.bus_active += 1

    async def start(self):
        cocotb.start_soon(Clock(self.dut.clk, 4, unit="ns").start())
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        for part in (
            self.rd_cmd,
            self.rd_data,
            self.rd_status,
            self.wr_cmd,
            self.wr_data,
            self.wr_req,
            self.wr_status,
        ):
            cocotb.start_soon(part.run())
        cocotb.start_soon(self._watch_bus())
        self.ram.write(0, self.np_rng.integers(0, 256, MEM_SIZE, dtype=np.uint8).tobytes())

    async def wait_status(self, sink, count, limit=200_000):
        for _ in range(limit):
            if len(sink.items) >= count:
                return sink.items[count - 1]
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"no status after {limit} cycles")

    def memory(self):
        return np.frombuffer(self.ram.read(0, MEM_SIZE), dtype=np.uint8).copy()


def load_model(mem, cmd):
    """The padded tile a LOAD produces: array [rows][cols][elem_bytes] of uint8."""
    e = 1 << cmd["elem_log2"]
    y = np.arange(cmd["y_size"])[:, None, None]
    x = np.arange(cmd["x_size"])[None, :, None]
    idx = WINDOW_BASE + cmd["dram_addr"] + (y * cmd["x_stride"] + x) * e + np.arange(e)
    tile = mem[idx] if idx.size else np.zeros((cmd["y_size"], cmd["x_size"], e), np.uint8)
    return np.pad(
        tile,
        ((cmd["pad_top"], cmd["pad_bottom"]), (cmd["pad_left"], cmd["pad_right"]), (0, 0)),
        constant_values=cmd["pad_value"],
    )


def store_model(mem, out_words, cmd):
    """The memory after a STORE of ``out_words`` lanes."""
    e, y, x = STORE_ELEM, cmd["y_size"], cmd["x_size"]
    words = out_words[cmd["sram_addr"] + np.arange(y * x)]
    elems = words[:, cmd["lane"] * e : (cmd["lane"] + 1) * e].reshape(y, x, e)
    idx = (
        WINDOW_BASE
        + cmd["dram_addr"]
        + (np.arange(y)[:, None, None] * cmd["x_stride"] + np.arange(x)[None, :, None]) * e
        + np.arange(e)
    )
    mem = mem.copy()
    mem[idx] = elems
    return mem


def check_load(bench, cmd, chunks):
    """Compare the o_data chunks of one LOAD with the model; return the chunk count."""
    mem = bench.memory()
    tile = load_model(mem, cmd)
    e = 1 << cmd["elem_log2"]
    size, parts = min(e, W), max(1, e // W)
    layout = ReadChunkLayout(W, bench.parts)
    got = [_unpack(layout, v) for _, v in chunks]
    flat = tile.reshape(-1, e)
    assert len(got) == flat.shape[0] * parts, (len(got), flat.shape, cmd)
    for i, g in enumerate(got):
        elem, part = divmod(i, parts)
        want = flat[elem, part * size : (part + 1) * size].tobytes()
        have = g["data"].to_bytes(W, "little")[:size]
        assert (g["addr"], g["part"]) == ((cmd["sram_addr"] + elem) & 0xFFFF, part), (i, g, cmd)
        assert have == want, f"chunk {i} (element {elem} part {part}) of {cmd}"
        assert g["last"] == (i == len(got) - 1)
    return len(got)


def load_cmd(**fields):
    """A LOAD command: ``fields`` over no padding, pad value 0, SRAM address 0."""
    plain = dict(pad_top=0, pad_bottom=0, pad_left=0, pad_right=0, pad_value=0, sram_addr=0)
    return dict(plain, **fields)


def random_load(rng):
    log2 = rng.choice([2, 4, 5, 8] if W == 16 else [2, 3, 4, 8])
    e = 1 << log2
    max_x = max(1, 640 // e)
    cmd = dict(
        elem_log2=log2,
        y_size=rng.randint(1, 6),
        x_size=rng.randint(1, min(40, max_x)),
        pad_top=rng.randint(0, 2),
        pad_bottom=rng.randint(0, 2),
        pad_left=rng.randint(0, 3),
        pad_right=rng.randint(0, 3),
        pad_value=rng.randint(0, 255),
        sram_addr=rng.randint(0, 0xFFFF),
    )
    cmd["x_stride"] = cmd["x_size"] + rng.choice([0, 0, 1, 7, 100, -min(cmd["x_size"] - 1, 3)])
    if rng.random() < 0.1:
        cmd["y_size"] = 0
    return _place(rng, cmd, e)


def _place(rng, cmd, e):
    extent = (max(cmd["y_size"] - 1, 0) * cmd["x_stride"] + cmd["x_size"]) * e
    align = min(e, W)
    if rng.random() < 0.5:  # straddle a 4 KiB page
        addr = rng.randrange(4096, WINDOW_SIZE - extent, 4096) - rng.randrange(0, 512, align)
    else:
        addr = rng.randrange(0, WINDOW_SIZE - extent, align)
    cmd["dram_addr"] = max(addr, 0) // align * align
    return cmd


async def run_load(bench, cmd, expect=ErrorCode.NONE):
    before = len(bench.rd_data.items)
    n = len(bench.rd_status.items)
    bench.rd_cmd.queue.append(ReadCommandLayout().const(cmd).as_bits())
    _, status = await bench.wait_status(bench.rd_status, n + 1)
    assert status == expect, (ErrorCode(status), cmd)
    return bench.rd_data.items[before:]


async def run_store(bench, cmd, expect=ErrorCode.NONE):
    n = len(bench.wr_status.items)
    bench.wr_cmd.queue.append(WriteCommandLayout().const(cmd).as_bits())
    _, status = await bench.wait_status(bench.wr_status, n + 1)
    assert status == expect, (ErrorCode(status), cmd)


def make_bench(dut, salt, stall):
    bench = Bench(dut, SEED * 1000 + salt, stall)
    bench.parts = max(1, max(CFG.rows * CFG.cols, CFG.cols * 8, 256, W) // W)
    return bench


@cocotb.test()
async def load_random_2d(dut):
    """Random strided loads, paddings and element sizes, under random stalls everywhere."""
    bench = make_bench(dut, 1, 0.3)
    await bench.start()
    chunks = 0
    for _ in range(VECTORS):
        cmd = random_load(bench.rng)
        chunks += check_load(bench, cmd, await run_load(bench, cmd))
    dut._log.info("%d loads, %d chunks checked", VECTORS, chunks)


@cocotb.test()
async def load_one_element_rows(dut):
    """Rows of one element, padded or not, with no stalls: a row ends every cycle, so
    the walker's row and column flags are used in back-to-back cycles."""
    bench = make_bench(dut, 7, 0.0)
    await bench.start()
    pads = [(0, 0, 0, 0), (1, 2, 0, 0), (2, 1, 0, 0), (0, 0, 1, 0), (3, 3, 0, 1), (1, 0, 2, 2)]
    for log2 in (2, 3):  # one part per element on either bus
        for top, bottom, left, right in pads:
            cmd = load_cmd(
                elem_log2=log2,
                y_size=5,
                x_size=1,
                x_stride=3,
                dram_addr=0x2000,
                pad_top=top,
                pad_bottom=bottom,
                pad_left=left,
                pad_right=right,
                pad_value=0x5A,
                sram_addr=100,
            )
            check_load(bench, cmd, await run_load(bench, cmd))


@cocotb.test()
async def load_efficiency(dut):
    """Bus efficiency of a 56x56 tile of 16-channel pixels, no stalls."""
    bench = make_bench(dut, 2, 0.0)
    await bench.start()
    report = {}
    for name, log2 in (("56x56x16", 4), ("56x56x4", 2)):
        cmd = load_cmd(elem_log2=log2, y_size=56, x_size=56, x_stride=56, dram_addr=0x1000)
        t0 = bench.rd_status.cycle
        chunks = await run_load(bench, cmd)
        cycles = bench.rd_status.items[-1][0] - t0
        check_load(bench, cmd, chunks)
        nbytes = 56 * 56 << log2
        report[name] = {
            "bytes": nbytes,
            "cycles": cycles,
            "bus_bytes": W,
            "efficiency": nbytes / (cycles * W),
        }
        dut._log.info(
            "%s: %d bytes in %d cycles = %.3f of the bus",
            name,
            nbytes,
            cycles,
            nbytes / (cycles * W),
        )
    if os.environ.get("DMA_REPORT"):
        with open(os.environ["DMA_REPORT"], "w") as f:
            json.dump(report, f)


@cocotb.test()
async def load_refusals(dut):
    """Out-of-window and misaligned loads: error, no bus request, no chunk."""
    bench = make_bench(dut, 3, 0.2)
    await bench.start()
    base = load_cmd(elem_log2=4, y_size=4, x_size=8, x_stride=8, pad_top=1, pad_left=1, pad_value=7)
    cases = [
        (dict(base, dram_addr=WINDOW_SIZE - 4 * 8 * 16 + 16), ErrorCode.DMA_OUT_OF_WINDOW),
        (dict(base, dram_addr=0xFFFF_FFF0), ErrorCode.DMA_OUT_OF_WINDOW),
        (dict(base, x_stride=(1 << 20) - 1, dram_addr=0), ErrorCode.DMA_OUT_OF_WINDOW),
        (dict(base, dram_addr=8), ErrorCode.MALFORMED_INSTRUCTION),
        (dict(base, elem_log2=15, dram_addr=0), ErrorCode.MALFORMED_INSTRUCTION),
    ]
    for cmd, code in cases:
        assert await run_load(bench, cmd, code) == []
    assert bench.bus_active == 0
    # The last byte of the window is still in it.
    cmd = dict(base, dram_addr=WINDOW_SIZE - 4 * 8 * 16)
    check_load(bench, cmd, await run_load(bench, cmd))


@cocotb.test()
async def load_axi_error(dut):
    """An RRESP error is reported after the transfer drains."""
    bench = make_bench(dut, 4, 0.1)
    await bench.start()
    read = bench.ram.read_if._read

    async def poisoned(address, length):
        if POISON <= address < POISON + 4096:
            raise ValueError("poisoned page")
        return await read(address, length)

    bench.ram.read_if._read = poisoned
    # Rows at 0x7E800, 0x7EE40 and 0x7F480: only the last one reads the poisoned page.
    cmd = load_cmd(
        elem_log2=4,
        y_size=3,
        x_size=20,
        x_stride=100,
        dram_addr=POISON - WINDOW_BASE - 2048,
        pad_bottom=1,
        pad_right=1,
        sram_addr=5,
    )
    chunks = await run_load(bench, cmd, ErrorCode.AXI_ERROR)
    assert len(chunks) == 4 * 21
    cmd["dram_addr"] = 0
    check_load(bench, cmd, await run_load(bench, cmd))


def random_store(rng):
    cmd = dict(
        y_size=rng.randint(1, 6),
        x_size=rng.randint(1, 40),
        lane=rng.randrange(OUT_WORD // STORE_ELEM),
        sram_addr=rng.randint(0, 0xFFFF - 300),
    )
    cmd["x_stride"] = cmd["x_size"] + rng.choice([0, 0, 1, 3, 100])
    return _place(rng, cmd, STORE_ELEM)


@cocotb.test()
async def store_random_2d(dut):
    """Random strided stores of random lanes, under random stalls everywhere."""
    bench = make_bench(dut, 5, 0.3)
    await bench.start()
    for _ in range(VECTORS):
        cmd = random_store(bench.rng)
        want = store_model(bench.memory(), bench.out_words, cmd)
        await run_store(bench, cmd)
        got = bench.memory()
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"{bad.size} bytes differ, first at {bad[:4]}: {cmd}"
        n = cmd["y_size"] * cmd["x_size"]
        asked = [_unpack(ElementRequestLayout(), r) for _, r in bench.wr_req.items[-n:]]
        assert asked == [dict(sram_addr=cmd["sram_addr"] + i, lane=cmd["lane"]) for i in range(n)]


@cocotb.test()
async def store_refusals_and_errors(dut):
    """Out-of-window stores write nothing; a BRESP error is reported."""
    bench = make_bench(dut, 6, 0.2)
    await bench.start()
    before = bench.memory()
    base = dict(y_size=3, x_size=5, x_stride=9, lane=0, sram_addr=0)
    last_ok = WINDOW_SIZE - (2 * 9 + 5) * STORE_ELEM
    for cmd, code in [
        (dict(base, dram_addr=last_ok + STORE_ELEM), ErrorCode.DMA_OUT_OF_WINDOW),
        (dict(base, dram_addr=0xFFFF_FFFC), ErrorCode.DMA_OUT_OF_WINDOW),
        (dict(base, dram_addr=1), ErrorCode.MALFORMED_INSTRUCTION),
        (dict(base, dram_addr=0, lane=OUT_WORD // STORE_ELEM), ErrorCode.MALFORMED_INSTRUCTION),
    ]:
        await run_store(bench, cmd, code)
    assert bench.bus_active == 0 and not bench.wr_req.items
    assert np.array_equal(bench.memory(), before)
    cmd = dict(base, dram_addr=last_ok)
    want = store_model(before, bench.out_words, cmd)
    await run_store(bench, cmd)
    assert np.array_equal(bench.memory(), want)
    write = bench.ram.write_if._write

    async def poisoned(address, data):
        if POISON <= address < POISON + 4096:
            raise ValueError("poisoned page")
        return await write(address, data)

    bench.ram.write_if._write = poisoned
    await run_store(bench, dict(base, dram_addr=POISON - WINDOW_BASE - 16), ErrorCode.AXI_ERROR)
