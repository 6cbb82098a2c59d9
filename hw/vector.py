"""The vector unit: runs one VEC instruction (ADD, pools, MUL, COPY) from INP to OUT.

Semantics: the VEC pseudo-code of ``arch/isa.py``, executed exactly as
``bamboo.sim.isa_ops.vec`` does (the tests compare the two on random
instructions). A sequencer reads INP words, one per cycle, through one read port:
for every output pixel the elements of its window (pools), its two operands
(ADD, MUL: ``a`` then ``b``) or its one operand (COPY, MUL_CHANNEL). A reducer
folds them per lane (max, sum of ``code - a_zp``, or holds ``a``) and emits one
beat per pixel into ``rows`` lanes, each::

    ADD, MUL, MUL_CHANNEL -> FusedMultiplyAdd x2 -> round to integer -+
    AVG_POOL              -> Requantizer (PARAM bias, m, e per lane) -+-> clamp -> activation
    MAX_POOL, COPY        -> (delay) ---------------------------------+

ADD is onnxruntime's x86 formula ``sat(rint(fma(a, rA, fma(b, rB, K))))`` with
float32 ``rA``, ``rB``, ``K`` from PARAM (Ref: docs/numerics.md, "Add"), done
in integers by :class:`~bamboo.hw.fma.FusedMultiplyAdd`. MUL and MUL_CHANNEL
(``runtime.elementwise.mul_channel``'s integer form) use the same two units:
``round24(round24(p * R) + out_zp)`` is ``fma(out_zp, 1.0, fma(p, R, 0))`` with
``R = m * 2**e`` (PARAM lane 0) and ``p = (a - a_zp) * (s - b_zp)``.

The unit reads PARAM word ``param_addr`` once per instruction. OUT lanes ``>= rows``
are written 0. The pipeline never stalls: with the ports to itself (the compute
queue runs one instruction at a time) it issues one INP read per cycle and writes
a pixel :data:`VectorUnit.LATENCY` cycles after the read of its last element.

Per lane: two FMAs, a requantizer and the activation. ADD and MUL read two words per
pixel, so half as many FMA lanes, each taking two lanes in turn, keep their rate
(``AcceleratorConfig.vector_lanes``). What it costs: docs/hardware.md ("Vector unit
cost"), measured by ``make resources``.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from bamboo.hw.pipeline import register

from ..arch.config import AcceleratorConfig
from ..arch.isa import Activation as IsaActivation
from ..arch.isa import Opcode, VecOp
from ..arch.layout import PARAM_DEPTH
from .fma import (
    Float,
    FusedMultiplyAdd,
    addend_keep,
    addend_layout,
    addend_mantissa,
    addend_shift,
    addend_shift_layout,
    float_const,
    mantissa_float,
    partial_layout,
    shift_addend,
    unpack_f32,
    window_addend,
)
from .isa_layout import add_param_layout, instruction_layout, param_lane_layout
from .postproc import Activation, ActivationUnit, LutWriteSignature
from .requantizer import Requantizer, register_fields, round_decode, round_select
from .walker import Countdown, both_last_next, pick

__all__ = ["VectorStatusSignature", "VectorUnit"]

# The first FMA's integer: a code (ADD) or (a - a_zp) * (s - b_zp), |p| <= 255 * 255 < 2**16.
# 17 bits keep |x| within the DSP48E2's 18-bit signed port: one DSP per product, not two.
_X1 = 17

# VEC.act feeds the activation lanes as it is: the ISA numbers them as hw.postproc does.
assert (
    IsaActivation.NONE,
    IsaActivation.LEAKY_SHIFT,
    IsaActivation.LEAKY_ROUNDED,
    IsaActivation.LUT,
) == tuple(a.value for a in Activation)


class VectorStatusSignature(wiring.Signature):
    """Strobes for the performance counters, driven by the unit.

    ``busy``: an instruction is in progress; ``active``: an OUT word is written;
    ``stall``: busy but no INP read issued (PARAM fetch, setup, pipeline drain);
    ``done``: one-cycle pulse when the instruction's last OUT word is written (or at
    once for an instruction without pixels).
    """

    def __init__(self):
        super().__init__({name: Out(1) for name in ("busy", "active", "stall", "done")})


class VectorUnit(wiring.Component):
    """VEC engine: sequencer, reducer and ``config.rows`` arithmetic lanes.

    Parameters
    ----------
    config : AcceleratorConfig
        ``rows`` lanes (INP word), ``cols`` codes per OUT word, buffer depths.
    param_depth : int
        Words of the PARAM buffer (sets the width of ``param_r.addr``).

    Members
    -------
    i_insn : ``In(stream.Signature(instruction_layout(Opcode.VEC)))``
        Decoded VEC instruction; accepted only when idle.
    inp_r : ``In(memory.ReadPort.Signature(...))``
        Read port of INP (``rows`` uint8 codes, synchronous), driven by the unit.
    param_r : ``In(memory.ReadPort.Signature(...))``
        Read port of PARAM (``unsigned(64 * cols)``: ``cols`` lanes, arch/layout.py), read
        once per instruction, in the cycle the instruction is accepted.
    out_w : ``In(memory.WritePort.Signature(...))``
        Write port of OUT (``cols`` codes), driven by the unit.
    lut_w : ``In(LutWriteSignature(config.lut_slots))``
        Activation table writes (the unit keeps its own copies, one per lane).
    status : ``Out(VectorStatusSignature())``
    """

    #: Cycles from an INP read's issue to the lanes' stage 0: the registered address, the
    #: read data, its register (the block RAM's output register), the reducer.
    _READ = 4
    _CORE = 2 + 2 * FusedMultiplyAdd.LATENCY + 4  # lane input to activation, every op
    #: Cycles from the INP read of a pixel's last element to its OUT write (read data,
    #: reducer, lanes, activation).
    LATENCY = _READ + _CORE + ActivationUnit.LATENCY
    #: Cycles from accepting an instruction to its first INP read (PARAM read, setup).
    START = 3

    @classmethod
    def cycles(cls, config, pixels, elements):
        """Cycles from accepting an instruction to its ``done`` pulse (the compiler's cost).

        ``elements`` INP reads per pixel: pools ``kernel_h * kernel_w``, ADD and MUL 2,
        else 1. An instruction without pixels is done in the cycle it is accepted. The
        lanes take ``T = config.vector_turns`` cycles per pixel: pixels start
        ``max(elements, T)`` cycles apart, and the last lane group of a pixel enters
        the lanes ``T - 1`` cycles after its first.
        """
        if pixels == 0:
            return 0
        turns = config.vector_turns
        return cls.START + (pixels - 1) * max(elements, turns) + elements + cls.LATENCY + turns - 1

    def __init__(self, config, param_depth=PARAM_DEPTH):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if config.cols < 2 or config.rows > config.cols:
            raise ValueError(
                f"the vector unit needs 2 <= cols and rows <= cols, not "
                f"rows {config.rows!r}, cols {config.cols!r}"
            )
        self.config = config
        self.lanes = config.vector_lanes or config.rows
        self.turns = config.vector_turns
        self.insn_layout = instruction_layout(Opcode.VEC)
        self.inp_aw = config.buffer_addr_width(config.input_buffer_depth)
        self.out_aw = config.buffer_addr_width(config.output_buffer_depth)
        self.param_aw = config.buffer_addr_width(param_depth)
        super().__init__(
            {
                "i_insn": In(stream.Signature(self.insn_layout)),
                "inp_r": In(
                    memory.ReadPort.Signature(
                        addr_width=self.inp_aw, shape=data.ArrayLayout(unsigned(8), config.rows)
                    )
                ),
                "param_r": In(
                    memory.ReadPort.Signature(
                        addr_width=self.param_aw, shape=unsigned(64 * config.cols)
                    )
                ),
                "out_w": In(
                    memory.WritePort.Signature(
                        addr_width=self.out_aw, shape=data.ArrayLayout(unsigned(8), config.cols)
                    )
                ),
                "lut_w": In(LutWriteSignature(config.lut_slots)),
                "status": Out(VectorStatusSignature()),
            }
        )

    def elaborate(self, platform):
        m = Module()
        B = self.config.rows
        V, T = self.lanes, self.turns  # lanes, and cycles to take B channels
        insn = Signal(self.insn_layout)
        # The operation decoded once, into flags registered with the instruction.
        ops = {
            "pool": (VecOp.MAX_POOL, VecOp.AVG_POOL),
            "two": (VecOp.ADD, VecOp.MUL),
            "fma_op": (VecOp.ADD, VecOp.MUL, VecOp.MUL_CHANNEL),
            "is_add": (VecOp.ADD,),
            "is_max": (VecOp.MAX_POOL,),
            "is_avg": (VecOp.AVG_POOL,),
            "is_mul_channel": (VecOp.MUL_CHANNEL,),
        }
        flags = {name: Signal(name=name) for name in ops}
        pool, two, fma_op = flags["pool"], flags["two"], flags["fma_op"]

        def code(v):
            """An 8-bit field or INP byte as the code it stands for, signed(9)."""
            return Mux(insn.signed, v.as_signed(), v.as_unsigned())

        def reg(value, name, shape=None):
            return register(m, value, name, shape)

        def ctl(value, name):
            """A control register: reset, unlike the datapath's (no X in simulation)."""
            sig = Signal(value.shape(), name=name)
            m.d.sync += sig.eq(value)
            return sig

        def delay(value, n, name):
            for k in range(n):
                value = reg(value, f"{name}_d{k + 1}")
            return value

        # ---- sequencer --------------------------------------------------------------------
        # Window geometry (0 reads as 1, as the simulator), set in PARAM.
        kh, kw = Signal.like(insn.kernel_h, name="kh"), Signal.like(insn.kernel_w, name="kw")
        sw = Signal.like(insn.stride_w, name="sw")
        step_h = Signal.like(insn.stride_h, name="step_h")
        # The loops (kx, ky: the window; ox, oy: the pixels) as down-counters whose
        # registered `last` flags decide every step: no counter compare on the RUN path.
        kx, ky = Countdown(m, len(kw), "kx"), Countdown(m, len(kh), "ky")
        ox, oy = Countdown(m, len(insn.out_w), "ox"), Countdown(m, len(insn.out_h), "oy")
        # The INP address, kept rather than summed: `ptr` is the next read, `win_ptr` its
        # window row's start, `pix_ptr` its pixel's window, `row_ptr` its output row's
        # first window. Each loop step is one add of a per-instruction step to one of
        # them (modulo the INP depth, as the address itself).
        ptr, win_ptr = Signal(self.inp_aw, name="ptr"), Signal(self.inp_aw, name="win_ptr")
        pix_ptr, row_ptr = Signal(self.inp_aw, name="pix_ptr"), Signal(self.inp_aw, name="row_ptr")
        # Window column step: 1, or src_b - src_a for ADD and MUL (a's word, then b's).
        col_step = Signal(self.inp_aw, name="col_step")
        in_w = Signal(self.inp_aw, name="in_w")
        row_step = Signal(self.inp_aw, name="row_step")  # INP words between output rows
        wr_addr = Signal(self.out_aw, name="wr_addr")
        lanes = max(B, 2)
        param = Signal(data.ArrayLayout(param_lane_layout(), lanes))
        s_word = Signal(data.ArrayLayout(unsigned(8), B))
        s_latch = Signal(name="s_latch")
        # `run` is the RUN state as a register of its own: the loops' enable.
        run, first = Signal(name="run"), Signal(name="first")
        # `last`: the pixel's last read (kx and ky last), a register of its own.
        last, final = Signal(name="last"), Signal(name="final")
        # Idle cycles after a pixel's reads so that pixels start >= T cycles apart.
        gap, gap_len = Signal(range(T + 1), name="gap"), Signal(range(T + 1), name="gap_len")
        # kh == a and kw == b for the windows smaller than T, registers set with kh and
        # kw: gap_len's table reads them, not two compares behind kh and kw's muxes.
        small = range(1, T)
        kh_is = {a: Signal(name=f"kh_is{a}") for a in small}
        kw_is = {b: Signal(name=f"kw_is{b}") for b in small}
        write = Signal(name="write")
        final_written = Signal(name="final_written")  # the last pixel's write, a cycle ago
        rd_addr, rd_en = Signal(self.inp_aw, name="rd_addr"), Signal(name="rd_en")
        m.d.sync += s_latch.eq(0)
        m.d.comb += [rd_addr.eq(ptr), rd_en.eq(run)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [
                    self.i_insn.ready.eq(1),
                    self.param_r.addr.eq(self.i_insn.payload.param_addr),
                    self.param_r.en.eq(1),
                ]
                with m.If(self.i_insn.valid):
                    m.d.sync += [
                        insn.eq(self.i_insn.payload),
                        wr_addr.eq(self.i_insn.payload.out_addr),
                    ]
                    for name, vops in ops.items():
                        vop_in = self.i_insn.payload.vop
                        m.d.sync += flags[name].eq(Cat(vop_in == v for v in vops).any())
                    with m.If((self.i_insn.payload.out_h == 0) | (self.i_insn.payload.out_w == 0)):
                        m.d.comb += self.status.done.eq(1)  # a barrier: tokens only
                    with m.Else():
                        m.next = "PARAM"
            with m.State("PARAM"):
                # The PARAM word read in IDLE; window geometry (0 reads as 1, as the simulator).
                kh_next = Mux(pool & (insn.kernel_h != 0), insn.kernel_h, 1)
                kw_next = Mux(pool, Mux(insn.kernel_w != 0, insn.kernel_w, 1), Mux(two, 2, 1))
                m.d.sync += [kh_is[a].eq(kh_next == a) for a in small]
                m.d.sync += [kw_is[b].eq(kw_next == b) for b in small]
                m.d.sync += [
                    param.eq(self.param_r.data[: len(param.as_value())]),
                    kh.eq(kh_next),
                    kw.eq(kw_next),
                    sw.eq(Mux(pool & (insn.stride_w != 0), insn.stride_w, 1)),
                    step_h.eq(Mux(pool & (insn.stride_h != 0), insn.stride_h, 1)),
                    ptr.eq(insn.src_a),
                    win_ptr.eq(insn.src_a),
                    pix_ptr.eq(insn.src_a),
                    row_ptr.eq(insn.src_a),
                    col_step.eq(Mux(two, insn.src_b - insn.src_a, 1)),
                    in_w.eq(insn.in_w),
                ]
                m.next = "SETUP"
            with m.State("SETUP"):
                # MUL_CHANNEL's scale word; the lanes' constants settle from `param`.
                m.d.comb += [rd_addr.eq(insn.src_b), rd_en.eq(1)]
                kx.start(m, kw - 1, kw == 1, kw == 2)
                ky.start(m, kh - 1, kh == 1, kh == 2)
                ox.start(m, insn.out_w - 1, insn.out_w == 1, insn.out_w == 2)
                oy.start(m, insn.out_h - 1, insn.out_h == 1, insn.out_h == 2)
                m.d.sync += last.eq((kw == 1) & (kh == 1))
                # T - kh * kw when positive, as a table of the few small windows.
                gap_cases = [
                    (kh_is[a] & kw_is[b], T - a * b) for a in small for b in small if a * b < T
                ]
                m.d.sync += [
                    s_latch.eq(1),
                    first.eq(1),
                    run.eq(1),
                    gap.eq(0),
                    row_step.eq(in_w * step_h),
                    gap_len.eq(pick(*gap_cases)),
                ]
                m.next = "RUN"
            with m.State("GAP"):
                m.d.sync += gap.eq(gap - 1)
                with m.If(gap == 1):
                    m.d.sync += run.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(final):
                    m.d.sync += run.eq(0)
                    m.next = "DRAIN"
                if T > 1:
                    with m.Elif(last & (gap_len != 0)):
                        m.d.sync += [gap.eq(gap_len), run.eq(0)]
                        m.next = "GAP"
            with m.State("DRAIN"):
                with m.If(final_written):
                    m.d.comb += self.status.done.eq(1)
                    m.next = "IDLE"

        # RUN: the next read, as one-hot cases of the loops' flags: the next column of
        # the window (c_kx), its next row (c_ky), the next pixel (c_ox), the next row
        # of pixels (c_oy).
        m.d.comb += final.eq(last & ox.last & oy.last)
        c_kx = ~kx.last
        c_ky = kx.last & ~last
        c_ox = last & ~ox.last
        c_oy = last & ox.last
        next_win = win_ptr + in_w
        next_pix = pix_ptr + sw
        next_row = row_ptr + row_step
        # Each loop moves on one enable and restarts by its own flag (Countdown.move):
        # kx on every read, ky at a window row's end, ox at a window's end.
        kx.move(m, run, kx.last)
        ky.move(m, run & kx.last, ky.last)
        ox.move(m, run & last, ox.last)
        with m.If(run):
            oy.advance(m, c_oy)
            m.d.sync += [
                first.eq(last),
                last.eq(both_last_next(kx, ky)),
                ptr.eq(
                    pick(
                        (c_kx, ptr + col_step),
                        (c_ky, next_win),
                        (c_ox, next_pix),
                        (c_oy, next_row),
                    )
                ),
            ]
            with m.If(kx.last):
                m.d.sync += win_ptr.eq(pick((c_ky, next_win), (c_ox, next_pix), (c_oy, next_row)))
            with m.If(last):
                m.d.sync += pix_ptr.eq(Mux(ox.last, next_row, next_pix))
            with m.If(c_oy):
                m.d.sync += row_ptr.eq(next_row)
        # The INP read address and enable are registered (the read data comes a cycle later).
        m.d.sync += [self.inp_r.addr.eq(rd_addr), self.inp_r.en.eq(rd_en)]
        with m.If(ctl(s_latch, "s_latch_d")):
            m.d.sync += s_word.eq(self.inp_r.data)
        with m.If(write):
            m.d.sync += wr_addr.eq(wr_addr + 1)
        m.d.comb += [
            self.status.busy.eq(~self.i_insn.ready),
            self.status.stall.eq(~self.i_insn.ready & ~run),
            self.status.active.eq(write),
        ]

        # ---- per-instruction constants of the lanes ---------------------------------------
        # Unpacked in two registered steps (bit length, normalizing shift), then chosen by
        # the operation.
        # PARAM read through the layouts of arch/layout.py: ADD's float32 constants, and
        # MUL_CHANNEL's scale in lane 0 as a post-processing lane's ``m``/``e``.
        add_c = data.View(add_param_layout(), param.as_value()[: add_param_layout().size])
        ra = reg(unpack_f32(m, add_c.ra, "ra_comb", reg), "ra", Float)
        rb = reg(unpack_f32(m, add_c.rb, "rb_comb", reg), "rb", Float)
        k = reg(unpack_f32(m, add_c.k, "k_comb", reg), "k", Float)
        r_mul = reg(
            mantissa_float(m, param[0].m, param[0].e, "r_mul_comb", reg),
            "r_mul",
            Float,
        )
        is_add = flags["is_add"]
        f1 = reg(Mux(is_add, rb.as_value(), r_mul.as_value()), "f1", Float)
        z1 = reg(Mux(is_add, k.as_value(), Float.const(float_const(0)).as_value()), "z1", Float)
        f2 = reg(Mux(is_add, ra.as_value(), Float.const(float_const(1.0)).as_value()), "f2", Float)
        # K (or 0) aligned to the products with rB (or R) once, for every lane's first FMA.
        # Pipelined as in the FMA: the exponents' difference, the shift, its two steps.
        z1_diff, f1_exp = reg(z1.exp - f1.exp, "z1_diff"), reg(f1.exp, "f1_exp")
        z1_sh = reg(
            addend_shift(m, _X1, f1_exp, z1.exp, z1_diff, "z1_sh_comb"),
            "z1_sh",
            addend_shift_layout(_X1),
        )
        z1_mant = addend_mantissa(z1)
        z1_part = reg(
            shift_addend(m, _X1, z1_mant, z1_sh, "z1_part_comb"), "z1_part", partial_layout(_X1)
        )
        z1_keep = reg(addend_keep(m, z1_sh.shift, "z1_keep_comb"), "z1_keep")
        z1_aligned = reg(
            window_addend(m, _X1, z1_part, (z1_mant & z1_keep).any(), "z1_comb"),
            "z1_aligned",
            addend_layout(_X1),
        )
        a_zp, b_zp, out_zp, qmin, qmax = (
            reg(code(getattr(insn, f)), f, signed(9))
            for f in ("a_zp", "b_zp", "out_zp", "qmin", "qmax")
        )
        q_inverted = reg(qmin > qmax, "q_inverted")

        # ---- reducer: data of the read issued two cycles ago, registered ------------------
        v1 = ctl(ctl(ctl(run, "rd_issue"), "rd_data_valid"), "rd_valid")
        first1 = reg(reg(reg(first, "rd_first0"), "rd_first1"), "rd_first")
        last1 = reg(reg(reg(last, "rd_last0"), "rd_last1"), "rd_last")
        final1 = reg(reg(reg(final, "rd_final0"), "rd_final1"), "rd_final")
        rd_data = Signal(self.inp_r.data.shape(), name="rd_data")
        m.d.sync += rd_data.eq(self.inp_r.data)
        emit = ctl(v1 & last1, "emit")  # Stage 0 of the lanes
        # The instruction's last pixel, held with the pixel's beat: its write ends DRAIN.
        e_final = Signal(name="e_final")
        with m.If(v1 & last1):
            m.d.sync += e_final.eq(final1)
        # Lane groups: channels g*V .. g*V + V - 1 enter the V lanes in cycle emit + g.
        # ``group`` (the lanes' operand select, fanning out to every channel's) is a
        # register of its own: 0 at emit, then turn.
        turn = Signal(range(max(T, 2)), name="turn")
        group = Signal(range(max(T, 2)), name="group0")
        if T > 1:
            turn_next = Signal.like(turn)
            m.d.comb += turn_next.eq(turn)
            with m.If(emit):
                m.d.comb += turn_next.eq(1)
            with m.Elif(turn != 0):
                m.d.comb += turn_next.eq(Mux(turn == T - 1, 0, turn + 1))
            m.d.sync += [turn.eq(turn_next), group.eq(Mux(v1 & last1, 0, turn_next))]
        in_turn = emit | (turn != 0)
        valid, groups, finals = [in_turn], [group], [e_final]
        for n in range(self.LATENCY - self._READ):
            valid.append(ctl(valid[-1], f"valid{n + 1}"))
            groups.append(reg(groups[-1], f"group{n + 1}", unsigned(len(turn))))
            finals.append(reg(finals[-1], f"final{n + 1}"))
        write_last = valid[-2] & (groups[-2] == T - 1)
        write_now = ctl(write_last, "write_now")
        m.d.sync += final_written.eq(ctl(write_last & finals[-2], "write_final"))
        m.d.comb += [write.eq(write_now), self.out_w.en.eq(write_now), self.out_w.addr.eq(wr_addr)]

        e_codes, e_sums, e_bs = [], [], []
        for c in range(B):
            x = code(rd_data[c])
            # The running max and sum start over after a pixel's last beat (-256 is below
            # every code, 0 the empty sum), not at its first: ``first1``'s fanout then
            # reaches no adder or compare, only ``held_a``'s mux.
            held_max = Signal(signed(9), init=-256)
            held_sum, held_a = Signal(signed(18)), Signal(signed(9))
            new_max = Mux(x > held_max, x, held_max)
            new_sum = held_sum + (x - a_zp)
            new_a = Mux(first1, x, held_a)
            with m.If(v1):
                m.d.sync += [held_max.eq(new_max), held_sum.eq(new_sum), held_a.eq(new_a)]
                with m.If(last1):
                    m.d.sync += [held_max.eq(-256), held_sum.eq(0)]
            # Stage 0: one beat per pixel, held while its lane groups go through.
            e_code = Signal(signed(9), name=f"e_code{c}")
            e_sum = Signal(signed(18), name=f"e_sum{c}")
            e_b = Signal(signed(9), name=f"e_b{c}")
            with m.If(v1 & last1):
                m.d.sync += [
                    e_code.eq(Mux(flags["is_max"], new_max, new_a)),
                    e_sum.eq(new_sum),
                    e_b.eq(Mux(flags["is_mul_channel"], code(s_word[c]), x)),
                ]
            e_codes.append(e_code)
            e_sums.append(e_sum)
            e_bs.append(e_b)

        def operand(values, i):
            """Lane ``i``'s operand of the current group: channel ``group * V + i``."""
            return values[i] if T == 1 else Array(values[g * V + i] for g in range(T))[group]

        held = [Signal(8, name=f"out_held{c}") for c in range(B - V)]
        for i in range(V):
            l_code, l_sum, l_b = operand(e_codes, i), operand(e_sums, i), operand(e_bs, i)
            l_param = {
                name: operand([param[c][name] for c in range(B)], i) for name in ("bias", "m", "e")
            }

            # Stages 1-2: FMA operands. ADD: fma(a, rA, fma(b, rB, K)); MUL: fma(zp, 1,
            # fma(p, R, 0)) with p = (a - a_zp) * (b - b_zp), the zero points off first.
            da, db = reg(l_code - a_zp, f"da{i}"), reg(l_b - b_zp, f"db{i}")
            l_b1 = reg(l_b, f"l_b1_{i}")
            x1 = reg(Mux(is_add, l_b1, da * db), f"x1_{i}", signed(_X1))
            x2 = reg(Mux(is_add, reg(l_code, f"l_code1_{i}"), out_zp), f"x2_{i}", signed(9))
            fma1 = FusedMultiplyAdd(_X1, aligned=True)
            fma2 = FusedMultiplyAdd(9)
            m.submodules[f"fma1_{i}"] = fma1
            m.submodules[f"fma2_{i}"] = fma2
            m.d.comb += [
                fma1.i.payload.x.eq(x1),
                fma1.i.payload.f.eq(f1),
                fma1.i.payload.z.eq(z1),
                fma1.i.payload.za.eq(z1_aligned),
                fma2.i.payload.x.eq(delay(x2, FusedMultiplyAdd.LATENCY, f"x2_{i}")),
                fma2.i.payload.f.eq(f2),
                fma2.i.payload.z.eq(fma1.o.payload.r),
            ]
            # Stages 3 to 2 + 2 * FMA LATENCY (F): the two FMAs. Stages F + 3 and F + 4:
            # round to an integer (RNE) and clip at 511 (|v| >= 512 saturates), the
            # requantizer's step 4 on the FMA's normalized result: its case decode, then
            # the selection.
            r = fma2.o.payload.r
            step = register_fields(
                m, round_decode(m, r.mant, 0, r.exp, r.zero, f"rnd{i}"), f"rnd{i}", reg
            )
            mant_r, sign_r = reg(r.mant, f"rnd{i}_mant"), reg(r.sign, f"rnd{i}_sign")
            y16, up16 = round_select(mant_r, step)
            y_16, u_16, s_16 = (
                reg(y16, f"y16r_{i}"),
                reg(up16, f"up16r_{i}"),
                reg(sign_r, f"s16r_{i}"),
            )
            # Stage F + 5: the sign.
            mag = y_16 + u_16
            fma_y = reg(Mux(s_16, -mag, mag), f"fma_y{i}", signed(11))
            # Stage F + 6 (_CORE): clamp, numpy's order (max with qmin, then min with qmax:
            # qmin when below it, unless qmin > qmax), or AVG_POOL's requantized code.
            plain = delay(l_code, self._CORE - 1, f"plain{i}")
            y = Mux(fma_op, fma_y, plain)
            low = Mux(q_inverted, qmax, qmin)
            clamp = Mux(y < qmin, low, Mux(y > qmax, qmax, y))
            # AVG_POOL through the requantizer from stage 1, delayed to stage _CORE.
            rq = Requantizer()
            m.submodules[f"requantizer{i}"] = rq
            m.d.comb += [
                rq.i.valid.eq(in_turn),
                rq.i.payload.acc.eq(l_sum),
                rq.i.payload.bias.eq(l_param["bias"]),
                rq.i.payload.params.m.eq(l_param["m"]),
                rq.i.payload.params.e.eq(l_param["e"]),
                rq.i.payload.params.zp.eq(out_zp),
                rq.i.payload.params.qmin.eq(qmin),
                rq.i.payload.params.qmax.eq(qmax),
            ]
            avg = delay(rq.o.payload.code, self._CORE - 1 - Requantizer.LATENCY, f"avg{i}")
            clamped = reg(Mux(flags["is_avg"], avg, clamp), f"clamped{i}", signed(9))
            # Stages _CORE + 1 on: activation (the lane's own tables).
            act = ActivationUnit(self.config.lut_slots)
            m.submodules[f"activation{i}"] = act
            m.d.comb += [
                act.i.valid.eq(valid[self._CORE]),
                act.i.payload.code.eq(clamped),
                act.i.payload.zp.eq(out_zp),
                act.i.payload.tag.act.eq(insn.act),
                act.i.payload.tag.lut_slot.eq(insn.lut_slot),  # mod lut_slots
                act.lut_w.addr.eq(self.lut_w.addr),
                act.lut_w.data.eq(self.lut_w.data),
                act.lut_w.en.eq(self.lut_w.en),
            ]
            # Groups before the last wait in `held`; the last group's lanes write with them.
            for g in range(T - 1):
                with m.If(valid[-1] & (groups[-1] == g)):
                    m.d.sync += held[g * V + i].eq(act.o.payload)
                m.d.comb += self.out_w.data[g * V + i].eq(held[g * V + i])
            m.d.comb += self.out_w.data[(T - 1) * V + i].eq(act.o.payload)
        assert self._CORE > Requantizer.LATENCY
        return m
