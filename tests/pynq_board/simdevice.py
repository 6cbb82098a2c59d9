"""A PYNQ 3.0.1 ``Device`` of our own: the real ``pynq`` package over the simulated Ultra96.

Runs in ``.venv-pynq`` (Python 3.10, ``pynq==3.0.1``; ``scripts/setup_pynq_venv.sh``).
Everything above the kernel is PYNQ's own code: ``Overlay`` and its ``.hwh`` parser
(pynqmetadata), ``Bitstream`` and its ``.bit`` header reader (``bit2bin``), ``MMIO``,
``allocate`` and ``PynqBuffer`` (flush/invalidate/freebuffer), ``Interrupt`` with its
``axi_intc`` driver and ``UioController``, ``Clocks`` (the CRL_APB register maps) and
``EmbeddedDevice.set_axi_port_width``. :class:`SimDevice` stands in for only what the
kernel and the hardware do:

* ``/dev/mem`` (:meth:`SimDevice.mmap`): the PS's configuration registers are plain
  memory with the Ultra96's boot values (IOPLL at 1500 MHz, PL0 at 100 MHz, HP0 at 32
  bits); the accelerator's window is ``bamboo.sim.isa_device.RegisterModel`` (the
  instruction simulator runs on ``CTRL.start``); the ``axi_intc``'s window is a model
  of its registers (PG099) fed by the accelerator's ``irq`` line. An access to the PL
  with no design loaded raises, where a board would hang the bus.
* the FPGA manager (:meth:`SimDevice.download`): programming reads the configuration
  from the ``.bit`` PYNQ converted to ``.bin``, and notes the PL clock at that moment.
* XRT's buffer objects (``allocate``/``flush``/``invalidate``): physically contiguous
  DDR at bus addresses; a cacheable buffer's CPU view is a separate copy that only
  ``flush``/``invalidate`` reconcile (S_AXI_HP0 is not coherent); the engine reads
  DDR only, so a missing flush shows as a stale read, a missing invalidate as stale
  results.
* the UIO device (``/proc/interrupts`` and ``/sys/class/uio``: ``get_uio_irq``): a
  pseudo-terminal in raw mode, whose other end a "kernel" thread serves as
  ``uio_pdrv_genirq`` does (a write of 1 enables the IRQ; when the ``axi_intc``'s
  output is high it writes the 4-byte count and disables it again).

:func:`install` makes it PYNQ's active device and reports the CPU as ``aarch64`` (what
``os.uname`` says on the board, which ``pynq.Clocks`` checks).
"""

import json
import os
import select
import struct
import threading
import tty
from pathlib import Path

import numpy as np
import pynq
import pynq.interrupt
import pynq.ps
from bamboo.arch.config import AcceleratorConfig
from bamboo.sim.isa_device import Memory, RegisterModel
from pynq.buffer import PynqBuffer
from pynq.metadata.runtime_metadata_parser import RuntimeMetadataParser
from pynq.pl_server.device import Device
from pynq.pl_server.embedded_device import DEFAULT_XCLBIN, EmbeddedDevice, bit2bin
from pynq.pl_server.xclbin_parser import XclBin
from pynqmetadata.frontends import Metadata

__all__ = ["SimDevice", "install", "write_bitstream"]

#: GIC interrupt of PL_PS_IRQ0[0] (UG1085 table 13-1; pynqmetadata's irq map agrees).
PL_PS_IRQ0 = 121
#: The PL's address range behind M_AXI_HPM0_FPD and HPM1_FPD (UG1085 table 10-1).
PL_WINDOW = (0xA000_0000, 0xB000_0000)

_CRL, _CRF = 0xFF5E_0000, 0xFD1A_0000
#: Boot values of the registers PYNQ reads or writes: Ultra96 IOPLL 33.333 MHz x 90 / 2,
#: PL0 = IOPLL / 15 (100 MHz), HPM0_FPD at 128 bits, S_AXI_HP0_FPD (AFIFM2) at 32 bits.
BOOT = {
    _CRL + 0x20: 90 << 8 | 1 << 16,
    _CRL + 0x30: 72 << 8 | 1 << 16,
    _CRL + 0xC0: 1 << 24 | 1 << 16 | 15 << 8,
    _CRF + 0x20: 72 << 8,
    _CRF + 0x2C: 64 << 8,
    _CRF + 0x38: 90 << 8 | 1 << 16,
    _CRF + 0x60: 1 << 8,
    0xFD61_5000: 0xA00,
    0xFD38_0000: 2,
    0xFD38_0014: 2,
}


def write_bitstream(path, config, *, reg_base, intc_base, latency=0.0):
    """A ``.bit`` as Vivado frames one (the header fields ``pynq``'s ``parse_bit_header``
    reads) whose data names the design: the configuration and where its windows are."""
    payload = json.dumps(
        {
            "config": config.to_dict(),
            "reg_base": reg_base,
            "intc_base": intc_base,
            "latency": latency,
        }
    ).encode()
    payload += b" " * (-len(payload) % 4)

    def field(tag, text):
        data = text.encode() + b"\0"
        return bytes([tag]) + struct.pack(">h", len(data)) + data

    head = struct.pack(">h", 9) + bytes.fromhex("0ff00ff00ff00ff000") + struct.pack(">h", 1)
    head += field(0x61, "bamboo_wrapper;UserID=0XFFFFFFFF;Version=2022.1")
    head += field(0x62, "xczu3eg-sbva484-1-i") + field(0x63, "2026/12/05")
    head += field(0x64, "00:00:00") + b"\x65" + struct.pack(">i", len(payload))
    Path(path).write_bytes(head + payload)
    return Path(path)


class _Window:
    """``/dev/mem`` over a device model: what ``MMIO.array[i]`` reads and writes."""

    def __init__(self, device, model, offset, length):
        self.device, self.model, self.offset, self.length = device, model, offset, length

    def __len__(self):
        return self.length // 4

    def __getitem__(self, i):
        with self.device.lock:
            return np.uint32(self.model.read(self.offset + 4 * int(i)))

    def __setitem__(self, i, value):
        with self.device.lock:
            self.model.write(self.offset + 4 * int(i), int(value) & 0xFFFF_FFFF)


class _Intc:
    """``axi_intc`` (PG099), one level-sensitive input: ISR IPR IER IAR SIE CIE IVR MER."""

    def __init__(self, line):
        self.line, self.isr, self.ier, self.mer = line, 0, 0, 0

    def _sample(self):
        if self.line():
            self.isr |= 1

    @property
    def irq(self):
        self._sample()
        return self.mer & 3 == 3 and bool(self.isr & self.ier)

    def read(self, offset):
        self._sample()
        ipr = self.isr & self.ier
        return {
            0x00: self.isr,
            0x04: ipr,
            0x08: self.ier,
            0x18: 0 if ipr & 1 else 0xFFFF_FFFF,
            0x1C: self.mer,
        }.get(offset, 0)

    def write(self, offset, value):
        if offset == 0x08:
            self.ier = value
        elif offset == 0x0C:  # acknowledge; a level still high sets it again
            self.isr &= ~value
            self._sample()
        elif offset == 0x10:
            self.ier |= value
        elif offset == 0x14:
            self.ier &= ~value
        elif offset == 0x1C:
            self.mer = value & 3


class _Engine(RegisterModel):
    """The register model, noting starts, soft resets and stale (unflushed) reads."""

    def __init__(self, device, config, latency):
        super().__init__(config, device.memory, latency=latency)
        self.device = device

    def _start(self):
        lo = self._wide("WINDOW_BASE")
        hi = lo + self._wide("WINDOW_SIZE")
        for bo in self.device.bos.values():
            inside = bo.addr < hi and lo < bo.addr + bo.ddr.size
            if (
                inside
                and bo.cacheable
                and not bo.engine_wrote
                and not np.array_equal(bo.cpu, bo.ddr)
            ):
                self.device.log.append(("stale read", bo.addr))
        self.device.log.append(("start", self._wide("INSN_BASE")))
        super()._start()
        for bo in self.device.bos.values():
            if bo.addr < hi and lo < bo.addr + bo.ddr.size:
                bo.engine_wrote = True

    def write(self, offset, value):
        if offset == 0x010 and value & 2:
            self.device.log.append(("soft reset", 0))
        super().write(offset, value)


class _Bo:
    def __init__(self, addr, ddr, cpu, cacheable):
        self.addr, self.ddr, self.cpu, self.cacheable = addr, ddr, cpu, cacheable
        self.engine_wrote = False


class _Memory:
    """The PS DDR as ``Device.default_memory`` (what ``XrtMemory`` is on the board)."""

    def __init__(self, device):
        self.device = device

    def allocate(self, shape, dtype, cacheable=0, **kwargs):
        dev = self.device
        dtype = np.dtype(dtype)
        size = int(np.prod(shape)) * dtype.itemsize
        with dev.lock:
            addr, ddr = dev.memory.add(size)
            cpu = np.zeros(size, np.uint8) if cacheable else ddr
            handle = dev.next_bo = dev.next_bo + 1
            dev.bos[handle] = _Bo(addr, ddr, cpu, bool(cacheable))
        buf = PynqBuffer(
            shape, dtype, bo=handle, device=dev, buffer=cpu, device_address=addr, coherent=False
        )
        # PynqBuffer.freebuffer returns the pointer to us; there is no mmap of XRT's to
        # undo (``freed``), so a second freebuffer (e.g. from __del__) does nothing.
        buf.memory, buf.pointer, buf.return_to, buf.freed = self, handle, self, True
        return buf

    def return_pointer(self, handle):
        dev = self.device
        with dev.lock:
            bo = dev.bos.pop(handle, None)
            if bo is None:
                return
            dev.memory.remove(bo.ddr)
            dev.log.append(("free", bo.addr))


class _Uio:
    """A UIO device as ``uio_pdrv_genirq`` serves one: a raw pseudo-terminal."""

    def __init__(self, line):
        self.line = line
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.enabled, self.count, self.running = False, 0, True
        self.thread = threading.Thread(target=self._serve, name="uio", daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            ready, _, _ = select.select([self.master], [], [], 0.0005)
            if ready:
                data = os.read(self.master, 64)
                for i in range(0, len(data) - 3, 4):
                    self.enabled = data[i : i + 4] != b"\0\0\0\0"
            if self.enabled and self.line():
                self.count += 1
                self.enabled = False  # masked until user space enables it again
                os.write(self.master, struct.pack("<I", self.count))

    def close(self):
        self.running = False
        self.thread.join()


class SimDevice(Device):
    """PYNQ's device for the simulated board (see the module docstring)."""

    def __init__(self):
        super().__init__("bamboo_sim")
        self.name = "bamboo_sim"
        self.capabilities = {"MEMORY_MAPPED": True, "REGISTER_RW": False, "CALLABLE": False}
        self.lock = threading.RLock()
        self.memory = Memory()
        self.bos, self.next_bo = {}, 0
        self.ps = {}  # 4 KiB pages of the PS's register space
        self.design = self.engine = self.intc = None
        self.log = []
        self.uio = _Uio(self._irq_line)

    # The kernel's edges ------------------------------------------------------------------
    def mmap(self, base_addr, length):
        with self.lock:
            d = self.design
            for base, size, model in (d or {}).get("windows", ()):
                if base <= base_addr and base_addr + length <= base + size:
                    return _Window(self, model, base_addr - base, length)
            if PL_WINDOW[0] <= base_addr < PL_WINDOW[1]:
                raise RuntimeError(
                    f"MMIO at {base_addr:#x}: nothing in the PL answers there "
                    "(on the board the AXI read would hang the CPU)"
                )
            page = base_addr & ~0xFFF
            if base_addr + length > page + 0x1000:
                raise ValueError("the simulated PS registers map within one 4 KiB page")
            if page not in self.ps:
                words = np.zeros(1024, np.uint32)
                for addr, value in BOOT.items():
                    if addr & ~0xFFF == page:
                        words[(addr & 0xFFF) // 4] = value
                self.ps[page] = words
            return self.ps[page][(base_addr - page) // 4 : (base_addr - page + length) // 4]

    def _program(self, bin_data):
        """The FPGA manager: load the design the ``.bin`` names."""
        words = np.frombuffer(bin_data, ">i4").astype("<i4").tobytes()
        data = json.loads(words.decode().rstrip())
        config = AcceleratorConfig.from_dict(data["config"])
        with self.lock:
            self.engine = _Engine(self, config, data["latency"])
            self.intc = _Intc(lambda: self.engine.irq)
            self.design = {
                "windows": [
                    (data["reg_base"], 0x1000, self.engine),
                    (data["intc_base"], 0x1_0000, self.intc),
                ]
            }
        self.log.append(("download", self.pl_clock_mhz()))

    def _irq_line(self):
        with self.lock:
            return self.intc is not None and self.intc.irq

    def uio_for_irq(self, irq):
        """``pynq.interrupt.get_uio_irq``: the UIO device of GIC interrupt ``irq``."""
        return self.uio.path if irq == PL_PS_IRQ0 and self.intc is not None else None

    def pl_clock_mhz(self):
        """pl_clk0 as the CRL_APB registers set it (UG1085): IOPLL / DIVISOR0 / DIVISOR1."""
        pll = int(self.mmap(_CRL + 0x20, 4)[0])
        ref = int(self.mmap(_CRL + 0xC0, 4)[0])
        mhz = 33.333 * (pll >> 8 & 0x7F) / (2 if pll >> 16 & 1 else 1)
        return mhz / ((ref >> 8 & 0x3F) * (ref >> 16 & 0x3F))

    # XRT's buffer objects --------------------------------------------------------------
    @property
    def default_memory(self):
        if self.design is None:
            raise RuntimeError("Overlay is not downloaded")  # as EmbeddedDevice
        return _Memory(self)

    def flush(self, bo, offset, ptr, size):
        self._sync("flush", bo, offset, size)

    def invalidate(self, bo, offset, ptr, size):
        self._sync("invalidate", bo, offset, size)

    def _sync(self, kind, bo, offset, size):
        """``flush``: the CPU's view to DDR; ``invalidate``: DDR to the CPU's view."""
        with self.lock:
            b = self.bos[bo]
            src, dst = (b.cpu, b.ddr) if kind == "flush" else (b.ddr, b.cpu)
            dst[offset : offset + size] = src[offset : offset + size]
            b.engine_wrote = False
            self.log.append((kind, b.addr))

    # PYNQ's device interface, as EmbeddedDevice without XRT ----------------------------
    def get_bitfile_metadata(self, bitfile_name, partial=False):
        hwh = Path(bitfile_name).with_suffix(".hwh")
        if not hwh.exists():
            raise RuntimeError("Unable to find metadata for bitstream")
        parser = RuntimeMetadataParser(Metadata(input=hwh))
        parser.refresh_hierarchy_dict()
        parser.bin_data = parser.xclbin_data = parser.dtbo_data = None
        return parser

    def download(self, bitstream, parser=None):
        if parser is None:
            parser = XclBin(xclbin_data=DEFAULT_XCLBIN)
        self._program(bit2bin(Path(bitstream.bitfile_name).read_bytes()))
        EmbeddedDevice.set_axi_port_width(self, parser)  # PYNQ's own code
        super().post_download(bitstream, parser, self.name)

    def close(self):
        self.uio.close()


def install():
    """A new :class:`SimDevice`, made PYNQ's active device (the board's single device)."""
    device = SimDevice()
    Device.active_device = device
    pynq.ps.CPU_ARCH = pynq.ps.ZU_ARCH  # os.uname() on the board
    pynq.interrupt.get_uio_irq = device.uio_for_irq  # /proc/interrupts, sysfs
    if hasattr(pynq.Clocks, "_real_instance"):
        del pynq.Clocks._real_instance
    return device
