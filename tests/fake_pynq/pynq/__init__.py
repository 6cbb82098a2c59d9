"""A fake ``pynq``: the parts of PYNQ's API the Bamboo board runtime uses, on the ISA simulator.

Put ``tests/fake_pynq`` first on ``sys.path`` and ``import pynq`` gets this module.
The "PL" is :class:`bamboo.sim.isa_device.RegisterModel`: MMIO reads and writes at the
register base go to it, and ``CTRL.start`` runs the program on the instruction
simulator over simulated DDR.

Caches are modelled, so a run that skips cache maintenance fails as on the board
(S_AXI_HP0 is not coherent): every :func:`allocate` buffer is the CPU's view (the
cache) of a separate DDR array. ``flush()`` copies the view to DDR, ``invalidate()``
copies DDR to the view; the engine reads and writes DDR only. A start while a buffer
holds CPU writes that were never flushed raises :class:`FakePynqError`; a missing
invalidate leaves the CPU reading stale bytes.

A fake bitstream is a JSON file of the AcceleratorConfig (:func:`fake_bitstream`); a
``.hwh`` beside it makes ``Overlay`` accept it. Module state (the programmed PL, DDR,
the event log) is global as on a board; :func:`reset` clears it between tests.

It accepts no more than pynq 3.0.1 does (``tests/pynq_board`` runs the real package):
``allocate`` before a download fails, ``Interrupt`` knows only the overlay's pins and
serves only the event loop of the thread that made it, ``PynqBuffer.close`` frees
nothing, and ``ip_dict`` is keyed by the block design's cell name.
"""

import asyncio
import json
import warnings
from pathlib import Path

import numpy as np
from bamboo.arch.config import AcceleratorConfig
from bamboo.sim.isa_device import Memory, RegisterModel

__all__ = [
    "MMIO",
    "Bitstream",
    "Clocks",
    "FakePynqError",
    "Interrupt",
    "Overlay",
    "PynqBuffer",
    "allocate",
    "fake_bitstream",
    "reset",
    "state",
]

__version__ = "0.0-fake"
REGISTER_BASE = 0xA000_0000
IP_NAME = "bamboo"  # the cell name in the block design (boards/tcl.py)


class FakePynqError(RuntimeError):
    """A use of the fake that the real board would punish (e.g. an unflushed buffer)."""


class _State:
    def __init__(self):
        self.memory = Memory()
        self.pl = None  # RegisterModel of the programmed "bitstream"
        self.buffers = []  # live PynqBuffers
        self.events = []  # ("flush"|"invalidate"|"start"|"soft_reset", address)
        self.ps_regs = {}  # other MMIO writes (PS configuration registers)
        self.downloads = []
        self.interrupt_pins = {}  # of the loaded overlay


state = _State()


def reset():
    """Forget the programmed PL, DDR, buffers and the event log."""
    global state
    state = _State()


def fake_bitstream(path, config, hwh=True, interrupt=False, latency=0.0):
    """Write a fake ``.bit`` (JSON of ``config``) and optionally its ``.hwh``; returns the path."""
    path = Path(path)
    path.write_text(json.dumps({"config": config.to_dict(), "latency": latency}))
    if hwh:
        path.with_suffix(".hwh").write_text(json.dumps({"interrupt": interrupt}))
    return path


def _program(bitfile):
    data = json.loads(Path(bitfile).read_text())
    config = AcceleratorConfig.from_dict(data["config"])
    state.pl = _PL(config, state.memory, latency=data.get("latency", 0.0))
    state.downloads.append(str(bitfile))
    state.events.append(("download", str(bitfile)))


class _PL(RegisterModel):
    """The register model, checking cache discipline when the engine starts."""

    def _window_buffers(self):
        lo = self._wide("WINDOW_BASE")
        hi = lo + self._wide("WINDOW_SIZE")
        return [
            b
            for b in state.buffers
            if b.physical_address < hi and lo < b.physical_address + b._ddr.size
        ]

    def _start(self):
        for buf in self._window_buffers():
            if buf._pl_wrote:
                continue  # differences may be engine writes not yet invalidated
            if not np.array_equal(buf.view(np.ndarray), buf._ddr):
                raise FakePynqError(
                    f"engine started while the buffer at {buf.physical_address:#x} holds CPU "
                    "writes that were never flushed (S_AXI_HP0 is not cache-coherent)"
                )
        state.events.append(("start", self._wide("INSN_BASE")))
        super()._start()
        for buf in self._window_buffers():
            buf._pl_wrote = True

    def write(self, offset, value):
        if offset == 0x010 and value & 2:
            state.events.append(("soft_reset", offset))
        super().write(offset, value)


class PynqBuffer(np.ndarray):
    """The CPU's (cached) view of a contiguous DDR buffer."""

    def flush(self):
        self._ddr[:] = self.view(np.ndarray).reshape(-1).view(np.uint8)
        self._pl_wrote = False
        state.events.append(("flush", self.physical_address))

    def invalidate(self):
        self.view(np.ndarray).reshape(-1).view(np.uint8)[:] = self._ddr
        self._pl_wrote = False
        state.events.append(("invalidate", self.physical_address))

    def sync_to_device(self):
        self.flush()

    def sync_from_device(self):
        self.invalidate()

    def freebuffer(self):
        state.buffers = [b for b in state.buffers if b is not self]
        state.memory.remove(self._ddr)

    def close(self):
        """As pynq 3.0.1: frees nothing."""
        warnings.warn(
            ".close no longer functional - use scopes to manage buffers",
            DeprecationWarning,
            stacklevel=2,
        )


def allocate(shape, dtype="u4", target=None, cacheable=False, **kwargs):
    """A physically contiguous buffer: a numpy array with ``physical_address``."""
    if state.pl is None:
        raise RuntimeError("Overlay is not downloaded")  # EmbeddedDevice.default_memory
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    addr, ddr = state.memory.add(nbytes)
    buf = np.zeros(shape, dtype).view(PynqBuffer)
    buf.physical_address = addr
    buf.cacheable = cacheable
    buf._ddr = ddr
    buf._pl_wrote = False
    state.buffers.append(buf)
    return buf


class MMIO:
    """32-bit register access at ``base``; the Bamboo window goes to the fake PL."""

    def __init__(self, base_addr, length=4, **kwargs):
        self.base, self.length = int(base_addr), int(length)

    def _pl(self, offset):
        if self.base == REGISTER_BASE:
            if state.pl is None:
                raise FakePynqError(
                    "MMIO access to the register window with no bitstream "
                    "loaded (the real board would hang the AXI bus)"
                )
            return state.pl
        return None

    def read(self, offset=0, length=4):
        pl = self._pl(offset)
        if pl is not None:
            return pl.read(offset)
        return state.ps_regs.get(self.base + offset, 0)

    def write(self, offset, value):
        pl = self._pl(offset)
        if pl is not None:
            pl.write(offset, int(value) & 0xFFFFFFFF)
        else:
            state.ps_regs[self.base + offset] = int(value) & 0xFFFFFFFF


class Bitstream:
    """A ``.bit`` without its handoff file."""

    def __init__(self, bitfile_name, **kwargs):
        self.bitfile_name = str(bitfile_name)

    def download(self):
        _program(self.bitfile_name)


class Overlay:
    """A ``.bit`` with its ``.hwh``: programs the PL and describes the IP."""

    def __init__(self, bitfile_name, download=True, **kwargs):
        bit = Path(bitfile_name)
        hwh = bit.with_suffix(".hwh")
        if not hwh.exists():
            raise ValueError(f"Cannot find HWH file for {bit}")  # as pynq does
        if download:
            _program(bit)
        info = json.loads(hwh.read_text())
        pin = {"controller": "intc", "index": 0, "fullpath": f"{IP_NAME}/irq"}
        self.interrupt_pins = {f"{IP_NAME}/irq": pin} if info.get("interrupt") else {}
        state.interrupt_pins = self.interrupt_pins
        self.ip_dict = {
            IP_NAME: {
                "phys_addr": REGISTER_BASE,
                "addr_range": 0x1000,
                "type": "xilinx.com:module_ref:bamboo_top:1.0",
                "interrupts": {"irq": pin} if info.get("interrupt") else {},
            }
        }


class Interrupt:
    """An interrupt pin ``"ip/pin"``: ``await wait()`` returns while the line is high.

    As pynq 3.0.1: the pin must be one of the overlay's, and the object belongs to
    ``asyncio.get_event_loop()`` of the thread that made it (there the real one adds
    its UIO reader); waiting in another loop fails as the real ``asyncio.Event`` does.
    """

    def __init__(self, pinname):
        if pinname not in state.interrupt_pins:
            raise ValueError("No Pin of name {} found".format(pinname))
        self.pinname = pinname
        self.loop = asyncio.get_event_loop()

    async def wait(self):
        if asyncio.get_running_loop() is not self.loop:
            raise RuntimeError(f"{self!r} is bound to a different event loop")
        while not state.pl.irq:
            await asyncio.sleep(1e-4)


class _ClocksMeta(type):
    @property
    def fclk0_mhz(cls):
        return cls._fclk0_mhz

    @fclk0_mhz.setter
    def fclk0_mhz(cls, mhz):
        cls._fclk0_mhz = float(mhz)
        state.events.append(("clock", float(mhz)))


class Clocks(metaclass=_ClocksMeta):
    """PL clock control (only the attribute the runtime sets); setting it is logged."""

    _fclk0_mhz = 100.0
