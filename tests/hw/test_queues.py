"""hw/queues.py: token counters against a counting model, a queue controller's
pop / issue / push order for every combination of token bits, and the instruction FIFO
against amaranth's SyncFIFOBuffered."""

import gc
import itertools

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.sim import Simulator
from bamboo.arch import isa
from bamboo.hw.queues import InstructionFIFO, QueueController, TokenCounter, entry_layout

_BITS = ("pop_prev", "pop_next", "push_prev", "push_next")


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_token_counter_counts():
    dut = TokenCounter()
    rng = np.random.default_rng(3)

    async def bench(ctx):
        count = 0
        for _ in range(400):
            assert ctx.get(dut.avail) == (count != 0)
            push = int(rng.random() < 0.5)
            pop = int(count != 0 and rng.random() < 0.5)
            ctx.set(dut.push, push)
            ctx.set(dut.pop, pop)
            count += push - pop
            await ctx.tick()

    _run(dut, bench)


@pytest.mark.parametrize("inflight", [1, 2])
@pytest.mark.parametrize("queue", isa.QUEUES)
@pytest.mark.parametrize("bits", list(itertools.product((0, 1), repeat=4)))
def test_controller_pops_issues_pushes(queue, bits, inflight):
    """The head waits for the tokens it pops, issues, and pushes when its unit is done;
    bits towards a missing neighbour (arch.isa.token_bits) never strobe."""
    k = isa.QUEUES.index(queue)
    dut = QueueController(prev=k > 0, next=k < len(isa.QUEUES) - 1, inflight=inflight)
    flags = dict(zip(_BITS, bits))
    legal = isa.token_bits(queue)
    word = isa.encode(isa.Opcode.FINISH, **flags)
    waits = [b for b in ("pop_prev", "pop_next") if flags[b] and b in legal]

    async def bench(ctx):
        ctx.set(dut.i_insn.payload, {"word": word, "index": 7, "fault": 0})
        ctx.set(dut.i_insn.valid, 1)
        for b in ("prev", "next"):
            ctx.set(getattr(dut, f"{b}_avail"), 0)
        # Stalled while a popped token is missing.
        assert ctx.get(dut.stall) == bool(waits)
        if waits:
            await ctx.tick()
            assert ctx.get(dut.stall) and not ctx.get(dut.o_exec.valid)
            for b in ("prev", "next"):
                ctx.set(getattr(dut, f"{b}_avail"), 1)
        assert ctx.get(dut.i_insn.ready)
        assert not ctx.get(dut.pop_prev) and not ctx.get(dut.pop_next)
        await ctx.tick()
        ctx.set(dut.i_insn.valid, 0)
        # The pops strobe once, registered, in the cycle after the head is taken.
        popped = {b: ctx.get(getattr(dut, b)) for b in ("pop_prev", "pop_next")}
        assert popped == {b: int(b in waits) for b in ("pop_prev", "pop_next")}
        assert ctx.get(dut.o_exec.valid) and ctx.get(dut.o_exec.payload.index) == 7
        ctx.set(dut.o_exec.ready, 1)
        await ctx.tick()
        ctx.set(dut.o_exec.ready, 0)
        assert ctx.get(dut.busy) and not any(ctx.get(getattr(dut, b)) for b in _BITS)
        ctx.set(dut.done, 1)
        pushed = {b: ctx.get(getattr(dut, b)) for b in ("push_prev", "push_next")}
        await ctx.tick()
        ctx.set(dut.done, 0)
        assert pushed == {b: int(flags[b] and b in legal) for b in ("push_prev", "push_next")}
        assert ctx.get(dut.idle)

    _run(dut, bench)


@pytest.mark.parametrize("seed", range(4))
def test_controller_with_two_in_flight_pushes_in_order(seed):
    """inflight 2: the next instruction issues while the one before runs, never a third,
    and each ``done`` (in issue order) pushes the flags of the oldest instruction."""
    dut = QueueController(inflight=2)
    rng = np.random.default_rng(seed)
    n = 40
    flags = [{"push_prev": int(b & 1), "push_next": int(b >> 1)} for b in rng.integers(0, 4, n)]
    words = [isa.encode(isa.Opcode.FINISH, **f) for f in flags]

    async def bench(ctx):
        fed, running, pushed, overlapped = 0, [], [], 0
        for _ in range(3000):
            ctx.set(dut.i_insn.valid, fed < n)
            if fed < n:
                ctx.set(dut.i_insn.payload, {"word": words[fed], "index": fed, "fault": 0})
            assert ctx.get(dut.busy) == (bool(running) or ctx.get(dut.o_exec.valid))
            ready = len(running) < 2 and rng.random() < 0.5
            ctx.set(dut.o_exec.ready, ready)
            done = bool(running) and rng.random() < 0.3
            ctx.set(dut.done, done)
            if ctx.get(dut.i_insn.valid) and ctx.get(dut.i_insn.ready):
                fed += 1
            issued = ctx.get(dut.o_exec.valid) and ready
            if issued:
                overlapped += bool(running) and not done
                running.append(ctx.get(dut.o_exec.payload.index))
            if done:
                pushed.append({b: ctx.get(getattr(dut, b)) for b in ("push_prev", "push_next")})
                running.pop(0)
            else:
                assert not ctx.get(dut.push_prev) and not ctx.get(dut.push_next)
            await ctx.tick()
            if len(pushed) == n:
                break
        assert pushed == flags
        assert overlapped > 5
        assert ctx.get(dut.idle)

    _run(dut, bench)


def test_controller_inflight_is_checked():
    with pytest.raises(ValueError, match="inflight must be 1 or 2, not 3"):
        QueueController(inflight=3)


@pytest.mark.parametrize("seed", range(3))
def test_instruction_fifo_as_sync_fifo_buffered(seed):
    """Beside a SyncFIFOBuffered of the same depth, fed the same writes and read as a
    QueueController reads (a head taken at most every third cycle): the same write ready
    and level in every cycle, the same head and valid from the second cycle after a read
    on (the refill's cycle; the controller looks again in the third)."""
    depth = 8
    m = Module()
    m.submodules.dut = dut = InstructionFIFO(depth)
    m.submodules.ref = ref = SyncFIFOBuffered(width=entry_layout().size, depth=depth)
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        since_read, serial = 3, 1
        for _ in range(600):
            # Bursts of writes and of reads, so the FIFO fills up and runs empty.
            phase = (_ // 60) % 2
            w_en = int(rng.random() < (0.8 if phase == 0 else 0.2))
            word = (serial * 0x9E3779B97F4A7C15) % (1 << isa.INSN_BITS)
            payload = {"word": word, "index": serial, "fault": serial % 3}
            ctx.set(dut.w_stream.payload, payload)
            ctx.set(dut.w_stream.valid, w_en)
            ctx.set(ref.w_data, ctx.get(dut.w_stream.payload).as_value().value)
            ctx.set(ref.w_en, w_en)
            valid = ctx.get(dut.r_stream.valid)
            assert ctx.get(dut.w_stream.ready) == ctx.get(ref.w_rdy)
            assert ctx.get(dut.level) == ctx.get(ref.level)
            if since_read >= 2:
                assert valid == ctx.get(ref.r_rdy)
            if valid:
                assert ctx.get(dut.r_stream.payload).as_value().value == ctx.get(ref.r_data)
            r_en = int(valid and since_read >= 3 and rng.random() < (0.3 if phase == 0 else 0.9))
            ctx.set(dut.r_stream.ready, r_en)
            ctx.set(ref.r_en, r_en)
            since_read = 1 if r_en else since_read + 1
            serial += w_en and ctx.get(dut.w_stream.ready)
            await ctx.tick()

    _run(m, bench)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_instruction_fifo_depth_is_checked():
    with pytest.raises(ValueError, match="depth must be a power of two of at least 2, not 6"):
        InstructionFIFO(6)
    gc.collect()  # report the refused component's UnusedElaboratable inside this test
