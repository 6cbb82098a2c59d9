"""CONV DEPTHWISE on the instruction simulator against ``runtime.conv.conv2d_acc``.

One CONV computes ``N = config.depthwise_channels`` channels: ``depthwise_blocks`` INP
blocks ``inp_block_stride`` apart, kernel rows in ``depthwise_row_groups(kernel_w)`` row
groups per WGT word (arch/isa.py, "CONV DEPTHWISE"). Kernels wider than ``rows`` run as
column chunks into one ACC, as the compiler lowers them. Everything the instruction must
not use (padding lanes, a missing block's words, the rest of INP) holds random codes.
"""

import numpy as np
import pytest
from bamboo.arch import AcceleratorConfig, isa, preset
from bamboo.compiler.backend.pack import depthwise_weights
from bamboo.runtime.conv import conv2d_acc
from bamboo.sim.isa import IsaSimError, Machine
from configs import X8X32

#: rows 4 x cols 8 unpacked with two blocks (N = 8), and 8 x 32 with four blocks of
#: four row groups (N = 32, two rows a group).
BLOCKS2 = AcceleratorConfig(name="blocks2", rows=4, cols=8, depthwise_blocks=2, depthwise_groups=2)
GROUPS4 = AcceleratorConfig(name="groups4", rows=8, cols=32, depthwise_blocks=4, depthwise_groups=4)
CONFIGS = {"blocks2": BLOCKS2, "groups4": GROUPS4}


def _config(name):
    return CONFIGS.get(name) or preset(name)


def _inp(m, cfg, x, base, stride, rng):
    """INP random, then channel ``c`` of ``x`` (1, H, W, C) at word ``base + (c // B) *
    stride + y * W + x``, lane ``c % B``."""
    B = cfg.rows
    m.inp[:] = rng.integers(0, 256, m.inp.shape, dtype=np.uint8)
    _, h, w, c = x.shape
    for blk in range(-(-c // B)):
        part = x[0, :, :, blk * B : (blk + 1) * B].reshape(h * w, -1)
        m.inp[base + blk * stride : base + blk * stride + h * w, : part.shape[1]] = part.view(
            np.uint8
        )


def _run(cfg, x, w, zp, stride, dilation, signed, rng):
    """ACC ``(Ho, Wo, N)`` after the chunked depthwise CONVs of ``w`` over all of ``x``."""
    B, (_, h, wd, _), (_, kh, kw, _) = cfg.rows, x.shape, w.shape
    ho, wo = (h - (kh - 1) * dilation - 1) // stride + 1, (wd - kw) // stride + 1
    m = Machine(cfg, np.zeros(64, np.uint8))
    base, block_stride = 5, h * wd + 3
    _inp(m, cfg, x, base, block_stride, rng)
    m.acc[:] = rng.integers(-1000, 1000, m.acc.shape)
    n = cfg.depthwise_channels
    words, macs = [], 0
    chunks = [(x0, min(B, kw - x0)) for x0 in range(0, kw, B)]
    for k, (x0, width) in enumerate(chunks):
        wgt = depthwise_weights(
            w[:, :, x0 : x0 + width],
            B,
            cfg.cols,
            cfg.depthwise_column_step,
            n,
            cfg.depthwise_row_groups(width),
        )[0]  # (passes, C*B)
        assert len(wgt) == cfg.depthwise_passes(kh, width)
        addr = 7 + 20 * k
        m.wgt[addr : addr + len(wgt)] = wgt.view(np.int8).reshape(len(wgt), cfg.cols, B)
        words.append(
            isa.encode(
                isa.Opcode.CONV,
                mode=isa.ConvMode.DEPTHWISE,
                kernel_h=kh,
                kernel_w=width,
                stride_h=stride,
                stride_w=stride,
                dilation_h=dilation,
                dilation_w=1,
                out_h=ho,
                out_w=wo,
                in_w=wd,
                in_blocks=1,
                inp_addr=base + x0,
                inp_block_stride=block_stride,
                wgt_addr=addr,
                acc_init=int(k == 0),
                in_zp=zp & 0xFF,
                signed=int(signed),
            )
        )
        macs += ho * wo * kh * width * n
    m.run(words)
    assert m.stats.macs == macs
    assert (m.acc[: ho * wo, n:] == 0).all()
    return m.acc[: ho * wo, :n].reshape(ho, wo, n)


CASES = [  # config, channels, (kh, kw), stride, dilation, signed
    ("ultra96", 13, (3, 3), 1, 1, False),  # two blocks, the second partial
    ("ultra96", 5, (3, 3), 2, 2, False),  # the second block missing
    ("ultra96", 16, (5, 5), 2, 1, True),  # 5 > rows / 2: one group, 5 passes
    ("ultra96", 11, (1, 1), 1, 1, False),
    ("ultra96", 16, (7, 7), 1, 1, False),
    ("ultra96", 9, (4, 4), 1, 3, True),  # 4 rows a group, 2 passes
    ("ultra96", 12, (5, 9), 1, 2, False),  # a zero-stuffed 5x5 at dilation 2: 8 + 1 columns
    ("zcu104", 16, (3, 3), 1, 1, True),
    ("tiny", 3, (7, 7), 2, 1, False),  # chunks of 4 and 3 columns
    ("tiny", 4, (5, 5), 1, 1, True),  # chunks of 4 (1 group) and 1 (2 groups)
    ("tiny", 2, (3, 2), 1, 2, False),  # 3 kernel rows in 2 groups
    ("pynqz2", 7, (3, 3), 2, 1, False),
    ("blocks2", 6, (3, 3), 1, 1, False),
    ("blocks2", 8, (5, 5), 2, 1, True),
    ("groups4", 29, (5, 2), 1, 1, False),  # 4 groups of 2 rows: 2 passes
    ("groups4", 32, (3, 3), 2, 2, True),  # 3 > 2: one group
]


@pytest.mark.parametrize("name,channels,k,stride,dilation,signed", CASES)
def test_depthwise_matches_conv2d_acc(name, channels, k, stride, dilation, signed):
    cfg = _config(name)
    rng = np.random.default_rng([channels, *k, stride, dilation, signed, len(name)])
    kh, kw = k
    dt = np.int8 if signed else np.uint8
    lo, hi = (-128, 128) if signed else (0, 256)
    x = rng.integers(
        lo, hi, (1, (kh - 1) * dilation + 2 * stride + 3, kw + 3 * stride + 2, channels)
    ).astype(dt)
    w = rng.integers(-127, 128, (channels, kh, kw, 1)).astype(np.int8)
    zp = int(rng.integers(lo, hi))
    got = _run(cfg, x, w, zp, stride, dilation, signed, rng)
    if cfg.dsp_packing:  # the packed array multiplies the low 8 bits of x - in_zp
        ref_x, ref_zp = (((x.astype(np.int64) - zp + 128) & 255) - 128).astype(np.int8), 0
    else:
        ref_x, ref_zp = x, zp
    want = conv2d_acc(
        ref_x, ref_zp, w, stride=(stride, stride), dilation=(dilation, 1), groups=channels
    )[0]
    assert np.array_equal(got[..., :channels], want)
    assert (got[..., channels:] == 0).all()  # padding lanes and missing blocks: zero weights


def test_depthwise_reads_every_block_inside_inp():
    """The second block's words are read even when no channel of it is used."""
    cfg = X8X32
    m = Machine(cfg, np.zeros(64, np.uint8))
    conv = isa.encode(
        isa.Opcode.CONV,
        mode=isa.ConvMode.DEPTHWISE,
        kernel_h=3,
        kernel_w=3,
        stride_h=1,
        stride_w=1,
        dilation_h=1,
        dilation_w=1,
        out_h=2,
        out_w=2,
        in_w=4,
        in_blocks=1,
        inp_addr=cfg.input_buffer_depth - 20,
        inp_block_stride=16,
        acc_init=1,
    )
    with pytest.raises(IsaSimError, match="INP words up to"):
        m.run([conv])


def test_depthwise_wgt_words_are_passes():
    """A 3x3 kernel in two row groups takes two WGT words: the last one may be the last
    word of WGT; a third would not fit."""
    cfg = preset("ultra96")
    fields = dict(
        mode=isa.ConvMode.DEPTHWISE,
        kernel_w=3,
        stride_h=1,
        stride_w=1,
        dilation_h=1,
        dilation_w=1,
        out_h=1,
        out_w=1,
        in_w=3,
        in_blocks=1,
        inp_block_stride=9,
        wgt_addr=cfg.weight_buffer_depth - 2,
        acc_init=1,
    )
    Machine(cfg, np.zeros(64, np.uint8)).run([isa.encode(isa.Opcode.CONV, kernel_h=3, **fields)])
    with pytest.raises(IsaSimError, match="WGT words beyond depth"):
        Machine(cfg, np.zeros(64, np.uint8)).run(
            [isa.encode(isa.Opcode.CONV, kernel_h=5, **fields)]
        )


#: A two-block build whose INP slot (128 words) takes both blocks' tiles only in pieces.
SMALL = AcceleratorConfig(
    name="blocks2_small",
    rows=4,
    cols=8,
    input_buffer_depth=256,
    acc_buffer_depth=64,
    output_buffer_depth=128,
    depthwise_blocks=2,
    depthwise_groups=2,
)
LAYERS = {  # name: conv_graph arguments
    "dw3x3_s1": dict(h=9, w=11, cin=21, cout=21, group=21, seed=1),
    "dw5x5_s2": dict(h=13, w=12, cin=13, cout=13, k=5, stride=2, group=13, seed=2),
    "dw7x7": dict(h=10, w=9, cin=6, cout=6, k=7, group=6, seed=3),
    "int8_dw1x1": dict(h=5, w=6, cin=11, cout=11, k=1, pad=0, group=11, signed=True, seed=4),
}


@pytest.mark.parametrize(
    "name", ["pynqz2", "kv260", "zcu104", "blocks2", "groups4", "blocks2_small"]
)
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_compiled_depthwise_bit_exact(layer, name):
    """Compiled depthwise layers (channel groups, tiles, column chunks) on the simulator."""
    from isa_graphs import check_bounds, conv_graph, run_both

    cfg = SMALL if name == "blocks2_small" else _config(name)
    ref, got, machine, compiled = run_both(conv_graph(**LAYERS[layer]), cfg)
    assert all(n.target == "fabric" for n in compiled.graph.nodes)
    assert np.array_equal(ref[0], got[0]), f"{np.count_nonzero(ref[0] != got[0])} differ"
    for word in compiled.words:
        check_bounds(word, cfg)
    convs = [isa.decode(w) for w in compiled.words if w & 0xF == isa.Opcode.CONV]
    groups = -(-LAYERS[layer]["cout"] // cfg.depthwise_channels)
    chunks = -(-LAYERS[layer].get("k", 3) // cfg.rows)
    assert len(convs) >= groups * chunks
    assert machine.stats.macs == compiled.stats["macs"]
