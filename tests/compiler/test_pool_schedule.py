"""Global pools past the VEC window (compiler/backend/tiling.py ``pool_*``, lower.py
``_gap_pool``): depthwise CONVs with all-ones kernels over bands of rows, chained in ACC.

A map larger than half of INP is pooled in bands on the fabric, bit-exact, on one-block
(tiny, ultra96) and two-block (8 x 32) depthwise mappings; the windows cover each band's
pixels exactly once; a band's LOAD overlaps the previous band's CONVs, so a large pool
is bound by its CONVs, not by LOADs waiting behind a full compute queue.
"""

import dataclasses

import numpy as np
import pytest
from bamboo.arch import isa, preset
from bamboo.arch import timing as T
from bamboo.compiler.backend import lower_graph
from bamboo.compiler.backend.check import fabric_reason
from bamboo.compiler.backend.tiling import pool_bands, pool_kernel, pool_shapes, pool_windows
from bamboo.compiler.partition import partition
from bamboo.sim import cycles
from configs import X8X32
from isa_graphs import check_bounds, gap_graph, run_both
from test_backend import race_check

CONFIGS = {"tiny": preset("tiny"), "ultra96": preset("ultra96"), "x8x32": X8X32}


def _convs(compiled):
    return [f for f in map(isa.decode, compiled.words) if f["opcode"] == isa.Opcode.CONV]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pool_windows_cover_each_pixel_once_within_the_isa(name):
    c = CONFIGS[name]
    kh, kw = pool_kernel(c)
    assert kw <= c.rows and kh <= isa.field(isa.Opcode.CONV, "kernel_h").max
    for n in (1, kw - 1, kw, kh * kw, kh * kw + 1, 777, 4096):
        if n < 1:
            continue
        wins = pool_windows(c, n)
        covered = [p for p0, h, w in wins for p in range(p0, p0 + h * w)]
        assert covered == list(range(n)), (name, n)
        assert len({(h, w) for _, h, w in wins}) <= 3  # the WGT blob: three shapes at most


def test_pool_kernel_takes_the_fewest_cycles_a_pixel():
    """ultra96 (16 rows in two groups, array latency 34): 12 x 8 windows, six passes of
    two kernel rows, 140 + 26 cycles for 96 pixels; the 15 x 15 window (one group of 15
    rows, 15 passes) takes 398 + 26 for 225."""
    c = preset("ultra96")
    assert pool_kernel(c) == (12, 8)
    assert T.conv_cycles(c, 8, c.depthwise_passes(12, 8)) == 140
    assert T.conv_cycles(c, 15, c.depthwise_passes(15, 15)) == 398


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pool_bands_fit_inp_and_the_queue(name):
    c = CONFIGS[name]
    kh, kw = pool_kernel(c)
    blocks = c.depthwise_channels // c.rows
    for h, w in ((16, 16), (64, 64), (128, 128), (7, 300), (40, 36)):
        bands = pool_bands(c, h, w)
        assert [y for y, _ in bands] == [sum(r for _, r in bands[:k]) for k in range(len(bands))]
        assert sum(r for _, r in bands) == h
        for _, r in bands:
            assert r * w * blocks <= c.input_buffer_depth // 2
            assert r == 1 or r * w <= isa.QUEUE_DEPTH * kh * kw
    assert pool_bands(preset("tiny"), 4, 513) is None  # a row past half of INP


def test_pool_whose_weights_do_not_fit_goes_to_the_cpu():
    """tiny's 14 x 4 windows over bands of two sizes: five shapes, 40 WGT words; a
    weight buffer of 64 words (32 a slot) cannot hold them."""
    c = preset("tiny")
    shapes = pool_shapes(c, 17, 65)
    assert sum(c.depthwise_passes(kh, kw) for kh, kw in shapes) == 40
    g = partition(gap_graph(17, 65, 4))
    assert fabric_reason(g.nodes[0], g, c) is None
    small = dataclasses.replace(c, weight_buffer_depth=64)
    assert fabric_reason(g.nodes[0], g, small) == (
        "global pool: its 40 all-ones WGT words exceed half the weight buffer"
    )


CASES = {  # (h, w, channels, signed): bands, a short channel block, a short group
    "19x17_c10": (19, 17, 10, False),
    "40x36_c10": (40, 36, 10, False),  # bands on every config
    "33x64_c40_int8": (33, 64, 40, True),  # 8 x 32: a group of one block last
    "16x70_c17": (16, 70, 17, False),  # the pixels past the last whole window
    "17x65_c4": (17, 65, 4, False),  # tiny: bands of two sizes, five window shapes
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_banded_pools_bit_exact(case, config):
    h, w, ch, signed = CASES[case]
    cfg = CONFIGS[config]
    ref, got, machine, compiled = run_both(gap_graph(h, w, ch, signed=signed), cfg)
    assert all(n.target == "fabric" for n in compiled.graph.nodes)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    for word in compiled.words:
        check_bounds(word, cfg)
    race_check(compiled.words, cfg, compiled.plan.footprint, seed=5)
    assert machine.tokens == {"l2c": 0, "c2l": 0, "c2s": 0, "s2c": 0}
    convs = _convs(compiled)
    assert all(f["mode"] == isa.ConvMode.DEPTHWISE for f in convs)
    assert sum(f["acc_init"] for f in convs) == sum(f["acc_emit"] for f in convs)


def test_large_pool_is_bound_by_its_convs():
    """EfficientNet-B4's 64 x 64 x 144 squeeze-excite pool on ultra96: five bands of 11
    rows (seven 12 x 8 windows and a 4 x 8) and one of 9, each LOAD behind a band's CONVs;
    the run takes within 5 % of its CONVs' busy time (a whole map per LOAD waited behind
    43 CONVs: 1.6x, and 14x the cycles with identity weights, a pixel per CONV tap)."""
    c = preset("ultra96")
    compiled = lower_graph(partition(gap_graph(64, 64, 144)), c)
    rep = cycles.model_compiled(compiled, T.BOARDS["ultra96"], 250.0)
    convs = _convs(compiled)
    assert pool_bands(c, 64, 64) == [(y, 11) for y in range(0, 55, 11)] + [(55, 9)]
    assert len(convs) == 9 * (5 * 8 + 6)
    assert rep.total < 1.05 * rep.busy["compute"], (rep.total, rep.busy)
    assert rep.total < 1.6 * 4096 * 9
