"""cocotb test: run compiled programs on the whole Accelerator and read its cycle counters.

Run by tests/sim/test_cycles.py. ``CYCLES_CASES`` names a JSON file listing cases
``{name, image, window_base, runs: [[insn_start, insn_count], ...], program_offset}``;
``image`` is a ``.npy`` file holding the DMA window (weights, program, zeroed
activations). Each case's runs execute back to back; after each run the test reads
``CYCLES`` and the per-unit busy/stall counters and writes them to ``CYCLES_REPORT``.
"""

import json
import os

import cocotb
import numpy as np
from bamboo.arch import isa
from bamboo.arch import registers as regs
from bamboo.arch.registers import decode, encode
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam, AxiResp

CASES = os.environ["CYCLES_CASES"]
REPORT = os.environ["CYCLES_REPORT"]
PERIOD_NS = 10
WINDOW_BASE = 0x10000
OFF = {r.name: r.offset for r in regs.REGISTERS}


async def _rd(axil, name):
    resp = await axil.read(OFF[name], 4)
    assert resp.resp == AxiResp.OKAY
    return int.from_bytes(resp.data, "little")


async def _wr(axil, name, value):
    resp = await axil.write(OFF[name], int(value).to_bytes(4, "little"))
    assert resp.resp == AxiResp.OKAY


@cocotb.test()
async def compiled_programs(dut):
    """Every case's fabric runs; counters per run into the report."""
    cases = json.loads(open(CASES).read())
    size = max(WINDOW_BASE + np.load(c["image"], mmap_mode="r").size for c in cases)
    size = 1 << (size - 1).bit_length()
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=size)
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    report = {}
    for case in cases:
        image = np.load(case["image"])
        ram.write(WINDOW_BASE, image.tobytes())
        rows = []
        for first, count in case["runs"]:
            base = WINDOW_BASE + case["program_offset"] + first * isa.INSN_BYTES
            for name, value in (
                ("INSN_BASE_LO", base),
                ("INSN_BASE_HI", 0),
                ("INSN_COUNT", count),
                ("WINDOW_BASE_LO", WINDOW_BASE),
                ("WINDOW_BASE_HI", 0),
                ("WINDOW_SIZE_LO", image.size),
                ("WINDOW_SIZE_HI", 0),
            ):
                await _wr(axil, name, value)
            await _wr(axil, "CTRL", encode("CTRL", start=1, irq_enable=1))
            if not int(dut.irq.value):
                await First(RisingEdge(dut.irq), Timer(2_000_000 * PERIOD_NS, "ns"))
            status = decode("STATUS", await _rd(axil, "STATUS"))
            row = {
                "status": {k: int(v) for k, v in status.items()},
                "err_insn": await _rd(axil, "ERR_INSN"),
                "CYCLES": await _rd(axil, "CYCLES_LO"),
            }
            for u in regs.UNITS:
                for w in ("BUSY", "STALL"):
                    row[f"{u.upper()}_{w}"] = await _rd(axil, f"{u.upper()}_{w}")
            await _wr(axil, "IRQ_STATUS", 3)
            rows.append(row)
            dut._log.info("%s run %d+%d: %s", case["name"], first, count, row)
        report[case["name"]] = rows
        with open(REPORT, "w") as f:
            json.dump(report, f, indent=1)
