# amaranth: UnusedElaboratable=no
"""SystolicArray against numpy: dot products, double-buffered weights, latency."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from bamboo.hw.array import SystolicArray

SHAPES = [(4, 4), (2, 4), (4, 2), (1, 1)]
# Packed (two multiplies per DSP48E2): cols even; depthwise needs cols >= 2 * rows.
PACKED = [(4, 8), (2, 4), (1, 2), (2, 6), (16, 32)]


def _run(rows, cols, seed, n_taps=6, gaps=True, packed=False):
    """Stream taps of random length through the array, swapping banks with no idle cycle
    beyond WEIGHT_GAP. Return (expected, got, first_in, first_out, cycles, words)."""
    rng = np.random.default_rng(seed)
    dut = SystolicArray(rows, cols, tag_shape=16, packed=packed)
    # Packed: 8-bit x and weights in [-127, 127]; the first tap holds the extremes.
    wlo, (xlo, xhi) = (-127 if packed else -128), ((-128, 128) if packed else (-255, 256))
    taps = [
        (
            rng.integers(wlo, 128, (cols, rows)),
            rng.integers(xlo, xhi, (int(rng.integers(1, 9)), rows)),
        )
        for _ in range(n_taps)
    ]
    if packed:
        taps[0][0][:] = np.where(np.arange(cols)[:, None] % 2, -127, 127)
        taps[0][1][0] = -128
        taps[1][0][:] = -127
        taps[1][1][0] = -128
    expected = [x @ w.T for w, xs in taps for x in xs]
    got, stamps = {}, {}

    async def bench(ctx):
        cycle, word, last_use = 0, 0, {0: -(10**6), 1: -(10**6)}
        pending = [(j, w, xs) for j, (w, xs) in enumerate(taps)]
        loaded = -1
        queue = []  # words of loaded taps: (bank, x, word index)

        def sample():
            if ctx.get(dut.o_psum.valid):
                tag = ctx.get(dut.o_psum.payload.tag)
                got[tag] = [ctx.get(dut.o_psum.payload.psum[c]) for c in range(cols)]
                stamps.setdefault("out", cycle)

        while len(got) < len(expected):
            ctx.set(dut.i_weight.valid, 0)
            ctx.set(dut.i_data.valid, 0)
            # Load the next tap's weights once its bank has drained (at most one ahead).
            if (
                pending
                and pending[0][0] <= loaded + 1
                and cycle - last_use[pending[0][0] % 2] >= dut.WEIGHT_GAP
                and not any(b == pending[0][0] % 2 for b, _, _ in queue)
            ):
                j, w, xs = pending.pop(0)
                ctx.set(dut.i_weight.valid, 1)
                ctx.set(dut.i_weight.payload.bank, j % 2)
                for c in range(cols):
                    for r in range(rows):
                        ctx.set(dut.i_weight.payload.w[c][r], int(w[c, r]))
                for x in xs:
                    queue.append((j % 2, x, word))
                    word += 1
                loaded = j
            if queue and not (gaps and rng.random() < 0.2):
                bank, x, idx = queue.pop(0)
                ctx.set(dut.i_data.valid, 1)
                ctx.set(dut.i_data.payload.bank, bank)
                ctx.set(dut.i_data.payload.tag, idx)
                for r in range(rows):
                    ctx.set(dut.i_data.payload.x[r], int(x[r]))
                last_use[bank] = cycle
                stamps.setdefault("in", cycle)
            sample()
            await ctx.tick()
            cycle += 1
            assert cycle < 2000, "array output stalled"
        stamps["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return dut, expected, got, stamps


@pytest.mark.parametrize("rows,cols", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_array_matches_numpy(rows, cols, seed):
    dut, expected, got, stamps = _run(rows, cols, seed)
    assert sorted(got) == list(range(len(expected)))
    for i, e in enumerate(expected):
        assert got[i] == list(e), f"word {i}"
    # Latency measured, not assumed: first word in -> first word out.
    assert stamps["out"] - stamps["in"] == dut.LATENCY == rows + cols + 2


@pytest.mark.parametrize("rows,cols", PACKED)
@pytest.mark.parametrize("seed", [0, 1])
def test_packed_array_matches_numpy(rows, cols, seed):
    """Two lanes per multiplier, split at the bottom: exact at the lane extremes."""
    dut, expected, got, stamps = _run(rows, cols, seed, packed=True)
    for i, e in enumerate(expected):
        assert got[i] == list(e), f"word {i}"
    assert stamps["out"] - stamps["in"] == dut.LATENCY == rows + cols // 2 + 2


def test_array_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"rows must be a positive integer, not 0"):
        SystolicArray(0, 4)
    with pytest.raises(ValueError, match=r"x_width must be an integer from 2 to 18, not 40"):
        SystolicArray(4, 4, x_width=40)
    with pytest.raises(ValueError, match=r"a packed array needs an even cols"):
        SystolicArray(4, 3, packed=True)


DW_CASES = (
    [(r, c, False, None, 1) for r, c in SHAPES]
    + [(r, c, True, None, 1) for r, c in PACKED]
    +
    # As the presets: ultra96 (two blocks, two row groups), pynqz2, tiny.
    [(8, 32, True, 16, 2), (8, 8, False, 8, 2), (4, 4, False, 4, 2), (4, 16, True, 8, 4)]
)


@pytest.mark.parametrize(
    "rows,cols,packed,channels,groups,grouped",
    [(*case, False) for case in DW_CASES] + [(*case, True) for case in DW_CASES if case[-1] > 1],
)
def test_array_depthwise_fir(rows, cols, packed, channels, groups, grouped):
    """Depthwise mode: psum[c] of word t is sum_r dw_{t+r-g(r)*Rg}[g(r)][c] * w[c][r]
    for c < dw_channels (packed: pair c's low lane), g(r) = r // Rg, Rg = rows / groups
    when grouped, else 0: each group a FIR over its own stream, aligned on word t."""
    rng = np.random.default_rng(rows * 10 + cols + groups)
    dut = SystolicArray(
        rows, cols, tag_shape=16, packed=packed, dw_channels=channels, dw_groups=groups
    )
    lanes, G = dut.dw_channels, dut.dw_groups
    w = rng.integers(-127 if packed else -128, 128, (cols, rows))
    # Packed: channel c's weights in column 2c, zeros in 2c + 1 (depthwise_column_step).
    step = 2 if packed else 1
    w_word = np.zeros_like(w)
    w_word[: lanes * step : step] = w[:lanes]
    xs = rng.integers(*((-128, 128) if packed else (-255, 256)), (rows + 8, G, lanes))
    got = {}

    async def bench(ctx):
        ctx.set(dut.depthwise, 1)
        ctx.set(dut.dw_grouped, grouped)
        ctx.set(dut.i_weight.valid, 1)
        for c in range(cols):
            for r in range(rows):
                ctx.set(dut.i_weight.payload.w[c][r], int(w_word[c, r]))
        await ctx.tick()
        ctx.set(dut.i_weight.valid, 0)
        for cycle in range(len(xs) + dut.LATENCY + 1):
            ctx.set(dut.i_data.valid, cycle < len(xs))
            if cycle < len(xs):
                ctx.set(dut.i_data.payload.tag, cycle)
                for g in range(G):
                    for c in range(lanes):
                        ctx.set(dut.i_data.payload.dw[g][c], int(xs[cycle, g, c]))
            if ctx.get(dut.o_psum.valid):
                got[ctx.get(dut.o_psum.payload.tag)] = [
                    ctx.get(dut.o_psum.payload.psum[c]) for c in range(cols)
                ]
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    rg = rows // G
    group = [r // rg if grouped else 0 for r in range(rows)]
    for t in range(len(xs) - rows + 1):
        want = [
            int(sum(xs[t + r - group[r] * rg, group[r], c] * w[c, r] for r in range(rows)))
            if c < lanes
            else 0
            for c in range(cols)
        ]
        assert got[t] == want, f"word {t}"


def test_array_rejects_bad_depthwise_shape():
    with pytest.raises(ValueError, match=r"dw_channels must be an integer from 1 to 4"):
        SystolicArray(4, 8, packed=True, dw_channels=8)
    with pytest.raises(ValueError, match=r"dw_groups must divide rows \(4\), not 3"):
        SystolicArray(4, 4, dw_groups=3)
