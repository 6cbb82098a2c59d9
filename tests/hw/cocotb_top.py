"""cocotb tests of the whole Accelerator (run by tests/hw/test_top.py).

cocotbext-axi's AxiRam holds the DDR image (program at INSN_BASE, the DMA window
with activations, weights, PARAM and LUT words), AxiLiteMaster drives the register
file. Every run's whole memory is compared with the instruction simulator's
(``bamboo.sim.isa.Machine``) and its output codes with the runtime kernels.
Environment: ``TOP_CONFIG`` (AcceleratorConfig JSON), ``TOP_SEED``, ``TOP_CASES``
(random layers of ``random_layers``), ``TOP_REPORT`` (JSON file for counters, layer
counts per kind and simulation speed), ``TOP_WATCHDOG``, ``TOP_COMPILED``.
"""

import collections
import json
import os
import pickle
import random
import time

import cocotb
import numpy as np
from bamboo.arch import isa
from bamboo.arch import registers as regs
from bamboo.arch.config import AcceleratorConfig
from bamboo.arch.isa import Opcode
from bamboo.arch.registers import ErrorCode, decode, encode
from bamboo.sim.isa import IsaSimError, Machine
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp
from top_programs import (
    INSN_BASE,
    MEM_SIZE,
    WINDOW_BASE,
    WINDOW_SIZE,
    from_blocked,
    make_layer,
    output_codes,
    window_image,
)
from top_vec_programs import ALL_KINDS, random_layer

CFG = AcceleratorConfig.from_dict(json.loads(os.environ["TOP_CONFIG"]))
SEED = int(os.environ.get("TOP_SEED", "1"))
CASES = int(os.environ.get("TOP_CASES", "20"))
WATCHDOG = int(os.environ.get("TOP_WATCHDOG", "4096"))
REPORT = os.environ.get("TOP_REPORT")
COMPILED = os.environ.get("TOP_COMPILED")
PERIOD_NS = 10
OFF = {r.name: r.offset for r in regs.REGISTERS}
#: random_layers stops after this many failing layers (each is reported).
MAX_FAILURES = 5
_report = {}


def _save(key, value):
    _report[key] = value
    if REPORT:
        old = json.loads(open(REPORT).read()) if os.path.exists(REPORT) else {}
        old.update(_report)
        with open(REPORT, "w") as f:
            json.dump(old, f, indent=1)


def _pauses(rng, p):
    while True:
        yield rng.random() < p


class Bench:
    def __init__(self, dut, seed):
        self.dut = dut
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=MEM_SIZE)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
        self.cycles = 0
        self.wall = 0.0
        self.cpu = 0.0  # this process's CPU time: the simulator runs inside it
        self.poisoned = []  # (lo, hi, "r" or "w"): bus ranges that answer SLVERR

    def poison(self, lo, hi, direction):
        """Answer SLVERR to reads (``"r"``) or writes (``"w"``) touching bus bytes [lo, hi).

        AxiRam answers SLVERR for a beat whose memory access raises; a refused write
        leaves memory alone. ``poison(0, 0, ...)`` entries do nothing; ``unpoison`` clears.
        """
        if not self.poisoned:
            read, write = self.ram.read_if._read, self.ram.write_if._write

            def hit(address, length, d):
                return any(
                    k == d and address < b and a < address + length for a, b, k in self.poisoned
                )

            async def poisoned_read(address, length):
                if hit(address, length, "r"):
                    raise ValueError("poisoned read")
                return await read(address, length)

            async def poisoned_write(address, data):
                if hit(address, len(data), "w"):
                    raise ValueError("poisoned write")
                return await write(address, data)

            self.ram.read_if._read, self.ram.write_if._write = poisoned_read, poisoned_write
        self.poisoned.append((lo, hi, direction))

    def unpoison(self):
        self.poisoned[:] = []

    async def reset(self):
        Clock(self.dut.clk, PERIOD_NS, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.ram.write(0, self.np_rng.integers(0, 256, MEM_SIZE, dtype=np.uint8).tobytes())

    def stall(self, p):
        ram = self.ram
        for ch in (
            ram.read_if.ar_channel,
            ram.read_if.r_channel,
            ram.write_if.aw_channel,
            ram.write_if.w_channel,
            ram.write_if.b_channel,
        ):
            ch.set_pause_generator(_pauses(self.rng, p) if p else None)
            if not p:
                ch.pause = False  # a removed generator leaves its last value behind

    async def rd(self, name):
        resp = await self.axil.read(OFF[name], 4)
        assert resp.resp == AxiResp.OKAY
        return int.from_bytes(resp.data, "little")

    async def wr(self, name, value):
        resp = await self.axil.write(OFF[name], value.to_bytes(4, "little"))
        assert resp.resp == AxiResp.OKAY

    def memory(self):
        return np.frombuffer(self.ram.read(0, MEM_SIZE), np.uint8).copy()

    def load(self, words, window):
        self.ram.write(INSN_BASE, isa.encode_bytes(words))
        self.ram.write(WINDOW_BASE, window.tobytes())
        return self.memory()

    async def start(self, count, window_size=WINDOW_SIZE, insn_base=INSN_BASE, irq_enable=1):
        for name, value in (
            ("INSN_BASE_LO", insn_base),
            ("INSN_BASE_HI", 0),
            ("INSN_COUNT", count),
            ("WINDOW_BASE_LO", WINDOW_BASE),
            ("WINDOW_BASE_HI", 0),
            ("WINDOW_SIZE_LO", window_size),
            ("WINDOW_SIZE_HI", 0),
        ):
            await self.wr(name, value)
        await self.wr("CTRL", encode("CTRL", start=1, irq_enable=irq_enable))

    async def wait_irq(self, limit_cycles=400_000):
        t0, p0, c0 = time.monotonic(), time.process_time(), get_sim_time("ns")
        if not int(self.dut.irq.value):
            await First(RisingEdge(self.dut.irq), Timer(limit_cycles * PERIOD_NS, "ns"))
        self.wall += time.monotonic() - t0
        self.cpu += time.process_time() - p0
        self.cycles += (get_sim_time("ns") - c0) // PERIOD_NS
        assert int(self.dut.irq.value), f"no interrupt within {limit_cycles} cycles"
        status = decode("STATUS", await self.rd("STATUS"))
        irq = decode("IRQ_STATUS", await self.rd("IRQ_STATUS"))
        err_insn = await self.rd("ERR_INSN")
        await self.wr("IRQ_STATUS", 3)
        return status, irq, err_insn

    async def wait_idle(self, limit=100_000):
        for _ in range(limit // 20):
            if not decode("STATUS", await self.rd("STATUS"))["busy"]:
                return
            await ClockCycles(self.dut.clk, 20)
        raise AssertionError("engine still busy")

    async def soft_reset(self):
        await self.wr("CTRL", encode("CTRL", soft_reset=1, irq_enable=1))
        await self.wait_idle()


def expect(layer_words, window):
    """The instruction simulator's window after the program, and its trap (or None)."""
    machine = Machine(CFG, window.copy())
    try:
        machine.run(layer_words)
        return machine.dram, None
    except IsaSimError as exc:
        return machine.dram, exc


def full_image(before, window):
    img = before.copy()
    img[WINDOW_BASE : WINDOW_BASE + window.size] = window
    return img


async def run_layer(bench, layer, limit_cycles=400_000):
    """Run a layer, check memory against the ISA simulator and output against the runtime."""
    window = window_image(layer, bench.np_rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8))
    before = bench.load(layer.words, window)
    want, trap = expect(layer.words, window)
    assert trap is None, trap
    await bench.start(len(layer.words))
    status, irq, _ = await bench.wait_irq(limit_cycles)
    assert status["done"] and not status["error"] and not status["busy"], status
    assert irq == {"done": 1, "error": 0}, irq
    mem = bench.memory()
    got = mem[WINDOW_BASE : WINDOW_BASE + WINDOW_SIZE]
    out = output_codes(layer, got, CFG.rows)
    ref = layer.reference()
    bad = np.argwhere(out != ref)
    assert bad.size == 0, (
        f"{layer.kind} output differs from the runtime kernels at "
        f"{len(bad)} codes, first (y, x, c) {bad[0].tolist()}: "
        f"{out[tuple(bad[0])]} != {ref[tuple(bad[0])]}"
    )
    assert np.array_equal(mem, full_image(before, want)), "memory differs from bamboo.sim.isa"


@cocotb.test()
async def random_layers(dut):
    """CASES random layers taking every kind in turn: dense KxK (strides, dilation,
    padding), 3x3, pointwise, depthwise, fully connected, add, max / average / global
    average pool, with random zero points, scales, clamps and activations (LeakyReLU,
    LUT). Each is bit-exact with the runtime kernels and its memory with the instruction
    simulator. Layer ``i`` comes from ``np.random.default_rng([TOP_SEED, i])``, so a
    reported failure reproduces alone; a failing layer is logged with its configuration
    and the run goes on after a soft reset (up to MAX_FAILURES), then the test fails
    listing them. Reported: layers per kind, counters, simulated cycles per second."""
    bench = Bench(dut, SEED)
    await bench.reset()
    counts, failures = collections.Counter(), []
    for i in range(CASES):
        kind = ALL_KINDS[i % len(ALL_KINDS)]
        layer = random_layer(np.random.default_rng([SEED, i]), CFG, kind)
        dut._log.info("case %d: %s", i, layer.describe())
        try:
            await run_layer(bench, layer, limit_cycles=100_000)
        except AssertionError as exc:
            failures.append(
                f"case {i} (random_layer(np.random.default_rng([{SEED}, {i}]), "
                f"CFG, {kind!r})): {layer.describe()}: {exc}"
            )
            dut._log.error("FAILED %s", failures[-1])
            if len(failures) == MAX_FAILURES:
                break
            await bench.soft_reset()
            continue
        counts[kind] += 1
    counters = {"CYCLES": await bench.rd("CYCLES_LO")}
    for u in regs.UNITS:
        for w in ("BUSY", "STALL"):
            counters[f"{u.upper()}_{w}"] = await bench.rd(f"{u.upper()}_{w}")
    _save("counters_last_layer", dict(counters, layer=layer.describe()))
    _save(
        "random_layers",
        {
            "cases": CASES,
            "passed": sum(counts.values()),
            "kinds": dict(counts),
            "failures": failures,
            "sim_cycles": bench.cycles,
            "wall_seconds": round(bench.wall, 3),
            "cycles_per_second": round(bench.cycles / max(bench.wall, 1e-9)),
            "cpu_seconds": round(bench.cpu, 3),
            "cycles_per_cpu_second": round(bench.cycles / max(bench.cpu, 1e-9)),
        },
    )
    assert not failures, f"{len(failures)} failing layers:\n" + "\n".join(failures)


@cocotb.test()
async def back_pressure(dut):
    """Random AXI ready/valid stalls on every RAM channel: same results, layers of every kind."""
    bench = Bench(dut, SEED + 1)
    await bench.reset()
    for i in range(max(3, CASES // 20)):
        bench.stall([0.3, 0.6, 0.85][i % 3])
        kind = ALL_KINDS[bench.rng.randrange(len(ALL_KINDS))]
        await run_layer(bench, random_layer(bench.np_rng, CFG, kind))
    bench.stall(0)


async def run_fault(bench, words, window, code, index, window_size=WINDOW_SIZE):
    before = bench.load(words, window)
    want, trap = expect(words, window)
    assert trap is not None and trap.code == code and trap.index == index, trap
    await bench.start(len(words), window_size)
    status, irq, err_insn = await bench.wait_irq()
    assert status["error"] and not status["done"] and status["error_code"] == code, status
    assert irq == {"done": 0, "error": 1}, irq
    assert err_insn == index, (err_insn, index)
    assert np.array_equal(bench.memory(), full_image(before, want)), "memory changed"


@cocotb.test()
async def faults(dut):
    """Illegal opcode, DMA outside the window, token deadlock: error code, ERR_INSN, irq,
    memory as the ISA simulator leaves it; then a clean run after soft reset."""
    bench = Bench(dut, SEED + 2)
    await bench.reset()
    fill = lambda: bench.np_rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8)  # noqa: E731
    for trial in range(3):
        layer = make_layer(bench.np_rng, CFG, reuse=False)
        words = list(layer.words)
        ops = [w & 0xF for w in words]
        window = window_image(layer, fill())
        # Illegal opcode just before the first STORE (and so before any memory write).
        at = ops.index(Opcode.STORE)
        bad = words[:at] + [[0, 7, 15][trial] | (1 << 100)] + words[at:]
        await run_fault(bench, bad, window, ErrorCode.ILLEGAL_OPCODE, at)
        # A LOAD (of INP) whose extent leaves the window.
        i = next(
            k
            for k, w in enumerate(words)
            if w & 0xF == Opcode.LOAD and isa.decode(w)["buffer"] == isa.Buffer.INP
        )
        f = isa.decode(words[i])
        f["dram_addr"] = WINDOW_SIZE - 4 * trial - CFG.rows
        f["y_size"] += 1
        oob = list(words)
        oob[i] = isa.encode(f.pop("opcode"), **f)
        await run_fault(bench, oob, window, ErrorCode.DMA_OUT_OF_WINDOW, i)
        # The last STORE leaves the window (earlier stores have written: as the simulator).
        i = len(ops) - 1 - ops[::-1].index(Opcode.STORE)
        f = isa.decode(words[i])
        f["dram_addr"] = WINDOW_SIZE - CFG.rows * (f["x_size"] * f["y_size"] - 1 + trial)
        f["y_size"] += 1
        oob = list(words)
        oob[i] = isa.encode(f.pop("opcode"), **f)
        await run_fault(bench, oob, window, ErrorCode.DMA_OUT_OF_WINDOW, i)
        # Malformed: a CONV reading INP past its depth.
        i = ops.index(Opcode.CONV)
        f = isa.decode(words[i])
        f["inp_addr"] = CFG.input_buffer_depth - 1
        bad = list(words)
        bad[i] = isa.encode(f.pop("opcode"), **f)
        await run_fault(bench, bad, window, ErrorCode.MALFORMED_INSTRUCTION, i)
        # A clean run after the errors (start is accepted once the engine is idle).
        await run_layer(bench, make_layer(bench.np_rng, CFG))
    # Deadlock: a CONV pops a token no LOAD pushes -> TIMEOUT after the watchdog.
    layer = make_layer(bench.np_rng, CFG, reuse=False)
    words = [w for w in layer.words if (w & 0xF) != Opcode.LOAD or not (w >> 7) & 1]
    i = [w & 0xF for w in words].index(Opcode.CONV)
    window = window_image(layer, fill())
    before = bench.load(words, window)
    want, trap = expect(words, window)
    assert trap.code == ErrorCode.TIMEOUT and trap.index == i, trap
    await bench.start(len(words))
    status, irq, err_insn = await bench.wait_irq()
    assert status["error_code"] == ErrorCode.TIMEOUT and err_insn == i, (status, err_insn)
    assert np.array_equal(bench.memory(), full_image(before, want))
    await bench.soft_reset()
    assert await bench.rd("STATUS") == 0 and await bench.rd("IRQ_STATUS") == 0
    await run_layer(bench, make_layer(bench.np_rng, CFG))


class BusWatch:
    """Samples ``m_axi`` at every clock edge: the first error response (R or B), then every
    W beat that carries strobes after it."""

    def __init__(self, dut):
        self.dut, self.cycle, self.error_at, self.late = dut, 0, None, []
        self.task = cocotb.start_soon(self._run())

    async def _run(self):
        def sig(name):
            return int(getattr(self.dut, f"m_axi__{name}").value)

        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            if self.error_at is None:
                if (sig("rvalid") and sig("rready") and sig("rresp") & 2) or (
                    sig("bvalid") and sig("bready") and sig("bresp") & 2
                ):
                    self.error_at = self.cycle
            elif sig("wvalid") and sig("wready") and sig("wstrb"):
                self.late.append(self.cycle)

    def stop(self):
        self.task.cancel()


def extent(word):
    """Bus bytes ``(lo, hi)`` that a LOAD reads or a STORE writes."""
    f = isa.decode(word)
    elem = CFG.rows
    if f["opcode"] == Opcode.LOAD:
        elem = {
            isa.Buffer.INP: CFG.rows,
            isa.Buffer.WGT: CFG.rows * CFG.cols,
            isa.Buffer.PARAM: CFG.cols * 8,
            isa.Buffer.LUT: 256,
        }[f["buffer"]]
    lo = WINDOW_BASE + f["dram_addr"]
    return lo, lo + ((f["y_size"] - 1) * f["x_stride"] + f["x_size"]) * elem


async def run_axi_error(bench, words, window, index, poison, in_order=False):
    """Run ``words`` with the bus ranges ``poison`` ((lo, hi, "r" or "w"), ...) answering
    SLVERR; check AXI_ERROR at ``index``, the error interrupt, no write strobes after the
    error response (unless ``in_order``: a fetch error lets the instructions before the
    failing one finish), and that every byte is as before or as the instruction simulator
    leaves it (the poisoned ranges as before). Returns memory before and after."""
    before = bench.load(words, window)
    want, trap = expect(words, window)
    assert trap is None, trap
    for lo, hi, direction in poison:
        bench.poison(lo, hi, direction)
    watch = BusWatch(bench.dut)
    await bench.start(len(words))
    status, irq, err_insn = await bench.wait_irq()
    watch.stop()
    bench.unpoison()
    assert status["error"] and not status["done"] and status["error_code"] == ErrorCode.AXI_ERROR, (
        status
    )
    assert irq == {"done": 0, "error": 1}, irq
    assert err_insn == index, (err_insn, index)
    assert watch.error_at is not None, "no error response seen"
    assert in_order or not watch.late, (
        f"write strobes at cycles {watch.late} after the error at {watch.error_at}"
    )
    mem = bench.memory()
    assert np.all((mem == before) | (mem == full_image(before, want))), (
        "bytes neither as before nor as the instruction simulator leaves them"
    )
    for lo, hi, _ in poison:
        assert np.array_equal(mem[lo:hi], before[lo:hi]), "a poisoned range changed"
    return before, mem


@cocotb.test()
async def axi_errors(dut):
    """SLVERR on an input load, on a weight load while earlier stores run, on a store's
    writes and on an instruction fetch: AXI_ERROR with the failing instruction's index and
    the error interrupt; no write beat carries strobes after the error response; memory
    holds only what the instruction simulator writes (nothing before the first CONV for
    the input load; for the store, neither its last row nor the later stores; exactly
    the instructions before it for the fetch); then a clean run."""
    bench = Bench(dut, SEED + 5)
    await bench.reset()
    rng = bench.np_rng

    def layer_with(kind, reuse, rows=1):
        """A layer with at least two output blocks and ``rows`` output rows."""
        while True:
            layer = make_layer(rng, CFG, kind, reuse=reuse)
            if (
                sum((w & 0xF) == Opcode.CONV for w in layer.words) >= 2
                and layer.out_shape[0] >= rows
            ):
                return layer, [isa.decode(w) for w in layer.words]

    def last(fields, opcode, buffer=None):
        return max(
            k
            for k, f in enumerate(fields)
            if f["opcode"] == opcode and (buffer is None or f["buffer"] == buffer)
        )

    def fill(layer):
        return window_image(layer, rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8))

    for trial in range(2):
        # The last input block's last bytes: no CONV has started, nothing is stored.
        layer, fields = layer_with(("conv3x3", "pointwise")[trial], False)
        i = last(fields, Opcode.LOAD, isa.Buffer.INP)
        hi = extent(layer.words[i])[1]
        before, mem = await run_axi_error(bench, layer.words, fill(layer), i, [(hi - 8, hi, "r")])
        assert np.array_equal(mem, before), "memory changed"
        # The last block's weights: with reuse they wait for the previous block's compute,
        # so its stores are running.
        layer, fields = layer_with("conv3x3", True)
        i = last(fields, Opcode.LOAD, isa.Buffer.WGT)
        await run_axi_error(bench, layer.words, fill(layer), i, [(*extent(layer.words[i]), "r")])
        # The first store, moved to a free area with a row pitch of a pixel more than its
        # rows (so a burst per row), fails on its first row: its last row and the later
        # stores write nothing.
        layer, fields = layer_with("pointwise", bool(trial), rows=4)
        stores = [k for k, f in enumerate(fields) if f["opcode"] == Opcode.STORE]
        f = dict(fields[stores[0]], dram_addr=WINDOW_SIZE // 2)
        f["x_stride"] = f["x_size"] + 1
        words = list(layer.words)
        words[stores[0]] = isa.encode(f.pop("opcode"), **f)
        lo, hi = extent(words[stores[0]])
        row = f["x_stride"] * CFG.rows
        before, mem = await run_axi_error(
            bench, words, fill(layer), stores[0], [(lo, lo + row, "w")]
        )
        assert np.array_equal(mem[hi - row : hi], before[hi - row : hi]), "the last row was written"
        for k in stores[1:]:
            lo, hi = extent(words[k])
            assert np.array_equal(mem[lo:hi], before[lo:hi]), f"store {k} wrote"
        # The fetch of the last store: the instructions before it run to completion.
        i = stores[-1]
        window = fill(layer)
        before, mem = await run_axi_error(
            bench,
            layer.words,
            window,
            i,
            [(INSN_BASE + 32 * i, INSN_BASE + 32 * i + 32, "r")],
            in_order=True,
        )
        assert np.array_equal(mem, full_image(before, expect(layer.words[:i], window)[0])), (
            "memory differs from the instruction simulator's after the instructions before"
        )
    await run_layer(bench, make_layer(rng, CFG))


@cocotb.test()
async def finish_irq(dut):
    """FINISH.irq gates the done interrupt. FINISH with irq = 0, or a run that ends after
    INSN_COUNT instructions without FINISH: STATUS.done only, the line stays low with
    CTRL.irq_enable set. FINISH with irq = 1: IRQ_STATUS.done, the line high only while
    CTRL.irq_enable is set. Errors interrupt whatever FINISH says. Results as always."""
    bench = Bench(dut, SEED + 6)
    await bench.reset()
    rng = bench.np_rng
    quiet = isa.encode(Opcode.FINISH, irq=0)
    for _ in range(2):
        layer = make_layer(rng, CFG)
        assert isa.decode(layer.words[-1]) == isa.decode(isa.encode(Opcode.FINISH, irq=1))
        for words, enable, irq_done in (
            (layer.words[:-1] + [quiet], 1, 0),
            (layer.words[:-1], 1, 0),
            (layer.words, 0, 1),
        ):
            window = window_image(layer, rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8))
            before = bench.load(words, window)
            want, trap = expect(words, window)
            assert trap is None, trap
            await bench.start(len(words), irq_enable=enable)
            await ClockCycles(dut.clk, 20)
            await bench.wait_idle()
            status = decode("STATUS", await bench.rd("STATUS"))
            assert status["done"] and not status["error"], status
            assert decode("IRQ_STATUS", await bench.rd("IRQ_STATUS")) == {
                "done": irq_done,
                "error": 0,
            }
            assert not int(dut.irq.value)
            if irq_done:
                await bench.wr("CTRL", encode("CTRL", irq_enable=1))
                assert int(dut.irq.value)
                await bench.wr("IRQ_STATUS", 3)
                assert not int(dut.irq.value)
            mem = bench.memory()
            assert np.array_equal(
                output_codes(layer, mem[WINDOW_BASE:], CFG.rows), layer.reference()
            )
            assert np.array_equal(mem, full_image(before, want))
    # An illegal opcode before a FINISH with irq = 0 still raises the error interrupt.
    layer = make_layer(rng, CFG, reuse=False)
    words = layer.words[:-1] + [quiet]
    at = [w & 0xF for w in words].index(Opcode.STORE)
    window = window_image(layer, rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8))
    await run_fault(bench, words[:at] + [7] + words[at:], window, ErrorCode.ILLEGAL_OPCODE, at)


@cocotb.test()
async def soft_reset_mid_layer(dut):
    """Soft reset at random points of a layer (under bus stalls), then a clean rerun."""
    bench = Bench(dut, SEED + 3)
    await bench.reset()
    for trial in range(4):
        bench.stall(0.4 if trial % 2 else 0)
        layer = make_layer(bench.np_rng, CFG, kind=("conv3x3", "pointwise")[trial % 2])
        window = window_image(layer, bench.np_rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8))
        bench.load(layer.words, window)
        await bench.start(len(layer.words))
        await ClockCycles(dut.clk, bench.rng.randint(20, 600))
        await bench.soft_reset()
        assert await bench.rd("STATUS") == 0 and await bench.rd("IRQ_STATUS") == 0
        assert not int(dut.irq.value)
        # Nothing moves on the bus once idle.
        snap = bench.memory()
        await ClockCycles(dut.clk, 200)
        assert np.array_equal(snap, bench.memory())
        await run_layer(bench, layer)
    bench.stall(0)


@cocotb.test()
async def start_while_busy(dut):
    """A second start during a run is ignored: one run, one interrupt, counters not cleared."""
    bench = Bench(dut, SEED + 4)
    await bench.reset()
    layer = make_layer(bench.np_rng, CFG, kind="conv3x3")
    window = window_image(layer, bench.np_rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8))
    before = bench.load(layer.words, window)
    want, _ = expect(layer.words, window)
    t0 = get_sim_time("ns")
    await bench.start(len(layer.words))
    await ClockCycles(dut.clk, 100)
    assert decode("STATUS", await bench.rd("STATUS"))["busy"]
    await bench.wr("CTRL", encode("CTRL", start=1, irq_enable=1))
    status, irq, _ = await bench.wait_irq()
    elapsed = (get_sim_time("ns") - t0) // PERIOD_NS
    assert status["done"] and not status["error"]
    cycles = await bench.rd("CYCLES_LO")
    assert cycles > 100 and cycles <= elapsed, (cycles, elapsed)
    await ClockCycles(dut.clk, 50)
    assert not decode("STATUS", await bench.rd("STATUS"))["busy"]
    assert np.array_equal(bench.memory(), full_image(before, want))


@cocotb.test(skip=not COMPILED)
async def compiled_graphs(dut):
    """Conv graphs through the compiler back end: the artifact's DDR image, program and
    segments run as the runtime would; window equal to the instruction simulator's,
    outputs equal to the reference executor's (runtime kernels)."""
    with open(COMPILED, "rb") as f:
        cases = pickle.load(f)
    bench = Bench(dut, SEED + 5)
    await bench.reset()
    done = []
    for case in cases:
        window = case["window"]
        bench.ram.write(WINDOW_BASE, window.tobytes())
        before = bench.memory()
        for start, count in case["steps"]:
            await bench.start(
                count, window_size=window.size, insn_base=WINDOW_BASE + case["program"] + 32 * start
            )
            status, irq, err = await bench.wait_irq()
            assert status["done"] and not status["error"], (case["args"], status, err)
        mem = bench.memory()
        got = mem[WINDOW_BASE : WINDOW_BASE + window.size]
        for off, h, w, c, want in case["outputs"]:
            assert np.array_equal(from_blocked(got[off:], h, w, c, CFG.rows), want), case["args"]
        assert np.array_equal(mem, full_image(before, case["expected"])), case["args"]
        done.append(str(case["args"]))
    _save("compiled_graphs", done)
