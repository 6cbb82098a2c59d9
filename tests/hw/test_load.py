"""hw/load.py's LoadUnit alone, against the instruction simulator's LOAD.

Seeded random LOADs into every buffer (elements narrower than, as wide as and wider
than the bus; padding on every side; row strides; the largest field values arch's
``field().max`` allows) run through the unit with an AXI memory of random stalls
(axi_memory.py). The words it writes into the INP, WGT and PARAM ports and the LUT
entries must equal the buffers of ``sim.isa.Machine`` after the same instruction, and
its verdict (done, or the error code) the simulator's trap. Results only, no cycle
counts: the unit's latency is free to change.
"""

import numpy as np
import pytest
from amaranth.hdl import Value
from axi_memory import AxiMemory, execute
from bamboo.arch import PRESETS, isa
from bamboo.arch.layout import BUFFERS, LUT_ENTRIES, PARAM_DEPTH, buffer_depth, elem_bytes
from bamboo.arch.registers import ErrorCode
from bamboo.hw.load import LoadUnit
from bamboo.sim.isa import Machine
from bamboo.sim.isa_ops import Trap
from sim_bench import simulate

BASE, WINDOW = 0x10000, 0x8000
POISON = BASE + WINDOW - 4096  # the window's last page answers SLVERR


def _max(name):
    return isa.field(isa.Opcode.LOAD, name).max


def _load(config, rng, buf, **fixed):
    """A random LOAD into ``buf`` that fits its buffer and the window (unless ``fixed`` says)."""
    eb = elem_bytes(config, buf)
    depth = buffer_depth(config, buf)
    f = dict(
        buffer=buf,
        **{p: int(rng.integers(0, 3)) for p in ("pad_top", "pad_bottom", "pad_left", "pad_right")},
        pad_value=int(rng.integers(0, 256)),
    )
    f.update({k: v for k, v in fixed.items() if k.startswith("pad")})
    cols_room = max(
        1, min(24, depth // (f["pad_top"] + f["pad_bottom"] + 1)) - f["pad_left"] - f["pad_right"]
    )
    f["x_size"] = fixed.get("x_size", int(rng.integers(1, cols_room + 1)))
    cols = f["pad_left"] + f["x_size"] + f["pad_right"]
    rows_room = max(1, depth // cols - f["pad_top"] - f["pad_bottom"])
    f["y_size"] = fixed.get("y_size", int(rng.integers(1, min(4, rows_room) + 1)))
    f["x_stride"] = fixed.get("x_stride", f["x_size"] + int(rng.integers(0, 4)))
    n = (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * cols
    f["sram_addr"] = fixed.get("sram_addr", int(rng.integers(0, depth - n + 1)))
    extent = ((f["y_size"] - 1) * f["x_stride"] + f["x_size"]) * eb
    align = min(eb, config.axi_data_bytes)
    room = (WINDOW - 4096 - extent) // align  # keep clear of the poisoned page
    f["dram_addr"] = fixed.get("dram_addr", int(rng.integers(0, max(room, 0) + 1)) * align)
    return f


def _hardware(config, instructions, dram, seed):
    """Per instruction: the verdict (ErrorCode) and the buffers as written by the unit."""
    dut = LoadUnit(config)
    eb = {b: elem_bytes(config, b) for b in BUFFERS}
    bufs = {
        b: np.zeros((buffer_depth(config, b), eb[b]), np.uint8)
        for b in (isa.Buffer.INP, isa.Buffer.WGT, isa.Buffer.PARAM)
    }
    lut = np.zeros((config.lut_slots * LUT_ENTRIES,), np.uint8)
    mem = AxiMemory(dut.m_axi, dram.copy(), BASE, config.axi_data_bytes, seed=seed, poison=[POISON])
    ports = {isa.Buffer.INP: dut.inp_w, isa.Buffer.WGT: dut.wgt_w, isa.Buffer.PARAM: dut.param_w}
    results = []

    async def ports_bench(ctx):
        while True:
            _, _, *sampled = await ctx.tick().sample(
                *[s for p in ports.values() for s in (p.en, p.addr, Value.cast(p.data))],
                dut.lut_w.en,
                dut.lut_w.addr,
                dut.lut_w.data,
            )
            for k, b in enumerate(ports):
                en, addr, value = sampled[3 * k : 3 * k + 3]
                if en:
                    bufs[b][addr] = np.frombuffer(value.to_bytes(eb[b], "little"), np.uint8)
            en, addr, value = sampled[9:]
            if en:
                lut[addr] = value

    async def bench(ctx):
        ctx.set(dut.window_base, BASE)
        ctx.set(dut.window_size, WINDOW)
        for f in instructions:
            verdict = await execute(ctx, dut, isa.Opcode.LOAD, f)
            results.append((verdict, {b: a.copy() for b, a in bufs.items()}, lut.copy()))

    simulate(dut, bench, mem.reader, ports_bench)
    return results


def _check(config, instructions, seed):
    """Runs ``instructions`` on the unit and on the simulator; compares after each one."""
    dram = np.random.default_rng(seed).integers(0, 256, WINDOW, dtype=np.uint8)
    machine = Machine(config, dram.copy())
    for f, (verdict, bufs, lut) in zip(
        instructions, _hardware(config, instructions, dram, seed), strict=True
    ):
        try:
            machine.step(isa.encode(isa.Opcode.LOAD, **f))
            want = ErrorCode.AXI_ERROR if _touches_poison(config, f) else ErrorCode.NONE
        except Trap as trap:
            want = trap.args[0]
        assert verdict == want, f
        if want == ErrorCode.AXI_ERROR:
            # The simulator has no bus errors: the unit's writes are unspecified now.
            machine = _resync(machine, config, bufs, lut)
            continue
        assert np.array_equal(bufs[isa.Buffer.INP], machine.inp), f
        assert np.array_equal(
            bufs[isa.Buffer.WGT], machine.wgt.view(np.uint8).reshape(len(machine.wgt), -1)
        ), f
        assert np.array_equal(
            bufs[isa.Buffer.PARAM],
            machine.param.astype("<u8").view(np.uint8).reshape(PARAM_DEPTH, -1),
        ), f
        assert np.array_equal(lut, machine.lut.ravel()), f


def _touches_poison(config, f):
    eb = elem_bytes(config, f["buffer"])
    end = BASE + f["dram_addr"] + ((f["y_size"] - 1) * f["x_stride"] + f["x_size"]) * eb
    return end > POISON


def _resync(machine, config, bufs, lut):
    machine.inp[:] = bufs[isa.Buffer.INP]
    machine.wgt[:] = bufs[isa.Buffer.WGT].view(np.int8).reshape(machine.wgt.shape)
    machine.param[:] = bufs[isa.Buffer.PARAM].view("<u8").reshape(machine.param.shape)
    machine.lut[:] = lut.reshape(machine.lut.shape)
    return machine


@pytest.mark.parametrize("cfg_name", ["tiny", "ultra96"])
def test_random_loads_match_simulator(cfg_name):
    config = PRESETS[cfg_name]
    rng = np.random.default_rng(5)
    insns = [
        _load(config, rng, buf)
        for _ in range(6)
        for buf in (isa.Buffer.INP, isa.Buffer.PARAM, isa.Buffer.INP, isa.Buffer.WGT)
    ]
    insns += [
        _load(
            config,
            rng,
            isa.Buffer.LUT,
            x_size=1,
            y_size=1,
            **{p: 0 for p in ("pad_top", "pad_bottom", "pad_left", "pad_right")},
        )
        for _ in range(2)
    ]
    rng.shuffle(insns)
    _check(config, insns, seed=11)


def test_edge_loads():
    """Largest padding and pad value, a one-element tile, the buffer's last word, the
    largest row stride, and transfers that leave the window or hit a bus error."""
    config = PRESETS["tiny"]
    rng = np.random.default_rng(9)
    inp, pmax = (
        isa.Buffer.INP,
        {p: _max(p) for p in ("pad_top", "pad_bottom", "pad_left", "pad_right", "pad_value")},
    )
    depth = buffer_depth(config, inp)
    eb = elem_bytes(config, inp)
    insns = [
        _load(config, rng, inp, x_size=1, y_size=1, sram_addr=0, **pmax),
        _load(config, rng, inp, x_size=1, y_size=1, sram_addr=depth - 1, **{p: 0 for p in pmax}),
        _load(config, rng, inp, x_size=3, y_size=1, x_stride=_max("x_stride")),
        _load(config, rng, inp, x_size=2, y_size=2, x_stride=(WINDOW - 4096) // eb - 2),
        _load(config, rng, inp, x_size=2, y_size=2, x_stride=_max("x_stride")),  # leaves
        _load(config, rng, inp, dram_addr=_max("dram_addr") // eb * eb),  # leaves
        _load(config, rng, isa.Buffer.WGT, x_size=1, y_size=1, dram_addr=WINDOW - 4096),
        _load(
            config,
            rng,
            isa.Buffer.LUT,
            x_size=1,
            y_size=1,
            dram_addr=WINDOW - 4096,
            **{p: 0 for p in pmax},
        ),
        _load(config, rng, inp, x_size=2, y_size=1),  # the unit still works afterwards
    ]
    _check(config, insns, seed=13)
