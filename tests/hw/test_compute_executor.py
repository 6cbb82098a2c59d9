"""hw/executor.py's ComputeExecutor alone (amaranth.sim): each opcode to its unit and when
it is done, and an accumulator beat into the PostProcessor's lanes (PARAM lanes packed by
arch.layout.param_lane, the instruction's zero point, bounds and activation) and back
out to its OUT address."""

import random

import pytest
from amaranth.sim import Simulator
from bamboo.arch import PRESETS, isa
from bamboo.arch.isa import Activation, Opcode
from bamboo.arch.layout import param_lane
from bamboo.hw.compute import ComputeUnit
from bamboo.hw.executor import ComputeExecutor
from bamboo.hw.postproc import Activation as PostActivation

CFG = PRESETS["tiny"]
# A ComputeUnit is built for its o_acc signature only, never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _dut(vector=True):
    return ComputeExecutor(CFG, acc=ComputeUnit(CFG).o_acc.signature, vector=vector)


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


_CONV = dict(kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, out_h=2, out_w=3, in_blocks=1)


async def _issue(ctx, dut, word):
    """Offer ``word`` until taken; returns the cycles it waited."""
    ctx.set(dut.i_insn.payload, {"word": word, "index": 1, "fault": 0})
    ctx.set(dut.i_insn.valid, 1)
    for n in range(20):
        if ctx.get(dut.i_insn.ready):
            await ctx.tick()
            ctx.set(dut.i_insn.valid, 0)
            return n
        await ctx.tick()
    raise AssertionError("not taken")


def test_conv_goes_to_the_compute_unit_and_ends_after_its_beats():
    dut = _dut()
    word = isa.encode(Opcode.CONV, wgt_addr=5, **_CONV)

    async def bench(ctx):
        ctx.set(dut.i_insn.payload, {"word": word, "index": 1, "fault": 0})
        ctx.set(dut.i_insn.valid, 1)
        assert ctx.get(dut.conv.valid) and not ctx.get(dut.vec.valid)
        assert ctx.get(dut.conv.payload.wgt_addr) == 5 and ctx.get(dut.conv.payload.out_w) == 3
        assert not ctx.get(dut.i_insn.ready)  # the compute unit is not ready
        ctx.set(dut.conv.ready, 1)
        assert ctx.get(dut.i_insn.ready)
        await ctx.tick()
        ctx.set(dut.i_insn.valid, 0)
        ctx.set(dut.conv.ready, 0)
        ctx.set(dut.conv_busy, 1)
        # Two beats into the PostProcessor, the second its last, then the unit goes
        # idle: not done until the last beat has come out.
        ctx.set(dut.post_i.ready, 1)
        for last in (0, 1):
            ctx.set(dut.acc.valid, 1)
            ctx.set(dut.acc.payload.last, last)
            await ctx.tick()
        ctx.set(dut.acc.valid, 0)
        ctx.set(dut.conv_busy, 0)
        for _ in range(3):
            assert not ctx.get(dut.done)
            await ctx.tick()
        for _ in range(2):
            assert not ctx.get(dut.done)
            ctx.set(dut.post_o.valid, 1)
            await ctx.tick()
        ctx.set(dut.post_o.valid, 0)
        assert ctx.get(dut.done)  # the last beat's write ends it, registered
        await ctx.tick()
        assert not ctx.get(dut.done)

    _run(dut, bench)


def test_kept_conv_ends_after_the_emit_before_it_and_finish_waits():
    """A CONV without acc_emit reported while the emit before it still has a beat in
    post-processing ends after that beat (done pulses in order); a FINISH behind them is
    not taken while a CONV is left."""
    dut = _dut()

    async def bench(ctx):
        ctx.set(dut.post_i.ready, 1)
        ctx.set(dut.acc.valid, 1)
        ctx.set(dut.acc.payload.last, 1)
        await ctx.tick()
        ctx.set(dut.acc.valid, 0)
        ctx.set(dut.conv_busy, 1)
        ctx.set(dut.conv_kept, 1)
        await ctx.tick()
        ctx.set(dut.conv_kept, 0)
        ctx.set(dut.conv_busy, 0)
        ctx.set(dut.i_insn.payload, {"word": isa.encode(Opcode.FINISH), "index": 2, "fault": 0})
        ctx.set(dut.i_insn.valid, 1)
        for _ in range(3):
            assert not ctx.get(dut.done) and not ctx.get(dut.i_insn.ready)
            await ctx.tick()
        ctx.set(dut.post_o.valid, 1)
        await ctx.tick()
        ctx.set(dut.post_o.valid, 0)
        dones = []
        for _ in range(4):
            dones.append(ctx.get(dut.done))
            if ctx.get(dut.i_insn.ready):
                break
            await ctx.tick()
        # The emit's end, then the kept CONV's, then the FINISH may go.
        assert dones == [1, 1]

    _run(dut, bench)


@pytest.mark.parametrize("irq", [0, 1])
def test_finish_is_done_at_once(irq):
    dut = _dut()

    async def bench(ctx):
        await _issue(ctx, dut, isa.encode(Opcode.FINISH, irq=irq))
        assert ctx.get(dut.done)

    async def watch(ctx):
        seen = 0
        async for _, _, pulse in ctx.tick().sample(dut.finish_irq):
            seen += pulse
            if seen or ctx.get(dut.done):
                break
        assert seen == irq

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(watch, background=True)
    sim.run()


def test_vec_goes_to_the_vector_unit():
    dut = _dut()
    word = isa.encode(Opcode.VEC, vop=isa.VecOp.COPY, out_h=1, out_w=4, in_w=4, src_a=7)

    async def bench(ctx):
        ctx.set(dut.vec.ready, 1)
        ctx.set(dut.i_insn.payload, {"word": word, "index": 1, "fault": 0})
        ctx.set(dut.i_insn.valid, 1)
        assert ctx.get(dut.vec.valid) and not ctx.get(dut.conv.valid)
        assert ctx.get(dut.vec.payload.src_a) == 7
        await ctx.tick()
        ctx.set(dut.i_insn.valid, 0)
        for _ in range(3):
            await ctx.tick()
            assert not ctx.get(dut.done)
        ctx.set(dut.vec_done, 1)
        await ctx.tick()
        ctx.set(dut.vec_done, 0)
        assert ctx.get(dut.done)  # registered: the cycle after the vector unit's pulse

    _run(dut, bench)


def test_vec_without_a_vector_unit_is_a_barrier():
    dut = _dut(vector=False)

    async def bench(ctx):
        assert await _issue(ctx, dut, isa.encode(Opcode.VEC, out_h=0, out_w=5)) == 0
        assert ctx.get(dut.done)

    _run(dut, bench)


@pytest.mark.parametrize("signed", [0, 1])
def test_accumulators_meet_their_param_lanes_and_out_address(signed):
    dut = _dut()
    rng = random.Random(signed)
    lanes = [
        (rng.randrange(-(1 << 31), 1 << 31), rng.randrange(1, 1 << 24), rng.randrange(-128, 128))
        for _ in range(CFG.cols)
    ]
    accs = [rng.randrange(-(1 << 31), 1 << 31) for _ in range(CFG.cols)]
    zp, qmin, qmax = 200, 130, 250  # read as int8 when signed
    as_int8 = lambda v: v - 256 if signed and v >= 128 else v  # noqa: E731
    addrs = [17, 3, 40]
    writes = []

    async def bench(ctx):
        insn = dut.acc.payload.insn
        for k, v in (("param_addr", 6), ("act", Activation.LEAKY_ROUNDED), ("lut_slot", 1)):
            ctx.set(getattr(insn, k), v)
        for k, v in (("out_zp", zp), ("qmin", qmin), ("qmax", qmax), ("signed", signed)):
            ctx.set(getattr(insn, k), v)
        ctx.set(dut.param_r.data, sum(param_lane(*ln) << (64 * c) for c, ln in enumerate(lanes)))
        for c, a in enumerate(accs):
            ctx.set(dut.acc.payload.acc[c], a)
        assert ctx.get(dut.param_r.addr) == 6 and ctx.get(dut.param_r.en)
        for c in range(CFG.cols):
            p = ctx.get(dut.post_i.payload.lanes[c])
            assert (p.acc, p.bias, p.params.rq.m, p.params.rq.e) == (accs[c], *lanes[c])
            rq = p.params.rq
            assert (rq.zp, rq.qmin, rq.qmax) == (as_int8(zp), as_int8(qmin), as_int8(qmax))
            assert p.params.act == PostActivation.LEAKY_ROUNDED and p.params.lut_slot == 1
        # Three beats in, with back-pressure passed through; out in order to their addresses.
        ctx.set(dut.acc.valid, 1)
        assert ctx.get(dut.post_i.valid) and not ctx.get(dut.acc.ready)
        ctx.set(dut.post_i.ready, 1)
        for a in addrs:
            ctx.set(dut.acc.payload.out_addr, a)
            assert ctx.get(dut.acc.ready)
            await ctx.tick()
        ctx.set(dut.acc.valid, 0)
        for k in range(len(addrs)):
            ctx.set(dut.post_o.valid, 1)
            ctx.set(dut.post_o.payload, [k + 1] * CFG.cols)
            writes.append((ctx.get(dut.out_w.en), ctx.get(dut.out_w.addr), ctx.get(dut.out_w.data)))
            await ctx.tick()
        ctx.set(dut.post_o.valid, 0)
        assert not ctx.get(dut.out_w.en)
        # The vector unit's writes pass through.
        ctx.set(dut.vec_out_w.en, 1)
        ctx.set(dut.vec_out_w.addr, 9)
        ctx.set(dut.vec_out_w.data, [5] * CFG.cols)
        assert ctx.get(dut.out_w.en) and ctx.get(dut.out_w.addr) == 9
        assert list(ctx.get(dut.out_w.data)) == [5] * CFG.cols

    _run(dut, bench)
    assert [(en, a, list(d)) for en, a, d in writes] == [
        (1, a, [k + 1] * CFG.cols) for k, a in enumerate(addrs)
    ]
