"""The :class:`~bamboo.runtime.device.Device` interface on the instruction simulator.

:class:`RegisterModel` is the register file of ``bamboo.arch.registers`` in Python:
each field behaves as its kind says (``rw`` storage, ``pulse`` actions, ``sticky`` and
``capture`` status, ``event`` W1C interrupt bits, ``config`` and ``const`` values), and
``CTRL.start`` runs the program on :class:`bamboo.sim.isa.Machine` over the DDR bytes
of the DMA window. :class:`IsaDevice` puts it behind the Device interface with plain
numpy buffers; the fake PYNQ of the tests maps its MMIO onto the same model.

The simulator has no clock: a run completes inside the write to ``CTRL``, the cycle
counters read zero, and ``latency`` (seconds) only delays when STATUS shows the end,
which lets tests exercise the runtime's timeout (``latency=float("inf")``: a hang).
With ``pace=True`` the device emulates the fabric's time instead
(:class:`bamboo.sim.pacing.FabricPacer`): STATUS shows the end the cycle model's time
after the start, and the simulator's results are memoized by the bytes a run reads.
"""

import functools
import time

import numpy as np
from bamboo.arch import isa
from bamboo.arch.errors import BambooError
from bamboo.arch.registers import REGISTERS, ErrorCode
from bamboo.runtime.device import Device, DeviceBuffer

from .isa import IsaSimError, Machine

__all__ = ["IsaDevice", "Memory", "RegisterModel"]

#: Where the simulated DDR allocator starts handing out physical addresses.
DDR_BASE = 0x6000_0000


class Memory:
    """Simulated DDR: buffers at physical addresses (a bump allocator, 4 KiB pages)."""

    def __init__(self, base=DDR_BASE):
        self.next = base
        self.regions = []  # (address, array)

    def add(self, nbytes):
        """A new zeroed uint8 array and its physical address."""
        addr = self.next
        arr = np.zeros(nbytes, np.uint8)
        self.regions.append((addr, arr))
        self.next = addr + -(-max(nbytes, 1) // 4096) * 4096
        return addr, arr

    def view(self, addr, nbytes):
        """The bytes ``[addr, addr + nbytes)``; they must lie in one buffer."""
        for base, arr in self.regions:
            if base <= addr and addr + nbytes <= base + arr.size:
                return arr[addr - base : addr - base + nbytes]
        raise BambooError(f"bus addresses [{addr:#x}, {addr + nbytes:#x}) are not in any buffer")

    def remove(self, arr):
        self.regions = [(a, r) for a, r in self.regions if r is not arr]


@functools.lru_cache(maxsize=256)  # a session starts the same few segments every frame
def _finish_irq(raw):
    """The ``irq`` bit of the first FINISH in the program bytes ``raw`` (0 without one)."""
    for word in isa.decode_bytes(raw):
        f = isa.decode(word)
        if f["opcode"] == isa.Opcode.FINISH:
            return f["irq"]
    return 0


class RegisterModel:
    """The AXI-Lite register file, driving the instruction simulator.

    Parameters
    ----------
    config : AcceleratorConfig
        The "bitstream": fixes CONFIG_ID and the simulated buffers.
    memory : Memory
        DDR as the engine's DMA sees it.
    latency : float
        Seconds after the start returns (the simulation runs inside it) before STATUS
        reports the end (``inf``: never).
    pacer : FabricPacer, optional
        Emulated fabric time: STATUS reports the end the cycle model's time after the
        start (plus ``latency``), and results are memoized (``bamboo.sim.pacing``).
    """

    def __init__(self, config, memory, latency=0.0, pacer=None):
        self.config, self.memory, self.latency, self.pacer = config, memory, latency, pacer
        self.by_offset = {r.offset: r for r in REGISTERS}
        self.stored = {r.offset: r.reset for r in REGISTERS}
        self.machine = self.window = None
        self.starts = 0
        self.soft_resets = 0
        self._clear()

    def _clear(self):
        self.sig = {"busy": 0, "done": 0, "error": 0, "error_code": 0, "err_insn": 0}
        self.irq_bits = {"done_irq": 0, "error": 0}  # IRQ_STATUS by engine signal
        self.pending = None
        self.ends_at = 0.0

    def _settle(self):
        """Apply a finished run's result once its latency has passed."""
        if self.pending is not None and time.monotonic() >= self.ends_at:
            self.sig.update(self.pending, busy=0)
            for k in self.irq_bits:
                self.irq_bits[k] |= self.pending.get(k, 0)
            self.pending = None

    @property
    def irq(self):
        """Level of the interrupt line."""
        self._settle()
        ctrl = self.stored[0x010]
        return bool(ctrl & 0b100) and any(self.irq_bits.values())

    def _value(self, f, reg):
        if f.kind in ("rw",):
            return (self.stored[reg.offset] >> f.lsb) & ((1 << f.width) - 1)
        if f.kind == "const":
            return f.reset
        if f.kind == "config":
            return (getattr(self.config, f.signal) >> f.signal_lsb) & ((1 << f.width) - 1)
        if f.kind == "event":
            return self.irq_bits[f.signal]
        if f.kind in ("status", "sticky", "capture"):
            return self.sig[f.signal]
        return 0  # pulse, counter (no clock)

    def read(self, offset):
        """The register word at ``offset`` (unmapped offsets read zero)."""
        self._settle()
        reg = self.by_offset.get(offset & ~3)
        if reg is None:
            return 0
        return sum((self._value(f, reg) & ((1 << f.width) - 1)) << f.lsb for f in reg.fields)

    def write(self, offset, value):
        """Write a register word: RW fields store, pulses act, events clear."""
        self._settle()
        reg = self.by_offset.get(offset & ~3)
        if reg is None:
            return
        pulses = []
        for f in reg.fields:
            bits = (value >> f.lsb) & ((1 << f.width) - 1)
            if f.kind == "rw":
                self.stored[reg.offset] = (self.stored[reg.offset] & ~f.mask) | (bits << f.lsb)
            elif f.kind == "event" and bits:
                self.irq_bits[f.signal] = 0
            elif f.kind == "pulse" and bits:
                pulses.append(f.signal)
        if "soft_reset" in pulses:
            self.soft_resets += 1
            self._clear()
        elif "start" in pulses and not self.sig["busy"]:
            self._start()

    def _wide(self, name):
        lo = next(r for r in REGISTERS if r.name == f"{name}_LO").offset
        return self.stored[lo] | self.stored[lo + 4] << 32

    def _start(self):
        started = time.monotonic()
        self.starts += 1
        self.sig.update(done=0, error=0, error_code=0, err_insn=0)
        base, size = self._wide("WINDOW_BASE"), self._wide("WINDOW_SIZE")
        insn_base, count = self._wide("INSN_BASE"), self.stored[0x028]
        result = {"done": 1, "error": 0, "error_code": 0, "err_insn": 0}
        paced = None
        try:
            window = self.memory.view(base, size)
            raw = self.memory.view(insn_base, count * isa.INSN_BYTES).tobytes()
        except BambooError:
            result.update(done=0, error=1, error_code=int(ErrorCode.AXI_ERROR))
        else:
            hit = key = None
            if self.pacer is not None:
                paced = self.pacer.program(raw, size)
                hit, key = self.pacer.replay(raw, paced, window)
            if not hit:
                result = self._simulate(base, size, window, isa.decode_bytes(raw), count)
                if self.pacer is not None and result["done"]:
                    self.pacer.record(key, paced, window)
        # IRQ_STATUS.done only for a run that ends at a FINISH with irq set (arch/isa.py).
        result["done_irq"] = int(bool(result["done"]) and _finish_irq(raw))
        self.sig["busy"] = 1
        self.pending = result
        # The fabric time counts from the start; ``latency`` from the write's return, so
        # a slow simulation (a loaded machine) never eats the latency a test relies on.
        fabric_end = started + (paced.seconds if paced is not None else 0.0)
        self.ends_at = max(fabric_end, time.monotonic()) + self.latency
        self._settle()

    def _simulate(self, base, size, window, words, count):
        result = {"done": 1, "error": 0, "error_code": 0, "err_insn": 0}
        # On-chip buffers keep their contents across runs, as the hardware's do.
        if self.machine is None or self.window != (base, size):
            self.machine, self.window = Machine(self.config, window), (base, size)
        m = self.machine
        m.tokens = dict.fromkeys(m.tokens, 0)
        try:
            m.run(words, 0, count)
            if any(m.tokens.values()):
                raise IsaSimError(
                    ErrorCode.TIMEOUT, count - 1, f"tokens left at FINISH: {m.tokens}"
                )
        except IsaSimError as exc:
            result.update(done=0, error=1, error_code=int(exc.code), err_insn=exc.index)
        return result


class IsaDevice(Device):
    """The instruction simulator as a :class:`~bamboo.runtime.device.Device`.

    Parameters
    ----------
    config : AcceleratorConfig
        The simulated accelerator.
    latency : float
        Seconds a run appears busy (tests of the runtime's timeout).
    pace : bool or float
        Emulate the fabric's time (:mod:`bamboo.sim.pacing`): a run ends the cycle
        model's time after its start (times ``pace`` when a number: 10 emulates a fabric
        ten times slower), waited for in ``time.sleep``; results are memoized by the
        bytes a run reads, so only the first run on given inputs pays the simulator. The
        backend is then called ``isa-paced``.
    pace_clock_mhz : float, optional
        Clock of the cycle model (default the configuration's).
    pace_memory : str
        Memory timing of the emulation (``bamboo.arch.timing.BOARDS``, default ``ultra96``).
    """

    name = "isa"
    poll_interval = 0.0

    def __init__(self, config, latency=0.0, pace=False, pace_clock_mhz=None, pace_memory="ultra96"):
        self.config = config
        self.memory = Memory()
        self.pacer = None
        if pace is not False and pace is not None:
            from .pacing import FabricPacer

            stretch = 1.0 if pace is True else float(pace)
            self.pacer = FabricPacer(config, pace_memory, pace_clock_mhz, stretch)
            self.name = "isa-paced"
        self.regs = RegisterModel(config, self.memory, latency=latency, pacer=self.pacer)

    def _read(self, offset):
        return self.regs.read(offset)

    def _write(self, offset, value):
        self.regs.write(offset, value)

    def allocate(self, nbytes):
        addr, arr = self.memory.add(nbytes)
        return DeviceBuffer(arr, addr)

    def _wait_event(self, timeout):
        # A run ends inside CTRL.start unless a latency or pacing delays it: sleep until then.
        regs = self.regs
        left = regs.ends_at - time.monotonic() if regs.pending is not None else 1e-3
        time.sleep(max(0.0, min(timeout, left)))
