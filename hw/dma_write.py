"""AXI4 write DMA: 2-D strided stores of one lane of the OUT buffer's words.

A STORE command writes ``y_size`` rows of ``x_size`` elements. Element ``i`` (row-major)
is the ``lane``-th ``elem_bytes`` slice of OUT word ``sram_addr + i``: the engine
requests the elements on ``o_req`` (word address and lane; the store unit answers
each, in order, on ``i_data`` with that slice alone), packs elements narrower than the
bus into beats with byte strobes (a row's partial first and last beats strobe only its
own bytes), splits elements wider than the bus into several beats, queues the beats
and writes them in INCR bursts that never cross
4 KiB. The window check precedes the first request: a transfer leaving the window
reads no OUT word and writes nothing.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Opcode
from ..arch.registers import ErrorCode
from .axi import BURST_INCR, CACHE_MODIFIABLE_BUFFERABLE, MAX_BURST_BEATS, BurstCounter
from .dma import checked_bursts, command_states, engine_members, transfer_fields
from .flagfifo import FlagFIFO

__all__ = ["WriteCommandLayout", "ElementRequestLayout", "DMAWriter"]

_FIELDS = ["sram_addr", "dram_addr", "y_size", "x_size", "x_stride", "lane"]
# Bursts announced on AW whose beats are still to be sent on W; more lets AW run further
# ahead of W through a slow interconnect.
BURST_QUEUE_DEPTH = 4
# Packed W beats waiting for WREADY. Two keep one beat a cycle flowing while the packer
# decides from the FIFO's registered not-full flag, never from WREADY itself.
BEAT_QUEUE_DEPTH = 2
# Bursts announced on AW whose write response has not come back. AXI sets no limit; a
# bound keeps the counter narrow, and an HP port accepts fewer than this anyway.
MAX_OUTSTANDING = 31


def WriteCommandLayout():
    """The STORE transfer fields of the ISA (element size is fixed per engine)."""
    return data.StructLayout(transfer_fields(Opcode.STORE, _FIELDS))


def ElementRequestLayout():
    """One element asked of the OUT buffer: word ``addr``, slice ``lane``."""
    return data.StructLayout(transfer_fields(Opcode.STORE, ["sram_addr", "lane"]))


class DMAWriter(wiring.Component):
    """The store side's AXI4 write engine.

    Parameters
    ----------
    config : AcceleratorConfig
        Bus widths from ``axi_data_width``/``axi_addr_width``.
    elem_bytes : int, optional
        Bytes per stored element (default ``config.rows``: one B-channel pixel).
    word_bytes : int, optional
        Bytes per OUT word (default ``config.cols``); ``lane`` picks one of
        ``word_bytes // elem_bytes`` slices.
    max_burst_beats : int
        Longest AXI burst, 1 to 256.

    Attributes
    ----------
    i_cmd : In(stream.Signature(WriteCommandLayout()))
    o_req : Out(stream.Signature(ElementRequestLayout()))
        One request per element, in order: the OUT word and the command's lane.
    i_data : In(stream.Signature(8 * elem_bytes))
        The requested elements (slice ``lane`` of each word), in request order.
    o_status : Out(stream.Signature(StatusLayout))
        One per command, after its last write response: ``NONE``, ``DMA_OUT_OF_WINDOW``
        (nothing read or written), ``MALFORMED_INSTRUCTION`` (misaligned ``dram_addr`` or
        ``lane`` out of range; nothing read or written) or ``AXI_ERROR`` (a BRESP error).
    window_base, window_size : In(addr_width)
    m_axi : Out(AXI4Signature(read=False, write=True))
    """

    def __init__(
        self, config, *, elem_bytes=None, word_bytes=None, max_burst_beats=MAX_BURST_BEATS
    ):
        elem_bytes = config.rows if elem_bytes is None else elem_bytes
        word_bytes = config.cols if word_bytes is None else word_bytes
        bus = config.axi_data_bytes
        if elem_bytes < 1 or elem_bytes & (elem_bytes - 1):
            raise ValueError(f"elem_bytes must be a power of two, not {elem_bytes!r}")
        if word_bytes % elem_bytes:
            raise ValueError(
                f"word_bytes must be a multiple of elem_bytes ({elem_bytes}), not {word_bytes!r}"
            )
        self.config = config
        self.bus_bytes = bus
        self.elem_bytes = elem_bytes
        self.word_bytes = word_bytes
        self.max_burst_beats = max_burst_beats
        self.lanes = word_bytes // elem_bytes
        super().__init__(
            {
                "i_cmd": In(stream.Signature(WriteCommandLayout())),
                "o_req": Out(stream.Signature(ElementRequestLayout())),
                "i_data": In(stream.Signature(8 * elem_bytes)),
                **engine_members(config, write=True),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bus, e = self.bus_bytes, self.elem_bytes
        log_bus = (bus - 1).bit_length()
        chunk = min(e, bus)  # bytes of an element per beat
        parts = max(1, e // bus)  # beats per element
        axi = self.m_axi
        elem_log2 = (e - 1).bit_length()
        cmd = Signal(WriteCommandLayout())
        error = Signal(8)
        check, bursts = checked_bursts(m, self, cmd, elem_log2, elem_log2)
        m.submodules.queue = queue = FlagFIFO(width=8, depth=BURST_QUEUE_DEPTH)

        # AW channel: a burst is taken into the AW register and, in the same cycle, its
        # length into the queue the W side follows. W thus never waits for AWREADY, as
        # AXI requires (Ref: ARM IHI 0022E, A3.3.1: a subordinate may wait for WVALID
        # before it asserts AWREADY). The register is loaded only when empty, so
        # AWREADY does not reach the burst queue's enables; hw/bus.py takes a burst every
        # second cycle at best (``BURST_ISSUE_CYCLES``), which this rate matches.
        ob = bursts.o_burst
        aw_free = ~axi.awvalid
        aw_room = Signal(init=1)  # a burst may go out without passing MAX_OUTSTANDING
        m.d.comb += [
            axi.awsize.eq(log_bus),
            axi.awburst.eq(BURST_INCR),
            axi.awcache.eq(CACHE_MODIFIABLE_BUFFERABLE),
            ob.ready.eq(aw_free & queue.w_rdy & aw_room),
            queue.w_en.eq(ob.valid & ob.ready),
            queue.w_data.eq(ob.payload.len),
        ]
        with m.If(queue.w_en):
            m.d.sync += [
                axi.awvalid.eq(1),
                axi.awaddr.eq(ob.payload.addr),
                axi.awlen.eq(ob.payload.len),
            ]
        with m.Elif(axi.awready):
            m.d.sync += axi.awvalid.eq(0)

        # B channel: count bursts in flight, remember any error response. AW stops at
        # MAX_OUTSTANDING unanswered bursts, which keeps the counter narrow (and its
        # carry chain short).
        outstanding = Signal(range(MAX_OUTSTANDING + 1))
        berr = Signal()
        m.d.comb += axi.bready.eq(1)
        # A burst taken is counted a cycle later, from ``taken`` (a register): AWREADY's
        # handshake stays out of the counter's carry chain. Its response comes two
        # cycles after the take at the earliest (AW leaves a cycle after), so the count
        # never goes below zero. ``aw_room`` is registered from ``outstanding`` alone,
        # three bursts early: the bursts taken in the two cycles not yet counted and in
        # the cycle it is computed, so the count never exceeds MAX_OUTSTANDING.
        taken = Signal()
        m.d.sync += [
            taken.eq(queue.w_en),
            outstanding.eq(outstanding + taken - axi.bvalid),
            aw_room.eq(outstanding < MAX_OUTSTANDING - 3),
        ]
        with m.If(axi.bvalid & axi.bresp[1]):
            m.d.sync += berr.eq(1)

        # OUT word requests: a plain counter, running ahead of the data as far as the
        # store unit lets it. ``req_any`` is ``req_left != 0`` kept in a register.
        req_left = Signal(24)
        req_any = Signal()
        req_addr = Signal.like(cmd.sram_addr)
        m.d.comb += [
            self.o_req.valid.eq(req_any),
            self.o_req.payload.sram_addr.eq(req_addr),
            self.o_req.payload.lane.eq(cmd.lane),
        ]
        with m.If(self.o_req.valid & self.o_req.ready):
            m.d.sync += [
                req_left.eq(req_left - 1),
                req_addr.eq(req_addr + 1),
                req_any.eq(req_left != 1),
            ]

        # W packer: element x of the row, part p of the element, chunk slot in the beat.
        # Every decision of a cycle reads flags kept in registers (the row's last element,
        # the beat's last slot), so the take/flush logic is a LUT or two deep before it
        # fans out to the slots and the row counters: ``x_left`` counts the row's elements
        # after this one and ``x_last`` is ``x_left == 0``, both updated a cycle ahead.
        slots = bus // chunk  # chunks per beat (1 for elements >= the bus)
        log_chunk = (chunk - 1).bit_length()
        packing = Signal()
        x_left = Signal.like(cmd.x_size)
        x_init = Signal.like(cmd.x_size)
        x_one = Signal()
        rows_left = Signal.like(cmd.y_size)
        rows_one = Signal()  # rows_left == 1
        p = Signal(range(parts))
        off = Signal(range(slots))  # chunk slot of the next piece in the beat
        row_off = Signal(range(slots))
        stride_lo = Signal(range(slots))
        # The beat being packed: one register per chunk slot, loaded straight from the
        # element (no read-modify-write of a whole beat), and a bit per slot saying it
        # holds a piece of this beat. A slot left over from an earlier beat goes out with
        # its strobes low.
        slot = [Signal(8 * chunk, name=f"slot{k}", reset_less=True) for k in range(slots)]
        filled = Signal(slots)

        elem = self.i_data.payload
        piece = elem.word_select(p, 8 * chunk) if parts > 1 else elem
        # ``full`` (off == slots - 1), ``last_part`` (p == parts - 1) and ``x_last`` are
        # registers written beside the values they flag, so ``flush`` (full, or the row's
        # last piece) is one LUT from flip-flops. (A registered ``flush``, written through
        # comb next-value signals that default to the registers, sends Icarus 11 into an
        # endless zero-delay loop in cocotb_dma.store_random_2d; Verilator and
        # amaranth.sim run it.)
        last_part = Signal() if parts > 1 else Const(1, 1)
        x_last = Signal()
        full = Signal() if slots > 1 else Const(1, 1)
        here = [off == k for k in range(slots)] if slots > 1 else [Const(1, 1)]
        beat = Cat(Mux(here[k], piece, slot[k]) for k in range(slots))
        beat_strb = Cat((here[k] | filled[k]).replicate(chunk) for k in range(slots))
        flush = full | (x_last & last_part)

        def set_off(value):
            m.d.sync += off.eq(value)
            if slots > 1:
                m.d.sync += full.eq(value == slots - 1)

        def set_p(value):
            if parts > 1:
                m.d.sync += [p.eq(value), last_part.eq(value == parts - 1)]

        # Packed beats go into a small FIFO, so the packer's ``take`` reads registers only
        # (the FIFO's not-full flag among them) and never WREADY.
        m.submodules.beats = beats = FlagFIFO(width=8 * bus + bus, depth=BEAT_QUEUE_DEPTH)
        # ``packing`` stays out of ``take``: an element arrives only when requested, and
        # the requests of a command (exactly its elements) start with ``packing``.
        take = self.i_data.valid & (~flush | beats.w_rdy)
        m.d.comb += [
            self.i_data.ready.eq(take & last_part),
            beats.w_en.eq(take & flush),
            beats.w_data.eq(Cat(beat, beat_strb)),
        ]

        # W sends the queued beats of the burst at the head of the burst queue (WLAST a
        # register).
        cur = BurstCounter("cur")
        m.d.comb += [
            axi.wvalid.eq(beats.r_rdy & cur.valid),
            axi.wdata.eq(beats.r_data[: 8 * bus]),
            axi.wstrb.eq(beats.r_data[8 * bus :]),
            axi.wlast.eq(cur.last),
            beats.r_en.eq(axi.wready & cur.valid),
        ]
        # ``~valid | (WVALID & WREADY & last)``, written without WVALID's own LUT. Staged:
        # WREADY reaches the counter's registers, not the burst queue's read side.
        load = ~cur.valid | (beats.r_rdy & axi.wready & cur.last)
        cur.follow(m, queue, load, axi.wvalid & axi.wready, staged=True)

        with m.If(take):
            set_off((off + 1)[: len(off)])
            set_p((p + 1)[: len(p)])
            for k in range(slots):
                with m.If(here[k]):
                    m.d.sync += slot[k].eq(piece)
            m.d.sync += filled.eq(Mux(flush, 0, filled | Cat(here)))
            with m.If(last_part):
                set_p(0)
                m.d.sync += [x_left.eq(x_left - 1), x_last.eq(x_left == 1)]
                with m.If(x_last):
                    next_off = row_off + stride_lo
                    set_off(next_off[: len(off)])
                    m.d.sync += [
                        x_last.eq(x_one),
                        x_left.eq(x_init),
                        rows_left.eq(rows_left - 1),
                        rows_one.eq(rows_left == 2),
                        row_off.eq(next_off),
                    ]
                    with m.If(rows_one):
                        m.d.sync += packing.eq(0)

        with command_states(m, self, cmd, check, error):
            with m.State("WAIT"):
                with m.If(check.done):
                    set_p(0)
                    set_off(check.addr[log_chunk:log_bus])
                    m.d.sync += [
                        x_last.eq(cmd.x_size == 1),
                        error.eq(check.error),
                        berr.eq(0),
                        x_left.eq(cmd.x_size - 1),
                        x_init.eq(cmd.x_size - 1),
                        x_one.eq(cmd.x_size == 1),
                        rows_left.eq(cmd.y_size),
                        rows_one.eq(cmd.y_size == 1),
                        row_off.eq(check.addr[log_chunk:log_bus]),
                        stride_lo.eq(check.stride[log_chunk:log_bus]),
                        req_addr.eq(cmd.sram_addr),
                        filled.eq(0),
                    ]
                    with m.If(cmd.lane >= self.lanes):
                        m.d.sync += error.eq(ErrorCode.MALFORMED_INSTRUCTION)
                        m.next = "STATUS"
                    with m.Elif(check.error != ErrorCode.NONE):
                        m.next = "STATUS"
                    with m.Elif(check.empty):
                        m.next = "DRAIN"
                    with m.Else():
                        m.d.sync += [
                            packing.eq(1),
                            req_left.eq(cmd.y_size * cmd.x_size),
                            req_any.eq(1),
                        ]
                        m.next = "START"
            with m.State("START"):
                m.d.comb += bursts.i_cmd.valid.eq(1)
                with m.If(bursts.i_cmd.ready):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(
                    ~packing
                    & ~bursts.busy
                    & ~axi.awvalid
                    & ~taken
                    & ~queue.r_rdy
                    & ~cur.next_valid
                    & ~cur.valid
                    & ~beats.r_rdy
                    & (outstanding == 0)
                ):
                    m.d.sync += error.eq(Mux(berr, ErrorCode.AXI_ERROR, ErrorCode.NONE))
                    m.next = "STATUS"
        return m
