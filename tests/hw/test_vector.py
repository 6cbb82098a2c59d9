# amaranth: UnusedElaboratable=no
"""VectorUnit against the instruction simulator (sim.isa_ops.vec), in Amaranth's sim and in RTL.

Random instructions of every VecOp (shapes, strides, zero points, clamps, signedness,
activations) run on the unit and on ``bamboo.sim.isa_ops.vec`` with the same INP,
PARAM and LUT contents; the OUT words written must be equal. ADD is also streamed
over all 256 x 256 code pairs for a few quantizations, whose expected codes are
checked against ``runtime.elementwise.add`` (onnxruntime's x86 formula) as well. The
testbench plays the buffers: it answers the unit's INP and PARAM read ports one
cycle after each read, as a synchronous memory does, and records the OUT writes.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator
from bamboo.arch import isa, preset
from bamboo.hw.postproc import LUT_ENTRIES
from bamboo.hw.vector import VectorUnit
from bamboo.runtime.elementwise import add as add_reference
from vector_vectors import OPS, add_exhaustive, make_case, words

COCOTB_MODULE = Path(__file__).with_name("cocotb_vector.py")
TINY = preset("tiny")
# Lane counts: the tiny preset's own, one lane (4 turns per pixel), one lane per row.
LANES = {
    "tiny": TINY,
    "1-lane": dataclasses.replace(TINY, vector_lanes=1),
    "4-lanes": dataclasses.replace(TINY, vector_lanes=4),
}
RTL_ADD_INSNS = 4  # x 256 pixels x 4 lanes = 4096 ADD vectors per simulator
F32 = np.float32


class Bench:
    """Runs Cases on a VectorUnit in Amaranth's simulator; records cycles of interest."""

    def __init__(self, config, cases, lut):
        self.dut = VectorUnit(config)
        self.cases, self.lut = cases, lut
        self.got, self.cycles = [], []
        self.inp, self.param = [0] * config.input_buffer_depth, [0] * 16

    async def memory(self, ctx):
        dut = self.dut
        ports = (
            dut.inp_r.addr,
            dut.inp_r.en,
            dut.param_r.addr,
            dut.param_r.en,
            dut.out_w.en,
            dut.out_w.addr,
            dut.out_w.data.as_value(),
        )
        while True:
            # What the ports hold at the clock edge, as a memory sees them.
            _, _, ai, ei, ap, ep, we, wa, wd = await ctx.tick().sample(*ports)
            if we:
                self.writes.append((wa, wd))
            if ei:
                ctx.set(dut.inp_r.data.as_value(), self.inp[ai])
            if ep:
                ctx.set(dut.param_r.data, self.param[ap])

    async def run(self, ctx):
        dut = self.dut
        for slot, table in enumerate(self.lut):
            for index, entry in enumerate(table):
                ctx.set(dut.lut_w.addr, slot * LUT_ENTRIES + index)
                ctx.set(dut.lut_w.data, int(entry))
                ctx.set(dut.lut_w.en, 1)
                await ctx.tick()
        ctx.set(dut.lut_w.en, 0)
        for case in self.cases:
            self.inp, self.param = words(case.inp), words(case.param)
            self.writes = []
            ctx.set(dut.i_insn.payload.as_value(), case.word)
            ctx.set(dut.i_insn.valid, 1)
            while not ctx.get(dut.i_insn.ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.i_insn.valid, 0)
            cycles = 1
            while not ctx.get(dut.status.done):
                await ctx.tick()
                cycles += 1
            await ctx.tick()
            self.got.append(self.writes)
            self.cycles.append(cycles)

    def simulate(self):
        self.writes = []
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self.memory, background=True)
        sim.add_testbench(self.run)
        sim.run()


def _check(config, case, writes):
    C = config.cols
    f = case.fields
    addrs = [a for a, _ in writes]
    assert addrs == list(range(f["out_addr"], f["out_addr"] + case.pixels)), (f, addrs)
    got = np.array([[(d >> (8 * c)) & 0xFF for c in range(C)] for _, d in writes], np.uint8)
    bad = np.argwhere(got != case.expected)
    assert bad.size == 0, (
        f"{isa.decode(case.word)}: {len(bad)} wrong codes, first at "
        f"(pixel, lane) {tuple(bad[0])}: got {got[tuple(bad[0])]}, "
        f"expected {case.expected[tuple(bad[0])]}"
    )


def _lut(seed):
    return np.random.default_rng(seed).integers(0, 256, (TINY.lut_slots, 256)).astype(np.uint8)


_NAMES = {v: k for k, v in vars(isa.VecOp).items() if k.isupper()}


@pytest.mark.parametrize("lanes", sorted(LANES))
@pytest.mark.parametrize("vop", OPS, ids=_NAMES.get)
def test_random_instructions(vop, lanes, diff_cases):
    """Random instructions of one VecOp against sim.isa_ops.vec on the same buffers."""
    config = LANES[lanes]
    rng = np.random.default_rng(100 + vop)
    lut = _lut(vop)
    cases = [make_case(config, vop, rng, lut) for _ in range(12 if lanes == "tiny" else 4)]
    bench = Bench(config, cases, lut)
    bench.simulate()
    for case, writes in zip(cases, bench.got):
        _check(config, case, writes)
    diff_cases(f"hw.vector.{_NAMES[vop]}", sum(c.pixels for c in cases) * config.rows)


@pytest.mark.parametrize("lanes", sorted(LANES))
def test_latency_and_cycles(lanes):
    """First OUT write LATENCY cycles after the first read; one read per element and cycle,
    pixels at least ``vector_turns`` cycles apart."""
    TINY = LANES[lanes]
    rng = np.random.default_rng(7)
    lut = _lut(0)
    cases = []
    for vop, kh, kw, oh, ow in [
        (isa.VecOp.COPY, 1, 1, 1, 1),
        (isa.VecOp.ADD, 1, 1, 2, 3),
        (isa.VecOp.MAX_POOL, 3, 2, 2, 2),
        (isa.VecOp.MUL_CHANNEL, 1, 1, 3, 1),
    ]:
        case = make_case(TINY, vop, rng, lut)
        case.fields.update(
            kernel_h=kh, kernel_w=kw, stride_h=1, stride_w=1, out_h=oh, out_w=ow, in_w=ow + kw
        )
        case.word = isa.encode(isa.Opcode.VEC, **case.fields)
        cases.append(case)
    bench = Bench(TINY, cases, lut)
    bench.simulate()
    for case, cycles in zip(cases, bench.cycles):
        f = case.fields
        elements = (
            f["kernel_h"] * f["kernel_w"]
            if f["vop"] == isa.VecOp.MAX_POOL
            else (2 if f["vop"] == isa.VecOp.ADD else 1)
        )
        # accept, PARAM, SETUP, reads, LATENCY to the last write, done the cycle after
        pixels, turns = f["out_h"] * f["out_w"], TINY.vector_turns
        assert cycles == VectorUnit.cycles(TINY, pixels, elements)
        assert cycles == (
            3 + (pixels - 1) * max(elements, turns) + elements + VectorUnit.LATENCY + turns - 1
        )


def test_barrier_is_done_at_once():
    dut = VectorUnit(TINY)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i_insn.payload.as_value(), isa.encode(isa.Opcode.VEC, out_h=0, out_w=3))
        ctx.set(dut.i_insn.valid, 1)
        for _ in range(4):
            seen.append(
                (ctx.get(dut.i_insn.ready), ctx.get(dut.status.done), ctx.get(dut.out_w.en))
            )
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(1, 1, 0)] * 4


ADD_QUANT = [  # (sa, sb, sc, za, zb, zc, signed); about a minute each in Amaranth's simulator
    pytest.param((0.0173, 0.0291, 0.0402, 128, 117, 121, False), id="uint8"),
    pytest.param((0.05, 0.05, 0.1, -3, 7, -11, True), id="int8-equal", marks=pytest.mark.slow),
    pytest.param(
        (0.5, 0.002, 0.01, 10, 250, 3, False), id="uint8-ratio-50", marks=pytest.mark.slow
    ),
]


def _add_word(sa, sb, sc, za, zb, zc):
    from bamboo.compiler.backend.pack import add_params

    return (
        add_params(F32(sa), F32(sb), F32(sc), za, zb, zc, TINY.cols)
        .view("<u8")
        .astype(np.uint64)[0]
    )


@pytest.mark.parametrize("quant", ADD_QUANT)
def test_add_all_code_pairs(quant, diff_cases):
    """All 65,536 code pairs through the unit; expected = sim.isa_ops.vec = runtime add (x86)."""
    sa, sb, sc, za, zb, zc, signed = quant
    cases = list(add_exhaustive(TINY, _add_word(sa, sb, sc, za, zb, zc), signed))
    dtype = np.int8 if signed else np.uint8
    a = np.concatenate([c.inp[: c.pixels].reshape(-1) for c in cases]).view(dtype)
    b = np.concatenate([c.inp[c.pixels : 2 * c.pixels].reshape(-1) for c in cases]).view(dtype)
    ref = add_reference(a, sa, za, b, sb, zb, sc, zc).view(np.uint8)
    sim_out = np.concatenate([c.expected[:, : TINY.rows].reshape(-1) for c in cases])
    np.testing.assert_array_equal(sim_out, ref)  # the simulator is onnxruntime's formula
    bench = Bench(TINY, cases, _lut(0))
    bench.simulate()
    for case, writes in zip(cases, bench.got):
        _check(TINY, case, writes)
    diff_cases("hw.vector.add_pairs", a.size)


def test_rejects_bad_configuration():
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        VectorUnit("tiny")
    with pytest.raises(ValueError, match="rows <= cols, not rows 8, cols 4"):
        VectorUnit(dataclasses.replace(TINY, rows=8))


@pytest.mark.sim
def test_rtl(simulator, record_property):
    """Thousands of ADD vectors plus random instructions of every op on each simulator."""
    from bamboo.sim.harness import run_cocotb

    result = run_cocotb(
        VectorUnit(TINY),
        COCOTB_MODULE,
        simulator,
        name="vector",
        extra_env={"BAMBOO_CONFIG": TINY.name, "BAMBOO_ADD_INSNS": RTL_ADD_INSNS, "BAMBOO_SEED": 3},
    )
    assert result.tests == 2
    record_property("vectors", RTL_ADD_INSNS * 256 * TINY.rows)
    record_property("build_seconds", round(result.build_seconds, 1))
    record_property("run_seconds", round(result.run_seconds, 1))


@pytest.mark.slow
def test_ultra96_elaborates():
    from amaranth.back import rtlil

    assert "module" in rtlil.convert(VectorUnit(preset("ultra96")), name="vector")
