"""AXI4 read DMA: 2-D strided loads into on-chip buffer words, padding inserted on the fly.

The engine takes one LOAD-shaped command at a time and emits the padded tile in
row-major order as a stream of *chunks*: an element of ``2**elem_log2`` bytes no wider
than the bus is one chunk (in the low bytes of ``data``); a wider element (a WGT word
of ``rows * cols`` bytes) is ``elem_bytes / bus_bytes`` chunks, ``part`` 0 first. Every
chunk carries the buffer word address ``addr`` (``sram_addr`` plus the element's index
in the padded tile), so the load unit writes ``data`` to word ``addr``, slice ``part``.

Padding elements (``pad_*`` of the command) are filled with ``pad_value`` replicated
and cost no memory traffic; the AR side runs ahead of them, bounded by AXI
back-pressure only. The output runs at one chunk per cycle; a bus beat holding several
narrow elements is held (RREADY low) until its last element has left.

The load unit sets ``elem_log2`` from ``LOAD.buffer`` (log2 of
:func:`bamboo.arch.layout.elem_bytes`: a buffer word's bytes), and writes chunk
``part`` of word ``addr`` through a write port of ``bus_bytes`` granularity.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Opcode
from ..arch.layout import BUFFERS, elem_bytes
from ..arch.registers import ErrorCode
from .axi import BURST_INCR, CACHE_MODIFIABLE_BUFFERABLE, MAX_BURST_BEATS
from .dma import (
    ELEM_LOG2_BITS,
    WindowCheck,
    checked_bursts,
    command_states,
    engine_members,
    transfer_fields,
)
from .pipeline import register, registered_equal

__all__ = ["ReadCommandLayout", "ReadChunkLayout", "DMAReader"]

_FIELDS = [
    "sram_addr",
    "dram_addr",
    "y_size",
    "x_size",
    "x_stride",
    "pad_top",
    "pad_bottom",
    "pad_left",
    "pad_right",
    "pad_value",
]


def ReadCommandLayout():
    """The LOAD transfer fields of the ISA plus ``elem_log2`` (bytes per element, as log2)."""
    return data.StructLayout({**transfer_fields(Opcode.LOAD, _FIELDS), "elem_log2": ELEM_LOG2_BITS})


def ReadChunkLayout(bus_bytes, max_parts):
    """``o_data`` payload: buffer word ``addr``, chunk ``part`` of it, ``data``, ``last``."""
    return data.StructLayout(
        {
            "addr": transfer_fields(Opcode.LOAD, ["sram_addr"])["sram_addr"],
            "part": max(1, (max_parts - 1).bit_length()),
            "data": 8 * bus_bytes,
            "last": 1,
        }
    )


class DMAReader(wiring.Component):
    """The load side's AXI4 read engine.

    Parameters
    ----------
    config : AcceleratorConfig
        Bus widths come from ``axi_data_width``/``axi_addr_width``.
    max_elem_bytes : int, optional
        Largest element accepted (default: the widest buffer word of ``config``).
    max_burst_beats : int
        Longest AXI burst, 1 to 256.

    Attributes
    ----------
    i_cmd : In(stream.Signature(ReadCommandLayout()))
        One transfer; accepted when the previous one has reported its status.
    o_data : Out(stream.Signature(ReadChunkLayout))
        The padded tile, one chunk per transfer, row-major.
    o_status : Out(stream.Signature(StatusLayout))
        One per command, after its last chunk: ``ErrorCode.NONE``, ``DMA_OUT_OF_WINDOW``
        (nothing was read or emitted), ``MALFORMED_INSTRUCTION`` (element misaligned or
        too large; nothing read) or ``AXI_ERROR`` (an RRESP error; every chunk was
        still emitted so the bus drains).
    window_base, window_size : In(addr_width)
        The DMA window; ``dram_addr`` is relative to ``window_base``.
    m_axi : Out(AXI4Signature(read=True, write=False))
    """

    def __init__(self, config, *, max_elem_bytes=None, max_burst_beats=MAX_BURST_BEATS):
        bus = config.axi_data_bytes
        if max_elem_bytes is None:
            max_elem_bytes = max(max(elem_bytes(config, b) for b in BUFFERS), bus)
        if max_elem_bytes < 1 or max_elem_bytes & (max_elem_bytes - 1):
            raise ValueError(f"max_elem_bytes must be a power of two, not {max_elem_bytes!r}")
        if max_elem_bytes >= 1 << (1 << ELEM_LOG2_BITS):
            raise ValueError(
                f"max_elem_bytes must be below 2**{1 << ELEM_LOG2_BITS}, not {max_elem_bytes!r}"
            )
        self.config = config
        self.bus_bytes = bus
        self.max_elem_log2 = (max_elem_bytes - 1).bit_length()
        self.max_parts = max(1, max_elem_bytes // bus)
        self.max_burst_beats = max_burst_beats
        super().__init__(
            {
                "i_cmd": In(stream.Signature(ReadCommandLayout())),
                "o_data": Out(stream.Signature(ReadChunkLayout(bus, self.max_parts))),
                **engine_members(config, write=False),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bus = self.bus_bytes
        log_bus = (bus - 1).bit_length()
        axi = self.m_axi
        cmd = Signal(ReadCommandLayout())
        error = Signal(8)
        s = cmd.elem_log2
        check, bursts = checked_bursts(m, self, cmd, s, self.max_elem_log2)

        # AR channel straight from the burst generator (its valid is a register).
        m.d.comb += [
            axi.arvalid.eq(bursts.o_burst.valid),
            axi.araddr.eq(bursts.o_burst.payload.addr),
            axi.arlen.eq(bursts.o_burst.payload.len),
            axi.arsize.eq(log_bus),
            axi.arburst.eq(BURST_INCR),
            axi.arcache.eq(CACHE_MODIFIABLE_BUFFERABLE),
            bursts.o_burst.ready.eq(axi.arready),
        ]

        # The tile walker: padded row wr, padded column wc, part wp of the element.
        walking = Signal()
        wr = Signal(16)
        wc = Signal(16)
        wp = Signal(range(self.max_parts))
        waddr = Signal.like(cmd.sram_addr)
        off = Signal(log_bus)  # byte of the current beat holding the next data chunk
        row_off = Signal(log_bus)  # beat offset of the current data row's first byte
        parts_last = Signal(range(self.max_parts))
        chunk_log2 = Signal(range(log_bus + 1))
        stride_lo = Signal(log_bus)
        rerr = Signal()

        # Where the walker stands, as flags kept in registers: every decision of a cycle
        # (valid, RREADY, the beat release) is a few LUTs on them, not 16-bit compares of
        # wr and wc. Each flag is computed for the walker's next position, a cycle ahead,
        # by equality compares of the position with targets fixed per command (``*_m1``:
        # the position before the flag changes), which need no adder or magnitude compare.
        row_in = Signal()  # a data row
        col_in = Signal()  # a data column
        col_end = Signal()  # wc == col_hi - 1 (the row's last data)
        wc_last = Signal()  # wc == cols_last
        wr_last = Signal()  # wr == rows_last
        col_in0 = Signal()  # col_in, col_end and wc_last at wc = 0
        col_end0 = Signal()
        wc_last0 = Signal()

        at_top = Signal()  # wr == pad_top - 1: the next row is the first data row
        at_hi = Signal()  # wr == row_hi - 1: the next row is past the data rows

        # The flags' compares with targets fixed per command are not made in the cycle
        # that uses them: that put a 32-input compare behind the walker's enable, and ABC
        # chains the two. A position only steps by one or returns to 0, so ``pos == t`` is
        # ``pos == t`` or ``pos == t - 1`` as registered a cycle earlier, or ``t == 0``.
        def stepping(pos, name):
            """The ``(stepped, zeroed)`` registers of ``pos`` (it stepped by one, or was
            set to 0, at the last edge) and ``equals``, which makes a target."""
            stepped, zeroed = Signal(name=f"{name}_stepped"), Signal(name=f"{name}_zeroed")
            m.d.sync += [stepped.eq(0), zeroed.eq(0)]

            def equals(name):
                """``(pos == t, load)``: the exact value this cycle, and ``load(base, k)``,
                the statements that set the target ``t = base - k`` (with ``zeroed``)."""
                t, t_m1 = Signal(16, name=name), Signal(16, name=f"{name}_less1")
                at0 = Signal(name=f"{name}_at0")
                now = registered_equal(m, pos, t, t_m1, stepped, zeroed, at0, name)
                return now, lambda base, k: [
                    t.eq(base - k),
                    t_m1.eq(base - (k + 1)),
                    at0.eq(base == k),
                ]

            return stepped, zeroed, equals

        wr_stepped, wr_zeroed, wr_equals = stepping(wr, "wr")
        wc_stepped, wc_zeroed, wc_equals = stepping(wc, "wc")
        top_now, top_load = wr_equals("top_m2")
        hi_now, hi_load = wr_equals("hi_m2")
        last_now, rows_load = wr_equals("rows_m2")
        chi_now, chi_load = wc_equals("chi_m1")
        left_now, left_load = wc_equals("left_m1")
        chi2_now, chi2_load = wc_equals("chi_m2")
        cols_now, cols_load = wc_equals("cols_m2")
        is_data = Signal()  # row_in & col_in, a register set with them
        # wp == parts_last - 1 (the next part is the last), with no adder or compare
        # behind the step.
        wp_stepped, wp_zeroed, wp_equals = stepping(wp, "wp")
        part_pen, pen_load = wp_equals("parts_m2")

        def col_flags_next():
            col_in_n = Mux(chi_now, 0, Mux(left_now, 1, col_in))
            return [
                col_in.eq(col_in_n),
                is_data.eq(row_in & col_in_n),
                col_end.eq(chi2_now),
                wc_last.eq(cols_now),
            ]

        in_row = row_in
        # ``last_part`` (wp == parts_last) and ``off_end`` (the chunk at ``off`` is the
        # beat's last: off == bus - chunk) are registers set with ``wp`` and ``off``.
        last_part = Signal()
        # ``row_end`` (last_part & wc_last: the next chunk ends the row) is a register of
        # its own, so the row's updates are enabled by one flag, not two in series.
        row_end = Signal()
        part0_last = Signal()  # parts_last == 0: a part 0 is the last
        off_end = Signal()
        end_off = Signal(log_bus)  # bus - chunk: the offset of a beat's last chunk
        end_m1 = Signal(log_bus)  # end_off - chunk: the chunk before it
        end_less_stride = Signal(log_bus)  # end_off - the row stride (mod bus)
        chunk_end = (off + (1 << chunk_log2))[: log_bus + 1]
        # Release the beat after its last chunk: beat full, or the row's last data chunk.
        pop = off_end | (col_end & last_part)
        pad_word = Cat(*[cmd.pad_value] * bus)
        o = self.o_data
        m.d.comb += [
            o.valid.eq(walking & (~is_data | axi.rvalid)),
            o.payload.addr.eq(waddr),
            o.payload.part.eq(wp),
            o.payload.data.eq(Mux(is_data, axi.rdata >> Cat(Const(0, 3), off), pad_word)),
            o.payload.last.eq(wr_last & wc_last & last_part),
            axi.rready.eq(walking & is_data & o.ready & pop),
        ]
        with m.If(axi.rvalid & axi.rready & axi.rresp[1]):
            m.d.sync += rerr.eq(1)
        with m.If(o.valid & o.ready):
            with m.If(is_data):
                m.d.sync += [off.eq(chunk_end), off_end.eq(off == end_m1)]
            m.d.sync += [
                wp.eq(wp + 1),
                wp_stepped.eq(1),
                last_part.eq(part_pen),
                row_end.eq(wc_last & part_pen),
            ]
            with m.If(last_part):
                m.d.sync += [
                    wp.eq(0),
                    wp_stepped.eq(0),
                    wp_zeroed.eq(1),
                    last_part.eq(part0_last),
                    row_end.eq(part0_last & cols_now),
                    waddr.eq(waddr + 1),
                    wc.eq(wc + 1),
                    wc_stepped.eq(1),
                    *col_flags_next(),
                ]
            with m.If(row_end):  # last_part & wc_last; overrides the above
                m.d.sync += row_end.eq(part0_last & wc_last0)
                next_off = Mux(in_row, row_off + stride_lo, row_off)[:log_bus]
                # next_off == end_off without the adder: row_off + stride_lo == end_off
                # (mod bus) is row_off == end_off - stride_lo, a target set per command.
                next_end = Mux(in_row, row_off == end_less_stride, row_off == end_off)
                row_in_n = Mux(at_hi, 0, Mux(at_top, 1, row_in))
                m.d.sync += [
                    wc.eq(0),
                    wc_stepped.eq(0),
                    wc_zeroed.eq(1),
                    wr.eq(wr + 1),
                    row_off.eq(next_off),
                    off.eq(next_off),
                    off_end.eq(next_end),
                    col_in.eq(col_in0),
                    col_end.eq(col_end0),
                    wc_last.eq(wc_last0),
                    row_in.eq(row_in_n),
                    is_data.eq(row_in_n & col_in0),
                    wr_stepped.eq(1),
                    at_top.eq(top_now),
                    at_hi.eq(hi_now),
                    wr_last.eq(last_now),
                ]
                with m.If(wr_last):
                    m.d.sync += walking.eq(0)

        # The padded tile's extent, registered while the window check runs (``cmd`` is
        # held from CHECK on, ``check.done`` comes three cycles later).
        rows = Signal(16)
        cols = Signal(16)
        row_hi = Signal(16)  # one past the last data row / column
        col_hi = Signal(16)
        has_area = Signal()  # rows and cols both non-zero, a cycle after them
        m.d.sync += has_area.eq((rows != 0) & (cols != 0))
        m.d.sync += [
            rows.eq(cmd.pad_top + cmd.y_size + cmd.pad_bottom),
            cols.eq(cmd.pad_left + cmd.x_size + cmd.pad_right),
            row_hi.eq(cmd.pad_top + cmd.y_size),
            col_hi.eq(cmd.pad_left + cmd.x_size),
        ]

        # The start values that are flags of the command, as registers: ``cmd`` is held
        # from CHECK on and ``check.done`` comes WindowCheck.LATENCY cycles after it, after
        # two register stages (``rows`` .. ``col_hi`` above, then these).
        assert WindowCheck.LATENCY >= 2

        col_in_0 = register(m, (cmd.pad_left == 0) & (cmd.x_size != 0), "col_in_start")
        row_in_0 = register(m, (cmd.pad_top == 0) & (cmd.y_size != 0), "row_in_start")
        col_end_0 = register(m, col_hi == 1, "col_end_start")
        rows_one, cols_one = register(m, rows == 1, "rows_one"), register(m, cols == 1, "cols_one")
        top_one, hi_one = (
            register(m, cmd.pad_top == 1, "top_one"),
            register(m, row_hi == 1, "hi_one"),
        )
        last_part_0 = register(
            m, Mux(s > log_bus, (Const(1, 16) << (s - log_bus)[:4]) - 1, 0)[:16], "parts_start"
        )
        part0_one = register(m, Mux(s > log_bus, 0, 1), "part0_one")  # last_part_0 == 0
        end_off_0 = register(
            m, Mux(s < log_bus, bus - (Const(1, log_bus + 1) << s[:3]), 0)[:log_bus], "end_start"
        )
        end_m1_0 = register(
            m, Mux(s < log_bus, bus - (Const(2, log_bus + 2) << s[:3]), 0)[:log_bus], "end_m1_start"
        )
        # The command's start, outside the FSM: ``check.done`` comes in WAIT only (three
        # cycles after CHECK starts the check), so the state's decode stays off these
        # registers' enables.
        with m.If(check.done):
            m.d.sync += [
                error.eq(check.error),
                rerr.eq(0),
                *top_load(cmd.pad_top, 2),
                *hi_load(row_hi, 2),
                *rows_load(rows, 2),
                *left_load(cmd.pad_left, 1),
                *chi_load(col_hi, 1),
                *chi2_load(col_hi, 2),
                *cols_load(cols, 2),
                wr_zeroed.eq(1),
                wc_zeroed.eq(1),
                at_top.eq(top_one),
                at_hi.eq(hi_one),
                col_in0.eq(col_in_0),
                col_end0.eq(col_end_0),
                wc_last0.eq(cols_one),
                parts_last.eq(last_part_0),
                last_part.eq(part0_one),
                part0_last.eq(part0_one),
                chunk_log2.eq(Mux(s < log_bus, s, log_bus)),
                end_off.eq(end_off_0),
                end_m1.eq(end_m1_0),
                end_less_stride.eq(end_off_0 - check.stride[:log_bus]),
                off_end.eq(check.addr[:log_bus] == end_off_0),
                stride_lo.eq(check.stride[:log_bus]),
                wr.eq(0),
                wc.eq(0),
                wp.eq(0),
                wp_zeroed.eq(1),
                *pen_load(last_part_0, 1),
                waddr.eq(cmd.sram_addr),
                row_in.eq(row_in_0),
                col_in.eq(col_in_0),
                is_data.eq(row_in_0 & col_in_0),
                col_end.eq(col_end_0),
                wr_last.eq(rows_one),
                wc_last.eq(cols_one),
                row_end.eq(part0_one & cols_one),
                off.eq(check.addr[:log_bus]),
                row_off.eq(check.addr[:log_bus]),
            ]
        with command_states(m, self, cmd, check, error):
            with m.State("WAIT"):
                with m.If(check.done):
                    with m.If(check.error != ErrorCode.NONE):
                        m.next = "STATUS"
                    with m.Else():
                        m.d.sync += walking.eq(has_area)
                        m.next = "START"
            with m.State("START"):
                m.d.comb += bursts.i_cmd.valid.eq(~check.empty)
                with m.If(check.empty | bursts.i_cmd.ready):
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~walking & ~bursts.busy):
                    m.d.sync += error.eq(Mux(rerr, ErrorCode.AXI_ERROR, ErrorCode.NONE))
                    m.next = "STATUS"
        return m
