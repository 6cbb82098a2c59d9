"""cocotb tests of the whole Accelerator (run by tests/hw/test_top.py).

cocotbext-axi's AxiRam holds the DDR image (program at INSN_BASE, the DMA window
with activations, weights, PARAM and LUT words), AxiLiteMaster drives the register
file. Every run's whole memory is compared with the instruction simulator's
(``bamboo.sim.isa.Machine``) and its output codes with the runtime kernels.
Environment: ``TOP_CONFIG`` (AcceleratorConfig JSON), ``TOP_SEED``, ``TOP_CASES``,
``TOP_REPORT`` (JSON file for counters and simulation speed), ``TOP_WATCHDOG``.
"""

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
    reference_codes,
    window_image,
)

CFG = AcceleratorConfig.from_dict(json.loads(os.environ["TOP_CONFIG"]))
SEED = int(os.environ.get("TOP_SEED", "1"))
CASES = int(os.environ.get("TOP_CASES", "20"))
WATCHDOG = int(os.environ.get("TOP_WATCHDOG", "4096"))
REPORT = os.environ.get("TOP_REPORT")
COMPILED = os.environ.get("TOP_COMPILED")
PERIOD_NS = 10
OFF = {r.name: r.offset for r in regs.REGISTERS}
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

    async def reset(self):
        Clock(self.dut.clk, PERIOD_NS, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)
        self.ram.write(0, self.np_rng.integers(0, 256, MEM_SIZE, dtype=np.uint8).tobytes())

    def stall(self, p):
        ram = self.ram
        for ch in (ram.read_if.ar_channel, ram.read_if.r_channel, ram.write_if.aw_channel,
                   ram.write_if.w_channel, ram.write_if.b_channel):
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

    async def start(self, count, window_size=WINDOW_SIZE, insn_base=INSN_BASE):
        for name, value in (("INSN_BASE_LO", insn_base), ("INSN_BASE_HI", 0),
                            ("INSN_COUNT", count), ("WINDOW_BASE_LO", WINDOW_BASE),
                            ("WINDOW_BASE_HI", 0), ("WINDOW_SIZE_LO", window_size),
                            ("WINDOW_SIZE_HI", 0)):
            await self.wr(name, value)
        await self.wr("CTRL", encode("CTRL", start=1, irq_enable=1))

    async def wait_irq(self, limit_cycles=400_000):
        t0, c0 = time.monotonic(), get_sim_time("ns")
        if not int(self.dut.irq.value):
            await First(RisingEdge(self.dut.irq), Timer(limit_cycles * PERIOD_NS, "ns"))
        self.wall += time.monotonic() - t0
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
    img[WINDOW_BASE:WINDOW_BASE + window.size] = window
    return img


async def run_layer(bench, layer):
    """Run a layer, check memory against the ISA simulator and output against the runtime."""
    window = window_image(layer, bench.np_rng.integers(0, 256, WINDOW_SIZE, dtype=np.uint8))
    before = bench.load(layer.words, window)
    want, trap = expect(layer.words, window)
    assert trap is None, trap
    await bench.start(len(layer.words))
    status, irq, _ = await bench.wait_irq()
    assert status["done"] and not status["error"] and not status["busy"], status
    assert irq == {"done": 1, "error": 0}, irq
    mem = bench.memory()
    got = mem[WINDOW_BASE:WINDOW_BASE + WINDOW_SIZE]
    assert np.array_equal(output_codes(layer, got, CFG.rows), reference_codes(layer)), \
        f"{layer.kind} output differs from the runtime kernels"
    assert np.array_equal(mem, full_image(before, want)), "memory differs from bamboo.sim.isa"


def describe(layer):
    oh, ow, co = layer.out_shape
    return (f"{layer.kind} {layer.x.shape}->{(oh, ow, co)} s{layer.stride[0]} "
            f"d{layer.dilation[0]} pads{layer.pads} act{layer.act} reuse{int(layer.reuse)}")


@cocotb.test()
async def random_layers(dut):
    """CASES random layers (conv 3x3, pointwise, depthwise), bit-exact; counters reported."""
    bench = Bench(dut, SEED)
    await bench.reset()
    kinds = ("conv3x3", "pointwise", "depthwise")
    for i in range(CASES):
        layer = make_layer(bench.np_rng, CFG, kinds[i % 3])
        dut._log.info("case %d: %s", i, describe(layer))
        await run_layer(bench, layer)
    counters = {"CYCLES": await bench.rd("CYCLES_LO")}
    for u in regs.UNITS:
        for w in ("BUSY", "STALL"):
            counters[f"{u.upper()}_{w}"] = await bench.rd(f"{u.upper()}_{w}")
    _save("counters_last_layer", dict(counters, layer=describe(layer)))
    _save("random_layers", {"cases": CASES, "sim_cycles": bench.cycles,
                            "wall_seconds": round(bench.wall, 3),
                            "cycles_per_second": round(bench.cycles / max(bench.wall, 1e-9))})


@cocotb.test()
async def back_pressure(dut):
    """Random AXI ready/valid stalls on every RAM channel: same results."""
    bench = Bench(dut, SEED + 1)
    await bench.reset()
    for i in range(max(3, CASES // 4)):
        bench.stall([0.3, 0.6, 0.85][i % 3])
        await run_layer(bench, make_layer(bench.np_rng, CFG))
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
        i = next(k for k, w in enumerate(words)
                 if w & 0xF == Opcode.LOAD and isa.decode(w)["buffer"] == isa.Buffer.INP)
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
            await bench.start(count, window_size=window.size,
                              insn_base=WINDOW_BASE + case["program"] + 32 * start)
            status, irq, err = await bench.wait_irq()
            assert status["done"] and not status["error"], (case["args"], status, err)
        mem = bench.memory()
        got = mem[WINDOW_BASE:WINDOW_BASE + window.size]
        for off, h, w, c, want in case["outputs"]:
            assert np.array_equal(from_blocked(got[off:], h, w, c, CFG.rows), want), case["args"]
        assert np.array_equal(mem, full_image(before, case["expected"])), case["args"]
        done.append(str(case["args"]))
    _save("compiled_graphs", done)
