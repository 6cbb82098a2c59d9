"""hw/store.py's StoreUnit alone, against the instruction simulator's STORE.

Seeded random STOREs (every lane of the OUT word, row strides, single elements, the
buffer's last word, the largest row stride) read a random OUT buffer through the unit's
read port (modelled here: synchronous, data held while not enabled) and write an AXI
memory of random stalls (axi_memory.py). DRAM after each instruction must equal
``sim.isa.Machine``'s, and the verdict (done, or the error code) the simulator's trap.
Results only, no cycle counts: the unit's latency is free to change.
"""

import numpy as np
import pytest
from axi_memory import AxiMemory, execute
from bamboo.arch import PRESETS, isa
from bamboo.arch.registers import ErrorCode
from bamboo.hw.store import StoreUnit
from bamboo.sim.isa import Machine
from bamboo.sim.isa_ops import Trap
from sim_bench import simulate

BASE, WINDOW = 0x20000, 0x8000
POISON = BASE + WINDOW - 4096  # the window's last page answers SLVERR


def _max(name):
    return isa.field(isa.Opcode.STORE, name).max


def _store(config, rng, **fixed):
    """A random STORE that fits the OUT buffer and the window (unless ``fixed`` says)."""
    B, depth = config.rows, config.output_buffer_depth
    f = dict(
        lane=int(rng.integers(0, config.cols // B)),
        x_size=int(rng.integers(1, 41)),
        y_size=int(rng.integers(1, 5)),
    )
    f.update({k: fixed[k] for k in ("lane", "x_size", "y_size") if k in fixed})
    f["x_stride"] = fixed.get("x_stride", f["x_size"] + int(rng.integers(0, 4)))
    n = f["x_size"] * f["y_size"]
    f["sram_addr"] = fixed.get("sram_addr", int(rng.integers(0, depth - n + 1)))
    extent = ((f["y_size"] - 1) * f["x_stride"] + f["x_size"]) * B
    align = min(B, config.axi_data_bytes)
    room = (WINDOW - 4096 - extent) // align
    f["dram_addr"] = fixed.get("dram_addr", int(rng.integers(0, max(room, 0) + 1)) * align)
    return f


def _hardware(config, instructions, out, dram, seed):
    """Per instruction: the verdict (ErrorCode) and the DRAM window afterwards."""
    dut = StoreUnit(config)
    mem = AxiMemory(dut.m_axi, dram.copy(), BASE, config.axi_data_bytes, seed=seed, poison=[POISON])
    words = [int.from_bytes(w.tobytes(), "little") for w in out]
    results = []

    async def out_port(ctx):
        """The OUT buffer's synchronous read port."""
        port = dut.out_r
        while True:
            _, _, en, addr = await ctx.tick().sample(port.en, port.addr)
            if en:
                ctx.set(port.data.as_value(), words[addr])

    async def bench(ctx):
        ctx.set(dut.window_base, BASE)
        ctx.set(dut.window_size, WINDOW)
        for f in instructions:
            verdict = await execute(ctx, dut, isa.Opcode.STORE, f)
            results.append((verdict, mem.mem.copy()))

    simulate(dut, bench, mem.writer, out_port)
    return results


def _check(config, instructions, seed):
    rng = np.random.default_rng(seed)
    dram = rng.integers(0, 256, WINDOW, dtype=np.uint8)
    machine = Machine(config, dram.copy())
    machine.out[:] = rng.integers(0, 256, machine.out.shape, dtype=np.uint8)
    got = _hardware(config, instructions, machine.out, dram, seed)
    for f, (verdict, window) in zip(instructions, got, strict=True):
        try:
            machine.step(isa.encode(isa.Opcode.STORE, **f))
            end = (
                BASE
                + f["dram_addr"]
                + ((f["y_size"] - 1) * f["x_stride"] + f["x_size"]) * config.rows
            )
            want = ErrorCode.AXI_ERROR if end > POISON else ErrorCode.NONE
        except Trap as trap:
            want = trap.args[0]
        assert verdict == want, f
        if want == ErrorCode.AXI_ERROR:
            # The simulator has no bus errors: the poisoned page keeps its bytes.
            machine.dram[POISON - BASE :] = window[POISON - BASE :]
        assert np.array_equal(window, machine.dram), f


@pytest.mark.parametrize("cfg_name", ["tiny", "ultra96"])
def test_random_stores_match_simulator(cfg_name):
    config = PRESETS[cfg_name]
    rng = np.random.default_rng(3)
    _check(config, [_store(config, rng) for _ in range(24)], seed=4)


def test_edge_stores():
    """One element, the OUT buffer's last word, the last lane, the largest row stride,
    transfers that leave the window or hit a bus error, and a store after them."""
    config = PRESETS["tiny"]
    rng = np.random.default_rng(8)
    B, lanes = config.rows, config.cols // config.rows
    insns = [
        _store(
            config,
            rng,
            x_size=1,
            y_size=1,
            sram_addr=config.output_buffer_depth - 1,
            lane=lanes - 1,
        ),
        _store(config, rng, x_size=2, y_size=1, x_stride=_max("x_stride"), lane=0),
        _store(config, rng, x_size=2, y_size=2, x_stride=(WINDOW - 4096) // B - 2),
        _store(config, rng, x_size=2, y_size=2, x_stride=_max("x_stride")),  # leaves
        _store(config, rng, dram_addr=_max("dram_addr") // B * B),  # leaves
        _store(config, rng, x_size=3, y_size=1, dram_addr=WINDOW - 4096 - B),  # SLVERR
        _store(config, rng, x_size=4, y_size=2, sram_addr=0),
    ]
    _check(config, insns, seed=6)
