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


def depthwise_case(cfg, rng, *, kernel=None, stride=None, out=None, inp_base=0, wgt_base=0):
    """Random depthwise tile: returns (inp, wgt, insn, expected (Ho*Wo, cols), layer)."""
    R, C = cfg.rows, cfg.cols
    lanes, step = cfg.depthwise_channels, cfg.depthwise_column_step
    kh, kw = kernel or (int(rng.choice([1, 3])), int(rng.integers(1, min(3, R) + 1)))
    sh, sw = stride or (int(rng.choice([1, 2])), int(rng.choice([1, 2])))
    dh = int(rng.choice([1, 2]))
    ho, wo = out or (int(rng.integers(1, 5)), int(rng.integers(1, 6)))
    hp, wp = (ho - 1) * sh + dh * (kh - 1) + 1, (wo - 1) * sw + kw + int(rng.integers(0, 3))
    pads = (int(kh > 1), int(kw > 1), 0, 0)
    dtype = np.int8 if rng.random() < 0.5 else np.uint8
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max + 1, (1, hp - pads[0], wp - pads[1], lanes)).astype(dtype)
    zp = packed_zp(cfg, dtype) if cfg.dsp_packing else int(rng.integers(info.min, info.max + 1))
    w = rng.integers(weight_min(cfg), 128, (lanes, kh, kw, 1)).astype(np.int8)
    acc = conv2d_acc(x, zp, w, stride=(sh, sw), dilation=(dh, 1), pads=pads, groups=lanes)[0]
    acc = acc[:ho, :wo]  # the row pitch may hold pixels past the tile
    expected = np.zeros((ho * wo, C), dtype=np.int64)
    expected[:, :lanes] = acc.reshape(ho * wo, lanes)

    xp = np.pad(x[0], ((pads[0], 0), (pads[1], 0), (0, 0)), constant_values=zp)
    inp_addr = inp_base + int(rng.integers(0, 8))
    wgt_addr = wgt_base + int(rng.integers(0, 8))
    inp = {}
    for y in range(hp):
        for xx in range(wp):
            word = np.zeros(R, dtype=np.uint8)
            word[:lanes] = xp[y, xx].view(np.uint8)
            inp[inp_addr + y * wp + xx] = word
    # Depthwise WGT word of kernel row ky: w[c * step][r] = weight(c, ky, r), 0 for r >= kw.
    wgt = {}
    for ky in range(kh):
        word = np.zeros((C, R), dtype=np.int64)
        word[:lanes * step:step, :kw] = w[:, ky, :, 0]
        wgt[wgt_addr + ky] = word
    insn = encode_conv(
        mode=ConvMode.DEPTHWISE, kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw,
        dilation_h=dh, dilation_w=1, out_h=ho, out_w=wo, in_w=wp, in_blocks=1,
        inp_addr=inp_addr, inp_block_stride=0, wgt_addr=wgt_addr, out_addr=5, acc_init=1,
        acc_emit=1, signed=int(dtype == np.int8), in_zp=zp & 0xFF)
    return inp, wgt, insn, expected, (kh, kw, sh, sw, ho, wo)


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
@pytest.mark.parametrize("seed", range(5))
def test_random_depthwise(cfg_name, seed, diff_cases):
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(200 + seed)
    inp, wgt, insn, expected, _ = depthwise_case(cfg, rng)
    acc, _ = simulate(cfg, inp, wgt, [insn], expected.shape[0], rng,
                      ready_prob=0.7 if seed % 2 else 1.0)
    np.testing.assert_array_equal(acc, expected)
    diff_cases("hw.compute.depthwise", acc.size)


@pytest.mark.parametrize("cfg_name", ["tiny", "4x8p"])     # 3-wide kernel rows
def test_dense_depthwise_dense(cfg_name):
    """Mode switches reuse the weight banks and ACC: nothing leaks between instructions."""
    cfg = CONFIGS[cfg_name]
    rng = np.random.default_rng(5)
    layer = random_layer(rng, cfg, kernel=3, stride=1, dilation=1, blocks=2, out=(2, 2))
    d_inp, d_wgt, _, wp, stride_blk = buffers(cfg, layer, 0, 0, 0)
    dense = encode_conv(mode=ConvMode.DENSE, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1,
                        dilation_h=1, dilation_w=1, out_h=2, out_w=2, in_w=wp, in_blocks=2,
                        inp_addr=0, inp_block_stride=stride_blk, wgt_addr=0, out_addr=5,
                        acc_init=1, acc_emit=1, signed=int(layer["x"].dtype == np.int8),
                        in_zp=layer["zp"] & 0xFF)
    # The depthwise tile sits past the dense one in both buffers.
    inp, wgt, insn, expected, _ = depthwise_case(cfg, rng, kernel=(3, 3), stride=(1, 1),
                                                 out=(2, 3), inp_base=512, wgt_base=128)
    acc, _ = simulate(cfg, {**d_inp, **inp}, {**d_wgt, **wgt}, [dense, insn, dense],
                      [4, 6, 4], rng)
    dense_acc = expected_dense(layer).reshape(4, cfg.cols)
    np.testing.assert_array_equal(acc[:4], dense_acc)
    np.testing.assert_array_equal(acc[4:10], expected)
    np.testing.assert_array_equal(acc[10:], dense_acc)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
def test_depthwise_utilization(stride, record_property):
    """MAC utilization of 3x3 depthwise: useful MACs / (rows * cols * busy cycles)."""
    cfg = CONFIGS["tiny"]
    rng = np.random.default_rng(9)
    inp, wgt, insn, expected, (kh, kw, sh, sw, ho, wo) = depthwise_case(
        cfg, rng, kernel=(3, 3), stride=stride, out=(6, 8))
    acc, stats = simulate(cfg, inp, wgt, [insn], expected.shape[0], rng)
    np.testing.assert_array_equal(acc, expected)
    assert stats["busy"] == conv_cycles(cfg, ho * (sw * (wo - 1) + kw), kh, ho * wo)
    lanes = min(cfg.rows, cfg.cols)
    util = ho * wo * kh * kw * lanes / (cfg.rows * cfg.cols * stats["busy"])
    record_property("mac_utilization", f"{stride}: {util:.3f} {stats}")
    print(f"depthwise 3x3 stride {stride}: MAC utilization {util:.3f} {stats}")
    assert util > 0
