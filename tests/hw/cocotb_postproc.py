"""cocotb tests of the PostProcessor RTL, run by test_postproc.py on Verilator and Icarus.

Runs inside the simulator. The environment chooses the configuration
(``BAMBOO_CONFIG``, a preset name), the number of beats (``BAMBOO_BEATS``) and
the seed (``BAMBOO_SEED``); the vectors and their expected codes come from
postproc_vectors.py (the numpy reference kernels).

Signals are driven and sampled at the falling edge: the handshake outputs
(``i.ready``, ``o.valid``, ``o.payload``) depend only on registers, so they are
settled half a cycle after the rising edge and stay so until the next one, and
the same code behaves alike on both simulators.
"""

import os
import random

import cocotb
from bamboo.arch import preset
from bamboo.hw.postproc import LUT_ENTRIES, PostProcessor
from bamboo.sim.tools import pack
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge
from postproc_vectors import lane_params, make_vectors

__all__ = ["postproc_full_rate", "postproc_vectors"]


def _setup():
    cfg = preset(os.environ.get("BAMBOO_CONFIG", "tiny"))
    return cfg, PostProcessor.input_layout(cfg)


async def _start(dut):
    """Quiet inputs (Icarus would propagate X), clock, two cycles of reset."""
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.lut_w__en.value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _load_tables(dut, tables):
    for slot, table in enumerate(tables):
        for index, entry in enumerate(table):
            dut.lut_w__addr.value = slot * LUT_ENTRIES + index
            dut.lut_w__data.value = int(entry)
            dut.lut_w__en.value = 1
            await FallingEdge(dut.clk)
    dut.lut_w__en.value = 0


def _payloads(vec, layout):
    beats, cols = vec.acc.shape
    params = [lane_params(lay) for lay in vec.layers]
    # ``narrow`` alternates: the build's columns are all depthwise channels, so it
    # changes nothing in the codes, and the test checks that.
    return [
        pack(
            layout,
            {
                "lanes": [
                    {
                        "acc": int(vec.acc[b, c]),
                        "bias": int(vec.bias[b, c]),
                        "params": params[vec.layer[b, c]],
                    }
                    for c in range(cols)
                ],
                "narrow": b % 2,
            },
        )
        for b in range(beats)
    ]


def _codes(bits, cols):
    return [(bits >> (8 * c)) & 0xFF for c in range(cols)]


@cocotb.test()
async def postproc_vectors(dut):
    """Every vector through the lanes with random valid gaps and random back-pressure."""
    cfg, layout = _setup()
    beats = int(os.environ.get("BAMBOO_BEATS", "2000"))
    seed = int(os.environ.get("BAMBOO_SEED", "1"))
    vec = make_vectors(cfg.cols, cfg.lut_slots, beats, seed)
    payloads = _payloads(vec, layout)
    rnd = random.Random(seed)
    await _start(dut)
    await _load_tables(dut, vec.tables)

    sent, got, cycles = 0, [], 0
    # Phases of back-pressure: free flow, a stalled sink (fills the FIFO), a slow source.
    phases = [(0.9, 0.9), (0.9, 0.15), (0.3, 0.9), (0.6, 0.5)]
    while len(got) < beats:
        p_valid, p_ready = phases[(cycles // 500) % len(phases)]
        valid = sent < beats and rnd.random() < p_valid
        ready = rnd.random() < p_ready
        dut.i__valid.value = int(valid)
        if valid:
            dut.i__payload.value = payloads[sent]
        dut.o__ready.value = int(ready)
        if valid and int(dut.i__ready.value):
            sent += 1  # accepted at the coming rising edge
        if ready and int(dut.o__valid.value):
            got.append(_codes(int(dut.o__payload.value), cfg.cols))
        await FallingEdge(dut.clk)
        cycles += 1
        assert cycles < 20 * beats + 1000, f"stuck: sent {sent}, received {len(got)}"

    mismatches = [
        (b, c, got[b][c], int(vec.expected[b, c]))
        for b in range(beats)
        for c in range(cfg.cols)
        if got[b][c] != int(vec.expected[b, c])
    ]
    dut._log.info(
        "%d beats x %d lanes = %d vectors in %d cycles, %d mismatches",
        beats,
        cfg.cols,
        beats * cfg.cols,
        cycles,
        len(mismatches),
    )
    detail = [
        f"beat {b} lane {c}: acc={int(vec.acc[b, c])} bias={int(vec.bias[b, c])} "
        f"params={lane_params(vec.layers[vec.layer[b, c]])} got {g} expected {e}"
        for b, c, g, e in mismatches[:5]
    ]
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(detail)


@cocotb.test()
async def postproc_full_rate(dut):
    """With valid and ready always high the lanes take and deliver one beat per cycle."""
    cfg, layout = _setup()
    beats = 300
    vec = make_vectors(cfg.cols, cfg.lut_slots, beats, seed=7, adversarial=False)
    payloads = _payloads(vec, layout)
    await _start(dut)
    await _load_tables(dut, vec.tables)
    sent, got, cycles, first = 0, [], 0, None
    dut.o__ready.value = 1
    while len(got) < beats:
        dut.i__valid.value = int(sent < beats)
        if sent < beats:
            dut.i__payload.value = payloads[sent]
            assert int(dut.i__ready.value), f"i.ready dropped at beat {sent}"
            sent += 1
        if int(dut.o__valid.value):
            first = cycles if first is None else first
            got.append(_codes(int(dut.o__payload.value), cfg.cols))
        await FallingEdge(dut.clk)
        cycles += 1
    assert first == PostProcessor.LATENCY, f"first output after {first} cycles"
    assert cycles == beats + PostProcessor.LATENCY, f"{beats} beats took {cycles} cycles"
    assert got == [[int(v) for v in row] for row in vec.expected]
