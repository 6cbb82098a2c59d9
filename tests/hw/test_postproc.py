# amaranth: UnusedElaboratable=no
"""PostProcessor: the lanes against the runtime kernels, in Amaranth's simulator and in RTL.

The same vectors (postproc_vectors.py: seeded random plus adversarial, expected
codes from ``bamboo.runtime``) go through Amaranth's Python simulator here and
through Verilator and Icarus via cocotb (cocotb_postproc.py), with random valid
gaps and back-pressure in both.
"""

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator
from bamboo.arch import preset
from bamboo.hw.postproc import LUT_ENTRIES, ActivationUnit, LutWriteSignature, PostProcessor
from bamboo.sim.tools import pack
from postproc_vectors import lane_params, make_vectors

COCOTB_MODULE = Path(__file__).with_name("cocotb_postproc.py")
TINY = preset("tiny")
#: tiny with fewer post-processing lanes than columns: 2 groups of 2, 4 groups of 1.
GROUPED = [dataclasses.replace(TINY, postproc_lanes=n) for n in (2, 1)]
#: Packed 4 x 16 with 8 depthwise channels: 4 lanes take 4 turns, 2 for a depthwise beat
#: (as ``ultra96``'s 8 lanes for 32 columns and 16 channels); 8 lanes take 2 turns for
#: both and zero columns 8-15 of a depthwise beat.
PACKED = [
    dataclasses.replace(
        TINY, cols=16, dsp_packing=True, depthwise_blocks=2, postproc_lanes=n, name=f"p{n}"
    )
    for n in (4, 8)
]
CONFIGS = [TINY, *GROUPED, *PACKED]


def _id(cfg):
    return f"{cfg.cols}cols-lanes{cfg.postproc_lanes or cfg.cols}"


RTL_BEATS = 5000  # x 4 lanes = 20,000 vectors per simulator, one build each


def _run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


async def _load_tables(ctx, dut, tables):
    for slot, table in enumerate(tables):
        for index, entry in enumerate(table):
            ctx.set(dut.lut_w.addr, slot * LUT_ENTRIES + index)
            ctx.set(dut.lut_w.data, int(entry))
            ctx.set(dut.lut_w.en, 1)
            await ctx.tick()
    ctx.set(dut.lut_w.en, 0)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_latency_is_declared(cfg):
    """A beat is taken after ``postproc_turns`` cycles and comes out ``latency`` later."""
    dut = PostProcessor(cfg)
    seen, taken = [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for cycle in range(3 * PostProcessor.LATENCY):
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                taken.append(cycle)
            if ctx.get(dut.o.valid):
                seen.append(cycle)
            await ctx.tick()
            if taken:
                ctx.set(dut.i.valid, 0)

    _run(dut, testbench)
    assert taken == [cfg.postproc_turns - 1]
    assert seen == [taken[0] + PostProcessor.latency(cfg)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_full_rate_is_one_beat_per_turns(cfg):
    """Offered back to back with the output always ready, beats are taken every
    ``postproc_turns`` cycles and leave at that rate."""
    dut = PostProcessor(cfg)
    beats, taken, seen = 20, [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(beats * cfg.postproc_turns + 3 * PostProcessor.LATENCY):
            ctx.set(dut.i.valid, len(taken) < beats)
            if len(taken) < beats and ctx.get(dut.i.ready):
                taken.append(cycle)
            if ctx.get(dut.o.valid):
                seen.append(cycle)
            await ctx.tick()

    _run(dut, testbench)
    t = cfg.postproc_turns
    assert taken == [t - 1 + t * k for k in range(beats)]
    assert seen == [c + PostProcessor.latency(cfg) for c in taken]


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_narrow_beats_take_the_depthwise_turns(cfg):
    """Narrow (depthwise) beats back to back, then wide ones, then alternating: a narrow
    beat is taken after ``depthwise_emit_turns`` cycles, a wide one after
    ``postproc_turns``, and each leaves ``latency`` after it is taken."""
    dut = PostProcessor(cfg)
    flags = [1] * 6 + [0] * 4 + [1, 0] * 4
    taken, seen = [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(len(flags) * cfg.postproc_turns + 3 * PostProcessor.LATENCY):
            more = len(taken) < len(flags)
            ctx.set(dut.i.valid, more)
            if more:
                ctx.set(dut.i.payload.narrow, flags[len(taken)])
                if ctx.get(dut.i.ready):
                    taken.append(cycle)
            if ctx.get(dut.o.valid):
                seen.append(cycle)
            await ctx.tick()

    _run(dut, testbench)
    turns = [cfg.emit_turns(bool(f)) for f in flags]
    assert taken == [sum(turns[: k + 1]) - 1 for k in range(len(flags))]
    assert seen == [c + PostProcessor.latency(cfg) for c in taken]


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_vectors_with_backpressure(cfg):
    """Random and adversarial vectors, all activations, random valid and ready."""
    beats = 300
    vec = make_vectors(cfg.cols, cfg.lut_slots, beats, seed=2024)
    dut = PostProcessor(cfg)
    layout = PostProcessor.input_layout(cfg)
    got = []
    # Narrow (depthwise) beats: the columns past the depthwise channels are written 0.
    narrow = np.random.default_rng(3).random(beats) < 0.4
    expected = vec.expected.copy()
    expected[narrow, cfg.depthwise_channels :] = 0

    async def testbench(ctx):
        rnd = random.Random(5)
        await _load_tables(ctx, dut, vec.tables)
        sent, offered = 0, False
        while len(got) < beats:
            # A stream keeps an offered beat until it is taken.
            valid = offered or (sent < beats and rnd.random() < 0.7)
            ctx.set(dut.i.valid, valid)
            if valid:
                row = [
                    {
                        "acc": int(vec.acc[sent, c]),
                        "bias": int(vec.bias[sent, c]),
                        "params": lane_params(vec.layers[vec.layer[sent, c]]),
                    }
                    for c in range(cfg.cols)
                ]
                beat = {"lanes": row, "narrow": int(narrow[sent])}
                ctx.set(dut.i.payload.as_value(), pack(layout, beat))
            ctx.set(dut.o.ready, rnd.random() < 0.5)
            offered = valid and not ctx.get(dut.i.ready)
            if valid and ctx.get(dut.i.ready):
                sent += 1
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                bits = ctx.get(dut.o.payload.as_value())
                got.append([(bits >> (8 * c)) & 0xFF for c in range(cfg.cols)])
            await ctx.tick()

    _run(dut, testbench)
    np.testing.assert_array_equal(np.array(got, np.uint8), expected)


def test_vectors_cover_the_corners():
    """The adversarial set reaches every activation and both saturation bounds."""
    vec = make_vectors(TINY.cols, TINY.lut_slots, 300, seed=2024)
    acts = {lay.act for lay in vec.layers}
    assert len(acts) == 4
    codes = vec.expected.ravel()
    assert {0, 255} <= set(codes.tolist())
    assert len(np.unique(codes)) > 150


def test_rejects_bad_configuration():
    with pytest.raises(TypeError, match="cfg must be an AcceleratorConfig"):
        PostProcessor("tiny")
    # The configuration itself refuses more slots than CONV.lut_slot can address.
    with pytest.raises(ValueError, match=r"at most 8 \(CONV.lut_slot is 3 bits\)"):
        dataclasses.replace(TINY, lut_slots=32)


@pytest.mark.parametrize("slots", [0, 3, 32, "2"])
def test_activation_unit_rejects_bad_slots(slots):
    message = f"slots must be a power of two of at most 8, not {slots!r}"
    with pytest.raises(ValueError, match=message):
        ActivationUnit(slots)


def test_signature_follows_the_configuration():
    cfg = preset("ultra96")
    assert PostProcessor.input_layout(cfg).members["lanes"].length == 32
    assert PostProcessor.output_layout(cfg).length == 32
    assert Shape.cast(LutWriteSignature(cfg.lut_slots).members["addr"].shape).width == 10


@pytest.mark.sim
def test_rtl(simulator, record_property):
    """Thousands of vectors per build on each simulator, random back-pressure, full rate."""
    from bamboo.sim.harness import run_cocotb

    result = run_cocotb(
        PostProcessor(TINY),
        COCOTB_MODULE,
        simulator,
        name="postproc",
        extra_env={"BAMBOO_CONFIG": TINY.name, "BAMBOO_BEATS": RTL_BEATS, "BAMBOO_SEED": 11},
    )
    assert result.tests == 2
    record_property("vectors", RTL_BEATS * TINY.cols)
    record_property("build_seconds", round(result.build_seconds, 1))
    record_property("run_seconds", round(result.run_seconds, 1))


@pytest.mark.slow
def test_ultra96_elaborates():
    """The 32-lane build converts (RTLIL only: Yosys and simulation are the tiny build's job)."""
    from amaranth.back import rtlil

    assert "module" in rtlil.convert(PostProcessor(preset("ultra96")), name="postproc")
