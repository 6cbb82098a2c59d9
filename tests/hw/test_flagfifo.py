"""FlagFIFO against a Python deque: random pushes and pops, every cycle's flags and head."""

import collections
import random

import pytest
from amaranth.sim import Simulator
from bamboo.hw.flagfifo import FlagFIFO


@pytest.mark.parametrize("depth", [2, 4, 8])
def test_random_traffic_matches_a_deque(depth):
    dut = FlagFIFO(width=8, depth=depth)
    rng = random.Random(depth)
    model = collections.deque()

    async def bench(ctx):
        for cycle in range(600):
            assert ctx.get(dut.level) == len(model), cycle
            assert ctx.get(dut.r_rdy) == bool(model), cycle
            assert ctx.get(dut.w_rdy) == (len(model) < depth), cycle
            if model:
                assert ctx.get(dut.r_data) == model[0], cycle
            # Bursts of writes, then of reads, so the FIFO runs full and empty.
            phase = (cycle // 40) % 2
            w_en = rng.random() < (0.8 if phase == 0 else 0.3)
            r_en = rng.random() < (0.3 if phase == 0 else 0.8)
            data = rng.randrange(256)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, data)
            ctx.set(dut.r_en, r_en)
            pop = r_en and bool(model)
            push = w_en and len(model) < depth
            await ctx.tick()
            if pop:
                model.popleft()
            if push:
                model.append(data)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_depth_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        FlagFIFO(width=8, depth=3)
