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

Checking takes three register stages after the instruction is taken (# Stage 0: the
"size - 1" operands and the high bits' segments; # Stage 1: products and the field
checks; # Stage 2: extents and partial sums; # Stage 3: the sums), then CHECK forms the
verdict from registers and sign bits (a few cycles per instruction against tens to
thousands of cycles of work each). Each bound is subtracted in an early stage, so a
check "x past the buffer" is the sign of a sum, and no comparison follows an adder in
the same cycle. The verdict is registered: ``error`` pulses in the cycle after the
check, so nothing outside reads the checks' logic.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import INSN_BYTES, QUEUE_OF, Activation, ConvMode, Opcode, VecOp
from ..arch.layout import BUFFERS, PARAM_DEPTH, buffer_depth, elem_bytes
from ..arch.registers import ErrorCode
from .axi import BURST_INCR, CACHE_MODIFIABLE_BUFFERABLE, PAGE_BYTES, AXI4Signature
from .isa_layout import instruction_layout
from .pipeline import accept, register
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
        fault = Signal(entry_layout()["fault"].shape)
        # An instruction is one burst, or two where it straddles a 4 KiB page (INSN_BASE
        # need only be bus aligned; AXI forbids a burst across 4 KiB, ARM IHI 0022E A3.4.1).
        # ``start`` (the instruction's first byte), ``addr`` (the next beat's) and ``arlen``
        # are registers, set on the way into ADDR: the AR channel is flip-flops.
        start, addr = Signal.like(self.insn_base), Signal.like(self.insn_base)
        arlen = Signal.like(axi.arlen)

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
        # ARVALID and RREADY are registers set on entering ADDR and DATA and cleared on
        # leaving them: the bus's R handshake and its burst tracker decode no state, nor
        # does the capture of a beat (``in_data`` is the DATA state).
        in_addr, in_data = Signal(name="in_addr"), Signal(name="in_data")
        m.d.comb += [axi.arvalid.eq(in_addr), axi.rready.eq(in_data)]
        with m.If(in_data & axi.rvalid):
            for k in range(beats):
                with m.If(beat == k):
                    m.d.sync += word[8 * bus * k : 8 * bus * (k + 1)].eq(axi.rdata)
            m.d.sync += [beat.eq(beat + 1), addr.eq(addr + bus)]
            # A second burst starts on the page boundary: the instruction's rest.
            m.d.sync += arlen.eq(beats - 2 - beat)
            with m.If(axi.rresp[1]):
                m.d.sync += fault.eq(Fault.AXI_ERROR)
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
                        m.d.sync += in_addr.eq(1)
                        m.next = "ADDR"
            with m.State("ADDR"):
                m.d.comb += self.busy.eq(1)
                with m.If(axi.arready):
                    m.d.sync += [in_addr.eq(0), in_data.eq(1)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(axi.rvalid):
                    with m.If(axi.rlast):
                        m.d.sync += [in_data.eq(0), in_addr.eq(beat != beats - 1)]
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
                        m.d.sync += in_addr.eq(1)
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
        count = Signal(INDEX_BITS)  # insn_count - 1

        # Element bytes (as log2) and buffer depth of a LOAD's destination.
        log2 = lambda n: (n - 1).bit_length()  # noqa: E731
        load_elog2 = Signal(range(max(log2(elem_bytes(cfg, b)) for b in BUFFERS) + 1))
        load_depth = Signal(range(max(buffer_depth(cfg, b) for b in BUFFERS) + 1))
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
        depthwise = cv.mode == ConvMode.DEPTHWISE
        one = lambda v: Mux(v == 0, 1, v)  # noqa: E731  VEC: kernel and stride 0 count as 1

        # Stage 0: as the instruction is taken (from the prefetch FIFO's output register),
        # the "size - 1" operands of the products, VEC's kernel and stride with 0 read as
        # 1, and the bits above each opcode's last field: the stages start at registers.
        size = {op: instruction_layout(op).size for op in views}
        incoming = {
            op: data.View(instruction_layout(op), self.i_insn.payload.word[: size[op]])
            for op in views
        }
        i_ld, i_sto, i_cv, i_vec = (
            incoming[o] for o in (Opcode.LOAD, Opcode.STORE, Opcode.CONV, Opcode.VEC)
        )
        i_op = data.View(header_layout(), self.i_insn.payload.word[: header_layout().size]).opcode
        i_load, i_store, i_conv = (i_op == o for o in (load_op, store_op, Opcode.CONV))
        # A size of zero is an ``early`` error (VEC: no pixels, nothing to check), so
        # "size - 1" keeps the field's width.
        m1 = lambda v: (v - 1)[: len(v)]  # noqa: E731
        v_out_h_m1 = m1(i_vec.out_h)
        # The opcodes' products share multipliers (DSP48E2): each operand register takes
        # the taken instruction's own field, selected by its opcode here, so no select
        # sits between a register and a multiplier. ``pix``: CONV and VEC out_h * out_w,
        # STORE's tile; ``rows`` / ``cols``: the output extent in input rows / columns less
        # one, CONV and VEC; ``off``: CONV's block offset, VEC's last row offset, the DRAM
        # span of LOAD and STORE (one layout there); ``in_w``: the row pitch of CONV or VEC.
        taken = {
            "pix_a": Mux(i_store, i_sto.y_size, Mux(i_conv, i_cv.out_h, i_vec.out_h)),
            "pix_b": Mux(i_store, i_sto.x_size, Mux(i_conv, i_cv.out_w, i_vec.out_w)),
            "rows_a": Mux(i_conv, m1(i_cv.out_h), v_out_h_m1),
            "rows_b": Mux(i_conv, i_cv.stride_h, one(i_vec.stride_h)),
            "cols_a": Mux(i_conv, m1(i_cv.out_w), m1(i_vec.out_w)),
            "cols_b": Mux(i_conv, i_cv.stride_w, one(i_vec.stride_w)),
            "off_a": Mux(
                i_load | i_store,
                m1(i_ld.y_size),
                # blk_off is 0 for a depthwise CONV (it reads one block)
                Mux(
                    i_conv,
                    Mux(i_cv.mode == ConvMode.DEPTHWISE, 0, m1(i_cv.in_blocks)),
                    v_out_h_m1,
                ),
            ),
            "off_b": Mux(
                i_load | i_store, i_ld.x_stride, Mux(i_conv, i_cv.inp_block_stride, i_vec.in_w)
            ),
            "in_w": Mux(i_conv, i_cv.in_w, i_vec.in_w),
            "kernel_h_m1": m1(i_cv.kernel_h),
            "kernel_w_m1": m1(i_cv.kernel_w),
            "v_out_w_m1": m1(i_vec.out_w),
            "v_kernel_h_m1": m1(one(i_vec.kernel_h)),
            "v_kernel_w_m1": m1(one(i_vec.kernel_w)),
        }
        # The bits above each opcode's last field, ORed in segments between the opcodes'
        # sizes (of at most 36 bits: two LUT levels); Stage 1 ORs the opcode's.
        word_in = self.i_insn.payload.word
        cuts = sorted(set(size.values())) + [len(word_in)]
        segments = {}  # size -> the names of the segments above it
        for lo, hi in zip(cuts, cuts[1:]):
            for a in range(lo, hi, 36):
                name = f"above{a}"
                taken[name] = word_in[a : min(a + 36, hi)].any()
                for n in cuts[:-1]:
                    if n <= a:
                        segments.setdefault(n, []).append(name)
        s0 = {name: Signal(v.shape(), name=name) for name, v in taken.items()}

        # The stages below are registers without an enable: ``cur`` and the Stage 0
        # registers hold still from the instruction's taking to its SEND, so Stage N's
        # registers are right from the end of state SN on (the FSM only counts the
        # cycles), and the FSM's state does not fan out to their enables. Their widths
        # are their expressions' (exact: nothing wraps).
        #
        # Every bound check "x > depth" or "x >= depth" is the sign of x less the bound,
        # the bound folded into an earlier stage's partial sum: CHECK reads sign bits.
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

        inp_depth = cfg.input_buffer_depth
        emit_bad = (
            (cv.param_addr >= PARAM_DEPTH)
            | (cv.act > Activation.LUT)
            | ((cv.act == Activation.LUT) & (cv.lut_slot >= cfg.lut_slots))
        )
        vop = vec.vop
        high_now = Signal()
        with m.Switch(opcode):
            for op, n in size.items():
                with m.Case(op):
                    m.d.comb += high_now.eq(Cat(s0[a] for a in segments.get(n, [])).any())

        def stage(**exprs):
            return [register(m, v, name) for name, v in exprs.items()]

        def small_product(a, b):
            """``a * b`` for a ``b`` of a few bits (a stride): shifted adds in LUTs, where
            Yosys would take a DSP48E2 for the product."""
            return sum(Mux(b[k], a << k, 0) for k in range(len(b)))

        # Stage 1: products of fields; the opcode's class; the field checks per opcode.
        # A window's largest address less one is a sum of products: CONV's inp_max =
        # inp_addr + blk_off + (rows + ker_rows) * in_w + cols + ker_cols; VEC's v_win_max
        # = src_a + (rows + kernel_h - 1) * in_w + cols + kernel_w - 1 (``rows`` and
        # ``cols`` the output extent less one in input pixels).
        (pix, rows, cols, off, n_a, n_b) = stage(
            pix=s0["pix_a"] * s0["pix_b"],
            rows=small_product(s0["rows_a"], s0["rows_b"]),
            cols=small_product(s0["cols_a"], s0["cols_b"]),
            off=s0["off_a"] * s0["off_b"],
            # the operands of Stage 2's ``n``: LOAD's padded rows and columns, or CONV's
            # taps per block and blocks
            n_a=Mux(is_load, ld.pad_top + ld.y_size + ld.pad_bottom, cv.kernel_h * cv.kernel_w),
            n_b=Mux(is_load, ld.pad_left + ld.x_size + ld.pad_right, cv.in_blocks),
        )
        (ker_rows, ker_cols, inp_base, v_win_base) = stage(
            # the kernel's extent less one in input rows: CONV's or VEC's
            ker_rows=Mux(
                opcode == Opcode.CONV,
                s0["kernel_h_m1"] * cv.dilation_h,
                s0["v_kernel_h_m1"],
            ),
            ker_cols=s0["kernel_w_m1"] * cv.dilation_w,
            inp_base=cv.inp_addr - inp_depth,
            v_win_base=vec.src_a + s0["v_kernel_w_m1"] - inp_depth,
        )
        (v_a1, v_b1, wgt_base, elog2_r, room) = stage(
            v_a1=vec.src_a + s0["v_out_w_m1"] - inp_depth,
            v_b1=vec.src_b + s0["v_out_w_m1"] - inp_depth,
            wgt_base=cv.wgt_addr - (cfg.weight_buffer_depth + 1),
            elog2_r=elog2,
            room=self.window_size - ld.dram_addr,  # bytes
        )
        (last, high, to_load, to_store, to_compute, is_conv_r, is_vec_r, is_finish_r) = stage(
            last=dispatched == count,  # ``count`` is insn_count - 1
            high=high_now,  # bits above the opcode's last field
            to_load=is_load,
            to_store=is_store,
            to_compute=~is_load & ~is_store,
            is_conv_r=opcode == Opcode.CONV,
            is_vec_r=opcode == Opcode.VEC,
            is_finish_r=opcode == Opcode.FINISH,
        )
        (illegal_r, words_bound, emit_r, vpix_r, pool_r, two_r, fault_r) = stage(
            illegal_r=~Cat(opcode == op for op in views).any(),
            # LOAD / STORE: sram_addr + n_words past it is out of the buffer
            words_bound=Mux(is_load, load_depth + 1, cfg.output_buffer_depth + 1),
            emit_r=cv.acc_emit,
            vpix_r=(vec.out_h != 0) & (vec.out_w != 0),
            pool_r=(vop == VecOp.MAX_POOL) | (vop == VecOp.AVG_POOL),
            two_r=(vop == VecOp.ADD) | (vop == VecOp.MUL),
            fault_r=cur.fault,
        )
        zero_xfer = (ld.y_size == 0) | (ld.x_size == 0)
        (ld_bad, st_bad, cv_bad, vec_bad) = stage(
            ld_bad=ld.pop_prev | ld.push_prev | zero_xfer,
            st_bad=sto.pop_next | sto.push_next | (sto.lane >= C // R) | zero_xfer,
            cv_bad=Cat(
                ext_sizes_zero(),
                cv.mode > ConvMode.DEPTHWISE,
                depthwise & ((cv.kernel_w > R) | (cv.dilation_w != 1)),
                cv.acc_emit & emit_bad,
            ).any(),
            vec_bad=Cat(
                vop > VecOp.MUL,
                (vop == VecOp.MUL_CHANNEL) & (vec.src_b >= inp_depth),
                ~((vop == VecOp.MAX_POOL) | (vop == VecOp.COPY)) & (vec.param_addr >= PARAM_DEPTH),
                (vec.act == Activation.LUT) & (vec.lut_slot >= cfg.lut_slots),
            ).any(),
        )

        # Stage 2: the field verdict ``early``, in the order of bamboo.sim.isa (the first
        # failing check wins): the fetch fault, the opcode, the high bits, the fields.
        early_now = Signal(ErrorCode)
        with m.If(fault_r == Fault.AXI_ERROR):
            m.d.comb += early_now.eq(ErrorCode.AXI_ERROR)
        with m.Elif(fault_r == Fault.MISALIGNED):
            m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
        with m.Elif(illegal_r):
            m.d.comb += early_now.eq(ErrorCode.ILLEGAL_OPCODE)
        with m.Elif(high):
            m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
        with m.Elif(is_vec_r & vpix_r):
            if self.vector:
                with m.If(vec_bad):
                    m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
            else:
                m.d.comb += early_now.eq(ErrorCode.ILLEGAL_OPCODE)
        with m.Elif((to_load & ld_bad) | (to_store & st_bad) | (is_conv_r & cv_bad)):
            m.d.comb += early_now.eq(ErrorCode.MALFORMED_INSTRUCTION)
        # ... and the extents, the window's row offsets (CONV or VEC), the partial sums of
        # the bounds.
        n = n_a * n_b
        (early, n_words, taps, row_off, ker_off, inp_part, v_win_part) = stage(
            early=early_now,
            n_words=Mux(to_load, n, pix),  # LOAD's padded tile, STORE's
            taps=Mux(depthwise, cv.kernel_h, n),
            row_off=rows * s0["in_w"],
            ker_off=ker_rows * s0["in_w"],
            inp_part=inp_base + off + cols + ker_cols,
            v_win_part=v_win_base + cols,
        )
        # end = dram_addr + (extent << elog2) > window_size, as extent > room >> elog2
        # (floored, and negative when dram_addr is past the window)
        (v_a, v_b, out_end, words_base, extent, room_elems) = stage(
            v_a=v_a1 + off,  # v_a_max - INP depth
            v_b=v_b1 + off,
            out_end=Mux(is_conv_r, cv.out_addr, vec.out_addr) + pix,
            words_base=Mux(to_load, ld.sram_addr, sto.sram_addr) - words_bound,
            extent=off + ld.x_size,  # elements
            room_elems=room >> elog2_r,
        )
        # Which sums of Stage 3 make ``late`` (every check of ``late`` is MALFORMED and
        # ranks after ``early``'s, then the window: LOAD, STORE).
        vec_pix = is_vec_r & vpix_r if self.vector else 0
        (early_any, dma, pix_over, check_win, check_a, check_b) = stage(
            early_any=early_now != ErrorCode.NONE,
            dma=to_load | to_store,
            pix_over=pix > cfg.acc_buffer_depth,
            check_win=vec_pix & pool_r,
            check_a=vec_pix & ~pool_r,
            check_b=vec_pix & two_r,
        )
        at_least = lambda s: ~s[-1]  # noqa: E731  a sum of "x - bound" is not negative

        # Stage 3: the sums (their sign bits are the checks) and the other comparisons.
        align = Mux(elog2_r < log2(bus), (Const(1, 16) << elog2_r) - 1, bus - 1)
        (inp_sum, v_win_sum, words_sum, wgt_sum) = stage(
            inp_sum=inp_part + row_off + ker_off,  # inp_max - INP depth
            v_win_sum=v_win_part + row_off + ker_off,  # v_win_max - INP depth
            words_sum=words_base + n_words,  # words_end - depth - 1
            wgt_sum=wgt_base + taps,  # wgt_end - WGT depth - 1
        )
        out_over = out_end > cfg.output_buffer_depth
        misaligned = ((self.window_base + ld.dram_addr) & align) != 0
        (late_flags, dma_outside) = stage(
            # the checks of ``late`` that are not a sign of Stage 3
            late_flags=Mux(
                dma,
                misaligned,
                (is_conv_r & (pix_over | (emit_r & out_over)))
                | (vec_pix & out_over)
                | (check_a & at_least(v_a))
                | (check_b & at_least(v_b)),
            ),
            dma_outside=dma & (extent > room_elems),
        )

        # CHECK: the verdict from registers and Stage 3's sign bits.
        late = Cat(
            late_flags,
            dma & at_least(words_sum),
            is_conv_r & (at_least(wgt_sum) | at_least(inp_sum)),
            check_win & at_least(v_win_sum),
        ).any()
        bad = early_any | late | dma_outside
        # the code of a bad instruction (ErrorCode.NONE otherwise, never read)
        code = Mux(
            early_any,
            early,
            Mux(late, ErrorCode.MALFORMED_INSTRUCTION, ErrorCode.DMA_OUT_OF_WINDOW),
        )

        # The queue the instruction goes to, registered in Stage 1 (the queues' valid and
        # their FIFO levels then start at a register).
        target_ready = Mux(
            to_load, self.o_load.ready, Mux(to_store, self.o_store.ready, self.o_compute.ready)
        )
        for o in (self.o_load, self.o_store, self.o_compute):
            m.d.comb += o.payload.eq(cur)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [
                        count.eq(self.insn_count - 1),
                        dispatched.eq(0),
                        self.all_dispatched.eq(self.insn_count == 0),
                    ]
                with m.Elif(~self.all_dispatched):
                    accept(m, self.i_insn, cur, "S1")
                    with m.If(self.i_insn.valid):
                        m.d.sync += [s0[name].eq(v) for name, v in taken.items()]
            with m.State("S1"):
                m.d.comb += self.busy.eq(1)
                m.next = "S2"
            with m.State("S2"):
                m.d.comb += self.busy.eq(1)
                m.next = "S3"
            with m.State("S3"):
                m.d.comb += self.busy.eq(1)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.If(bad):
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
                    with m.If(is_finish_r | last):
                        m.d.sync += self.all_dispatched.eq(1)
                    m.next = "IDLE"
            with m.State("HALT"):
                m.d.sync += [
                    self.error.eq(0),
                    self.error_code.eq(ErrorCode.NONE),
                    self.error_index.eq(0),
                ]
        return m
