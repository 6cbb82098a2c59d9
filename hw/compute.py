"""The CONV sequencer: runs one CONV instruction through the systolic array.

A walker (:class:`~bamboo.hw.walker.DenseWalker`, or
:class:`~bamboo.hw.depthwise.DepthwiseWalker` for ``mode`` DEPTHWISE) issues one
command per word entering the array. For each tap ``n`` (dense: ``blk``, ``ky``,
``kx`` in that order; depthwise: ``ky``) the unit loads WGT word ``wgt_addr + n``
into one weight bank of the array, alternating banks, while the previous tap still
streams. The column sums leaving the array are added to the command's ACC word
(``cols`` int32); the first tap of an instruction with ``acc_init`` overwrites
instead (the bias is added once, in post-processing, when ``acc_emit`` drains the
accumulators to ``o_acc``). See docs/compute.md.

The drain is an emitter of its own. With ``config.acc_banks`` 2 (ping-pong), ACC is two
memories: a CONV with ``acc_emit`` hands its bank to the emitter once its last sum is
written, and the next CONV accumulates in the other bank while the emitter drains the
first. The hand-over waits for the emitter to be free, so each bank holds one emitting
instruction at a time; with one bank a CONV is taken only while the emitter is idle.
Instructions finish in order: ``status.done`` pulses at the end of an emit, or, for a
CONV without ``acc_emit``, at the end of its sums once no emit is left before it.

Pipeline, counted from the cycle a command issues (Stage 0):
Stage 1 INP data, Stage 2 ``x - x_zp`` enters the array, Stage 2 + LATENCY the
column sums leave it and the ACC read is issued, Stage 3 + LATENCY the old
accumulators are registered, Stage 4 + LATENCY the sum is written back.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.config import AcceleratorConfig
from ..arch.isa import ConvMode, Opcode
from .array import SystolicArray, weight_layout
from .depthwise import DepthwiseWalker, depthwise_geometry
from .isa_layout import instruction_layout
from .pipeline import accept
from .walker import Countdown, DenseWalker

__all__ = ["ComputeUnit", "StatusSignature", "acc_layout", "conv_cycles"]


def acc_layout(config):
    """One ACC word / ``o_acc`` beat: ``cols`` int32 accumulators of one pixel."""
    return data.ArrayLayout(signed(32), config.cols)


def conv_cycles(config, words_per_tap, taps, emit_pixels=0, depthwise=False):
    """Cycles a CONV instruction keeps :class:`ComputeUnit` busy (``status.busy``).

    Exact for this sequencer (the tests check it against the RTL): the compiler's
    cost model. One more idle cycle separates instructions.

    Parameters
    ----------
    config : AcceleratorConfig
    words_per_tap : int
        Words streamed per tap: dense ``out_h * out_w``; depthwise
        ``out_h * (stride_w * (out_w - 1) + kernel_w)``.
    taps : int
        Weight words: dense ``kernel_h * kernel_w * in_blocks``; depthwise ``kernel_h``.
    emit_pixels : int
        ``out_h * out_w`` if ``acc_emit``, else 0. The drain takes a beat a cycle, or
        ``config.emit_turns(depthwise)`` cycles a beat when post-processing has fewer lanes
        than columns (hw/postproc.py takes a beat with its last lane group, and skips the
        groups past a depthwise CONV's channels); no other back-pressure.
    depthwise : bool
        The CONV is depthwise (``mode`` DEPTHWISE).
    """
    latency = config.array_latency  # SystolicArray.LATENCY
    cool = latency  # ComputeUnit.COOL
    # Tap j starts streaming one cycle after its weights load; the load waits for
    # tap j-2 to leave the same bank.
    end = [-1 - cool, -1 - cool]  # taps -2, -1: never binding
    start = 1
    for j in range(taps):
        start = max(end[-1] + 1, end[-2] + cool + 1, 1)
        end.append(start + words_per_tap - 1)
    run = end[-1] + 1
    emit = emit_pixels * config.emit_turns(depthwise) + 1 if emit_pixels else 0
    return 1 + run + (latency + 4) + emit


class StatusSignature(wiring.Signature):
    """Strobes for the performance counters, one bit each, driven by the unit.

    ``busy``: an instruction is in progress (accumulating or emitting); ``active``: a
    word whose result is kept entered the array (dense: ``rows * cols`` MAC slots used);
    ``stall_weight``: streaming waits for a weight bank; ``stall_emit``: post-processing
    holds ``o_acc``; ``done``: one-cycle pulse when an instruction finishes, in the order
    they were taken (the queue then pushes its tokens).
    """

    def __init__(self):
        super().__init__(
            {name: Out(1) for name in ("busy", "active", "stall_weight", "stall_emit", "done")}
        )


class ComputeUnit(wiring.Component):
    """CONV engine: INP/WGT/ACC buffers, the sequencer and the systolic array.

    Parameters
    ----------
    config : AcceleratorConfig
        Array shape and buffer depths.

    Members
    -------
    i_insn : ``In(stream.Signature(instruction_layout(Opcode.CONV)))``
        Decoded CONV instruction; accepted only when idle. ``mode`` DENSE or DEPTHWISE.
    o_acc : ``Out(stream.Signature({acc, out_addr, last, insn}))``
        At ``acc_emit``: one beat per output pixel, in raster order. ``acc[c]`` is
        output channel ``c`` of the block (PARAM ``param_addr`` lane ``c``),
        ``out_addr`` the OUT word, ``insn`` the instruction (for post-processing).
    inp_w, wgt_w : ``Out(memory.WritePort.Signature(...))``
        Write ports of INP (``rows`` uint8 codes) and WGT (:func:`weight_layout`),
        for the load unit.
    inp_r : ``Out(memory.ReadPort.Signature(...))``
        An INP read port lent to the vector unit while no CONV runs (the compute queue
        runs one instruction at a time); a depthwise CONV uses it as its second port.
    status : ``Out(StatusSignature())``
    kept_done : ``Out(1)``
        Pulse with ``status.done`` for a CONV without ``acc_emit`` (its sums stay in
        ACC): the executor, which follows an emit's beats through post-processing, ends
        such an instruction itself.
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        self.config = config
        R, C = config.rows, config.cols
        self.insn_layout = instruction_layout(Opcode.CONV)
        self.inp_aw = config.buffer_addr_width(config.input_buffer_depth)
        self.wgt_aw = config.buffer_addr_width(config.weight_buffer_depth)
        self.acc_aw = config.buffer_addr_width(config.acc_buffer_depth)
        self.inp_mem = memory.Memory(
            shape=data.ArrayLayout(unsigned(8), R), depth=config.input_buffer_depth, init=[]
        )
        self.wgt_mem = memory.Memory(
            shape=weight_layout(R, C), depth=config.weight_buffer_depth, init=[]
        )
        self.acc_mems = [
            memory.Memory(shape=acc_layout(config), depth=config.acc_buffer_depth, init=[])
            for _ in range(config.acc_banks)
        ]
        self.walkers = {
            ConvMode.DENSE: DenseWalker(self.insn_layout, self.acc_aw),
            ConvMode.DEPTHWISE: DepthwiseWalker(
                self.insn_layout, self.acc_aw, R, config.depthwise_groups
            ),
        }
        self.array = SystolicArray(
            R,
            C,
            packed=config.dsp_packing,
            dw_channels=config.depthwise_channels,
            dw_groups=config.depthwise_groups,
            tag_shape=data.StructLayout({"addr": self.acc_aw, "first": 1}),
        )
        assert self.array.LATENCY == config.array_latency
        # Pixel issue -> array input is 2 cycles, weight issue -> array input 1 cycle;
        # a bank may be reissued COOL cycles after the last pixel that used it issued.
        self.COOL = self.array.WEIGHT_GAP + 2 - 1
        # Last pixel issued in cycle k -> its sum readable from ACC in cycle k + LATENCY + 5.
        self.DRAIN = self.array.LATENCY + 3
        super().__init__(
            {
                "i_insn": In(stream.Signature(self.insn_layout)),
                "o_acc": Out(
                    stream.Signature(
                        data.StructLayout(
                            {
                                "acc": acc_layout(config),
                                "out_addr": 16,
                                "last": 1,
                                "insn": self.insn_layout,
                            }
                        )
                    )
                ),
                "inp_w": Out(
                    memory.WritePort.Signature(
                        addr_width=self.inp_aw, shape=data.ArrayLayout(unsigned(8), R)
                    )
                ),
                "wgt_w": Out(
                    memory.WritePort.Signature(addr_width=self.wgt_aw, shape=weight_layout(R, C))
                ),
                "inp_r": Out(
                    memory.ReadPort.Signature(
                        addr_width=self.inp_aw, shape=data.ArrayLayout(unsigned(8), R)
                    )
                ),
                "status": Out(StatusSignature()),
                "kept_done": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        R, C = self.config.rows, self.config.cols
        m.submodules.inp_mem = self.inp_mem
        m.submodules.wgt_mem = self.wgt_mem
        for k, mem in enumerate(self.acc_mems):
            m.submodules[f"acc_mem{k or ''}"] = mem
        m.submodules.array = array = self.array
        wiring.connect(m, wiring.flipped(self.inp_w), self.inp_mem.write_port())
        wiring.connect(m, wiring.flipped(self.wgt_w), self.wgt_mem.write_port())
        # INP read ports: (group g, block b) of a depthwise word is port g * blocks + b;
        # port 0 serves dense CONV too, port 1 is the one lent to the vector unit.
        blocks, groups = self.config.depthwise_blocks, self.config.depthwise_groups
        inp_ports = [self.inp_mem.read_port() for _ in range(max(2, blocks * groups))]
        wgt_rd = self.wgt_mem.read_port()
        banks = self.config.acc_banks
        acc_wr = [mem.write_port() for mem in self.acc_mems]
        # Transparent: a 1-pixel tap rereads the word written in the same cycle.
        acc_rd = [mem.read_port(transparent_for=(w,)) for mem, w in zip(self.acc_mems, acc_wr)]
        # The bank the MACs accumulate in and the one the emitter drains (0 bits for one).
        mac_bank, emit_bank = Signal(range(banks), name="mac_bank"), Signal(range(banks))

        def on(bank, k):
            return bank == k if banks > 1 else 1

        def pick(bank, ports):
            if banks == 1:
                return ports[0].data
            return data.View(acc_layout(self.config), Mux(bank, ports[1].data, ports[0].data))

        insn = Signal(self.insn_layout)
        # insn.mode == DEPTHWISE, decoded as the instruction is taken: the walker choice
        # and the array's mode come from a register, not from the decode.
        depthwise = Signal()
        grouped, _ = depthwise_geometry(insn, R, groups)
        dw_grouped = Signal()  # row groups hold kernel rows (set at SETUP)
        port_off = [Signal(self.inp_aw, name=f"port_off{k}") for k in range(blocks * groups)]
        n_pix = Signal(len(insn.out_h) + len(insn.out_w))  # out_h * out_w, beats of the emit

        # The walker of the instruction's mode; both see the same instruction.
        cmd = Signal(self.walkers[ConvMode.DENSE].o_cmd.payload.shape())
        # ``issue`` per walker, registers of their own: a walker's ready (its counters'
        # enable) does not pass through the mode's decode.
        walker_issue = {mode: Signal(name=f"issue_{int(mode)}") for mode in self.walkers}
        walker_mine = {}
        for mode, walker in self.walkers.items():
            m.submodules[f"walk_{mode}"] = walker
            # Any mode but DEPTHWISE walks dense, so a bad mode cannot hang the unit.
            mine = depthwise if mode == ConvMode.DEPTHWISE else ~depthwise
            m.d.comb += [
                walker.i_insn.payload.eq(self.i_insn.payload),
                walker.i_insn.valid.eq(
                    self.i_insn.valid
                    & self.i_insn.ready
                    & (
                        (self.i_insn.payload.mode == ConvMode.DEPTHWISE)
                        == (mode == ConvMode.DEPTHWISE)
                    )
                ),
                walker.o_cmd.ready.eq(walker_issue[mode]),
            ]
            walker_mine[mode] = mine
            with m.If(mine):
                m.d.comb += cmd.eq(walker.o_cmd.payload)

        # Weight banks: tap wl goes to bank wl % 2 once the last command using that
        # bank (tap wl - 2) is COOL cycles old, at most one tap ahead of the stream.
        # wl is kept as what the decisions need, all registers: the WGT address
        # (wgt_addr + wl), its bank (wl % 2) and ahead = wl - cmd.tap (0 .. 2), which the
        # walkers' tap_last flag moves; cmd.tap_final stops the loads at the last tap.
        wgt_ptr, wbank = Signal(self.wgt_aw), Signal()
        ahead = Signal(range(3))
        cool = [Signal(range(self.COOL + 1), name=f"cool{b}", init=self.COOL) for b in range(2)]
        cold = [Signal(name=f"cold{b}", init=1) for b in range(2)]  # cool[b] == COOL
        issue, load, setup = Signal(), Signal(), Signal()
        drain = Signal(range(self.DRAIN + 1))
        drained = Signal()  # drain == 0, a register
        # The emit's length kept for the hand-over, from registers: the emitter's own
        # Countdown may still run the emit before.
        pix_m1, pix_one, pix_two = Signal(len(n_pix)), Signal(), Signal()
        emit_ptr = Signal(self.acc_aw)
        out_ptr = Signal.like(insn.out_addr)  # OUT word of the beat
        beats = Countdown(m, len(n_pix), "beats")  # o_acc beats of the emit
        more, emitting, advance = Signal(), Signal(), Signal()
        # The emitter drains bank k: registers, so a bank's read address and enable take
        # one select from a flip-flop (with one bank, ``emitting``).
        emit_on = [emitting] if banks == 1 else [Signal(name=f"emit_on{k}") for k in range(banks)]
        # The emitting instruction: with one bank the MACs wait for the emitter, so it is
        # still the instruction register.
        emit_insn = insn if banks == 1 else Signal(self.insn_layout, name="emit_insn")
        m.d.comb += self.status.active.eq(issue & cmd.write)
        # RUN, as flags: streaming (the state is RUN) and issue, a register too: the
        # next cycle issues if its ahead is not 0. The walker is valid whenever ahead
        # is: it leaves ARM in the cycle the first weight load can make ahead 1.
        streaming = Signal()
        ahead_next = Signal(range(3))
        m.d.comb += [
            load.eq(
                streaming
                & ((ahead == 0) | ((ahead == 1) & ~cmd.tap_final))
                & Mux(wbank, cold[1], cold[0])
            ),
            ahead_next.eq(ahead + load - (issue & cmd.tap_last)),
            self.status.stall_weight.eq(streaming & ~issue),
        ]
        with m.If(load):
            m.d.sync += [wgt_ptr.eq(wgt_ptr + 1), wbank.eq(~wbank)]
        with m.If(streaming):
            issue_next = (ahead_next != 0) & ~(issue & cmd.last)
            m.d.sync += [ahead.eq(ahead_next), issue.eq(issue_next)]
            for mode, mine in walker_mine.items():
                m.d.sync += walker_issue[mode].eq(issue_next & mine)
        # The MACs' side has an instruction (taken, not yet past its DRAIN), a register.
        mac_busy = Signal()
        with m.If(self.i_insn.valid & self.i_insn.ready):
            m.d.sync += mac_busy.eq(1)

        with m.FSM():
            with m.State("IDLE"):
                # One bank: the emit before must have left it. Two: the hand-over flipped
                # the MACs to the bank the emitter is not draining.
                with m.If(~emitting if banks == 1 else 1):
                    accept(m, self.i_insn, insn, "SETUP")
            with m.State("SETUP"):
                m.d.comb += setup.eq(1)
                m.d.sync += [
                    dw_grouped.eq(grouped),
                    n_pix.eq(insn.out_h * insn.out_w),
                    wgt_ptr.eq(insn.wgt_addr),
                    wbank.eq(0),
                    ahead.eq(0),
                    streaming.eq(1),
                ]
                m.next = "RUN"
            with m.State("RUN"):
                # n_pix is set from SETUP on.
                m.d.sync += [pix_m1.eq(n_pix - 1), pix_one.eq(n_pix == 1), pix_two.eq(n_pix == 2)]
                with m.If(issue & cmd.last):
                    m.d.sync += [drain.eq(self.DRAIN), drained.eq(0), streaming.eq(0)]
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                # The last sum is written when ``drain`` reaches 0; the instruction leaves
                # once the emitter is free (at once with one bank: it was idle at SETUP).
                # drain runs on (wrapping) while the instruction waits: only ``drained``
                # is read then.
                m.d.sync += [drain.eq(drain - 1), drained.eq(drained | (drain == 1))]
                with m.If(drained & ~emitting):
                    m.d.sync += mac_busy.eq(0)
                    with m.If(insn.acc_emit):
                        # Hand the bank to the emitter.
                        m.d.sync += [
                            emit_ptr.eq(0),
                            out_ptr.eq(insn.out_addr),
                            more.eq(1),
                            emitting.eq(1),
                        ]
                        beats.start(m, pix_m1, pix_one, pix_two)
                        if banks > 1:
                            m.d.sync += [
                                emit_insn.eq(insn),
                                emit_bank.eq(mac_bank),
                                mac_bank.eq(~mac_bank),
                            ]
                            m.d.sync += [emit_on[k].eq(on(mac_bank, k)) for k in range(banks)]
                    with m.Else():
                        m.d.comb += [self.status.done.eq(1), self.kept_done.eq(1)]
                    m.next = "IDLE"

        # The emitter. The ACC read port's output register doubles as the o_acc register:
        # it only advances when the beat is taken, so backpressure needs no skid buffer.
        # One advance past the last beat ends the instruction.
        m.d.comb += advance.eq(~self.o_acc.valid | self.o_acc.ready)
        with m.If(emitting & advance):
            m.d.sync += [
                self.o_acc.valid.eq(more),
                self.o_acc.payload.out_addr.eq(out_ptr),
                self.o_acc.payload.last.eq(beats.last),
            ]
            with m.If(more):
                beats.step(m)
                m.d.sync += [
                    emit_ptr.eq(emit_ptr + 1),
                    out_ptr.eq(out_ptr + 1),
                    more.eq(~beats.last),
                ]
            with m.Else():
                m.d.sync += [emitting.eq(0)] + [on_k.eq(0) for on_k in emit_on]
                m.d.comb += self.status.done.eq(1)
        # A bank's read port: the emitter's while it drains that bank, else the MACs'
        # (Stage 2 + LATENCY below; a read of the bank the MACs are not in is not used).
        for k in range(banks):
            with m.If(emit_on[k]):
                m.d.comb += [acc_rd[k].en.eq(advance), acc_rd[k].addr.eq(emit_ptr)]
            with m.Else():
                psum = array.o_psum
                m.d.comb += [acc_rd[k].en.eq(psum.valid), acc_rd[k].addr.eq(psum.payload.tag.addr)]
        with m.If(emitting):
            m.d.comb += self.status.stall_emit.eq(~advance)
        m.d.comb += [
            self.status.busy.eq(mac_busy | emitting),
            self.o_acc.payload.acc.eq(pick(emit_bank, acc_rd)),
            self.o_acc.payload.insn.eq(emit_insn),
        ]
        for b in range(2):
            with m.If(issue & (cmd.tap[0] == b)):
                m.d.sync += [cool[b].eq(1), cold[b].eq(self.COOL == 1)]
            with m.Elif(~cold[b]):
                m.d.sync += [cool[b].eq(cool[b] + 1), cold[b].eq(cool[b] == self.COOL - 1)]

        # Stage 0: reads. The read ports hold their data between issues, and the
        # stage registers below hold too: in depthwise mode a stalled stream must
        # keep presenting words of banks that hold this instruction's weights.
        m.d.comb += [wgt_rd.addr.eq(wgt_ptr), wgt_rd.en.eq(load)]
        # Port (g, b) reads block b of group g's input row: g kernel rows further down.
        with m.If(self.i_insn.valid & self.i_insn.ready):
            m.d.sync += depthwise.eq(self.i_insn.payload.mode == ConvMode.DEPTHWISE)
        # The array's copy of the mode, taken in SETUP (the first weight load is in RUN):
        # the walkers' selection and the array's lanes do not share one register's fanout.
        array_dw = Signal()
        with m.If(setup):
            m.d.sync += array_dw.eq(depthwise)
        # From the instruction register in two steps, SETUP (a kernel row's pitch) and the
        # cycle after (the sums): the first read issues two cycles after SETUP.
        dil_pitch, setup_d = Signal(self.inp_aw, name="dil_pitch"), Signal(name="setup_d")
        m.d.sync += setup_d.eq(setup)
        with m.If(setup):
            m.d.sync += dil_pitch.eq(insn.dilation_h * insn.in_w)
        with m.If(setup_d):
            for g in range(groups):
                for b in range(blocks):
                    m.d.sync += port_off[g * blocks + b].eq(
                        b * insn.inp_block_stride + g * dil_pitch
                    )
        running = mac_busy
        dw_cmd = self.walkers[ConvMode.DEPTHWISE].o_cmd.payload
        for k, port in enumerate(inp_ports):
            if k < len(port_off):
                # Ports past 0 serve depthwise words only: from that walker, no mode mux.
                addr = dw_cmd.inp_addr + port_off[k] if k else cmd.inp_addr
                m.d.comb += [port.addr.eq(addr), port.en.eq(issue)]
            if k == 1:
                # Lent to the vector unit while idle.
                with m.If(~running):
                    m.d.comb += [port.addr.eq(self.inp_r.addr), port.en.eq(self.inp_r.en)]
                m.d.comb += self.inp_r.data.eq(port.data)
        v1, wv1, wbank1 = Signal(), Signal(), Signal()
        bank1, tag1 = Signal(), Signal.like(array.i_data.payload.tag)
        m.d.sync += [v1.eq(issue & cmd.write), wv1.eq(load), wbank1.eq(wbank)]
        with m.If(issue):
            m.d.sync += [
                bank1.eq(cmd.tap[0]),
                tag1.addr.eq(cmd.acc_addr),
                tag1.first.eq(insn.acc_init & (cmd.tap == 0)),
            ]
        # Stage 1: weights into the array; codes to signed, minus the zero point.
        m.d.comb += [
            array.i_weight.valid.eq(wv1),
            array.i_weight.payload.bank.eq(wbank1),
            array.i_weight.payload.w.eq(wgt_rd.data),
            array.depthwise.eq(array_dw),
            array.dw_grouped.eq(dw_grouped),
        ]
        zp = Mux(insn.signed, insn.in_zp.as_signed(), insn.in_zp)
        x, dw_x, N = array.i_data.payload.x, array.i_data.payload.dw, self.config.depthwise_channels

        def x_minus_zp(k, r):
            code = inp_ports[k].data[r]
            return Mux(insn.signed, code.as_signed(), code) - zp

        # Port 0 is the dense word and block 0 of depthwise group 0; port (g, b) gives
        # channels b * rows .. of group g.
        for r in range(R):
            m.d.sync += x[r].eq(x_minus_zp(0, r))
            if r < N:
                m.d.comb += dw_x[0][r].eq(x[r])
        for k in range(1, blocks * groups):
            g, b = divmod(k, blocks)
            for r in range(min(R, N - b * R)):
                m.d.sync += dw_x[g][b * R + r].eq(x_minus_zp(k, r))
        m.d.sync += [
            array.i_data.valid.eq(v1),
            array.i_data.payload.bank.eq(bank1),
            array.i_data.payload.tag.eq(tag1),
        ]

        # Stage 2 + LATENCY: column sums out; fetch the accumulators they add to.
        out = array.o_psum
        psum3 = Signal(acc_layout(self.config), reset_less=True)
        tag3, v3 = Signal.like(out.payload.tag), Signal()
        m.d.sync += [psum3.eq(out.payload.psum), tag3.eq(out.payload.tag), v3.eq(out.valid)]
        # Stage 3 + LATENCY: the old accumulators into a register, so the BRAM's output
        # does not lead the adder. The word written this cycle (the previous sum) is not
        # in the BRAM yet when the next sum to the same word read it: ``forward`` (same
        # word, compared a stage earlier) takes the adder's output instead. The write of
        # the sum before that is seen through the read port's transparency.
        psum4, tag4, v4 = Signal.like(psum3, reset_less=True), Signal.like(tag3), Signal()
        old4, forward = Signal.like(psum3, reset_less=True), Signal()
        m.d.sync += [
            psum4.eq(psum3),
            tag4.eq(tag3),
            v4.eq(v3),
            forward.eq(v3 & (out.payload.tag.addr == tag3.addr)),
        ]
        sums = Signal(acc_layout(self.config))
        old = pick(mac_bank, acc_rd)
        for c in range(C):
            kept = Mux(forward, sums[c], old[c])
            m.d.sync += old4[c].eq(Mux(tag3.first, 0, kept))
        # Stage 4 + LATENCY: add and write back (int32, wrapping like the hardware).
        for c in range(C):
            m.d.comb += sums[c].eq(old4[c] + psum4[c])
        for k in range(banks):
            m.d.comb += [
                acc_wr[k].data.eq(sums),
                acc_wr[k].addr.eq(tag4.addr),
                acc_wr[k].en.eq(v4 & on(mac_bank, k)),
            ]
        return m
