"""Requantizer: bit-exact with ``bamboo.runtime.requant`` in Amaranth's simulator.

The RTL runs inside the PostProcessor on Verilator and Icarus (test_postproc.py);
here the lane alone meets the adversarial and random vectors of postproc_vectors.py
and its declared latency is measured.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator
from bamboo.hw.requantizer import E_MAX, E_MIN, Requantizer, RequantParams, requant_fields
from bamboo.runtime.requant import Requant
from bamboo.sim.tools import pack
from postproc_vectors import make_vectors, requantized


def _simulate(vec):
    """Stream every vector through one lane, one per cycle; returns the codes in order."""
    dut = Requantizer()
    layout = dut.i.payload.shape()
    lanes = [
        (int(a), int(b), vec.layers[k].rq)
        for a, b, k in zip(vec.acc.ravel(), vec.bias.ravel(), vec.layer.ravel(), strict=True)
    ]
    got = []

    async def testbench(ctx):
        for n in range(len(lanes) + Requantizer.LATENCY + 1):
            if n < len(lanes):
                acc, bias, rq = lanes[n]
                params = requant_fields(rq.m, rq.e, rq.zp, rq.qmin, rq.qmax)
                ctx.set(
                    dut.i.payload.as_value(),
                    pack(layout, {"acc": acc, "bias": bias, "params": params}),
                )
            ctx.set(dut.i.valid, n < len(lanes))
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload.code))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(got, np.int64)


def test_latency_is_declared():
    dut = Requantizer()
    seen = []

    async def testbench(ctx):
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for cycle in range(1, 3 * Requantizer.LATENCY):
            if ctx.get(dut.o.valid):
                seen.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [Requantizer.LATENCY]


@pytest.mark.parametrize("seed", [1, 2])
def test_bit_exact_against_runtime(seed):
    """Adversarial ties, carries, clips and wraps, then random vectors: 2,000 per seed."""
    vec = make_vectors(cols=1, slots=1, beats=2000, seed=seed)
    np.testing.assert_array_equal(_simulate(vec), requantized(vec).ravel())


def test_fields_clamp_the_exponent():
    tiny = Requant.from_scale(np.float32(2.0**-140), 0)
    assert int(tiny.e) < E_MIN
    assert requant_fields(tiny.m, tiny.e, 0, 0, 255)["e"] == E_MIN
    assert requant_fields(1 << 23, 200, 0, 0, 255)["e"] == E_MAX
    RequantParams.const(requant_fields(tiny.m, tiny.e, 3, 0, 255))  # fits the layout


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 0, 0, 0, 255), r"mantissa must be in \[1, 2\*\*24\), not 0"),
        ((1 << 24, 0, 0, 0, 255), r"mantissa must be in \[1, 2\*\*24\), not 16777216"),
        ((1 << 23, 0, 256, 0, 255), r"zp must be in \[-128, 255\], not 256"),
        ((1 << 23, 0, 0, -129, 255), r"qmin must be in \[-128, 255\], not -129"),
        ((1 << 23, 0, 0, 10, 9), "qmin must not exceed qmax, not 10 > 9"),
    ],
)
def test_fields_validate(args, message):
    with pytest.raises(ValueError, match=message):
        requant_fields(*args)


@pytest.mark.slow
def test_bit_exact_sweep():
    """A longer random sweep (40,000 vectors over 8 seeds) for `make bench-tests`."""
    for seed in range(100, 108):
        vec = make_vectors(cols=1, slots=1, beats=5000, seed=seed, adversarial=seed == 100)
        np.testing.assert_array_equal(_simulate(vec), requantized(vec).ravel())
