"""The :class:`~bamboo.runtime.device.Device` interface on the RTL of the whole accelerator.

The accelerator (``bamboo.hw.top.Accelerator``) runs in Verilator or Icarus under
cocotb (``bamboo.sim.harness.run_cocotb``) in a background thread; its cocotb module,
``bamboo.sim.rtl_server``, takes register reads, writes and waits from this process
over a Unix socket. DDR is a file both processes map (``MAP_SHARED``): buffers are
numpy memmaps, the RTL's AXI manager reads and writes the same bytes through
``cocotbext.axi.AxiRam``. Physical addresses are offsets in that file (from 4 KiB).

The first use builds the simulator (minutes for Verilator; cached by design hash under
``build/sim``); a run simulates every cycle (at ``ultra96`` about a thousand cycles a
second of wall time on this project's loaded 2-core machine), so run ``tiny`` or single
blocks at reduced resolution (tests/sim/test_rtl_blocks.py).
"""

import json
import os
import socket
import tempfile
import threading
import time

import numpy as np
from bamboo.arch.errors import BambooError
from bamboo.arch.registers import encode
from bamboo.runtime.device import Device, DeviceBuffer

__all__ = ["RtlDevice", "unavailable"]

_PAGE = 4096


def unavailable(simulator="verilator"):
    """Why the rtl backend cannot run here (a string), or None when it can."""
    try:
        import cocotbext.axi  # noqa: F401
        from bamboo.hw.top import Accelerator  # noqa: F401
        from bamboo.sim.harness import find_simulators
    except ImportError as exc:
        return f"rtl backend needs hw.top and cocotbext-axi: {exc}"
    info = find_simulators().get(simulator)
    if info is None or not info.available:
        return f"{simulator} unavailable: {info.reason if info else 'unknown simulator'}"
    return None


class RtlDevice(Device):
    """The accelerator's RTL in a cocotb simulation.

    Parameters
    ----------
    config : AcceleratorConfig
    simulator : {"verilator", "icarus"}
    memory_size : int
        Bytes of simulated DDR (one shared file).
    watchdog : int or None
        The engine's watchdog in cycles (default: the hardware's).
    wait_cycles : int
        Cycles simulated per wait step before STATUS is read again.
    connect_timeout : float
        Seconds to wait for the simulator to build and connect.

    Attributes
    ----------
    design : str
        The simulated Verilog's name, ``bamboo_top-<content hash>``.
    """

    name = "rtl"
    default_timeout = 3600.0

    def __init__(
        self,
        config,
        simulator="verilator",
        memory_size=64 << 20,
        watchdog=None,
        wait_cycles=20000,
        connect_timeout=1800.0,
    ):
        reason = unavailable(simulator)
        if reason:
            raise BambooError(reason)
        from bamboo.hw.top import WATCHDOG_CYCLES, Accelerator
        from bamboo.sim.harness import generate_verilog, run_cocotb

        self.config, self.wait_cycles = config, wait_cycles
        self.tmp = tempfile.TemporaryDirectory(prefix="bamboo-rtl-")
        self.ddr_path = os.path.join(self.tmp.name, "ddr.bin")
        with open(self.ddr_path, "wb") as f:
            f.truncate(memory_size)
        self.ddr = np.memmap(self.ddr_path, np.uint8, "r+", shape=(memory_size,))
        self.next = _PAGE
        sock_path = os.path.join(self.tmp.name, "engine.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock_path)
        listener.listen(1)
        verilog = generate_verilog(
            Accelerator(config, watchdog=watchdog or WATCHDOG_CYCLES), "bamboo_top"
        )
        self.design = verilog.stem  # "bamboo_top-<content hash>": which RTL this runs
        self.error = None

        def simulate():
            try:
                run_cocotb(
                    verilog,
                    "bamboo.sim.rtl_server",
                    simulator,
                    name="bamboo_top",
                    extra_env={
                        "BAMBOO_RTL_SOCKET": sock_path,
                        "BAMBOO_RTL_DDR": self.ddr_path,
                        "BAMBOO_RTL_SIZE": memory_size,
                    },
                )
            except Exception as exc:  # reported by the next command
                self.error = exc

        self.thread = threading.Thread(target=simulate, name="bamboo-rtl", daemon=True)
        self.thread.start()
        # Poll: closing the listener from the simulation thread does not wake accept().
        listener.settimeout(1.0)
        deadline = time.monotonic() + connect_timeout
        self.conn = None
        while self.conn is None:
            try:
                self.conn, _ = listener.accept()
            except OSError as exc:  # socket.timeout is an OSError
                if not self.thread.is_alive() or time.monotonic() > deadline:
                    raise BambooError(
                        f"the RTL simulation did not start: {self.error or exc}"
                    ) from None
        listener.close()
        self.rfile, self.wfile = self.conn.makefile("r"), self.conn.makefile("w")
        self.lock = threading.Lock()
        self.write_reg("CTRL", encode("CTRL", irq_enable=1))

    def _call(self, **cmd):
        with self.lock:
            try:
                self.wfile.write(json.dumps(cmd) + "\n")
                self.wfile.flush()
                line = self.rfile.readline()
            except OSError:
                line = ""
        if not line:
            raise BambooError(f"the RTL simulation ended: {self.error}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise BambooError(f"RTL server: {reply.get('error')}")
        return reply

    def _read(self, offset):
        return self._call(op="read", offset=offset)["value"]

    def _write(self, offset, value):
        self._call(op="write", offset=offset, value=value)

    def allocate(self, nbytes):
        addr = self.next
        if addr + nbytes > self.ddr.size:
            raise BambooError(
                f"simulated DDR of {self.ddr.size} bytes is full; pass a larger memory_size"
            )
        self.next = addr + -(-max(nbytes, 1) // _PAGE) * _PAGE
        return DeviceBuffer(self.ddr[addr : addr + nbytes], addr)

    def _wait_event(self, timeout):
        self._call(op="wait", cycles=self.wait_cycles)

    def close(self):
        if getattr(self, "conn", None) is None:
            return
        try:
            self._call(op="quit")
        except BambooError:
            pass
        self.conn.close()
        self.conn = None
        self.thread.join(60)
        self.tmp.cleanup()
