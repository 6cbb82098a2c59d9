"""Depthwise CONV on the ComputeUnit (DepthwiseWalker + the array's depthwise mode)
against bamboo.runtime.conv.conv2d_acc with groups = channels."""

import numpy as np
import pytest
from bamboo.arch.isa import ConvMode
from bamboo.hw.compute import conv_cycles
from bamboo.runtime.conv import conv2d_acc
from test_compute import (
    CONFIGS,
    buffers,
    encode_conv,
    packed_zp,
    random_layer,
    simulate,
    weight_min,
)
from test_compute import expected as expected_dense


def depthwise_case(
    cfg, rng, *, kernel=None, stride=None, out=None, inp_base=0, wgt_base=0, channels=None
):
    """Random depthwise tile: returns (inp, wgt, insn, expected (Ho*Wo, cols), layer).

    INP holds channel block ``b`` at ``inp_addr + b * inp_block_stride``; WGT word ``q``
    holds kernel row ``ky = q * G + g`` in rows ``g * rows / G ..`` (arch/isa.py).
    """
    R, C = cfg.rows, cfg.cols
    lanes, step = cfg.depthwise_channels, cfg.depthwise_column_step
    n = channels or lanes  # channels present; the rest of the lanes compute 0
    kh, kw = kernel or (int(rng.choice([1, 2, 3])), int(rng.integers(1, min(3, R) + 1)))
    sh, sw = stride or (int(rng.choice([1, 2])), int(rng.choice([1, 2])))
    dh = int(rng.choice([1, 2]))
    ho, wo = out or (int(rng.integers(1, 5)), int(rng.integers(1, 6)))
    hp, wp = (ho - 1) * sh + dh * (kh - 1) + 1, (wo - 1) * sw + kw + int(rng.integers(0, 3))
    pads = (int(kh > 1), int(kw > 1), 0, 0)
    dtype = np.int8 if rng.random() < 0.5 else np.uint8
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (1, hp - pads[0], wp - pads[1], n)).astype(dtype)
    zp = packed_zp(cfg, dtype) if cfg.dsp_packing else int(rng.integers(info.min, info.max + 1))
    w = rng.integers(weight_min(cfg), 128, (n, kh, kw, 1)).astype(np.int8)
    acc = conv2d_acc(x, zp, w, stride=(sh, sw), dilation=(dh, 1), pads=pads, groups=n)[0]
    acc = acc[:ho, :wo]  # the row pitch may hold pixels past the tile
    expected = np.zeros((ho * wo, C), dtype=np.int64)
    expected[:, :n] = acc.reshape(ho * wo, n)

    xp = np.pad(x[0], ((pads[0], 0), (pads[1], 0), (0, 0)), constant_values=zp)
    inp_addr = inp_base + int(rng.integers(0, 8))
    wgt_addr = wgt_base + int(rng.integers(0, 8))
    blk_stride = hp * wp + int(rng.integers(0, 3))
    inp = {}
    for b in range(-(-lanes // R)):
        for y in range(hp):
            for xx in range(wp):
                word = rng.integers(0, 256, R).astype(np.uint8)  # absent channels: noise
                have = xp[y, xx, b * R : (b + 1) * R].view(np.uint8)
                word[: len(have)] = have
                inp[inp_addr + b * blk_stride + y * wp + xx] = word
    groups = cfg.depthwise_row_groups(kw)
    rg = R // groups
    wgt = {}
    for q in range(cfg.depthwise_passes(kh, kw)):
        word = np.zeros((C, R), dtype=np.int64)
        for g in range(groups):
            if q * groups + g < kh:
                word[: n * step : step, g * rg : g * rg + kw] = w[:, q * groups + g, :, 0]
        wgt[wgt_addr + q] = word
    insn = encode_conv(
        mode=ConvMode.DEPTHWISE,
        kernel_h=kh,
        kernel_w=kw,
        stride_h=sh,
        stride_w=sw,
        dilation_h=dh,
        dilation_w=1,
        out_h=ho,
        out_w=wo,
        in_w=wp,
        in_blocks=1,
        inp_addr=inp_addr,
        inp_block_stride=blk_stride,
        wgt_addr=wgt_addr,
        out_addr=5,
        acc_init=1,
        acc_emit=1,
        signed=int(dtype == np.int8),
        in_zp=zp & 0xFF,
    )
    return inp, wgt, insn, expected, (kh, kw, sh, sw, ho, wo)


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", range(5))
def test_random_depthwise(cfg_name, seed, diff_cases):
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(200 + seed)
    # Odd seeds leave some of the instruction's channels absent (the last group of a layer).
    n = int(rng.integers(1, cfg.depthwise_channels + 1)) if seed % 2 else None
    inp, wgt, insn, expected, _ = depthwise_case(cfg, rng, channels=n)
    acc, _ = simulate(
        cfg, inp, wgt, [insn], expected.shape[0], rng, ready_prob=0.7 if seed % 2 else 1.0
    )
    np.testing.assert_array_equal(acc, expected)
    diff_cases("hw.compute.depthwise", acc.size)


@pytest.mark.parametrize("cfg_name", ["tiny", "4x8p", "8x32p"])  # 3-wide kernel rows
def test_dense_depthwise_dense(cfg_name):
    """Mode switches reuse the weight banks and ACC: nothing leaks between instructions."""
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(5)
    layer = random_layer(rng, cfg, kernel=3, stride=1, dilation=1, blocks=2, out=(2, 2))
    d_inp, d_wgt, _, wp, stride_blk = buffers(cfg, layer, 0, 0, 0)
    dense = encode_conv(
        mode=ConvMode.DENSE,
        kernel_h=3,
        kernel_w=3,
        stride_h=1,
        stride_w=1,
        dilation_h=1,
        dilation_w=1,
        out_h=2,
        out_w=2,
        in_w=wp,
        in_blocks=2,
        inp_addr=0,
        inp_block_stride=stride_blk,
        wgt_addr=0,
        out_addr=5,
        acc_init=1,
        acc_emit=1,
        signed=int(layer["x"].dtype == np.int8),
        in_zp=layer["zp"] & 0xFF,
    )
    # The depthwise tile sits past the dense one in both buffers.
    inp, wgt, insn, expected, _ = depthwise_case(
        cfg, rng, kernel=(3, 3), stride=(1, 1), out=(2, 3), inp_base=512, wgt_base=128
    )
    acc, _ = simulate(cfg, {**d_inp, **inp}, {**d_wgt, **wgt}, [dense, insn, dense], [4, 6, 4], rng)
    dense_acc = expected_dense(layer).reshape(4, cfg.cols)
    np.testing.assert_array_equal(acc[:4], dense_acc)
    np.testing.assert_array_equal(acc[4:10], expected)
    np.testing.assert_array_equal(acc[10:], dense_acc)


@pytest.mark.parametrize(
    "cfg_name,kernel",
    [
        ("8x32p", (3, 3)),
        ("8x32p", (5, 5)),
        ("8x32p", (4, 4)),
        ("tiny", (3, 2)),
        ("tiny", (3, 3)),
        ("4x8p", (2, 2)),
    ],
)
def test_depthwise_groups(cfg_name, kernel):
    """Kernel rows on row groups when a kernel row fits a group (8x32p: kw <= 4, tiny:
    kw <= 2), one group of all rows when it does not; strided, with back-pressure."""
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(sum(kernel))
    for stride in ((1, 1), (2, 2)):
        inp, wgt, insn, expected, (kh, kw, sh, sw, ho, wo) = depthwise_case(
            cfg, rng, kernel=kernel, stride=stride, out=(3, 4)
        )
        acc, stats = simulate(cfg, inp, wgt, [insn], expected.shape[0], rng, ready_prob=0.8)
        np.testing.assert_array_equal(acc, expected)


@pytest.mark.parametrize("cfg_name", ["tiny", "8x32p"])
@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_depthwise_utilization(cfg_name, stride, record_property):
    """MAC utilization of 3x3 depthwise: useful MACs / (rows * cols * busy cycles), and
    per multiplier (DSP) for a packed array; busy is conv_cycles of the passes."""
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(9)
    inp, wgt, insn, expected, (kh, kw, sh, sw, ho, wo) = depthwise_case(
        cfg, rng, kernel=(3, 3), stride=stride, out=(6, 8)
    )
    acc, stats = simulate(cfg, inp, wgt, [insn], expected.shape[0], rng)
    np.testing.assert_array_equal(acc, expected)
    passes = cfg.depthwise_passes(kh, kw)
    assert passes == (2 if cfg_name == "8x32p" else 3)
    assert stats["busy"] == conv_cycles(cfg, ho * (sw * (wo - 1) + kw), passes, ho * wo, True)
    macs = ho * wo * kh * kw * cfg.depthwise_channels
    util = macs / (cfg.macs_per_cycle * stats["busy"])
    dsp = macs / (cfg.dsp_count * stats["busy"])
    record_property("mac_utilization", f"{cfg_name} {stride}: {util:.3f} {stats}")
    print(
        f"{cfg_name} depthwise 3x3 stride {stride}: MAC utilization {util:.3f}, "
        f"per multiplier {dsp:.3f} {stats}"
    )
    assert util > 0


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_utilization_ultra96_tiles(stride):
    """3x3 depthwise for a 28x28 (ACC-sized) tile by conv_cycles, which
    test_depthwise_utilization checks against the ComputeUnit: on the 8 x 32 packed array
    (the ultra96 preset until session 16), two channel blocks and two row groups against
    one of each (the mapping before them); and on today's ultra96 (16 x 32, one block, two
    groups). Prints the figures docs/compute.md quotes (``-s``)."""
    from dataclasses import replace

    from bamboo.arch.config import preset
    from configs import X8X32 as x8x32

    ultra96 = preset("ultra96")
    before = replace(x8x32, depthwise_blocks=1, depthwise_groups=1)
    ho = wo = 28
    words = ho * (stride * (wo - 1) + 3)
    util = {}
    for name, cfg in (("8x32 now", x8x32), ("8x32 before", before), ("ultra96", ultra96)):
        passes = cfg.depthwise_passes(3, 3)
        macs = ho * wo * 9 * cfg.depthwise_channels
        busy = conv_cycles(cfg, words, passes, ho * wo, depthwise=True)
        util[name] = macs / (cfg.macs_per_cycle * busy)
        streaming = macs / (cfg.macs_per_cycle * passes * words)
        print(
            f"stride {stride} {name}: MAC utilization {util[name]:.3f} "
            f"(per DSP {2 * util[name]:.3f}), while streaming {streaming:.3f} "
            f"(per DSP {2 * streaming:.3f})"
        )
    assert util["8x32 now"] > 2.5 * util["8x32 before"]
    # 16 rows with one block: the same 16 depthwise channels on twice the MACs.
    assert util["ultra96"] < util["8x32 now"]
