"""DMA building blocks: command layouts, the window check, the AXI4 burst generator and
the command states both engines (hw/dma_read.py, hw/dma_write.py) are built on.

A 2-D transfer (the ISA's ``LOAD``/``STORE`` fields, ``arch/isa.py``) moves ``y_size``
rows of ``x_size`` elements of ``2**elem_log2`` bytes; row ``y`` starts at byte
``dram_addr + y * x_stride * elem_bytes`` from the DMA window base. Before an engine
issues any beat it checks the whole range (first to last byte) against the window
``[0, window_size)`` relative to ``window_base``; a transfer that leaves it touches no
memory and ends with ``ErrorCode.DMA_OUT_OF_WINDOW``.

The burst generator turns the rows into AXI4 INCR bursts of at most ``max_beats``
beats that never cross a 4 KiB boundary (Ref: ARM IHI 0022E, A3.4.1). Each row starts
a new burst, so a beat shared by two rows is fetched twice; rows whose ends are not
beat aligned are handled by the engines with byte offsets and write strobes.
"""

import contextlib

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import FORMATS, Opcode
from ..arch.registers import ErrorCode
from .axi import MAX_BURST_BEATS, PAGE_BYTES, AXI4Signature
from .pipeline import accept

__all__ = [
    "ELEM_LOG2_BITS",
    "transfer_fields",
    "StatusLayout",
    "BurstLayout",
    "RowsLayout",
    "BurstGenerator",
    "WindowCheck",
    "engine_members",
    "checked_bursts",
    "command_states",
]

#: Width of the engines' ``elem_log2`` command field (elements up to 2**15 bytes).
ELEM_LOG2_BITS = 4


def transfer_fields(opcode, names):
    """``{name: unsigned(width)}`` of the ISA fields ``names`` of ``opcode``, in table order."""
    fields = {f.name: f.width for f in FORMATS[opcode]}
    missing = set(names) - set(fields)
    assert not missing, f"ISA {opcode} lacks {missing}"
    return {name: fields[name] for name in fields if name in names}


#: ``o_status`` payload: the transfer's outcome, an ``arch.registers.ErrorCode``.
StatusLayout = data.StructLayout({"error": 8})


def BurstLayout(addr_width):
    """One burst: beat-aligned ``addr``, ``len`` = beats - 1 (AxLEN), ``last`` of the transfer."""
    return data.StructLayout({"addr": addr_width, "len": 8, "last": 1})


def RowsLayout(addr_width, row_bytes_width, stride_width):
    """A burst generator command: ``rows`` rows of ``row_bytes`` from ``addr``, ``stride`` apart."""
    return data.StructLayout(
        {
            "addr": addr_width,
            "row_bytes": row_bytes_width,
            "stride": stride_width,
            "rows": transfer_fields(Opcode.LOAD, ["y_size"])["y_size"],
        }
    )


class BurstGenerator(wiring.Component):
    """Splits a 2-D byte transfer into AXI4 INCR bursts, one every two cycles.

    Parameters
    ----------
    addr_width : int
        Bus address width.
    bus_bytes : int
        Bytes per beat.
    row_bytes_width, stride_width : int
        Widths of the command's row length and row stride in bytes.
    max_beats : int
        Longest burst, 1 to 256.

    Attributes
    ----------
    i_cmd : In(stream.Signature(RowsLayout))
        ``rows`` >= 1 and ``row_bytes`` >= 1 (an empty transfer must not be sent).
    o_burst : Out(stream.Signature(BurstLayout))
        Bursts in address order; ``last`` marks the transfer's final burst.
    busy : Out(1)
        A command is being split or its last burst waits on ``o_burst``.
    """

    def __init__(
        self, addr_width, bus_bytes, row_bytes_width, stride_width, max_beats=MAX_BURST_BEATS
    ):
        if not 1 <= max_beats <= MAX_BURST_BEATS:
            raise ValueError(f"max_beats must be from 1 to {MAX_BURST_BEATS}, not {max_beats!r}")
        if bus_bytes < 1 or bus_bytes & (bus_bytes - 1):
            raise ValueError(f"bus_bytes must be a power of two, not {bus_bytes!r}")
        self.addr_width = addr_width
        self.bus_bytes = bus_bytes
        self.max_beats = max_beats
        super().__init__(
            {
                "i_cmd": In(
                    stream.Signature(RowsLayout(addr_width, row_bytes_width, stride_width))
                ),
                "o_burst": Out(stream.Signature(BurstLayout(addr_width))),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        aw = self.addr_width
        log_bus = (self.bus_bytes - 1).bit_length()
        page_beats = max(1, PAGE_BYTES // self.bus_bytes)
        bw = page_beats.bit_length()  # beat counts up to page_beats; all ones is more
        active = Signal()
        cur = Signal(aw)  # next byte to fetch
        row_start = Signal(aw)
        cmd_shape = self.i_cmd.payload
        row_up = Signal(len(cmd_shape.row_bytes) + 1)  # row_bytes + bus_bytes - 1
        beats_left = Signal(len(row_up))  # beats of the current row not yet in a burst
        rows_left = Signal.like(cmd_shape.rows)
        rows_one = Signal()  # rows_left == 1
        stride = Signal.like(cmd_shape.stride)
        o = self.o_burst

        # A burst takes two cycles: ``measure`` registers the row's beats left (saturated)
        # and the beats to the next stop (4 KiB page or burst limit) from ``cur``; the
        # next cycle picks the shorter and emits the burst. No adder feeds a compare in
        # one cycle, and the bus arbiter takes a burst every two cycles anyway
        # (arch/timing.py BURST_ISSUE_CYCLES).
        measured = Signal()
        to_end = Signal(bw)
        to_stop = Signal(bw)
        cur_beat = cur[log_bus:]
        page_left = page_beats - cur_beat[: bw - 1]
        stop_beats = page_left
        if self.max_beats < page_beats:
            stop_beats = Mux(page_left < self.max_beats, page_left, self.max_beats)
        with m.If(active & ~measured):
            m.d.sync += [
                measured.eq(1),
                to_end.eq(Mux(beats_left[bw:] != 0, (1 << bw) - 1, beats_left[:bw])),
                to_stop.eq(stop_beats),
            ]

        def row_beats(start):
            """Beats of a row starting at byte ``start`` (its first beat may be partial)."""
            return (start[:log_bus] + row_up) >> log_bus

        row_done = to_end <= to_stop
        beats = Mux(row_done, to_end, to_stop)
        next_row = (row_start + stride)[:aw]
        m.d.comb += [
            self.i_cmd.ready.eq(~active),
            self.busy.eq(active | o.valid),
        ]
        with m.If(self.i_cmd.valid & ~active):
            cmd = self.i_cmd.payload
            m.d.sync += [
                active.eq(1),
                measured.eq(0),
                cur.eq(cmd.addr),
                row_start.eq(cmd.addr),
                row_up.eq(cmd.row_bytes + (self.bus_bytes - 1)),
                beats_left.eq(
                    (cmd.addr[:log_bus] + cmd.row_bytes + (self.bus_bytes - 1)) >> log_bus
                ),
                rows_left.eq(cmd.rows),
                rows_one.eq(cmd.rows == 1),
                stride.eq(cmd.stride),
            ]
        # o_burst.valid is a register, so the address arithmetic ends in flip-flops
        # instead of running on into the interconnect. A burst is emitted only into an
        # empty output register (not also in the cycle the last one is taken): READY
        # then reaches no more than that register, not the row counters. It costs a
        # cycle only when a burst waited, since a burst takes two cycles anyway.
        with m.If(active & measured & ~o.valid):
            m.d.sync += [
                measured.eq(0),
                o.valid.eq(1),
                o.payload.addr.eq(Cat(Const(0, log_bus), cur_beat)),
                o.payload.len.eq((beats - 1)[:8]),
                o.payload.last.eq(row_done & rows_one),
            ]
            with m.If(row_done):
                m.d.sync += [
                    rows_left.eq(rows_left - 1),
                    rows_one.eq(rows_left == 2),
                    row_start.eq(next_row),
                    cur.eq(next_row),
                    beats_left.eq(row_beats(next_row)),
                ]
                with m.If(rows_one):
                    m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += [
                    cur.eq(Cat(Const(0, log_bus), cur_beat + to_stop)),
                    beats_left.eq(beats_left - to_stop),
                ]
        with m.Elif(o.ready):
            m.d.sync += o.valid.eq(0)
        return m


class WindowCheck(wiring.Component):
    """Checks a 2-D transfer against the DMA window and the element alignment.

    Three cycles after ``start``, ``done`` pulses with ``error`` (an ``ErrorCode``) and
    the derived ``addr`` (absolute first byte), ``row_bytes``, ``stride`` and ``empty``
    (no byte to move) held until the next ``start``.

    # Stage 1: (y_size - 1) * x_stride, window_base + dram_addr, window_size - dram_addr.
    # Stage 2: extent in bytes, alignment. Stage 3: the window compare.

    Parameters
    ----------
    addr_width : int
        Bus address width.
    bus_bytes : int
        Bytes per beat; an element must start on a multiple of ``min(elem, bus)`` bytes.
    max_elem_log2 : int
        Largest element size accepted, as a power of two.
    """

    LATENCY = 3

    def __init__(self, addr_width, bus_bytes, max_elem_log2):
        f = transfer_fields(Opcode.LOAD, ["dram_addr", "y_size", "x_size", "x_stride"])
        self.bus_bytes = bus_bytes
        self.max_elem_log2 = max_elem_log2
        self.row_bytes_width = f["x_size"] + max_elem_log2
        self.stride_width = f["x_stride"] + max_elem_log2
        super().__init__(
            {
                "start": In(1),
                "dram_addr": In(f["dram_addr"]),
                "y_size": In(f["y_size"]),
                "x_size": In(f["x_size"]),
                "x_stride": In(f["x_stride"]),
                "elem_log2": In(ELEM_LOG2_BITS),
                "window_base": In(addr_width),
                "window_size": In(addr_width),
                "done": Out(1),
                "error": Out(8),
                "empty": Out(1),
                "addr": Out(addr_width),
                "row_bytes": Out(self.row_bytes_width),
                "stride": Out(self.stride_width),
            }
        )

    def elaborate(self, platform):
        m = Module()
        log_bus = (self.bus_bytes - 1).bit_length()
        s = self.elem_log2
        # Stage 1: ``y_size * x_stride`` straight from the command registers into the
        # multiplier (no subtractor in front of it), and ``x_size - x_stride`` beside it:
        # stage 2 adds them, ``(y_size - 1) * x_stride + x_size`` elements.
        busy1 = Signal()
        rows_span = Signal(len(self.y_size) + len(self.x_stride))
        reach = Signal(signed(max(len(self.x_size), len(self.x_stride)) + 1))
        # The window's room past the transfer's start, for stage 3's compare (no adder
        # in front of it): negative when the start itself is outside the window.
        width = max(len(self.window_size), len(self.dram_addr)) + 1
        room = Signal(signed(width), name="room")
        m.d.sync += [
            room.eq(self.window_size - self.dram_addr),
            busy1.eq(self.start),
            rows_span.eq(self.y_size * self.x_stride),
            reach.eq(self.x_size - self.x_stride),
            self.addr.eq(self.window_base + self.dram_addr),
            self.empty.eq((self.y_size == 0) | (self.x_size == 0)),
            self.row_bytes.eq(self.x_size << s),
            self.stride.eq(self.x_stride << s),
        ]
        # Stage 2: the extent in bytes (the shift by the element size) and the format
        # checks, registered, so no stage chains a shift, two adders and a compare. With
        # ``y_size`` 0 the sum is meaningless, but ``empty`` skips the window check.
        busy2 = Signal()
        extent = Signal(len(rows_span) + 1 + self.max_elem_log2)
        malformed = Signal()
        align_log2 = Mux(s < log_bus, s, log_bus)
        misaligned = (self.addr & ((Const(1, 16) << align_log2) - 1)[: log_bus + 1]) != 0
        m.d.sync += [
            busy2.eq(busy1),
            extent.eq((rows_span + reach)[: len(rows_span) + 1] << s),
            malformed.eq((s > self.max_elem_log2) | misaligned),
        ]
        # Stage 3: the transfer's end against the window: ``dram_addr + extent >
        # window_size``, as the extent against the room.
        m.d.sync += self.done.eq(busy2)
        with m.If(busy2):
            with m.If(malformed):
                m.d.sync += self.error.eq(ErrorCode.MALFORMED_INSTRUCTION)
            with m.Elif(~self.empty & (extent > room)):
                m.d.sync += self.error.eq(ErrorCode.DMA_OUT_OF_WINDOW)
            with m.Else():
                m.d.sync += self.error.eq(ErrorCode.NONE)
        return m


def engine_members(config, *, write):
    """The members both engines end with: ``o_status`` (Out stream of
    :data:`StatusLayout`), ``window_base`` and ``window_size`` (In ``axi_addr_width``)
    and ``m_axi``, an AXI4 write (``write``) or read manager of ``config``'s widths."""
    return {
        "o_status": Out(stream.Signature(StatusLayout)),
        "window_base": In(config.axi_addr_width),
        "window_size": In(config.axi_addr_width),
        "m_axi": Out(AXI4Signature.from_config(config, read=not write, write=write)),
    }


def checked_bursts(m, engine, cmd, elem_log2, max_elem_log2):
    """An engine's :class:`WindowCheck` and :class:`BurstGenerator`, submodules ``check``
    and ``bursts`` of ``m``.

    ``engine`` has ``config``, ``bus_bytes``, ``max_burst_beats``, ``window_base`` and
    ``window_size``; ``cmd`` (the engine's held command) ``dram_addr``, ``y_size``,
    ``x_size`` and ``x_stride``. The check reads ``cmd``, ``elem_log2`` and the window;
    the burst generator's command is the check's result, ``cmd.y_size`` rows. The engine
    drives ``check.start`` and ``bursts.i_cmd.valid`` and takes ``bursts.o_burst``.

    Returns
    -------
    (WindowCheck, BurstGenerator)
    """
    aw, bus = engine.config.axi_addr_width, engine.bus_bytes
    m.submodules.check = check = WindowCheck(aw, bus, max_elem_log2)
    m.submodules.bursts = bursts = BurstGenerator(
        aw, bus, check.row_bytes_width, check.stride_width, engine.max_burst_beats
    )
    m.d.comb += [
        check.dram_addr.eq(cmd.dram_addr),
        check.y_size.eq(cmd.y_size),
        check.x_size.eq(cmd.x_size),
        check.x_stride.eq(cmd.x_stride),
        check.elem_log2.eq(elem_log2),
        check.window_base.eq(engine.window_base),
        check.window_size.eq(engine.window_size),
        bursts.i_cmd.payload.addr.eq(check.addr),
        bursts.i_cmd.payload.row_bytes.eq(check.row_bytes),
        bursts.i_cmd.payload.stride.eq(check.stride),
        bursts.i_cmd.payload.rows.eq(cmd.y_size),
    ]
    return check, bursts


@contextlib.contextmanager
def command_states(m, engine, cmd, check, error):
    """An engine's FSM: the states every engine starts and ends with, its own in between.

    Use as ``with command_states(...):`` around the engine's own ``m.State`` blocks.
    ``IDLE`` takes ``engine.i_cmd`` into the register ``cmd``; ``CHECK`` starts
    ``check``; the engine's states begin with ``WAIT`` (for ``check.done``) and end
    with ``m.next = "STATUS"``, which offers ``error`` on ``engine.o_status`` (one per
    command) and returns to ``IDLE``.
    """
    with m.FSM():
        with m.State("IDLE"):
            accept(m, engine.i_cmd, cmd, "CHECK")
        with m.State("CHECK"):
            m.d.comb += check.start.eq(1)
            m.next = "WAIT"
        yield
        with m.State("STATUS"):
            m.d.comb += [engine.o_status.valid.eq(1), engine.o_status.payload.error.eq(error)]
            with m.If(engine.o_status.ready):
                m.next = "IDLE"
