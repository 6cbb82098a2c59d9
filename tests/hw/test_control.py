"""hw/control.py's RunControl alone (amaranth.sim): each way a run ends, what the register
file sees (done, error, code, index, interrupt source), the units held in reset outside
a run, the watchdog's limit and the drain's wait for a quiet bus."""

import pytest
from amaranth.sim import Simulator
from bamboo.arch import PRESETS
from bamboo.arch.registers import ErrorCode
from bamboo.hw.control import RunControl, status_names

CFG = PRESETS["tiny"]
WATCHDOG = 20


def _run(bench, watchdog=WATCHDOG):
    dut = RunControl(CFG, watchdog=watchdog)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def main(ctx):
        ctx.set(dut.bus_idle, 1)
        for q in ("load", "compute", "store"):
            ctx.set(getattr(dut, f"{q}_idle"), 1)
        await bench(ctx, dut)

    sim.add_testbench(main)
    sim.run()


async def _start(ctx, dut, **params):
    """Pulse start with ``params``; returns when ``go`` pulses (the run is in RUN)."""
    eng = dut.engine
    values = dict(insn_base=0x1000, insn_count=5, window_base=0x8000, window_size=0x4000)
    values.update(params)
    for k, v in values.items():
        ctx.set(getattr(eng, k), v)
    assert ctx.get(dut.abort) and not ctx.get(eng.busy)
    ctx.set(eng.start, 1)
    await ctx.tick()
    ctx.set(eng.start, 0)
    assert ctx.get(dut.go) and not ctx.get(dut.abort) and ctx.get(eng.busy)
    return values


async def _until_end(ctx, dut, limit=200):
    """Cycles until done or error pulses; ``(cycles, done, error, code, index, irq)``."""
    eng = dut.engine
    for n in range(limit):
        if ctx.get(eng.done) or ctx.get(eng.error):
            out = (
                n,
                ctx.get(eng.done),
                ctx.get(eng.error),
                ctx.get(eng.error_code),
                ctx.get(eng.err_insn),
                ctx.get(eng.done_irq),
            )
            await ctx.tick()
            assert ctx.get(dut.abort) and not ctx.get(eng.busy)  # back in IDLE
            return out
        await ctx.tick()
    raise AssertionError("the run did not end")


@pytest.mark.parametrize("irq", [0, 1])
def test_finished_run_is_done(irq):
    async def bench(ctx, dut):
        values = await _start(ctx, dut)
        for k in ("insn_base", "insn_count", "window_base", "window_size"):
            assert ctx.get(getattr(dut, k)) == values[k], k
        ctx.set(dut.load_idle, 0)
        ctx.set(dut.progress, 1)
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(dut.engine.busy) and not ctx.get(dut.abort)
        ctx.set(dut.finish_irq, irq)
        await ctx.tick()
        ctx.set(dut.finish_irq, 0)
        ctx.set(dut.all_dispatched, 1)
        ctx.set(dut.load_idle, 1)
        # The bus is busy for a while: DRAIN holds the units in reset meanwhile.
        ctx.set(dut.bus_idle, 0)
        await ctx.tick()
        for _ in range(4):
            await ctx.tick()
            assert ctx.get(dut.abort) and ctx.get(dut.engine.busy)
            assert not ctx.get(dut.engine.done)
        ctx.set(dut.bus_idle, 1)
        _, done, error, code, _, done_irq = await _until_end(ctx, dut)
        assert (done, error, code, done_irq) == (1, 0, ErrorCode.NONE, irq)

    _run(bench)


def test_window_size_saturates_to_the_address_width():
    async def bench(ctx, dut):
        await _start(ctx, dut, window_size=(1 << 40) + 5)
        assert ctx.get(dut.window_size) == (1 << CFG.axi_addr_width) - 1

    _run(bench)


def test_dispatch_error_waits_for_the_queues():
    """A dispatcher error: the instructions already dispatched finish, then ``error``."""

    async def bench(ctx, dut):
        await _start(ctx, dut)
        ctx.set(dut.compute_idle, 0)
        ctx.set(dut.progress, 1)
        ctx.set(dut.disp_error, 1)
        ctx.set(dut.disp_code, ErrorCode.MALFORMED_INSTRUCTION)
        ctx.set(dut.disp_index, 9)
        await ctx.tick()
        ctx.set(dut.disp_error, 0)
        ctx.set(dut.disp_index, 0)
        for _ in range(5):  # QUIESCE: the compute queue still works
            await ctx.tick()
            assert not ctx.get(dut.abort) and ctx.get(dut.engine.busy)
        ctx.set(dut.compute_idle, 1)
        _, done, error, code, index, _ = await _until_end(ctx, dut)
        assert (done, error, code, index) == (0, 1, ErrorCode.MALFORMED_INSTRUCTION, 9)

    _run(bench)


@pytest.mark.parametrize(
    "unit, own, want",
    [
        ("load", True, ErrorCode.DMA_OUT_OF_WINDOW),
        ("load", False, ErrorCode.AXI_ERROR),
        ("store", True, ErrorCode.MALFORMED_INSTRUCTION),
        ("store", False, ErrorCode.AXI_ERROR),
    ],
)
def test_unit_error_ends_the_run_and_wins(unit, own, want):
    """A unit error (its own or an AXI error response) during QUIESCE ends the run two
    cycles after its strobe, with that unit's index: it is older than the dispatcher's."""

    async def bench(ctx, dut):
        await _start(ctx, dut)
        ctx.set(dut.load_idle, 0)
        ctx.set(dut.store_idle, 0)
        ctx.set(dut.load_index, 3)
        ctx.set(dut.store_index, 4)
        ctx.set(dut.progress, 1)
        ctx.set(dut.disp_error, 1)
        ctx.set(dut.disp_code, ErrorCode.ILLEGAL_OPCODE)
        ctx.set(dut.disp_index, 9)
        await ctx.tick()
        ctx.set(dut.disp_error, 0)
        await ctx.tick()
        if own:
            ctx.set(getattr(dut, f"{unit}_error"), 1)
            ctx.set(getattr(dut, f"{unit}_code"), want)
        else:
            ctx.set(getattr(dut, f"{unit}_resp_error"), 1)
        await ctx.tick()
        for k in ("error", "resp_error"):
            ctx.set(getattr(dut, f"{unit}_{k}"), 0)
        assert not ctx.get(dut.abort)  # the error strobes are registered as they come,
        await ctx.tick()
        assert not ctx.get(dut.abort)  # and combined a cycle later
        await ctx.tick()
        assert ctx.get(dut.abort)  # the units are held in reset from the next cycle
        _, done, error, code, index, _ = await _until_end(ctx, dut)
        assert (done, error, code, index) == (0, 1, want, {"load": 3, "store": 4}[unit])

    _run(bench)


def test_watchdog_reports_the_oldest_waiting_instruction():
    async def bench(ctx, dut):
        await _start(ctx, dut)
        for q, index in (("load", 7), ("compute", 5), ("store", 6)):
            ctx.set(getattr(dut, f"{q}_idle"), 0)
            ctx.set(getattr(dut, f"{q}_stall"), 1)
            ctx.set(getattr(dut, f"{q}_index"), index)
        cycles, done, error, code, index, _ = await _until_end(ctx, dut)
        assert (done, error, code, index) == (0, 1, ErrorCode.TIMEOUT, 5)
        # WATCHDOG cycles without progress, plus the registered progress and the drain.
        assert WATCHDOG <= cycles <= WATCHDOG + 4

    _run(bench)


def test_progress_holds_off_the_watchdog():
    async def bench(ctx, dut):
        await _start(ctx, dut)
        ctx.set(dut.compute_idle, 0)
        for n in range(4 * WATCHDOG):
            ctx.set(dut.progress, int(n % (WATCHDOG - 2) == 0))
            await ctx.tick()
            assert ctx.get(dut.engine.busy) and not ctx.get(dut.abort)
            assert not ctx.get(dut.engine.error)

    _run(bench)


def test_drain_forces_a_stuck_bus():
    """The bus never goes quiet: after ``watchdog`` cycles of DRAIN ``force`` resets it."""

    async def bench(ctx, dut):
        await _start(ctx, dut)
        ctx.set(dut.bus_idle, 0)
        ctx.set(dut.all_dispatched, 1)
        forced = 0
        for _ in range(3 * WATCHDOG):
            forced += ctx.get(dut.force)
            if ctx.get(dut.engine.done):
                break
            await ctx.tick()
        assert forced == 1 and ctx.get(dut.engine.done)

    _run(bench)


@pytest.mark.parametrize("when", ["RUN", "DRAIN"])
def test_soft_reset_ends_silently(when):
    async def bench(ctx, dut):
        await _start(ctx, dut)
        ctx.set(dut.compute_idle, 0)
        ctx.set(dut.progress, 1)
        if when == "DRAIN":
            ctx.set(dut.bus_idle, 0)
            ctx.set(dut.compute_idle, 1)
            ctx.set(dut.all_dispatched, 1)
            await ctx.tick()
            await ctx.tick()
            assert ctx.get(dut.abort) and ctx.get(dut.engine.busy)
        ctx.set(dut.engine.soft_reset, 1)
        await ctx.tick()
        ctx.set(dut.engine.soft_reset, 0)
        ctx.set(dut.bus_idle, 1)
        ctx.set(dut.compute_idle, 1)
        for _ in range(10):
            assert not ctx.get(dut.engine.done) and not ctx.get(dut.engine.error)
            await ctx.tick()
        assert ctx.get(dut.abort) and not ctx.get(dut.engine.busy)

    _run(bench)


def test_status_strobes_pass_through():
    async def bench(ctx, dut):
        for name in status_names():
            ctx.set(getattr(dut.status, name), 1)
            assert ctx.get(getattr(dut.engine, name)) == 1
            ctx.set(getattr(dut.status, name), 0)
            assert ctx.get(getattr(dut.engine, name)) == 0

    _run(bench)
