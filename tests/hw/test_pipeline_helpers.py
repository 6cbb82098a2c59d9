"""hw/pipeline.py's helpers against Python: registers and delay chains delay by their
stage count, bit_length (whole or in two halves), leading_zeros and round_up compute what
int.bit_length and addition do, accept takes a stream payload into a register,
registered_equal follows a counter that holds, steps and loads."""

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from bamboo.hw.pipeline import (
    accept,
    bit_length,
    combine_lengths,
    connect_stream,
    delay_chain,
    group_lengths,
    leading_zeros,
    register,
    registered_equal,
    round_up,
)


class _Helpers(wiring.Component):
    i: In(12)
    valid: In(1)
    q: In(8)
    up: In(1)
    reg: Out(12)
    chain: Out(3)
    length: Out(4)
    length2: Out(4)
    zeros: Out(4)
    mant: Out(8)
    carry: Out(1)
    s: In(stream.Signature(12))
    taken: Out(12)
    state: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.reg.eq(register(m, self.i, "r"))
        c = delay_chain(m, self.valid, 3)
        m.d.comb += [
            self.chain.eq(c[1] | (c[2] << 1) | (c[3] << 2)),
            self.length.eq(bit_length(m, self.i, "len")),
            # In two halves, slices of 5 bits (the last one of 2).
            self.length2.eq(combine_lengths(m, group_lengths(m, self.i, "g", 5), "len2", 5)),
            self.zeros.eq(leading_zeros(m, self.i, "lz")),
        ]
        mant, carry = round_up(self.q, self.up)
        m.d.comb += [self.mant.eq(mant), self.carry.eq(carry)]
        taken = Signal(12)
        m.d.comb += self.taken.eq(taken)
        with m.FSM() as fsm:
            with m.State("WAIT"):
                accept(m, self.s, taken, "HELD")
            with m.State("HELD"):
                pass
        m.d.comb += self.state.eq(fsm.ongoing("HELD"))
        return m


def test_helpers_match_python():
    dut = _Helpers()
    rng = np.random.default_rng(5)
    xs = [int(v) for v in rng.integers(0, 1 << 12, 200)] + [0, 1, 4095]
    vs = [int(v) for v in rng.integers(0, 2, len(xs))]

    async def bench(ctx):
        for q in (0, 1, 127, 254, 255):
            for up in (0, 1):
                ctx.set(dut.q, q)
                ctx.set(dut.up, up)
                total = q + up
                want = (total >> 1, 1) if total > 255 else (total, 0)
                assert (ctx.get(dut.mant), ctx.get(dut.carry)) == want
        for n, (x, v) in enumerate(zip(xs, vs)):
            ctx.set(dut.i, x)
            ctx.set(dut.valid, v)
            assert ctx.get(dut.length) == ctx.get(dut.length2) == x.bit_length()
            assert ctx.get(dut.zeros) == 12 - x.bit_length()
            await ctx.tick()
            assert ctx.get(dut.reg) == x
            past = [vs[n - k] if n - k >= 0 else 0 for k in range(3)]
            assert ctx.get(dut.chain) == past[0] | past[1] << 1 | past[2] << 2
        # accept: not taken without valid, taken (and held) with it.
        ctx.set(dut.s.payload, 0x5A5)
        assert ctx.get(dut.s.ready) and not ctx.get(dut.state)
        await ctx.tick()
        assert not ctx.get(dut.state)
        ctx.set(dut.s.valid, 1)
        await ctx.tick()
        ctx.set(dut.s.valid, 0)
        ctx.set(dut.s.payload, 0)
        assert ctx.get(dut.state) and ctx.get(dut.taken) == 0x5A5
        assert not ctx.get(dut.s.ready)
        await ctx.tick()
        assert ctx.get(dut.taken) == 0x5A5

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_connect_stream_joins_shapes_of_one_width():
    """A structured stream through a FIFO's unstructured streams and back, in order, with
    back-pressure from both ends."""
    layout = data.StructLayout({"a": 5, "b": 7})
    src = stream.Signature(layout).create()
    dst = stream.Signature(layout).flip().create()
    m = Module()
    m.submodules.q = q = fifo.SyncFIFO(width=layout.size, depth=2)
    connect_stream(m, src, q.w_stream)
    connect_stream(m, q.r_stream, dst)
    items = [(k % 32, (3 * k) % 128) for k in range(20)]
    got = []

    async def bench(ctx):
        sent = 0
        for cycle in range(200):
            ctx.set(dst.ready, cycle % 3 != 0)
            if sent < len(items):
                ctx.set(src.valid, 1)
                ctx.set(src.payload, {"a": items[sent][0], "b": items[sent][1]})
            else:
                ctx.set(src.valid, 0)
            took = ctx.get(src.valid) and ctx.get(src.ready)
            if ctx.get(dst.valid) and ctx.get(dst.ready):
                got.append((ctx.get(dst.payload.a), ctx.get(dst.payload.b)))
            await ctx.tick()
            sent += took
        assert got == items

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


class _Counter(wiring.Component):
    """An up-counter that holds, steps by one or loads, and ``registered_equal`` of it
    against a target (and the target less one) set with the load."""

    hold: In(1)
    load: In(1)
    base: In(6)
    k: In(6)
    pos: Out(6)
    now: Out(1)

    def elaborate(self, platform):
        m = Module()
        t, t_m1 = Signal(6), Signal(6)
        stepped, zeroed, at0 = Signal(), Signal(), Signal()
        m.d.sync += [stepped.eq(0), zeroed.eq(0)]
        with m.If(self.load):
            m.d.sync += [
                self.pos.eq(0),
                zeroed.eq(1),
                t.eq(self.base - self.k),
                t_m1.eq(self.base - self.k - 1),
                at0.eq(self.base == self.k),
            ]
        with m.Elif(~self.hold):
            m.d.sync += [self.pos.eq(self.pos + 1), stepped.eq(1)]
        m.d.comb += self.now.eq(registered_equal(m, self.pos, t, t_m1, stepped, zeroed, at0, "t"))
        return m


def test_registered_equal_follows_a_counter():
    """Random holds, steps and loads: the flag equals ``pos == target`` every cycle after
    the first load, including on the cycle after a step onto the target or a load."""
    dut = _Counter()
    rng = np.random.default_rng(3)
    seen = {"hits": 0, "cycles": 0}

    async def bench(ctx):
        target = None
        for cycle in range(3000):
            load = cycle == 0 or rng.random() < 0.05
            base, k = int(rng.integers(0, 12)), int(rng.integers(0, 4))
            ctx.set(dut.load, load)
            ctx.set(dut.hold, rng.random() < 0.4)
            ctx.set(dut.base, base)
            ctx.set(dut.k, k)
            await ctx.tick()
            if load:
                target = (base - k) % 64
            pos = ctx.get(dut.pos)
            assert ctx.get(dut.now) == (pos == target), (cycle, pos, target)
            seen["hits"] += pos == target
            seen["cycles"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["hits"] > 100  # the target is reached often, not only missed
