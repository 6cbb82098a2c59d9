"""cocotb tests of the VectorUnit RTL, run by test_vector.py on Verilator and Icarus.

Runs inside the simulator. The environment chooses the configuration
(``BAMBOO_CONFIG``), the number of 256-pixel ADD instructions (``BAMBOO_ADD_INSNS``)
and the seed (``BAMBOO_SEED``); cases and expected OUT words come from
vector_vectors.py (the instruction simulator, sim.isa_ops.vec).

The testbench is the buffers: a coroutine samples the INP and PARAM read ports and
the OUT write port once per cycle (after the falling edge, once everything settled)
and answers each read with the word at the next falling edge, as a synchronous
memory does. Inputs change at falling edges only, so both simulators agree.
"""

import itertools
import os

import cocotb
import numpy as np
from bamboo.arch import isa, preset
from bamboo.hw.postproc import LUT_ENTRIES
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from vector_vectors import OPS, add_exhaustive, make_case, words

__all__ = ["vector_add_pairs", "vector_random_ops"]

F32 = np.float32


class _Buffers:
    """INP/PARAM contents the memory coroutine serves, OUT writes it records."""

    def __init__(self, cfg):
        self.inp, self.param, self.writes = [0] * cfg.input_buffer_depth, [0] * 16, []


async def _memory(dut, buf):
    pend_inp = pend_param = None
    while True:
        await FallingEdge(dut.clk)
        if pend_inp is not None:
            dut.inp_r__data.value = buf.inp[pend_inp]
        if pend_param is not None:
            dut.param_r__data.value = buf.param[pend_param]
        await ReadOnly()
        pend_inp = int(dut.inp_r__addr.value) if int(dut.inp_r__en.value) else None
        pend_param = int(dut.param_r__addr.value) if int(dut.param_r__en.value) else None
        if int(dut.out_w__en.value):
            buf.writes.append((int(dut.out_w__addr.value), int(dut.out_w__data.value)))


async def _start(dut, cfg, lut):
    dut.i_insn__valid.value = 0
    dut.i_insn__payload.value = 0  # the PARAM address follows it while idle
    dut.lut_w__en.value = 0
    dut.inp_r__data.value = 0
    dut.param_r__data.value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    buf = _Buffers(cfg)
    cocotb.start_soon(_memory(dut, buf))
    for slot, table in enumerate(lut):
        for index, entry in enumerate(table):
            dut.lut_w__addr.value = slot * LUT_ENTRIES + index
            dut.lut_w__data.value = int(entry)
            dut.lut_w__en.value = 1
            await FallingEdge(dut.clk)
    dut.lut_w__en.value = 0
    return buf


async def _run_case(dut, cfg, buf, case):
    """One instruction: returns the number of wrong codes (and logs the first)."""
    buf.inp, buf.param, buf.writes = words(case.inp), words(case.param), []
    await FallingEdge(dut.clk)
    dut.i_insn__payload.value = case.word
    dut.i_insn__valid.value = 1
    await FallingEdge(dut.clk)  # idle: accepted at the rising edge in between
    dut.i_insn__valid.value = 0
    for cycle in range(case.pixels * 32 + 100):
        await ReadOnly()
        if int(dut.status__done.value):
            break
        await FallingEdge(dut.clk)
    else:
        raise AssertionError(f"no done for {isa.decode(case.word)}")
    await FallingEdge(dut.clk)  # the memory coroutine records the last write
    f = case.fields
    addrs = [a for a, _ in buf.writes]
    assert addrs == list(range(f["out_addr"], f["out_addr"] + case.pixels)), (f, addrs)
    got = np.array(
        [[(d >> (8 * c)) & 0xFF for c in range(cfg.cols)] for _, d in buf.writes], np.uint8
    )
    bad = np.argwhere(got != case.expected)
    if bad.size:
        p, c = bad[0]
        dut._log.error(
            "%s: pixel %d lane %d got %d expected %d",
            isa.decode(case.word),
            p,
            c,
            got[p, c],
            case.expected[p, c],
        )
    return len(bad)


def _add_word(cols, sa, sb, sc, za, zb, zc):
    from bamboo.compiler.backend.pack import add_params

    return add_params(F32(sa), F32(sb), F32(sc), za, zb, zc, cols).view("<u8").astype(np.uint64)[0]


@cocotb.test()
async def vector_add_pairs(dut):
    """ADD over consecutive code pairs, two quantizations (uint8, int8), 256 pixels each."""
    cfg = preset(os.environ.get("BAMBOO_CONFIG", "tiny"))
    n = int(os.environ.get("BAMBOO_ADD_INSNS", "4"))
    seed = int(os.environ.get("BAMBOO_SEED", "1"))
    rng = np.random.default_rng(seed)
    buf = await _start(dut, cfg, np.zeros((cfg.lut_slots, 256), np.uint8))
    wrong = vectors = 0
    for signed, quant in (
        (False, (0.0173, 0.0291, 0.0402, 128, 117, 121)),
        (True, (0.031, 0.0047, 0.02, -5, 20, 3)),
    ):
        first = int(rng.integers(0, 1 << 16))
        cases = add_exhaustive(cfg, _add_word(cfg.cols, *quant), signed, first_pair=first)
        for case in itertools.islice(cases, max(1, n // 2)):
            wrong += await _run_case(dut, cfg, buf, case)
            vectors += case.pixels * cfg.rows
    dut._log.info("%d ADD vectors, %d wrong", vectors, wrong)
    assert wrong == 0


@cocotb.test()
async def vector_random_ops(dut):
    """Random instructions of every VecOp, against the instruction simulator."""
    cfg = preset(os.environ.get("BAMBOO_CONFIG", "tiny"))
    seed = int(os.environ.get("BAMBOO_SEED", "1"))
    rng = np.random.default_rng(seed + 1)
    lut = rng.integers(0, 256, (cfg.lut_slots, 256)).astype(np.uint8)
    buf = await _start(dut, cfg, lut)
    wrong = 0
    for vop in OPS:
        for _ in range(4):
            wrong += await _run_case(dut, cfg, buf, make_case(cfg, vop, rng, lut))
    assert wrong == 0
