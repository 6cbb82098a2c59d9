"""Instruction fetch from DDR, and the dispatcher that checks every instruction first.

:class:`Fetcher` reads ``INSN_COUNT`` instructions from ``INSN_BASE`` (bus aligned),
one AXI4 burst of ``INSN_BYTES`` each (two across a 4 KiB page), into a stream of
:func:`~bamboo.hw.queues.entry_layout` entries (word, index, fetch fault).

:class:`Dispatcher` decodes each entry through the ``arch/isa.py`` layouts, checks
it completely and only then sends it to the load, compute or store queue. The
checks are the instruction simulator's (``bamboo.sim.isa``), in program order, so an
instruction that would trap never starts and nothing after it is dispatched:
illegal opcode; bits above the last field; a token bit towards a missing queue;
transfers of zero elements, past a buffer's depth, or outside the DMA window (the
whole extent, checked against ``WINDOW_SIZE`` before any beat is issued); CONV
sizes of zero, undefined modes or activations, accumulators, INP, WGT, OUT or PARAM
words past their buffers; VEC operations, INP windows, OUT and PARAM words likewise
(not the MUL exponent range: a PARAM value). One check is the hardware's own: a DMA
element must start on a multiple of ``min(element, bus)`` bytes
(``MALFORMED_INSTRUCTION``). ``VEC`` with pixels needs a vector unit; without one it
is an ``ILLEGAL_OPCODE``
(``VEC`` with ``out_h = 0`` or ``out_w = 0`` is a token barrier and always legal).

Checking takes three register stages (# Stage 1: products, # Stage 2: extents,
# Stage 3: sums and the comparisons against registers), then the verdict compares
the stage 3 sums with constants (a few cycles per instruction against tens to
thousands of cycles of work each). The verdict is registered: ``error`` pulses in the
cycle after the check, so nothing outside reads the checks' logic.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import INSN_BYTES, QUEUE_OF, Activation, ConvMode, Opcode, VecOp
from ..arch.layout import BUFFERS, PARAM_DEPTH, buffer_depth, elem_bytes
from ..arch.registers import ErrorCode
from .axi import BURST_INCR, CACHE_MODIFIABLE_BUFFERABLE, PAGE_BYTES, AXI4Signature
from .isa_layout import instruction_layout
from .pipeline import accept
from .queues import INDEX_BITS, Fault, entry_layout, header_layout

__all__ = ["Dispatcher", "Fetcher"]


class Fetcher(wiring.Component):
    """Reads the program, one instruction per burst, in order.

    Attributes
    ----------
    go : In(1)
        Pulse: start at ``insn_base`` for ``insn_count`` instructions.
    o_insn : Out(stream.Signature(entry_layout()))
    m_axi : Out(AXI4Signature(read=True, write=False))
    busy : Out(1)
        A burst is in flight or an instruction waits to be taken.
    """

    def __init__(self, config):
        self.config = config
        aw = config.axi_addr_width
        super().__init__(
            {
                "go": In(1),
                "insn_base": In(aw),
                "insn_count": In(INDEX_BITS),
                "o_insn": Out(stream.Signature(entry_layout())),
                "m_axi": Out(AXI4Signature.from_config(config, write=False)),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bus = self.config.axi_data_bytes
        log_bus = (bus - 1).bit_length()
        beats = max(1, INSN_BYTES // bus)
        axi = self.m_axi
        pc, left = Signal(INDEX_BITS), Signal(INDEX_BITS)
        word = Signal(8 * max(INSN_BYTES, bus))
        beat = Signal(range(beats + 1))
        fault = Signal(2)
        # An instruction is one burst, or two where it straddles a 4 KiB page (INSN_BASE
        # need only be bus aligned; AXI forbids a burst across 4 KiB, ARM IHI 0022E A3.4.1).
        # ``start`` (the instruction's first byte), ``addr`` (the next beat's) and ``arlen``
        # are registers, set on the way into ADDR: the AR channel is flip-flops.
        start, addr = Signal.like(self.insn_base), Signal.like(self.insn_base)
        arlen = Signal(8)

        def first_burst(a):
            """AxLEN of an instruction's first burst, from its first byte ``a``."""
            # The beats left in the page, page_beats - idx, are fewer than the
            # instruction's only near the page's end; then AxLEN = page_beats - idx - 1,
            # which is ~idx: a compare with a constant and no adder.
            idx = a[log_bus:12]
            page_beats = PAGE_BYTES >> log_bus
            return Mux(idx > page_beats - beats, ~idx, beats - 1)[:8]

        m.d.comb += [
            axi.araddr.eq(addr),
            axi.arlen.eq(arlen),
            axi.arsize.eq(log_bus),
            axi.arburst.eq(BURST_INCR),
            axi.arcache.eq(CACHE_MODIFIABLE_BUFFERABLE),
            self.o_insn.payload.word.eq(word),
            self.o_insn.payload.index.eq(pc),
            self.o_insn.payload.fault.eq(fault),
        ]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [
                        pc.eq(0),
                        left.eq(self.insn_count),
                        start.eq(self.insn_base),
                        addr.eq(self.insn_base),
                        arlen.eq(first_burst(self.insn_base)),
                        beat.eq(0),
                        fault.eq(Fault.NONE),
                    ]
                    with m.If(self.insn_base[:log_bus] != 0):
                        m.d.sync += fault.eq(Fault.MISALIGNED)
                        m.next = "PUSH"
                    with m.Elif(self.insn_count != 0):
                        m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += [axi.arvalid.eq(1), self.busy.eq(1)]
                with m.If(axi.arready):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [axi.rready.eq(1), self.busy.eq(1)]
                with m.If(axi.rvalid):
                    for k in range(beats):
                        with m.If(beat == k):
                            m.d.sync += word[8 * bus * k : 8 * bus * (k + 1)].eq(axi.rdata)
                    m.d.sync += [beat.eq(beat + 1), addr.eq(addr + bus)]
                    # A second burst starts on the page boundary: the instruction's rest.
                    m.d.sync += arlen.eq(beats - 2 - beat)
                    with m.If(axi.rresp[1]):
                        m.d.sync += fault.eq(Fault.AXI_ERROR)
                    with m.If(axi.rlast):
                        m.next = "ADDR"
                        with m.If(beat == beats - 1):
                            m.next = "PUSH"
            with m.State("PUSH"):
                m.d.comb += [self.o_insn.valid.eq(1), self.busy.eq(1)]
                with m.If(self.o_insn.ready):
                    # The next instruction's first byte; ``addr`` is there already when
                    # the instruction is whole beats.
                    nxt = addr if bus <= INSN_BYTES else (start + INSN_BYTES)[: len(start)]
                    m.d.sync += [
                        pc.eq(pc + 1),
                        left.eq(left - 1),
                        beat.eq(0),
                        start.eq(nxt),
                        addr.eq(nxt),
                        arlen.eq(first_burst(nxt)),
                    ]
                    with m.If((left > 1) & (fault == Fault.NONE)):
                        m.next = "ADDR"
                    with m.Else():
                        m.next = "IDLE"
        return m


class Dispatcher(wiring.Component):
    """Checks instructions in order and routes them to the three queues.

    Parameters
    ----------
    config : AcceleratorConfig
    vector : bool
        A vector unit is present (VEC with pixels is legal).

    Attributes
    ----------
    go : In(1)
        Pulse: a run starts (``insn_count`` is sampled).
    i_insn : In(stream.Signature(entry_layout()))
    o_load, o_compute, o_store : Out(stream.Signature(entry_layout()))
    error : Out(1)
        Pulse: the instruction ``error_index`` failed its check with ``error_code``
        (both valid with the pulse); the dispatcher then halts until reset.
    all_dispatched : Out(1)
        FINISH, or the last of ``insn_count`` instructions, has been dispatched.
    busy, stall : Out(1)
        Checking an instruction; waiting for room in a queue.
    """

    def __init__(self, config, *, vector=False):
        self.config = config
        self.vector = vector
        aw = config.axi_addr_width
        st = stream.Signature(entry_layout())
        super().__init__(
            {
                "go": In(1),
                "insn_count": In(INDEX_BITS),
                "window_base": In(aw),
                "window_size": In(aw),
                "i_insn": In(st),
                "o_load": Out(st),
                "o_compute": Out(st),
                "o_store": Out(st),
                "error": Out(1),
                "error_code": Out(ErrorCode),
                "error_index": Out(INDEX_BITS),
                "all_dispatched": Out(1),
                "busy": Out(1),
                "stall": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C, bus = cfg.rows, cfg.cols, cfg.axi_data_bytes
        cur = Signal(entry_layout())
        word = cur.word
        opcode = data.View(header_layout(), word[: header_layout().size]).opcode
        views = {
            op: data.View(instruction_layout(op), word[: instruction_layout(op).size])
            for op in (Opcode.LOAD, Opcode.STORE, Opcode.CONV, Opcode.VEC, Opcode.FINISH)
        }
        ld, sto, cv, vec = (views[o] for o in (Opcode.LOAD, Opcode.STORE, Opcode.CONV, Opcode.VEC))
        dispatched = Signal(INDEX_BITS)
        count = Signal(INDEX_BITS)
        last = Signal()  # this instruction is the last of insn_count (Stage 1)

        # Element bytes (as log2) and buffer depth of a LOAD's destination.
        log2 = lambda n: (n - 1).bit_length()  # noqa: E731
        load_elog2 = Signal(4)
        load_depth = Signal(17)
        with m.Switch(ld.buffer):
            for buf in BUFFERS:
                with m.Case(buf):
                    m.d.comb += [
                        load_elog2.eq(log2(elem_bytes(cfg, buf))),
                        load_depth.eq(buffer_depth(cfg, buf)),
                    ]
        # The load and store queues take one opcode each, the compute queue the others.
        (load_op,), (store_op,) = (
            [op for op, q in QUEUE_OF.items() if q == queue] for queue in ("load", "store")
        )
        is_load, is_store = opcode == load_op, opcode == store_op
        elog2 = Mux(is_load, load_elog2, log2(R))

        # Stage 1: products of fields.
        span = Signal(32)  # (y_size - 1) * x_stride
        tile = Signal(32)  # LOAD: padded rows and columns; STORE: y * x
        rows_p, cols_p = Signal(16), Signal(16)
        pix = Signal(20)  # CONV out_h * out_w
        khkw = Signal(8)
        row1, row2, blk_off = Signal(16), Signal(16), Signal(24)
        col_out, col_ker = Signal(16), Signal(16)  # the two terms of col
        # Stage 2: extents.
        end = Signal(64)
        n_words = Signal(32)
        taps = Signal(16)
        row_off = Signal(32)
        col = Signal(17)
        out_end = Signal(33)  # CONV out_addr + pix, VEC out_addr + v_pix
        # Stage 3: sums, and the comparisons against registers.
        inp_max = Signal(40)
        words_end = Signal(33)  # LOAD / STORE sram_addr + n_words
        wgt_end = Signal(17)
        outside = Signal()  # end > window_size
        misaligned = Signal()
        # VEC: pixels, window and pixel extents in INP (kernel and stride 0 count as 1).
        one = lambda v: Mux(v == 0, 1, v)  # noqa: E731
        v_pix, v_row, v_col_out, v_col = Signal(20), Signal(16), Signal(16), Signal(17)
        v_win_off, v_pix_off = Signal(32), Signal(32)
        v_win_max, v_a_max, v_b_max = Signal(40), Signal(40), Signal(40)

        def ext_sizes_zero():
            return Cat(
                cv.kernel_h == 0,
                cv.kernel_w == 0,
                cv.stride_h == 0,
                cv.stride_w == 0,
                cv.dilation_h == 0,
                cv.dilation_w == 0,
                cv.out_h == 0,
                cv.out_w == 0,
                cv.in_blocks == 0,
            ).any()

        # The verdict in two parts: ``early`` from the fields alone (registered in Stage 2,
        # ``high`` in Stage 1), ``late`` from the extents (compared in CHECK). Every check of
        # ``late`` is MALFORMED and ranks after ``early``'s, then the window (LOAD, STORE):
        # the first failing check wins, in the order of bamboo.sim.isa.
        size = {op: instruction_layout(op).size for op in views}
        high_now, high = Signal(), Signal()  # bits above the opcode's last field
        with m.Switch(opcode):
            for op, n in size.items():
                with m.Case(op):
                    m.d.comb += high_now.eq(word[n:] != 0)

        early_now, early = Signal(ErrorCode), Signal(ErrorCode)
        late = Signal()
        depthwise = cv.mode == ConvMode.DEPTHWISE
        align = Mux(elog2 < log2(bus), (Const(1, 16) << elog2) - 1, bus - 1)
        zero_xfer = (ld.y_size == 0) | (ld.x_size == 0)
        with m.Switch(opcode):
            with m.Case(Opcode.LOAD):
                with m.If(ld.pop_prev | ld.push_prev | high | zero_xfer):
                    m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
            with m.Case(Opcode.STORE):
                with m.If(sto.pop_next | sto.push_next | high | (sto.lane >= C // R) | zero_xfer):
                    m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
            with m.Case(Opcode.CONV):
                emit_bad = (
                    (cv.param_addr >= PARAM_DEPTH)
                    | (cv.act > Activation.LUT)
                    | ((cv.act == Activation.LUT) & (cv.lut_slot >= cfg.lut_slots))
                )
                bad = Cat(
                    high,
                    ext_sizes_zero(),
                    cv.mode > ConvMode.DEPTHWISE,
                    depthwise & ((cv.kernel_w > R) | (cv.dilation_w != 1)),
                    cv.acc_emit & emit_bad,
                )
                with m.If(bad.any()):
                    m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
            with m.Case(Opcode.VEC):
                vop = vec.vop
                depth = cfg.input_buffer_depth
                bad = Cat(
                    vop > VecOp.MUL,
                    (vop == VecOp.MUL_CHANNEL) & (vec.src_b >= depth),
                    ~((vop == VecOp.MAX_POOL) | (vop == VecOp.COPY))
                    & (vec.param_addr >= PARAM_DEPTH),
                    (vec.act == Activation.LUT) & (vec.lut_slot >= cfg.lut_slots),
                )
                pixels = (vec.out_h != 0) & (vec.out_w != 0)
                with m.If(high):
                    m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
                with m.Elif(pixels):
                    if self.vector:
                        with m.If(bad.any()):
                            m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
                    else:
                        m.d.comb += early_now.eq(ErrorCode.ILLEGAL_OPCODE)
            with m.Case(Opcode.FINISH):
                with m.If(high):
                    m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
            with m.Default():
                m.d.comb += early_now.eq(ErrorCode.ILLEGAL_OPCODE)
        # ``late`` in CHECK from registers only: the opcode's queue and class, the LOAD's
        # buffer depth and the VEC's flags registered in Stage 1, the comparisons of
        # Stage 1's and 2's values registered in Stage 3; the sums of Stage 3 compared here.
        to_load, to_store, to_compute = Signal(), Signal(), Signal()
        is_conv_r, is_vec_r, load_depth_r = Signal(), Signal(), Signal.like(load_depth)
        emit_r, vpix_r, pool_r, two_r = Signal(), Signal(), Signal(), Signal()
        pix_over, out_over = Signal(), Signal()
        vec_late = 0
        if self.vector:
            vec_late = vpix_r & (
                out_over
                | (pool_r & (v_win_max >= cfg.input_buffer_depth))
                | (~pool_r & (v_a_max >= cfg.input_buffer_depth))
                | (two_r & (v_b_max >= cfg.input_buffer_depth))
            )
        conv_late = (
            pix_over
            | (wgt_end > cfg.weight_buffer_depth)
            | (inp_max >= cfg.input_buffer_depth)
            | (emit_r & out_over)
        )
        m.d.comb += late.eq(
            Mux(
                to_load,
                (words_end > load_depth_r) | misaligned,
                Mux(
                    to_store,
                    (words_end > cfg.output_buffer_depth) | misaligned,
                    (is_conv_r & conv_late) | (is_vec_r & vec_late),
                ),
            )
        )

        with m.If(cur.fault == Fault.AXI_ERROR):
            m.d.comb += early_now.eq(ErrorCode.AXI_ERROR)
        with m.Elif(cur.fault == Fault.MISALIGNED):
            m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
        code = Mux(
            early != ErrorCode.NONE,
            early,
            Mux(
                late,
                ErrorCode.MALFORMED_INSTRUCTION,
                Mux((to_load | to_store) & outside, ErrorCode.DMA_OUT_OF_WINDOW, ErrorCode.NONE),
            ),
        )

        # The queue the instruction goes to, registered in Stage 1 (the queues' valid and
        # their FIFO levels then start at a register).
        target_ready = Mux(
            to_load, self.o_load.ready, Mux(to_store, self.o_store.ready, self.o_compute.ready)
        )
        for o in (self.o_load, self.o_store, self.o_compute):
            m.d.comb += o.payload.eq(cur)

        # The "size - 1" operands of the products, registered as the instruction is taken
        # (from the prefetch FIFO's output register): the products start at registers.
        minus1, minus1_in = {}, {}
        for op, name in (
            (Opcode.LOAD, "y_size"),
            (Opcode.CONV, "out_h"),
            (Opcode.CONV, "out_w"),
            (Opcode.CONV, "kernel_h"),
            (Opcode.CONV, "kernel_w"),
            (Opcode.CONV, "in_blocks"),
            (Opcode.VEC, "out_h"),
            (Opcode.VEC, "out_w"),
        ):
            layout = instruction_layout(op)
            incoming = data.View(layout, self.i_insn.payload.word[: layout.size])
            value = getattr(incoming, name) - 1
            minus1[op, name] = Signal(value.shape(), name=f"{name}_m1_op{op}")
            minus1_in[op, name] = value

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [
                        count.eq(self.insn_count),
                        dispatched.eq(0),
                        self.all_dispatched.eq(self.insn_count == 0),
                    ]
                with m.Elif(~self.all_dispatched):
                    accept(m, self.i_insn, cur, "S1")
                    m.d.sync += [reg.eq(minus1_in[key]) for key, reg in minus1.items()]
            with m.State("S1"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    span.eq(minus1[Opcode.LOAD, "y_size"] * ld.x_stride),
                    rows_p.eq(ld.pad_top + ld.y_size + ld.pad_bottom),
                    cols_p.eq(ld.pad_left + ld.x_size + ld.pad_right),
                    tile.eq(sto.y_size * sto.x_size),
                    pix.eq(cv.out_h * cv.out_w),
                    khkw.eq(cv.kernel_h * cv.kernel_w),
                    row1.eq(minus1[Opcode.CONV, "out_h"] * cv.stride_h),
                    row2.eq(minus1[Opcode.CONV, "kernel_h"] * cv.dilation_h),
                    blk_off.eq(minus1[Opcode.CONV, "in_blocks"] * cv.inp_block_stride),
                    col_out.eq(minus1[Opcode.CONV, "out_w"] * cv.stride_w),
                    col_ker.eq(minus1[Opcode.CONV, "kernel_w"] * cv.dilation_w),
                    v_pix.eq(vec.out_h * vec.out_w),
                    v_row.eq(minus1[Opcode.VEC, "out_h"] * one(vec.stride_h)),
                    v_col_out.eq(minus1[Opcode.VEC, "out_w"] * one(vec.stride_w)),
                    last.eq(dispatched + 1 == count),
                    high.eq(high_now),
                    to_load.eq(is_load),
                    to_store.eq(is_store),
                    to_compute.eq(~is_load & ~is_store),
                    is_conv_r.eq(opcode == Opcode.CONV),
                    is_vec_r.eq(opcode == Opcode.VEC),
                    load_depth_r.eq(load_depth),
                    emit_r.eq(cv.acc_emit),
                    vpix_r.eq((vec.out_h != 0) & (vec.out_w != 0)),
                    pool_r.eq((vec.vop == VecOp.MAX_POOL) | (vec.vop == VecOp.AVG_POOL)),
                    two_r.eq((vec.vop == VecOp.ADD) | (vec.vop == VecOp.MUL)),
                ]
                m.next = "S2"
            with m.State("S2"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    end.eq(ld.dram_addr + ((span + ld.x_size) << elog2)),
                    n_words.eq(Mux(is_load, rows_p * cols_p, tile)),
                    taps.eq(Mux(depthwise, cv.kernel_h, khkw * cv.in_blocks)),
                    row_off.eq((row1 + row2) * cv.in_w),
                    v_win_off.eq((v_row + one(vec.kernel_h) - 1) * vec.in_w),
                    v_pix_off.eq(minus1[Opcode.VEC, "out_h"] * vec.in_w),
                    col.eq(col_out + col_ker),
                    v_col.eq(v_col_out + one(vec.kernel_w) - 1),
                    out_end.eq(Mux(opcode == Opcode.CONV, cv.out_addr + pix, vec.out_addr + v_pix)),
                    early.eq(early_now),
                ]
                m.next = "S3"
            with m.State("S3"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    inp_max.eq(cv.inp_addr + Mux(depthwise, 0, blk_off) + row_off + col),
                    v_win_max.eq(vec.src_a + v_win_off + v_col),
                    v_a_max.eq(vec.src_a + v_pix_off + vec.out_w - 1),
                    v_b_max.eq(vec.src_b + v_pix_off + vec.out_w - 1),
                    words_end.eq(Mux(is_load, ld.sram_addr, sto.sram_addr) + n_words),
                    wgt_end.eq(cv.wgt_addr + taps),
                    pix_over.eq(pix > cfg.acc_buffer_depth),
                    out_over.eq(out_end > cfg.output_buffer_depth),
                    outside.eq(end > self.window_size),
                    misaligned.eq(((self.window_base + ld.dram_addr) & align) != 0),
                ]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.If(code != ErrorCode.NONE):
                    # Registered: the pulse comes a cycle later, from HALT.
                    m.d.sync += [
                        self.error.eq(1),
                        self.error_code.eq(code),
                        self.error_index.eq(cur.index),
                    ]
                    m.next = "HALT"
                with m.Else():
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [
                    self.stall.eq(~target_ready),
                    self.o_load.valid.eq(to_load),
                    self.o_store.valid.eq(to_store),
                    self.o_compute.valid.eq(to_compute),
                ]
                with m.If(target_ready):
                    m.d.sync += dispatched.eq(dispatched + 1)
                    with m.If((opcode == Opcode.FINISH) | last):
                        m.d.sync += self.all_dispatched.eq(1)
                    m.next = "IDLE"
            with m.State("HALT"):
                m.d.sync += [
                    self.error.eq(0),
                    self.error_code.eq(ErrorCode.NONE),
                    self.error_index.eq(0),
                ]
        return m
