"""The :class:`~bamboo.runtime.device.Device` interface on the Ultra96, through PYNQ.

``pynq`` is imported when a :class:`BoardDevice` is made, never at import time, so
the runtime imports on any machine. Two ways to load the PL:

* ``Overlay("bamboo.bit")`` with ``bamboo.hwh`` beside it: PYNQ sets the clocks and
  port widths from the handoff file; the register base is the accelerator's entry in
  ``ip_dict`` and the interrupt its ``irq`` pin;
* ``Bitstream("bamboo.bit").download()`` for a bare ``.bit``: the runtime sets
  ``pynq.Clocks.fclk0_mhz`` to the configuration's clock *before* the download (the
  order ``Overlay.download`` keeps) and the AXI port widths after it (as PYNQ's
  ``EmbeddedDevice.download`` does; HPM0_FPD: bits 9:8 of 0xFD615000; S_AXI_HP0_FPD:
  AFIFM RDCTRL/WRCTRL at 0xFD380000/0xFD380014), and the registers are at 0xA000_0000.

Buffers come from ``pynq.allocate`` (physically contiguous). S_AXI_HP0 is not
cache-coherent, so the session flushes them before a run and invalidates them after.
Completion is by polling STATUS unless ``interrupt=True``. PYNQ 3.0.1's
``Interrupt`` registers the UIO file descriptor with ``asyncio.get_event_loop()``
when it is made and waits on an ``asyncio.Event`` of that loop, so one loop must
own it: :class:`InterruptWaiter` runs that loop in a thread of its own, makes the
``Interrupt`` there, and every wait (from any thread, e.g. ``run_batch``'s workers)
is submitted to it with ``asyncio.run_coroutine_threadsafe``. A timeout soft-resets
the engine either way.

Checked against the real ``pynq`` 3.0.1 package over a simulated device
(``tests/pynq_board``); only a board can check the kernel side itself.
"""

import threading

import numpy as np

from .device import Device, DeviceBuffer
from .errors import RuntimeBambooError

__all__ = ["DEFAULT_REGISTER_BASE", "BD_CELL", "BoardBuffer", "BoardDevice", "InterruptWaiter"]

#: The accelerator's cell in the block design (``create_bd_cell ... bamboo``): its
#: ``ip_dict`` key, and ``bamboo/irq`` its interrupt pin.
BD_CELL = "bamboo"

#: Where Vivado's address editor puts the register window behind HPM0_FPD.
DEFAULT_REGISTER_BASE = 0xA000_0000
REGISTER_SPAN = 0x1000
_FPD_SLCR_AFI_FS = 0xFD615000  # HPM0_FPD data width, bits 9:8: 0=32, 1=64, 2=128 bits
_AFIFM0_RDCTRL, _AFIFM0_WRCTRL = 0xFD380000, 0xFD380014  # S_AXI_HP0: 0=128, 1=64, 2=32


class BoardBuffer(DeviceBuffer):
    """A ``pynq.allocate`` buffer (a numpy array with ``physical_address``)."""

    def __init__(self, pbuf):
        super().__init__(pbuf, pbuf.physical_address)
        self.pbuf = pbuf

    def flush(self):
        self.pbuf.flush()

    def invalidate(self):
        self.pbuf.invalidate()

    def free(self):
        # pynq 3.0.1: freebuffer() releases the memory; close() only warns.
        self.pbuf.freebuffer()


class InterruptWaiter:
    """One thread owning an asyncio loop and the ``pynq.Interrupt`` made in it.

    ``pynq.Interrupt(pin)`` must be made in the thread whose loop serves it (its UIO
    reader is added to ``asyncio.get_event_loop()``); :meth:`wait` may be called from
    any thread and blocks until the interrupt or ``timeout``.
    """

    def __init__(self, pynq, pin):
        import asyncio

        self._asyncio = asyncio
        self.loop = asyncio.new_event_loop()
        made = threading.Event()
        box = {}

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                box["interrupt"] = pynq.Interrupt(pin)
            except Exception as exc:  # reported to the maker below
                box["error"] = exc
            made.set()
            if "error" not in box:
                self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, name=f"pynq-interrupt {pin}", daemon=True)
        self.thread.start()
        made.wait()
        if "error" in box:
            self.thread.join()
            raise RuntimeBambooError(f"cannot wait on interrupt {pin}: {box['error']}")
        self.interrupt = box["interrupt"]

    def wait(self, timeout):
        """True when the interrupt came, False after ``timeout`` seconds."""
        asyncio = self._asyncio

        async def wait():
            await asyncio.wait_for(self.interrupt.wait(), timeout)

        future = asyncio.run_coroutine_threadsafe(wait(), self.loop)
        try:
            future.result()
        except asyncio.TimeoutError:
            return False
        return True

    def close(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()


class BoardDevice(Device):
    """The accelerator in the PL, through PYNQ.

    Parameters
    ----------
    config : AcceleratorConfig or None
        The configuration the artifact names (its clock is used with a bare ``.bit``);
        the loaded bitstream's CONFIG_ID is what the session checks.
    bitstream : str or None
        ``.bit`` file to load; None uses the PL as it is (already programmed).
    register_base : int or None
        Override the register window address.
    interrupt : bool
        Wait on the overlay's ``bamboo/irq`` interrupt (through its ``axi_intc``)
        instead of polling STATUS. Needs the ``.hwh``; off by default.
    cacheable : bool
        Allocate cacheable buffers (fast CPU access; flush/invalidate do the work).
    set_clock : bool
        With a bare ``.bit``, set ``fclk0`` to ``config.clock_mhz`` and the port widths.
    """

    name = "board"
    poll_interval = 20e-6

    def __init__(
        self,
        config=None,
        bitstream=None,
        register_base=None,
        interrupt=False,
        cacheable=True,
        set_clock=True,
        ip_name=None,
    ):
        try:
            import pynq
        except ImportError as exc:
            raise RuntimeBambooError(
                f"the board backend needs pynq (on the board's PYNQ image): {exc}"
            ) from None
        self.pynq, self.config, self.cacheable = pynq, config, cacheable
        self.overlay = None
        self.interrupt = None
        base = register_base
        if bitstream is not None:
            base = self._load(bitstream, base, interrupt, set_clock, ip_name)
        self.base = DEFAULT_REGISTER_BASE if base is None else base
        self.mmio = pynq.MMIO(self.base, REGISTER_SPAN)
        self.buffers = []
        if self.interrupt is not None:
            from bamboo.arch.registers import encode

            self.write_reg("CTRL", encode("CTRL", irq_enable=1))
        elif interrupt:
            raise RuntimeBambooError(
                "interrupt=True needs a bitstream with its .hwh (the "
                "overlay names the interrupt pin)"
            )

    def _load(self, bitstream, base, interrupt, set_clock, ip_name):
        from pathlib import Path

        pynq = self.pynq
        bit = Path(bitstream)
        if not bit.exists():
            raise RuntimeBambooError(f"bitstream {bit} does not exist")
        if bit.with_suffix(".hwh").exists():
            self.overlay = pynq.Overlay(str(bit))
            name, ip = self._find_ip(self.overlay.ip_dict, ip_name)
            if base is None:
                base = ip["phys_addr"]
            if interrupt:
                if not ip.get("interrupts"):
                    raise RuntimeBambooError(f"the overlay's {name} has no interrupt pin")
                irq = next(iter(ip["interrupts"]))
                self.interrupt = InterruptWaiter(pynq, f"{name}/{irq}")
            return base
        if set_clock and self.config is not None:
            pynq.Clocks.fclk0_mhz = self.config.clock_mhz  # before the download, as PYNQ
        pynq.Bitstream(str(bit)).download()
        if set_clock and self.config is not None:
            self._set_port_widths()
        return base

    @staticmethod
    def _find_ip(ip_dict, ip_name):
        if (ip_name or BD_CELL) in ip_dict:
            return ip_name or BD_CELL, ip_dict[ip_name or BD_CELL]
        for name, ip in ip_dict.items():
            if not ip_name and "bamboo" in (name + str(ip.get("type", ""))).lower():
                return name, ip
        raise RuntimeBambooError(
            f"the overlay has no Bamboo accelerator among {sorted(ip_dict)}; pass ip_name="
        )

    def _set_port_widths(self):
        """HPM0_FPD at 32 bits (AXI-Lite), S_AXI_HP0_FPD at the configuration's width."""
        mmio = self.pynq.MMIO
        afi = mmio(_FPD_SLCR_AFI_FS, 4)
        afi.write(0, afi.read(0) & ~(3 << 8))
        hp = {128: 0, 64: 1, 32: 2}[self.config.axi_data_width]
        for addr in (_AFIFM0_RDCTRL, _AFIFM0_WRCTRL):
            reg = mmio(addr, 4)
            reg.write(0, (reg.read(0) & ~3) | hp)

    # Primitives -------------------------------------------------------------------------
    def _read(self, offset):
        return int(self.mmio.read(offset)) & 0xFFFFFFFF

    def _write(self, offset, value):
        self.mmio.write(offset, int(value))

    def allocate(self, nbytes):
        kwargs = {"cacheable": True} if self.cacheable else {}
        buf = BoardBuffer(self.pynq.allocate(shape=(nbytes,), dtype=np.uint8, **kwargs))
        self.buffers.append(buf)
        return buf

    def _wait_event(self, timeout):
        if self.interrupt is None:
            return super()._wait_event(timeout)
        self.interrupt.wait(timeout)

    def close(self):
        for buf in self.buffers:
            buf.free()
        self.buffers = []
        if self.interrupt is not None:
            from bamboo.arch.registers import encode

            self.write_reg("CTRL", encode("CTRL", irq_enable=0))
            self.interrupt.close()
            self.interrupt = None
