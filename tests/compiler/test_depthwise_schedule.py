"""Depthwise schedules: the LOADs a depthwise layer issues, its tile shapes, bit-exactness.

A depthwise CONV computes ``depthwise_channels`` channels (a group) from two WGT words
(3x3, two row groups) and one PARAM word, while every LOAD costs the load unit the read
latency and its fixed overheads (~60 cycles at 250 MHz on ultra96) on top of its chunks.
Small maps (14x14, 7x7) are load-bound on those LOADs, so the WGT words of several groups
come in one LOAD (batches) and PARAM words two groups at a time; large stride-2 maps are
bound by the load unit writing one INP word a cycle, so their tiles minimise the words
loaded (halo) and LOADs.
"""

import numpy as np
import pytest
from bamboo.arch import isa, preset
from bamboo.arch import timing as T
from bamboo.compiler.backend import lower_graph
from bamboo.compiler.backend.tiling import wgt_batches
from bamboo.compiler.partition import partition
from bamboo.sim import cycles
from configs import X8X32
from isa_graphs import check_bounds, conv_graph, run_both
from test_backend import race_check

#: Two channel blocks at full size: the 8 x 32 array (the 16 x 32 ultra96 has one block).
U96 = X8X32


def _loads(compiled, buffer):
    return [
        f
        for f in map(isa.decode, compiled.words)
        if f["opcode"] == isa.Opcode.LOAD and f["buffer"] == buffer
    ]


def _convs(compiled):
    return [f for f in map(isa.decode, compiled.words) if f["opcode"] == isa.Opcode.CONV]


def _words(f):
    return (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * (
        f["pad_left"] + f["x_size"] + f["pad_right"]
    )


def test_wgt_batches_double_up_to_the_cap_and_cover_every_group():
    assert [b for _, b in wgt_batches(12, 4)] == [
        (0, 1),
        (1, 2),
        (1, 2),
        (3, 4),
        (3, 4),
        (3, 4),
        (3, 4),
        (7, 4),
        (7, 4),
        (7, 4),
        (7, 4),
        (11, 1),
    ]
    for n in (1, 5, 60, 97):
        for cap in (1, 3, 16, 1 << 16):
            batches = dict(wgt_batches(n, cap))
            assert sorted(batches) == list(range(n))
            assert all(f <= k < f + s and s <= cap for k, (f, s) in batches.items())


def test_small_depthwise_map_loads_weights_and_params_in_batches():
    """MobileNetV2's 7x7x960 depthwise (60 groups of 16 channels, one tile each): two INP
    LOADs a group (one per padded block) and, for all 60 groups, at most 30 PARAM LOADs
    (two words a slot) and log2(60) + 60 / 128 WGT LOADs (batches doubling up to a slot of
    256 words), where it took a WGT and a PARAM LOAD per group (120) before."""
    compiled = lower_graph(partition(conv_graph(7, 7, 960, 960, group=960)), U96)
    groups = len(_convs(compiled))
    assert groups == 60
    assert len(_loads(compiled, isa.Buffer.INP)) == 2 * groups
    assert len(_loads(compiled, isa.Buffer.PARAM)) == groups // 2
    assert len(_loads(compiled, isa.Buffer.WGT)) <= 7
    # every group's weights loaded exactly once
    assert sum(f["x_size"] for f in _loads(compiled, isa.Buffer.WGT)) == 2 * groups
    # on the ultra96 memory the layer is well within twice its compute (2.08x before)
    rep = cycles.model_compiled(compiled, T.BOARDS["ultra96"], 250.0)
    assert rep.total < 1.8 * rep.busy["compute"], rep.busy


def test_compute_bound_depthwise_keeps_a_wgt_load_per_group():
    """With spare load time per tile, a group's WGT LOAD hides behind the compute; a batch,
    all loaded with one tile, would stall it (EfficientNet's 14x14x672 5x5)."""
    compiled = lower_graph(partition(conv_graph(14, 14, 672, 672, k=5, group=672)), U96)
    assert len(_loads(compiled, isa.Buffer.WGT)) == len(_convs(compiled)) == 42


def test_stride2_depthwise_loads_little_beyond_its_input():
    """MobileNetV2's 112x112x96 stride-2 depthwise is bound by the load unit writing one
    INP word (8 bytes) a cycle, 2 GB/s at 250 MHz, below the DDR's 3.2: its time is the words
    it loads. Tiles of 14 x 28 outputs read 29 x 57 input words a block: a halo row per 28
    rows and a padding column per 56, 1.054 x the input (8 x 56 tiles, 17 x 113: 1.072 x)."""
    compiled = lower_graph(partition(conv_graph(112, 112, 96, 96, stride=2, group=96)), U96)
    inp = _loads(compiled, isa.Buffer.INP)
    assert sum(map(_words, inp)) <= 1.06 * 112 * 112 * (96 // U96.rows)
    assert {(f["out_h"], f["out_w"]) for f in _convs(compiled)} == {(14, 28)}
    for w in compiled.words:
        check_bounds(w, U96)


CASES = {  # (h, w, channels, k, stride): groups batched or not, a last short group, chunks
    "7x7_c200": (7, 7, 200, 3, 1),
    "9x8_c72_s2": (9, 8, 72, 3, 2),
    "6x6_c100_k5": (6, 6, 100, 5, 1),
    "5x7_c90_k9": (5, 7, 90, 9, 1),
    "20x20_c48": (20, 20, 48, 3, 1),
    "5x5_c64_k5_s2": (5, 5, 64, 5, 2),  # tiny: batches of two-chunk groups
}


@pytest.mark.parametrize("config", ["tiny", "ultra96", "x8x32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_depthwise_schedules_bit_exact(case, config):
    h, w, c, k, s = CASES[case]
    cfg = X8X32 if config == "x8x32" else preset(config)
    g = conv_graph(h, w, c, c, k=k, stride=s, group=c, seed=sum(map(ord, case)))
    ref, got, _, compiled = run_both(g, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    for word in compiled.words:
        check_bounds(word, cfg)
    race_check(compiled.words, cfg, compiled.plan.footprint, seed=3)
    if case == "7x7_c200" and config == "x8x32":  # load-bound: batched
        assert len(_loads(compiled, isa.Buffer.WGT)) < len(_convs(compiled))
