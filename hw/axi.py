"""AXI4 (full) manager signature and the burst arithmetic shared by the DMA engines.

Port naming: the interface members are the AXI signal names in lower case
(``araddr``, ``rready``...). A component port named ``m_axi`` flattens to
``m_axi__araddr`` in Verilog; the board top level renames or attributes those
ports for Vivado's ``X_INTERFACE_INFO`` inference (``xilinx.com:interface:aximm:1.0
m_axi ARADDR``), and cocotbext-axi finds them with ``AxiBus.from_prefix(dut, "m_axi_")``.

Ref: AMBA AXI and ACE Protocol Specification (ARM IHI 0022E), part A (AXI4):
A3.4.1 (a burst must not cross a 4 KiB boundary; INCR bursts up to 256 beats).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "BurstCounter",
    "AXI4Signature",
    "BURST_INCR",
    "RESP_OKAY",
    "RESP_EXOKAY",
    "RESP_SLVERR",
    "RESP_DECERR",
    "CACHE_MODIFIABLE_BUFFERABLE",
    "MAX_BURST_BEATS",
    "PAGE_BYTES",
    "burst_split",
    "RegisterSlice",
]

BURST_INCR = 0b01
RESP_OKAY = 0b00
RESP_EXOKAY = 0b01
RESP_SLVERR = 0b10
RESP_DECERR = 0b11
# ARCACHE/AWCACHE "normal non-cacheable bufferable": what Xilinx's DMA IP drive, and what
# lets the HP ports merge and reorder the engine's accesses (UG1085, "PL-PS interfaces").
CACHE_MODIFIABLE_BUFFERABLE = 0b0011
#: AXI4 INCR bursts are at most 256 beats long.
MAX_BURST_BEATS = 256
#: No burst may cross a 4 KiB boundary (A3.4.1).
PAGE_BYTES = 4096

_CHANNELS = {
    "ar": lambda a, d, i: {
        "arid": Out(i),
        "araddr": Out(a),
        "arlen": Out(8),
        "arsize": Out(3),
        "arburst": Out(2),
        "arlock": Out(1),
        "arcache": Out(4),
        "arprot": Out(3),
        "arqos": Out(4),
        "arvalid": Out(1),
        "arready": In(1),
    },
    "r": lambda a, d, i: {
        "rid": In(i),
        "rdata": In(d),
        "rresp": In(2),
        "rlast": In(1),
        "rvalid": In(1),
        "rready": Out(1),
    },
    "aw": lambda a, d, i: {
        "awid": Out(i),
        "awaddr": Out(a),
        "awlen": Out(8),
        "awsize": Out(3),
        "awburst": Out(2),
        "awlock": Out(1),
        "awcache": Out(4),
        "awprot": Out(3),
        "awqos": Out(4),
        "awvalid": Out(1),
        "awready": In(1),
    },
    "w": lambda a, d, i: {
        "wdata": Out(d),
        "wstrb": Out(d // 8),
        "wlast": Out(1),
        "wvalid": Out(1),
        "wready": In(1),
    },
    "b": lambda a, d, i: {"bid": In(i), "bresp": In(2), "bvalid": In(1), "bready": Out(1)},
}


class AXI4Signature(wiring.Signature):
    """AXI4 from the manager's side (flip it, ``In(...)``, for a subordinate).

    Parameters
    ----------
    addr_width : int
        Byte address width (``AcceleratorConfig.axi_addr_width``).
    data_width : int
        Data width in bits, 32, 64 or 128 (``AcceleratorConfig.axi_data_width``).
    id_width : int
        Transaction ID width. The engines issue one ID, so every response is in order.
    read, write : bool
        Include the read (AR, R) and/or the write (AW, W, B) channels. A read or write
        engine alone carries only its half; the top level joins them into one port.
    """

    def __init__(self, addr_width, data_width, *, id_width=1, read=True, write=True):
        if not isinstance(addr_width, int) or not 12 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer from 12 to 64, not {addr_width!r}")
        if data_width not in (32, 64, 128, 256, 512, 1024):
            raise ValueError(
                f"data_width must be a power of two from 32 to 1024, not {data_width!r}"
            )
        if not isinstance(id_width, int) or not 1 <= id_width <= 16:
            raise ValueError(f"id_width must be an integer from 1 to 16, not {id_width!r}")
        if not (read or write):
            raise ValueError("an AXI4 interface needs its read or its write channels")
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        self.read = bool(read)
        self.write = bool(write)
        members = {}
        for channel in ("ar", "r") * self.read + ("aw", "w", "b") * self.write:
            members.update(_CHANNELS[channel](addr_width, data_width, id_width))
        super().__init__(members)

    @classmethod
    def from_config(cls, config, **kwargs):
        """The signature of ``config``'s AXI4 master (``axi_addr_width``/``axi_data_width``)."""
        return cls(config.axi_addr_width, config.axi_data_width, **kwargs)

    def __eq__(self, other):
        return type(other) is type(self) and (
            self.addr_width,
            self.data_width,
            self.id_width,
            self.read,
            self.write,
        ) == (other.addr_width, other.data_width, other.id_width, other.read, other.write)

    def __hash__(self):
        return hash(
            (type(self), self.addr_width, self.data_width, self.id_width, self.read, self.write)
        )

    def __repr__(self):
        return (
            f"AXI4Signature({self.addr_width}, {self.data_width}, id_width={self.id_width}, "
            f"read={self.read}, write={self.write})"
        )


def burst_split(addr, end, *, bus_bytes, max_beats=MAX_BURST_BEATS):
    """The first burst of the byte range ``[addr, end)``: ``(burst_end, arlen)`` expressions.

    The burst starts at the beat holding ``addr`` and stops at the earliest of ``end``,
    the next 4 KiB boundary and ``max_beats`` beats. Every stop but ``end`` is beat
    aligned, so consecutive bursts of one range never fetch a beat twice.

    Parameters
    ----------
    addr, end : Value
        Byte addresses, ``addr < end``.
    bus_bytes : int
        Bytes per beat (a power of two).
    max_beats : int
        Burst length limit, 1 to 256.

    Returns
    -------
    (Value, Value)
        Where the burst ends (the next burst's ``addr``) and its ``AxLEN`` (beats - 1).
    """
    assert bus_bytes & (bus_bytes - 1) == 0 and 1 <= max_beats <= MAX_BURST_BEATS
    log_bus = (bus_bytes - 1).bit_length()
    aligned = Cat(Const(0, log_bus), addr[log_bus:])
    page_end = (addr | (PAGE_BYTES - 1)) + 1
    limit = page_end
    if max_beats * bus_bytes < PAGE_BYTES:
        # Burst starts are beat aligned, so the length limit is a beat-aligned address too.
        limit = Mux(
            aligned + max_beats * bus_bytes < page_end, aligned + max_beats * bus_bytes, page_end
        )
    stop = Mux(end < limit, end, limit)
    beats = (stop - aligned + bus_bytes - 1) >> log_bus
    return stop, (beats - 1)[:8]


class RegisterSlice(wiring.Component):
    """A full-throughput register slice of a VALID/READY channel (a skid buffer).

    ``o.valid``, ``o.payload`` and ``i.ready`` are flip-flops, so neither side's logic
    reaches the other's in one cycle; a transfer takes one cycle more, and one per
    cycle still passes. While ``o.ready`` is low a second transfer waits in the skid
    register, after which ``i.ready`` falls. ``flush`` empties both registers (the
    channel's beats are dropped, and so is one taken while it is high).

    Parameters
    ----------
    shape : ShapeLike
        The payload.

    Attributes
    ----------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    flush : In(1)
    """

    def __init__(self, shape):
        super().__init__(
            {
                "i": In(stream.Signature(shape)),
                "o": Out(stream.Signature(shape)),
                "flush": In(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        skid = Signal.like(self.i.payload)
        skid_full = Signal()
        m.d.comb += self.i.ready.eq(~skid_full)
        # The payloads load as if no flush came (a flushed payload is never valid), so
        # ``flush`` reaches the two flags only.
        with m.If(self.o.ready | ~self.o.valid):
            with m.If(skid_full):
                m.d.sync += [self.o.payload.eq(skid), skid_full.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_full):
            m.d.sync += [skid.eq(self.i.payload), skid_full.eq(1)]
        with m.If(self.flush):
            m.d.sync += [skid_full.eq(0), self.o.valid.eq(0)]
        return m


class BurstCounter:
    """The write burst W is in, for a W channel that follows queued AWLEN values.

    ``valid`` (a burst is loaded), ``last`` (WLAST: the current beat is the burst's
    last) and the count behind them are registers: loaded from a FIFO's head (a
    :class:`~bamboo.hw.flagfifo.FlagFIFO` of AWLEN) when the previous burst ends or none
    is loaded, counted down per beat, with ``last`` set a beat early from a
    ``left == 1`` flag, so no compare sits between the queue and W.
    """

    def __init__(self, name):
        self.valid = Signal(name=f"{name}_v")
        self.last = Signal(name=f"{name}_last")
        self._one = Signal(name=f"{name}_one")  # left == 1
        self._left = Signal(8, name=f"{name}_left")  # beats after the current one

    def follow(self, m, fifo, load, beat, *, staged=False):
        """Load the next burst from ``fifo`` on ``load`` (the caller's form of ``~valid
        | (beat & last)``), else count one on ``beat`` (a W handshake).

        ``staged``: through a register of the next burst (its length and flags), refilled
        from ``fifo`` only while it is empty, so the W handshake reaches this counter's
        registers and not the FIFO's read side. A burst then follows the previous one
        without a gap, a third one two cycles later at the earliest: the rate at which the
        bus announces bursts (``BURST_ISSUE_CYCLES``); ``next_valid`` then says the
        register holds one."""
        if staged:
            valid, left, last, one = self._stage(m, fifo, load)
        else:
            m.d.comb += fifo.r_en.eq(load)
            valid, left = fifo.r_rdy, fifo.r_data
            last, one = fifo.r_data == 0, fifo.r_data == 1
        with m.If(load):
            m.d.sync += [
                self.valid.eq(valid),
                self._left.eq(left),
                self.last.eq(last),
                self._one.eq(one),
            ]
        with m.Elif(beat):
            m.d.sync += [
                self._left.eq(self._left - 1),
                self.last.eq(self._one),
                self._one.eq(self._left == 2),
            ]

    def _stage(self, m, fifo, load):
        """The next burst's register: ``(valid, left, last, one)``."""
        name = self.valid.name.removesuffix("_v")
        self.next_valid = valid = Signal(name=f"{name}_next_v")
        left = Signal(len(self._left), name=f"{name}_next_left")
        last, one = Signal(name=f"{name}_next_last"), Signal(name=f"{name}_next_one")
        m.d.comb += fifo.r_en.eq(~valid)
        with m.If(~valid):
            m.d.sync += [
                valid.eq(fifo.r_rdy),
                left.eq(fifo.r_data),
                last.eq(fifo.r_data == 0),
                one.eq(fifo.r_data == 1),
            ]
        with m.Elif(load):
            m.d.sync += valid.eq(0)
        return valid, left, last, one
