"""The device interface the session runs fabric segments on: registers, DDR buffers, runs.

A :class:`Device` is the engine as the ARM cores see it: the AXI-Lite registers of
``bamboo.arch.registers`` (read and written by name), DDR buffers with physical
addresses the engine's DMA can reach, and a run: :meth:`Device.start` at an
instruction address within a DMA window, :meth:`Device.wait` until done. Backends
implement four primitives (``_read``, ``_write``, ``allocate``, optionally
``_wait_event``): ``bamboo.sim.isa_device`` on the instruction simulator,
``bamboo.runtime.board`` on the Ultra96 with PYNQ.

Buffers follow the cache discipline of a non-coherent port (S_AXI_HP0): the CPU
writes, then :meth:`DeviceBuffer.flush` before the engine reads; after the engine
writes, :meth:`DeviceBuffer.invalidate` before the CPU reads.
"""

import time

import numpy as np
from bamboo.arch.registers import REGISTERS, ErrorCode, decode, encode, register

from .errors import RuntimeBambooError

__all__ = ["Device", "DeviceBuffer", "DeviceError", "DeviceTimeout"]


class DeviceError(RuntimeBambooError):
    """The engine stopped on an error: ``code`` (ErrorCode) at instruction ``index``.

    ``index`` counts from the start of the run (``ERR_INSN``); the session adds the
    segment's first instruction so that ``index`` names a program instruction.
    """

    def __init__(self, code, index, message=None):
        code = ErrorCode(code)
        super().__init__(message or f"engine error {code.name} at instruction {index}")
        self.code, self.index = code, index


class DeviceTimeout(DeviceError):
    """The engine did not finish within the timeout; it was soft-reset."""

    def __init__(self, seconds, index=None):
        super().__init__(
            ErrorCode.TIMEOUT,
            index,
            f"engine did not finish within {seconds:g} s; it was soft-reset",
        )
        self.seconds = seconds


class DeviceBuffer:
    """A DDR buffer: ``size`` bytes at ``physical_address``, seen by the CPU as ``array``.

    ``array`` is a uint8 numpy array (the CPU's view). Subclasses override
    :meth:`flush` and :meth:`invalidate` when the CPU's view is cached.
    """

    def __init__(self, array, physical_address):
        self.array = array
        self.physical_address = int(physical_address)

    @property
    def size(self):
        return int(self.array.size)

    def write(self, offset, data):
        """Copy bytes (any array, viewed as uint8) to ``offset``."""
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if offset < 0 or offset + data.size > self.size:
            raise RuntimeBambooError(
                f"write of {data.size} bytes at {offset} passes the {self.size}-byte buffer"
            )
        self.array[offset : offset + data.size] = data

    def read(self, offset, nbytes):
        """A copy of ``nbytes`` bytes at ``offset``."""
        if offset < 0 or offset + nbytes > self.size:
            raise RuntimeBambooError(
                f"read of {nbytes} bytes at {offset} passes the {self.size}-byte buffer"
            )
        return np.array(self.array[offset : offset + nbytes], np.uint8)

    def flush(self):
        """Make CPU writes visible to the engine (write back the cache)."""

    def invalidate(self):
        """Make engine writes visible to the CPU (drop cached lines)."""

    def free(self):
        """Release the buffer."""


class Device:
    """The engine behind its register map. Subclasses implement the primitives.

    Attributes
    ----------
    name : str
        Backend name (``"isa"``, ``"rtl"``, ``"board"``).
    poll_interval : float
        Seconds between STATUS reads while waiting (after the first busy reads).
    default_timeout : float
        Seconds a run may take before the session gives up (slow simulators raise it).
    """

    name = "device"
    poll_interval = 50e-6
    default_timeout = 10.0

    # Primitives --------------------------------------------------------------------------
    def _read(self, offset):
        """Read the 32-bit register at byte ``offset``."""
        raise NotImplementedError

    def _write(self, offset, value):
        """Write the 32-bit register at byte ``offset``."""
        raise NotImplementedError

    def allocate(self, nbytes):
        """A :class:`DeviceBuffer` of ``nbytes`` bytes the engine can reach."""
        raise NotImplementedError

    def _wait_event(self, timeout):
        """Block until the engine may have finished or ``timeout`` s passed (interrupts).

        The default polls STATUS; backends with an interrupt override it.
        Returns when STATUS should be read again.
        """
        deadline = time.monotonic() + timeout
        spins = 0
        while time.monotonic() < deadline:
            if not self.read_field("STATUS", "busy"):
                return
            spins += 1
            if spins > 100:
                time.sleep(self.poll_interval)

    def close(self):
        """Release the device."""

    # Registers by name ------------------------------------------------------------------
    def read_reg(self, name):
        """The 32-bit value of register ``name`` (``bamboo.arch.registers``)."""
        return self._read(register(name).offset)

    def write_reg(self, name, value):
        """Write register ``name``."""
        self._write(register(name).offset, int(value) & 0xFFFFFFFF)

    def read_field(self, name, field):
        return decode(name, self.read_reg(name))[field]

    def read_wide(self, name):
        """A 64-bit ``_LO``/``_HI`` pair (LO first: it latches HI of counters)."""
        lo = self.read_reg(f"{name}_LO")
        return lo | self.read_reg(f"{name}_HI") << 32

    def write_wide(self, name, value):
        self.write_reg(f"{name}_LO", value & 0xFFFFFFFF)
        self.write_reg(f"{name}_HI", value >> 32)

    def identity(self):
        """``{"id", "isa_version", "config_id", "hw_version"}`` from the registers."""
        return {
            "id": self.read_reg("ID"),
            "isa_version": self.read_reg("ISA_VERSION"),
            "config_id": self.read_reg("CONFIG_ID"),
            "hw_version": self.read_reg("HW_VERSION"),
        }

    def counters(self):
        """Cycle counters of the last run: ``{"cycles", "fetch_busy", ...}``."""
        out = {"cycles": self.read_wide("CYCLES")}
        for r in REGISTERS:
            if r.offset >= 0x80 and r.fields[0].kind == "counter":
                out[r.name.lower()] = self.read_reg(r.name)
        return out

    # Runs -------------------------------------------------------------------------------
    def soft_reset(self):
        """Abort the engine; clears STATUS, IRQ_STATUS and the counters."""
        irq = self.read_field("CTRL", "irq_enable")
        self.write_reg("CTRL", encode("CTRL", soft_reset=1, irq_enable=irq))

    def start(self, insn_base, count, window):
        """Start ``count`` instructions at bus address ``insn_base``.

        ``window`` is ``(base, size)``: the DMA may touch only these bus addresses.
        """
        if self.read_field("STATUS", "busy"):
            raise RuntimeBambooError("engine busy: cannot start")
        base, size = window
        self.write_wide("WINDOW_BASE", int(base))
        self.write_wide("WINDOW_SIZE", int(size))
        self.write_wide("INSN_BASE", int(insn_base))
        self.write_reg("INSN_COUNT", int(count))
        self.write_reg("IRQ_STATUS", encode("IRQ_STATUS", done=1, error=1))
        irq = self.read_field("CTRL", "irq_enable")
        self.write_reg("CTRL", encode("CTRL", start=1, irq_enable=irq))

    def wait(self, timeout=10.0):
        """Wait for the run to end.

        Returns
        -------
        True when the run finished.

        Raises
        ------
        DeviceError
            The engine stopped on an error (``code``, ``index`` from ERR_INSN).
        DeviceTimeout
            Not finished after ``timeout`` seconds; the engine was soft-reset.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = decode("STATUS", self.read_reg("STATUS"))
            if status["error"]:
                index = self.read_reg("ERR_INSN")
                self.write_reg("IRQ_STATUS", encode("IRQ_STATUS", done=1, error=1))
                raise DeviceError(status["error_code"], index)
            if status["done"] and not status["busy"]:
                self.write_reg("IRQ_STATUS", encode("IRQ_STATUS", done=1, error=1))
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                self.soft_reset()
                raise DeviceTimeout(timeout)
            self._wait_event(left)
