# amaranth: UnusedElaboratable=no
"""ComputeUnit (dense CONV) against bamboo.runtime.conv.conv2d_acc, on small arrays."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator
from bamboo.arch.config import AcceleratorConfig, preset
from bamboo.arch.isa import ConvMode, Opcode, encode
from bamboo.hw.compute import ComputeUnit, conv_cycles
from bamboo.runtime.conv import conv2d_acc

CONFIGS = {
    "tiny": preset("tiny"),
    "2x4": AcceleratorConfig(
        name="2x4",
        rows=2,
        cols=4,
        input_buffer_depth=1024,
        weight_buffer_depth=256,
        acc_buffer_depth=256,
        output_buffer_depth=256,
    ),
    # Two multiplies per DSP48E2 (WP486), as ultra96: 8-bit x - in_zp, weights >= -127.
    "4x8p": AcceleratorConfig(
        name="4x8p",
        rows=4,
        cols=8,
        input_buffer_depth=1024,
        weight_buffer_depth=256,
        acc_buffer_depth=256,
        output_buffer_depth=256,
        dsp_packing=True,
    ),
    # The ultra96 array (two MACs per DSP, two depthwise blocks and row groups) with
    # small buffers.
    "8x32p": AcceleratorConfig(
        name="8x32p",
        rows=8,
        cols=32,
        input_buffer_depth=1024,
        weight_buffer_depth=256,
        acc_buffer_depth=64,
        output_buffer_depth=64,
        dsp_packing=True,
        depthwise_blocks=2,
        depthwise_groups=2,
    ),
}


def encode_conv(**fields):
    """Encode a CONV word."""
    return encode(Opcode.CONV, **fields)


def packed_zp(cfg, dtype):
    """The zero point a packed array takes (8-bit ``x - zp``; the compiler folds the
    layer's own zero point into the bias: compiler/backend/pack.py ``in_zp_for``)."""
    return 0 if dtype == np.int8 else 128


def weight_min(cfg):
    """Smallest weight: a packed array needs [-127, 127] (onnxruntime's symmetric int8)."""
    return -127 if cfg.dsp_packing else -128


def random_layer(rng, cfg, *, kernel=None, stride=None, dilation=None, blocks=None, out=None):
    """A random dense conv layer tile: codes, weights, conv parameters."""
    R, C = cfg.rows, cfg.cols
    kh = kw = kernel or int(rng.choice([1, 3]))
    sh = sw = stride or int(rng.choice([1, 2]))
    dh = dw = dilation or int(rng.choice([1, 2]))
    nb = blocks or int(rng.integers(1, 4))
    ho, wo = out or (int(rng.integers(1, 5)), int(rng.integers(1, 6)))
    pads = tuple(int(p) for p in rng.integers(0, 2, 4)) if kh > 1 else (0, 0, 0, 0)
    # Padded input just large enough for the output, plus slack below one stride.
    hp = (ho - 1) * sh + dh * (kh - 1) + 1 + int(rng.integers(0, sh))
    wp = (wo - 1) * sw + dw * (kw - 1) + 1 + int(rng.integers(0, sw))
    h, w = hp - pads[0] - pads[2], wp - pads[1] - pads[3]
    if h < 1 or w < 1:
        pads, h, w = (0, 0, 0, 0), hp, wp
    dtype = np.int8 if rng.random() < 0.5 else np.uint8
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (1, h, w, nb * R)).astype(dtype)
    zp = packed_zp(cfg, dtype) if cfg.dsp_packing else int(rng.integers(info.min, info.max + 1))
    wt = rng.integers(weight_min(cfg), 128, (C, kh, kw, nb * R)).astype(np.int8)
    return dict(x=x, zp=zp, w=wt, pads=pads, stride=(sh, sw), dilation=(dh, dw), blocks=nb)


def buffers(cfg, layer, inp_addr, wgt_addr, slack):
    """INP words (per block, padded with the zero point) and WGT words of a layer."""
    R = cfg.rows
    x, (pt, pl, pb, pr) = layer["x"], layer["pads"]
    xp = np.pad(x[0], ((pt, pb), (pl, pr), (0, 0)), constant_values=layer["zp"])
    hp, wp, _ = xp.shape
    stride_blk = hp * wp + slack
    inp = {}
    for b in range(layer["blocks"]):
        for y in range(hp):
            for xx in range(wp):
                inp[inp_addr + b * stride_blk + y * wp + xx] = xp[y, xx, b * R : (b + 1) * R].view(
                    np.uint8
                )
    co, kh, kw, _ = layer["w"].shape
    wgt = {}
    for b in range(layer["blocks"]):
        for ky in range(kh):
            for kx in range(kw):
                # WGT word layout: byte c * rows + r = w[c, ky, kx, b * rows + r].
                wgt[wgt_addr + (b * kh + ky) * kw + kx] = layer["w"][:, ky, kx, b * R : (b + 1) * R]
    return inp, wgt, hp, wp, stride_blk


def run(cfg, layer, *, split=1, seed=0, ready_prob=1.0):
    """Run a dense layer (its blocks split over `split` CONV instructions); return
    (accumulators (Ho, Wo, C), stats)."""
    rng = np.random.default_rng(seed)
    inp_addr, wgt_addr = int(rng.integers(0, 8)), int(rng.integers(0, 8))
    inp, wgt, insns, (ho, wo) = layer_program(cfg, layer, inp_addr, wgt_addr, split)
    acc, stats = simulate(cfg, inp, wgt, insns, ho * wo, rng, ready_prob)
    stats.update(taps=layer["w"].shape[1] * layer["w"].shape[2] * layer["blocks"])
    return acc.reshape(ho, wo, cfg.cols), stats


def layer_program(cfg, layer, inp_addr, wgt_addr, split=1, init=True):
    """INP and WGT words of a layer at the given addresses and its CONV words (its blocks
    split over ``split`` instructions; ``init``: the first starts from zero):
    ``(inp, wgt, insns, (out_h, out_w))``."""
    slack = 3
    inp, wgt, hp, wp, stride_blk = buffers(cfg, layer, inp_addr, wgt_addr, slack)
    (sh, sw), (dh, dw) = layer["stride"], layer["dilation"]
    _, kh, kw, _ = layer["w"].shape
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    nb = layer["blocks"]
    cuts = np.linspace(0, nb, split + 1).astype(int)
    insns = []
    for i in range(split):
        b0, b1 = cuts[i], cuts[i + 1]
        insns.append(
            encode_conv(
                mode=ConvMode.DENSE,
                kernel_h=kh,
                kernel_w=kw,
                stride_h=sh,
                stride_w=sw,
                dilation_h=dh,
                dilation_w=dw,
                out_h=ho,
                out_w=wo,
                in_w=wp,
                in_blocks=b1 - b0,
                inp_addr=inp_addr + b0 * stride_blk,
                inp_block_stride=stride_blk,
                wgt_addr=wgt_addr + b0 * kh * kw,
                out_addr=5,
                acc_init=int(i == 0 and init),
                acc_emit=int(i == split - 1),
                signed=int(layer["x"].dtype == np.int8),
                in_zp=layer["zp"] & 0xFF,
            )
        )
    return inp, wgt, insns, (ho, wo)


def simulate(cfg, inp, wgt, insns, n_pix, rng, ready_prob=1.0):
    """Preload INP/WGT words, run CONV words in order, collect the o_acc beats (all
    instructions write OUT word 5 on). ``n_pix``: beats per emitting instruction (an int
    or a list). Returns (acc (beats, cols), status counts)."""
    R, C = cfg.rows, cfg.cols
    dut = ComputeUnit(cfg)
    beats, stats = [], {"active": 0, "busy": 0, "stall_weight": 0, "done": 0}

    async def bench(ctx):
        for a, word in inp.items():
            for r in range(R):
                ctx.set(dut.inp_mem.data[a][r], int(word[r]))
        for a, word in wgt.items():
            for c in range(C):
                for r in range(R):
                    ctx.set(dut.wgt_mem.data[a][c][r], int(word[c, r]))
        pending = list(insns)
        cycle = 0
        while stats["done"] < len(insns):
            ctx.set(dut.i_insn.valid, bool(pending))
            if pending:
                ctx.set(dut.i_insn.payload.as_value(), pending[0])
            ready = rng.random() < ready_prob
            ctx.set(dut.o_acc.ready, ready)
            if pending and ctx.get(dut.i_insn.ready):
                pending.pop(0)
            if ctx.get(dut.o_acc.valid) and ready:
                beats.append(
                    (
                        ctx.get(dut.o_acc.payload.out_addr),
                        [ctx.get(dut.o_acc.payload.acc[c]) for c in range(C)],
                        ctx.get(dut.o_acc.payload.last),
                    )
                )
            for k in stats:
                stats[k] += ctx.get(getattr(dut.status, k))
            await ctx.tick()
            cycle += 1
            assert cycle < 50000, "compute unit hung"
        stats["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # One emit after another, each beat numbered from OUT word 5, `last` on its end.
    sizes = n_pix if isinstance(n_pix, list) else [n_pix]
    assert [b[0] for b in beats] == [5 + p for n in sizes for p in range(n)]
    assert [b[2] for b in beats] == [int(p == n - 1) for n in sizes for p in range(n)]
    stats.update(pixels=sum(sizes))
    return np.array([b[1] for b in beats]), stats


def expected(layer):
    return conv2d_acc(
        layer["x"],
        layer["zp"],
        layer["w"],
        stride=layer["stride"],
        dilation=layer["dilation"],
        pads=layer["pads"],
    )[0]


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", range(6))
def test_random_conv(cfg_name, seed, diff_cases):
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(100 + seed)
    layer = random_layer(rng, cfg)
    acc, stats = run(cfg, layer, seed=seed, ready_prob=0.7 if seed % 2 else 1.0)
    np.testing.assert_array_equal(acc, expected(layer))
    assert stats["active"] == stats["pixels"] * stats["taps"]
    if seed % 2 == 0:  # no backpressure: the cost model is exact
        assert stats["busy"] == conv_cycles(cfg, stats["pixels"], stats["taps"], stats["pixels"])
    diff_cases("hw.compute", acc.size)


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_split_over_blocks_accumulates(cfg_name):
    """acc_init=0 / acc_emit=0 chain: blocks over two instructions sum like one."""
    cfg = CONFIGS[cfg_name]
    layer = random_layer(np.random.default_rng(7), cfg, kernel=3, blocks=3, out=(3, 4))
    acc, _ = run(cfg, layer, split=2, seed=3)
    np.testing.assert_array_equal(acc, expected(layer))


def test_extremes_and_single_pixel():
    """Full-scale codes (no int32 or 9-bit overflow) and 1-pixel taps (RMW hazard)."""
    cfg = CONFIGS["tiny"]
    layer = random_layer(
        np.random.default_rng(1), cfg, kernel=3, stride=1, dilation=1, blocks=3, out=(1, 1)
    )
    layer["x"][:] = 0
    layer["x"] = layer["x"].astype(np.uint8)
    layer["zp"] = 255
    layer["w"][:] = -128
    acc, stats = run(cfg, layer)
    np.testing.assert_array_equal(acc, expected(layer))


@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (1, 1, 8, 8), (3, 2, 4, 4), (3, 1, 2, 2)])
def test_utilization(shape, record_property):
    """Measured array utilization (active / busy cycles) for a few layer shapes."""
    k, s, ho, wo = shape
    cfg = CONFIGS["tiny"]
    layer = random_layer(
        np.random.default_rng(2), cfg, kernel=k, stride=s, dilation=1, blocks=2, out=(ho, wo)
    )
    acc, stats = run(cfg, layer)
    np.testing.assert_array_equal(acc, expected(layer))
    assert stats["busy"] == conv_cycles(cfg, stats["pixels"], stats["taps"], stats["pixels"])
    util = stats["active"] / stats["busy"]
    record_property("utilization", f"{shape}: {util:.3f} ({stats})")
    print(f"k{k} s{s} {ho}x{wo} blocks 2: util {util:.3f} {stats}")
    assert util > 0


@pytest.mark.parametrize("ready_prob", [1.0, 0.6])
def test_acc_pingpong_overlaps_and_keeps_banks_apart(ready_prob):
    """Two ACC banks: layers run back to back (some split over two instructions, so a
    chain's second half accumulates in the bank its first half used while the emitter
    drains the other) give the same sums as one bank, in fewer cycles."""
    one = CONFIGS["4x8p"]
    two = dataclasses.replace(one, acc_banks=2)
    rng = np.random.default_rng(11)
    inp, wgt, insns, sizes, want = {}, {}, [], [], []
    inp_addr = wgt_addr = 0
    for split in (1, 2, 1, 2, 2, 1):
        layer = random_layer(rng, one, kernel=3, stride=1, dilation=1, blocks=2, out=(3, 5))
        i, w, words, (ho, wo) = layer_program(one, layer, inp_addr, wgt_addr, split)
        inp.update(i)
        wgt.update(w)
        insns += words
        sizes.append(ho * wo)
        want.append(expected(layer).reshape(-1, one.cols))
        inp_addr, wgt_addr = max(inp) + 1, max(wgt) + 1
    runs = {}
    for cfg in (one, two):
        acc, stats = simulate(cfg, inp, wgt, insns, sizes, np.random.default_rng(1), ready_prob)
        np.testing.assert_array_equal(acc, np.concatenate(want))
        assert stats["done"] == len(insns)
        runs[cfg.acc_banks] = stats
    # Each 15-pixel emit hides under the next instruction's 18 taps of 15 pixels.
    assert runs[2]["cycles"] < runs[1]["cycles"] - 4 * 15 * ready_prob


def test_a_chain_after_an_emit_continues_the_bank_it_finds():
    """A CONV without acc_init after an emitting one adds to the bank the MACs are in:
    with one bank the emitted sums, with two the other bank (zero here), as
    bamboo.sim.isa's banks (a compiler never emits such a chain; the hardware and the
    simulator must still agree on it)."""
    from bamboo.arch.isa import decode
    from bamboo.sim.isa import Machine
    from bamboo.sim.isa_ops import conv as isa_conv

    one = CONFIGS["4x8p"]
    rng = np.random.default_rng(5)
    first = random_layer(rng, one, kernel=1, stride=1, dilation=1, blocks=1, out=(2, 3))
    second = random_layer(rng, one, kernel=1, stride=1, dilation=1, blocks=1, out=(2, 3))
    inp, wgt, insns, _ = layer_program(one, first, 0, 0)
    i2, w2, insns2, _ = layer_program(one, second, max(inp) + 1, max(wgt) + 1, init=False)
    inp, wgt, insns = {**inp, **i2}, {**wgt, **w2}, insns + insns2
    a, b = expected(first).reshape(-1, one.cols), expected(second).reshape(-1, one.cols)
    for cfg, before in ((one, a), (dataclasses.replace(one, acc_banks=2), 0 * a)):
        acc, _ = simulate(cfg, inp, wgt, insns, [6, 6], np.random.default_rng(0))
        np.testing.assert_array_equal(acc[6:], b + before)
        # The instruction simulator's banks: the same accumulators before the emit.
        m = Machine(cfg, np.zeros(16, np.uint8))
        for addr, word in inp.items():
            m.inp[addr] = word
        for addr, word in wgt.items():
            m.wgt[addr] = word
        for word in insns:
            isa_conv(m, decode(word))
        np.testing.assert_array_equal(m.acc_banks[m.acc_bank - 1][:6], b + before)


def test_compute_unit_wants_a_config():
    with pytest.raises(TypeError, match=r"config must be an AcceleratorConfig, not 'tiny'"):
        ComputeUnit("tiny")
