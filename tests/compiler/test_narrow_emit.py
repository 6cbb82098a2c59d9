"""Narrow emits (``AcceleratorConfig.depthwise_emit_turns``, CONV ``narrow``): a CONV whose
output block holds at most ``depthwise_channels`` channels, and every depthwise CONV,
post-processes only the first columns, in fewer turns.

The compiler marks exactly the dense output blocks of at most N channels, on a
configuration where that saves turns; the programs stay bit-exact (the instruction
simulator writes the skipped columns 0, so a store of one of them would show); the cycle
model charges the fewer turns.
"""

import dataclasses

import numpy as np
import pytest
from bamboo.arch import isa, preset
from bamboo.arch import timing as T
from configs import TINY_PACKED, X8X32
from isa_graphs import conv_graph, run_both

ULTRA96 = preset("ultra96")


def _convs(compiled):
    return [f for f in map(isa.decode, compiled.words) if f["opcode"] == isa.Opcode.CONV]


def test_emit_turns_follow_the_configuration():
    # ultra96: 16 depthwise channels, 8 lanes for 32 columns
    assert (ULTRA96.postproc_turns, ULTRA96.depthwise_emit_turns) == (4, 2)
    assert (TINY_PACKED.postproc_turns, TINY_PACKED.depthwise_emit_turns) == (4, 2)
    # a lane per column, or 2 turns: nothing to skip (a turn count of 1 would have to be
    # known before a beat's first group)
    assert X8X32.depthwise_emit_turns == X8X32.postproc_turns == 1
    assert dataclasses.replace(TINY_PACKED, postproc_lanes=8).depthwise_emit_turns == 2
    one_lane = dataclasses.replace(ULTRA96, postproc_lanes=2)  # 16 turns, 8 for 16 columns
    assert one_lane.depthwise_emit_turns == 8
    assert ULTRA96.emit_turns(True) == 2 and ULTRA96.emit_turns(False) == 4


@pytest.mark.parametrize(
    ("cin", "cout", "narrow"),
    [(16, 16, [1]), (16, 8, [1]), (16, 24, [0]), (16, 48, [0, 1]), (16, 64, [0, 0])],
)
def test_dense_blocks_of_at_most_n_channels_are_narrow(cin, cout, narrow):
    ref, got, _, compiled = run_both(conv_graph(6, 6, cin, cout, k=1, seed=cout), ULTRA96)
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(r, g)
    by_block = {}
    for f in _convs(compiled):
        assert f["mode"] == isa.ConvMode.DENSE
        by_block.setdefault(f["param_addr"], set()).add(f["narrow"])
    assert [by_block[k] for k in sorted(by_block)] == [{n} for n in narrow]


def test_no_narrow_where_it_saves_nothing():
    """A configuration whose depthwise emit takes all the turns gets no narrow CONVs."""
    _, _, _, compiled = run_both(conv_graph(6, 6, 8, 8, k=1), X8X32)
    assert not any(f["narrow"] for f in _convs(compiled))


def test_narrow_conv_cycles():
    """The cycle model charges a narrow emit ``depthwise_emit_turns`` cycles a pixel."""
    f = {
        "mode": isa.ConvMode.DENSE,
        "out_h": 7,
        "out_w": 9,
        "kernel_h": 1,
        "kernel_w": 1,
        "in_blocks": 1,
        "acc_emit": 1,
    }
    wide, narrow = T.conv_insn_cycles(ULTRA96, f), T.conv_insn_cycles(ULTRA96, {**f, "narrow": 1})
    assert wide - narrow == 7 * 9 * (4 - 2)
    dw = {**f, "mode": isa.ConvMode.DEPTHWISE, "kernel_h": 3, "kernel_w": 3, "stride_w": 1}
    assert T.conv_insn_cycles(ULTRA96, dw) == T.conv_insn_cycles(ULTRA96, {**dw, "narrow": 1})
