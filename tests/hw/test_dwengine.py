# amaranth: UnusedElaboratable=no
"""DepthwiseEngine against the runtime's depthwise reference kernel, in Amaranth's simulator.

Random frames (codes, per-channel int8 weights, zero points, int8/uint8, strides 1 and 2,
every padding up to ``kernel - 1`` on each side) go through ``runtime.conv.conv2d_acc``
(groups = channels) and the engine, back to back, with random bubbles on the input
and random back-pressure on the output; the int32 accumulators must be equal.
"""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator
from bamboo.arch import ConfigError, preset
from bamboo.hw.dwengine import DepthwiseEngine, embed_kernel, params_layout
from bamboo.runtime.conv import conv2d_acc, conv_output_size
from bamboo.sim.tools import pack

LANES, WIDTH = 4, 16


def _frame(rng, kernel, engine_kernel=None, stride=None, signed=None, width=WIDTH):
    """``(params, codes (H, W, L), expected (Ho, Wo, L))`` of one random frame."""
    engine_kernel = engine_kernel or kernel
    stride = stride or int(rng.integers(1, 3))
    signed = bool(rng.integers(2)) if signed is None else signed
    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    while True:
        pads = [int(v) for v in rng.integers(0, kernel, 4)]  # top, left, bottom, right
        h, w = int(rng.integers(1, 9)), int(rng.integers(1, 11))
        e = (engine_kernel - kernel) // 2
        ho = conv_output_size(h, kernel, stride, 1, pads[0], pads[2])
        wo = conv_output_size(w, kernel, stride, 1, pads[1], pads[3])
        if ho >= 1 and wo >= 1 and w + pads[1] + pads[3] + 2 * e <= width:
            break
    x = rng.integers(info.min, info.max + 1, (1, h, w, LANES)).astype(dtype)
    zp = int(rng.integers(info.min, info.max + 1))
    wt = rng.integers(-127, 128, (LANES, kernel, kernel, 1)).astype(np.int8)
    wt[0, 0, 0, 0] = -128  # the engine takes the whole int8 range
    expected = conv2d_acc(x, zp, wt, stride=(stride, stride), pads=tuple(pads), groups=LANES)
    taps, e = embed_kernel(wt[..., 0], engine_kernel)
    params = {
        "width": w,
        "height": h,
        "pad_top": pads[0] + e,
        "pad_left": pads[1] + e,
        "pad_bottom": pads[2] + e,
        "pad_right": pads[3] + e,
        "stride2": stride == 2,
        "signed": signed,
        "zp": zp & 0xFF,
        "w": [[int(v) for v in lane.reshape(-1)] for lane in taps],
    }
    return params, x[0], expected[0]


def _run(dut, frames, *, p_valid=1.0, p_ready=1.0, seed=0, max_cycles=20000):
    """Stream ``frames`` through ``dut``: ``(accumulators (n, L) int64, cycles)``."""
    layout = params_layout(dut.lanes, dut.kernel, dut.width)
    pixels = [px for _, x, _ in frames for px in x.reshape(-1, dut.lanes)]
    want = sum(exp.shape[0] * exp.shape[1] for _, _, exp in frames)
    got = []
    busy_cycles = []

    async def testbench(ctx):
        rnd = random.Random(seed)
        sent_p = sent_x = 0
        for cycle in range(max_cycles):
            if len(got) == want:
                break
            ctx.set(dut.i_params.valid, sent_p < len(frames))
            if sent_p < len(frames):
                ctx.set(dut.i_params.payload.as_value(), pack(layout, frames[sent_p][0]))
            valid = sent_x < len(pixels) and rnd.random() < p_valid
            ctx.set(dut.i_pixel.valid, valid)
            if valid:
                word = sum((int(v) & 0xFF) << (8 * n) for n, v in enumerate(pixels[sent_x]))
                ctx.set(dut.i_pixel.payload.as_value(), word)
            ready = rnd.random() < p_ready
            ctx.set(dut.o_acc.ready, ready)
            if ctx.get(dut.busy):
                busy_cycles.append(cycle)
            if sent_p < len(frames) and ctx.get(dut.i_params.ready):
                sent_p += 1
            if valid and ctx.get(dut.i_pixel.ready):
                sent_x += 1
            if ready and ctx.get(dut.o_acc.valid):
                word = ctx.get(dut.o_acc.payload.as_value())
                lanes = [(word >> (32 * n)) & 0xFFFFFFFF for n in range(dut.lanes)]
                got.append([v - (1 << 32) if v >> 31 else v for v in lanes])
            await ctx.tick()
        else:
            raise AssertionError(f"{len(got)} of {want} outputs after {max_cycles} cycles")
        for _ in range(3 * dut.LATENCY):  # nothing more comes out
            ctx.set(dut.o_acc.ready, 1)
            assert not ctx.get(dut.o_acc.valid)
            await ctx.tick()
        assert sent_x == len(pixels)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(got, dtype=np.int64), busy_cycles


def _check(dut, frames, **kwargs):
    got, _ = _run(dut, frames, **kwargs)
    expected = np.concatenate([exp.reshape(-1, dut.lanes) for _, _, exp in frames])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_random_frames_with_bubbles_and_backpressure(kernel, stride):
    """Eight random frames back to back; input valid 70 %, output ready 60 %."""
    rng = np.random.default_rng(100 * kernel + stride)
    frames = [_frame(rng, kernel, stride=stride) for _ in range(8)]
    dut = DepthwiseEngine(LANES, kernel, WIDTH)
    _check(dut, frames, p_valid=0.7, p_ready=0.6, seed=kernel + stride)


def test_full_rate_frames():
    """Always valid, always ready: mixed strides, signedness and pads at full rate."""
    rng = np.random.default_rng(7)
    frames = [_frame(rng, 3) for _ in range(6)]
    _check(DepthwiseEngine(LANES, 3, WIDTH), frames)


def test_small_kernel_embedded_in_large_engine():
    """A 3x3 layer on a 5x5 engine: taps centred, one more padding on each side."""
    rng = np.random.default_rng(11)
    frames = [_frame(rng, 3, engine_kernel=5) for _ in range(3)]
    _check(DepthwiseEngine(LANES, 5, WIDTH), frames, p_valid=0.8, p_ready=0.8, seed=3)


def test_extreme_codes():
    """Largest products: codes and zero points at the ends of both ranges."""
    rng = np.random.default_rng(5)
    frames = []
    for signed, code, zp, w in (
        (False, 255, 0, -128),
        (False, 0, 255, 127),
        (True, -128, 127, -128),
    ):
        params, x, _ = _frame(rng, 3, signed=signed, stride=1)
        x = np.full_like(x, code)
        params["zp"] = zp & 0xFF
        params["w"] = [[w] * 9 for _ in range(LANES)]
        wt = np.full((LANES, 3, 3, 1), w, np.int8)
        pads = (params["pad_top"], params["pad_left"], params["pad_bottom"], params["pad_right"])
        zp_v = zp if not signed else (zp if zp < 128 else zp - 256)
        exp = conv2d_acc(x[None], zp_v, wt, pads=pads, groups=LANES)[0]
        frames.append((params, x, exp))
    _check(DepthwiseEngine(LANES, 3, WIDTH), frames)


def test_scan_takes_one_cycle_per_padded_position():
    """Throughput: at full rate each frame's scan is busy for exactly
    DepthwiseEngine.scan_cycles, one cycle per padded position, and the next frame's
    scan follows FRAME_GAP cycles later."""
    rng = np.random.default_rng(3)
    frames = [_frame(rng, 3) for _ in range(3)]
    dut = DepthwiseEngine(LANES, 3, WIDTH)
    got, busy = _run(dut, frames)
    np.testing.assert_array_equal(got, np.concatenate([e.reshape(-1, LANES) for *_, e in frames]))
    start = busy[0]
    for params, x, _ in frames:
        pads = [params[f"pad_{side}"] for side in ("top", "left", "bottom", "right")]
        n = DepthwiseEngine.scan_cycles(*x.shape[:2], pads)
        assert busy[:n] == list(range(start, start + n))
        busy, start = busy[n:], start + n + DepthwiseEngine.FRAME_GAP
    assert busy == []


def test_latency_is_declared():
    """A 3x3 frame with no padding emits once, LATENCY cycles after its last pixel."""
    dut = DepthwiseEngine(LANES, 3, WIDTH)
    layout = params_layout(LANES, 3, WIDTH)
    params = {"width": 3, "height": 3, "zp": 0, "w": [[1] * 9] * LANES}
    seen = []

    async def testbench(ctx):
        ctx.set(dut.o_acc.ready, 1)
        ctx.set(dut.i_params.payload.as_value(), pack(layout, params))
        ctx.set(dut.i_params.valid, 1)
        await ctx.tick()
        ctx.set(dut.i_params.valid, 0)
        ctx.set(dut.i_pixel.valid, 1)
        ctx.set(dut.i_pixel.payload.as_value(), 0x01010101)
        last = None
        for cycle in range(3 * dut.LATENCY):
            if ctx.get(dut.i_pixel.valid) and ctx.get(dut.i_pixel.ready):
                last = cycle
            if ctx.get(dut.o_acc.valid):
                seen.append(cycle - last)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [dut.LATENCY]


def test_lut_multipliers_compute_the_same():
    rng = np.random.default_rng(21)
    frames = [_frame(rng, 3) for _ in range(2)]
    _check(DepthwiseEngine(LANES, 3, WIDTH, multiplier="lut"), frames, p_valid=0.9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lanes": 3}, "lanes must be a power of two, not 3"),
        ({"lanes": 4, "kernel": 7}, "kernel must be 3 or 5, not 7"),
        ({"lanes": 4, "width": 100}, "width must be a power of two of at least 8, not 100"),
        ({"lanes": 4, "multiplier": "x"}, "multiplier must be 'dsp' or 'lut', not 'x'"),
    ],
)
def test_constructor_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DepthwiseEngine(**kwargs)


def test_from_config():
    cfg = dataclasses.replace(preset("ultra96"), dw_lanes=2, dw_kernel=5, dw_width=128)
    dut = DepthwiseEngine.from_config(cfg)
    assert (dut.lanes, dut.kernel, dut.width) == (2, 5, 128)
    Fragment.get(dut, None)  # it elaborates
    with pytest.raises(ValueError, match="has no depthwise engine"):
        DepthwiseEngine.from_config(preset("ultra96"))


def test_config_fields():
    base = preset("ultra96")
    assert base.dw_lanes == 0
    # No engine: the dw_* fields do not change the identity of existing builds.
    assert dataclasses.replace(base, dw_kernel=5, dw_width=64).config_id == base.config_id
    assert not any(name.startswith("dw_") for name in base.to_dict())  # serialized as before
    on = dataclasses.replace(base, dw_lanes=16)
    assert on.config_id != base.config_id
    assert type(on).from_dict(on.to_dict()) == on
    assert dataclasses.replace(on, dw_kernel=5).config_id != on.config_id
    for kwargs, message in (
        ({"dw_lanes": 12}, "dw_lanes must be 0 or a power of two, not 12"),
        ({"dw_kernel": 4}, "dw_kernel must be 3 or 5, not 4"),
        ({"dw_width": 100}, "dw_width must be a power of two of at least 8, not 100"),
    ):
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(base, **kwargs)


def test_embed_kernel_refuses_even_or_large():
    with pytest.raises(ValueError, match="kernel must be square, odd and at most 3"):
        embed_kernel(np.zeros((1, 5, 5)), 3)


def test_lut_product_every_operand_pair():
    """The Booth LUT multiplier's two halves sum to x * w for every 9-bit x and 8-bit w."""
    from amaranth.hdl import Module, Signal, signed
    from bamboo.hw.dwengine import _lut_partials

    m = Module()
    x, w, y = Signal(signed(9)), Signal(signed(8)), Signal(signed(20))
    lo, hi = _lut_partials(x, w)
    m.d.comb += y.eq(lo + hi)
    bad = []

    async def testbench(ctx):
        for xv in range(-256, 256):
            ctx.set(x, xv)
            for wv in range(-128, 128):
                ctx.set(w, wv)
                if ctx.get(y) != xv * wv:
                    bad.append((xv, wv))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    assert bad == []
