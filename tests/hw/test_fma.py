# amaranth: UnusedElaboratable=no
"""FusedMultiplyAdd against runtime.elementwise.fma_f32 (round-to-odd float64 emulation)."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from bamboo.hw.fma import Float, FusedMultiplyAdd, align_addend, float_const
from bamboo.hw.pipeline import register
from bamboo.runtime.elementwise import fma_f32
from bamboo.sim.tools import pack

F32 = np.float32


def _fields(value):
    return float_const(float(value))


def _value(bits):
    """A Float's bits (zero, sign, mant, exp) as a Python float."""
    zero, sign = bits & 1, (bits >> 1) & 1
    mant = (bits >> 2) & 0xFFFFFF
    exp = bits >> 26
    exp = exp - (1 << 12) if exp >> 11 else exp
    if zero:
        return 0.0
    return (-1.0) ** sign * mant * 2.0**exp


def _cases(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << 16), 1 << 16, n)
    x[: n // 4] = rng.integers(-300, 300, n // 4)
    f = (rng.choice([-1, 1], n) * 2.0 ** rng.uniform(-20, 8, n)).astype(F32)
    z = (rng.choice([-1, 1], n) * 2.0 ** rng.uniform(-30, 30, n)).astype(F32)
    # Near cancellation: z close to -x * f, and exact zeros.
    k = n // 3
    z[k : 2 * k] = -(x[k : 2 * k].astype(np.float64) * f[k : 2 * k]).astype(F32) * F32(
        1
    ) + rng.integers(-3, 4, k).astype(F32) * 2.0 ** rng.integers(-30, 0, k)
    z[2 * k : 2 * k + 20] = 0
    x[2 * k + 20 : 2 * k + 40] = 0
    return x, f, z


class _Aligned(wiring.Component):
    """An ``aligned`` unit with its addend aligned in front: the same ports as the plain one."""

    def __init__(self, x_width):
        self.fma = FusedMultiplyAdd(x_width, aligned=True)
        plain = FusedMultiplyAdd(x_width)
        super().__init__(plain.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fma = fma = self.fma
        p = self.i.payload
        za = align_addend(m, fma.x_width, p.f, p.z, "za")
        for k in range(fma.ZA_LAG):  # given ZA_LAG cycles after x, f, z
            za = register(m, za, f"za{k}")
        m.d.comb += [
            fma.i.valid.eq(self.i.valid),
            fma.i.payload.x.eq(p.x),
            fma.i.payload.f.eq(p.f),
            fma.i.payload.z.eq(p.z),
            fma.i.payload.za.eq(za),
            self.o.valid.eq(fma.o.valid),
            self.o.payload.eq(fma.o.payload),
        ]
        return m


@pytest.mark.parametrize("aligned", [False, True], ids=["plain", "aligned"])
@pytest.mark.parametrize("seed", [1, 2])
def test_matches_fma_f32(seed, aligned):
    n = 1500
    x, f, z = _cases(seed, n)
    expected = fma_f32(x.astype(F32), f, z)
    assert np.all(np.abs(x) < 1 << 24)
    dut = _Aligned(18) if aligned else FusedMultiplyAdd(18)
    got = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for i in range(n + FusedMultiplyAdd.LATENCY):
            if i < n:
                ctx.set(dut.i.payload.x, int(x[i]))
                ctx.set(dut.i.payload.f.as_value(), pack(Float, _fields(f[i])))
                ctx.set(dut.i.payload.z.as_value(), pack(Float, _fields(z[i])))
            else:
                ctx.set(dut.i.valid, 0)
            if ctx.get(dut.o.valid):
                got.append(_value(ctx.get(dut.o.payload.r.as_value())))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    got = np.array(got[:n])
    bad = np.nonzero(got != expected.astype(np.float64))[0]
    assert bad.size == 0, [
        (int(x[i]), float(f[i]), float(z[i]), got[i], float(expected[i])) for i in bad[:5]
    ]


def test_latency_is_declared():
    dut = FusedMultiplyAdd(9)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 20):
            if ctx.get(dut.o.valid):
                seen.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [FusedMultiplyAdd.LATENCY]


@pytest.mark.parametrize("width", [1, 25, "8"])
def test_rejects_bad_width(width):
    msg = f"x_width must be an integer in \\[2, 24\\], not {width!r}"
    with pytest.raises(ValueError, match=msg):
        FusedMultiplyAdd(width)
