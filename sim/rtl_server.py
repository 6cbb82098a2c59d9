"""cocotb test module serving the whole accelerator (hw/top.py) to :mod:`bamboo.sim.rtl_device`.

One test, :func:`serve`: it connects to the Unix socket named by ``BAMBOO_RTL_SOCKET``
and answers JSON-line commands from the runtime process until ``quit``:

``{"op": "read", "offset": o}`` / ``{"op": "write", "offset": o, "value": v}``
    An AXI-Lite register access (``cocotbext.axi.AxiLiteMaster``).
``{"op": "wait", "cycles": n}``
    Run the clock until ``irq`` is high or ``n`` cycles passed.

DDR is ``cocotbext.axi.AxiRam`` over a shared file mapping (``BAMBOO_RTL_DDR``, size
``BAMBOO_RTL_SIZE``) that the runtime process maps too, so buffers need no copying.
The simulator advances only while a command runs (the socket read blocks it).
"""

import json
import mmap
import os
import socket

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

PERIOD_NS = 10


@cocotb.test()
async def serve(dut):
    size = int(os.environ["BAMBOO_RTL_SIZE"])
    fd = os.open(os.environ["BAMBOO_RTL_DDR"], os.O_RDWR)
    mem = mmap.mmap(fd, size)
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=size, mem=mem)
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_"), dut.clk, dut.rst)
    Clock(dut.clk, PERIOD_NS, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["BAMBOO_RTL_SOCKET"])
    rfile, wfile = sock.makefile("r"), sock.makefile("w")
    cycles = 0
    try:
        while True:
            line = rfile.readline()
            if not line:
                break
            cmd = json.loads(line)
            op = cmd["op"]
            reply = {"ok": True}
            if op == "read":
                resp = await axil.read(cmd["offset"], 4)
                reply.update(value=int.from_bytes(resp.data, "little"), resp=int(resp.resp))
            elif op == "write":
                resp = await axil.write(cmd["offset"], int(cmd["value"]).to_bytes(4, "little"))
                reply.update(resp=int(resp.resp))
            elif op == "wait":
                n = int(cmd["cycles"])
                if not int(dut.irq.value):
                    await First(RisingEdge(dut.irq), ClockCycles(dut.clk, n))
                reply.update(irq=int(dut.irq.value))
            elif op == "cycles":
                await ClockCycles(dut.clk, int(cmd["cycles"]))
            elif op == "quit":
                wfile.write(json.dumps(reply) + "\n")
                wfile.flush()
                break
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
            cycles += 1
            wfile.write(json.dumps(reply) + "\n")
            wfile.flush()
    finally:
        mem.flush()
        sock.close()
    del ram
