"""hw/walker.py's DenseWalker and hw/depthwise.py's DepthwiseWalker alone: the command
stream of CONV instructions against a numpy model of each loop nest, for seeded random
instructions and the largest field values (arch's ``field().max``), with a random
``o_cmd.ready``. Only the commands are compared, never the cycles they take; each
command's ``tap_last`` and ``tap_final`` flags are derived from the model's taps."""

import numpy as np
import pytest
from bamboo.arch import PRESETS, isa
from bamboo.hw.depthwise import DepthwiseWalker
from bamboo.hw.isa_layout import instruction_layout
from bamboo.hw.walker import DenseWalker
from sim_bench import simulate

_CONV = isa.Opcode.CONV
_ACC_AW = 12
_MASK = 0xFFFF  # INP addresses and taps are 16-bit words (inp_addr's width)


def _max(name):
    return isa.field(_CONV, name).max


def dense_model(f):
    """(inp_addr, acc_addr, tap, write, last) of each command: ``for blk, ky, kx: for oy, ox``."""
    blk, ky, kx, oy, ox = np.meshgrid(
        np.arange(f["in_blocks"]),
        np.arange(f["kernel_h"]),
        np.arange(f["kernel_w"]),
        np.arange(f["out_h"]),
        np.arange(f["out_w"]),
        indexing="ij",
    )
    inp = (
        f["inp_addr"]
        + blk * f["inp_block_stride"]
        + (oy * f["stride_h"] + ky * f["dilation_h"]) * f["in_w"]
        + ox * f["stride_w"]
        + kx * f["dilation_w"]
    ) & _MASK
    acc = (oy * f["out_w"] + ox) % (1 << _ACC_AW)
    tap = (blk * f["kernel_h"] + ky) * f["kernel_w"] + kx
    n = inp.size
    last = np.arange(n) == n - 1
    return list(
        zip(
            inp.ravel().tolist(),
            acc.ravel().tolist(),
            tap.ravel().tolist(),
            [1] * n,
            last.tolist(),
            strict=True,
        )
    )


def depthwise_model(f, config):
    """Commands of a depthwise CONV: ``for pass, oy: for j in stride_w*(out_w-1)+kernel_w``;
    word ``j`` starts output window ``j // stride_w`` when ``j % stride_w == 0``."""
    groups = config.depthwise_row_groups(f["kernel_w"])
    passes = config.depthwise_passes(f["kernel_h"], f["kernel_w"])
    row_len = f["stride_w"] * (f["out_w"] - 1) + f["kernel_w"]
    out = []
    for p in range(passes):
        for oy in range(f["out_h"]):
            row = f["inp_addr"] + (p * groups * f["dilation_h"] + oy * f["stride_h"]) * f["in_w"]
            for j in range(row_len):
                ox, phase = divmod(j, f["stride_w"])
                out.append(
                    [
                        (row + j) & _MASK,
                        (oy * f["out_w"] + ox) % (1 << _ACC_AW),
                        p,
                        int(phase == 0 and ox < f["out_w"]),
                        False,
                    ]
                )
    out[-1][-1] = True
    return [tuple(c) for c in out]


def with_tap_flags(cmds):
    """The model's commands plus ``tap_last`` (the next command has another tap, or
    none follows) and ``tap_final`` (the instruction's last tap)."""
    taps = [c[2] for c in cmds]
    return [
        (*c, i == len(cmds) - 1 or taps[i + 1] != c[2], c[2] == taps[-1])
        for i, c in enumerate(cmds)
    ]


def _run(walker, instructions, seed):
    """Commands the walker emits for each instruction, with o_cmd.ready random."""
    rng = np.random.default_rng(seed)
    got = []

    async def bench(ctx):
        for f in instructions:
            word = isa.encode(_CONV, **f)
            ctx.set(walker.i_insn.payload.as_value(), word & ((1 << walker.insn_layout.size) - 1))
            ctx.set(walker.i_insn.valid, 1)
            await ctx.tick().until(walker.i_insn.ready)
            ctx.set(walker.i_insn.valid, 0)
            cmds = []
            while True:
                ctx.set(walker.o_cmd.ready, int(rng.random() < 0.75))
                _, _, valid, ready, cmd = await ctx.tick().sample(
                    walker.o_cmd.valid, walker.o_cmd.ready, walker.o_cmd.payload
                )
                if valid and ready:
                    cmds.append(
                        (
                            cmd.inp_addr,
                            cmd.acc_addr,
                            cmd.tap,
                            cmd.write,
                            bool(cmd.last),
                            bool(cmd.tap_last),
                            bool(cmd.tap_final),
                        )
                    )
                    if cmd.last:
                        break
            ctx.set(walker.o_cmd.ready, 0)
            got.append(cmds)

    simulate(walker, bench)
    return got


def _conv(rng, **fixed):
    f = dict(
        mode=isa.ConvMode.DENSE,
        kernel_h=int(rng.integers(1, 4)),
        kernel_w=int(rng.integers(1, 4)),
        stride_h=int(rng.integers(1, 3)),
        stride_w=int(rng.integers(1, 3)),
        dilation_h=int(rng.integers(1, 3)),
        dilation_w=int(rng.integers(1, 3)),
        out_h=int(rng.integers(1, 5)),
        out_w=int(rng.integers(1, 6)),
        in_w=int(rng.integers(1, _max("in_w") + 1)),
        in_blocks=int(rng.integers(1, 4)),
        inp_addr=int(rng.integers(0, _max("inp_addr") + 1)),
        inp_block_stride=int(rng.integers(0, _max("inp_block_stride") + 1)),
    )
    f.update(fixed)
    return f


def test_dense_walker_matches_loop_nest():
    rng = np.random.default_rng(17)
    insns = [_conv(rng) for _ in range(30)]
    insns += [
        # Largest strides, dilations, pitch and addresses: the addresses wrap at 16 bits.
        _conv(
            rng,
            kernel_h=2,
            kernel_w=2,
            stride_h=_max("stride_h"),
            stride_w=_max("stride_w"),
            dilation_h=_max("dilation_h"),
            dilation_w=_max("dilation_w"),
            out_h=2,
            out_w=3,
            in_w=_max("in_w"),
            in_blocks=2,
            inp_addr=_max("inp_addr"),
            inp_block_stride=_max("inp_block_stride"),
        ),
        _conv(
            rng, kernel_h=_max("kernel_h"), kernel_w=_max("kernel_w"), out_h=1, out_w=1, in_blocks=1
        ),
        _conv(rng, kernel_h=1, kernel_w=1, out_h=1, out_w=2, in_blocks=_max("in_blocks")),
        _conv(rng, kernel_h=1, kernel_w=1, out_h=2, out_w=_max("out_w"), in_blocks=1),
        _conv(rng, kernel_h=1, kernel_w=1, out_h=_max("out_h"), out_w=2, in_blocks=1),
        _conv(rng, kernel_h=1, kernel_w=1, out_h=1, out_w=1, in_blocks=1),  # one command
    ]
    walker = DenseWalker(instruction_layout(_CONV), _ACC_AW)
    for f, cmds in zip(insns, _run(walker, insns, seed=1), strict=True):
        assert cmds == with_tap_flags(dense_model(f)), f


@pytest.mark.parametrize("cfg_name", ["tiny", "ultra96"])
def test_depthwise_walker_matches_loop_nest(cfg_name):
    config = PRESETS[cfg_name]
    rng = np.random.default_rng(23)
    wmax = min(config.rows, _max("kernel_w"))  # kernel_w <= B, and its field's range
    insns = []
    for _ in range(20):
        f = _conv(
            rng,
            mode=isa.ConvMode.DEPTHWISE,
            in_blocks=1,
            dilation_w=1,
            kernel_h=int(rng.integers(1, 6)),
            kernel_w=int(rng.integers(1, wmax + 1)),
            stride_w=int(rng.integers(1, 4)),
        )
        insns.append(f)
    insns += [
        _conv(
            rng,
            mode=isa.ConvMode.DEPTHWISE,
            in_blocks=1,
            dilation_w=1,
            kernel_h=2,
            kernel_w=wmax,
            stride_h=_max("stride_h"),
            stride_w=_max("stride_w"),
            dilation_h=_max("dilation_h"),
            out_h=2,
            out_w=3,
            in_w=_max("in_w"),
            inp_addr=_max("inp_addr"),
        ),
        _conv(
            rng,
            mode=isa.ConvMode.DEPTHWISE,
            in_blocks=1,
            dilation_w=1,
            stride_w=1,
            kernel_h=_max("kernel_h"),
            kernel_w=1,
            out_h=1,
            out_w=1,
        ),
        _conv(
            rng,
            mode=isa.ConvMode.DEPTHWISE,
            in_blocks=1,
            dilation_w=1,
            stride_w=1,
            kernel_h=1,
            kernel_w=1,
            out_h=1,
            out_w=_max("out_w"),
        ),
    ]
    walker = DepthwiseWalker(
        instruction_layout(_CONV), _ACC_AW, config.rows, config.depthwise_groups
    )
    for f, cmds in zip(insns, _run(walker, insns, seed=2), strict=True):
        assert cmds == with_tap_flags(depthwise_model(f, config)), f
