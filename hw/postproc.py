"""The post-processing lanes: accumulator + bias to 8-bit codes, with activation.

One lane per array column (``cfg.cols``), or ``cfg.postproc_lanes`` lanes taking the
columns in turns (below), each::

    acc + bias -> Requantizer -> [LeakyReLU shift] -> [256-entry LUT] -> code byte

* :class:`~bamboo.hw.requantizer.Requantizer` is bit-exact with ``runtime/requant.py``.
* The LeakyReLU shift is ``runtime/elementwise.py``'s ``leaky_shift`` with equal
  input and output quantization (the requantized code ``x``, its zero point ``zp``):
  ``zp + (v >= 0 ? v : (v * 13) >> 7)`` with ``v = x - zp``, or ``(v * 13 + 64) >> 7``
  when rounded. Opt-in and approximate (Ref: docs/numerics.md, "Elementwise
  activations"); the exact path for any activation is the table.
* The table is indexed by the code's bit pattern (``code & 0xFF``, int8 -128 is
  entry 128), as ``runtime/elementwise.py``'s ``lut_apply``. ``cfg.lut_slots``
  tables are held at once; each lane has its own copy (one read port each), all
  written together through ``lut_w`` between layers.

Every beat carries each lane's parameters (:class:`LaneParams`), so per-channel
scales change with the output-channel tile without draining the pipeline.

Fewer lanes than columns (``cfg.postproc_lanes``, ``T = cfg.postproc_turns`` turns): a
beat's ``cols`` accumulators go through the lanes in ``T`` groups on consecutive
cycles, group ``g`` holding columns ``g * lanes ..``; ``i.ready`` rises on the last
group, so a beat takes ``T`` cycles and the input stays put meanwhile (the stream's
rule). The group is registered before the lanes (one cycle of latency) and the codes of
the first ``T - 1`` groups wait in a shift register for the last one, which writes the
whole word to the FIFO. The requantizers are busy only while an ACC word is emitted,
so fewer of them cost a CONV ``(T - 1)`` cycles per output pixel and save two DSP48E2
and several hundred LUTs each (docs/hardware.md, "Post-processing lanes").

A depthwise CONV's results sit in the first ``N = cfg.depthwise_channels`` columns, as a
dense CONV's do when the instruction's ``narrow`` says its output block has at most N
channels. Their beats come with ``narrow`` set: they take ``S = cfg.depthwise_emit_turns``
turns (the groups past the first N columns are skipped; ``S = T`` when that saves
nothing) and the word's columns from ``N`` on are written 0, as the ISA's CONV states.
On ``ultra96`` (16 channels, 8 lanes for 32 columns) such a pixel takes 2 cycles, not 4.

Flow control: the lanes are free-running pipelines (no clock enable on thousands
of datapath registers, which would not close timing at 250 MHz across 32 lanes).
A credit counter admits a beat only when the output FIFO is sure to have room for
it, so ``i.ready`` is a register compare with no combinational path from ``o.ready``.

What it costs: docs/hardware.md ("Post-processing cost"), measured by
``make resources``.
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from bamboo.arch import AcceleratorConfig, isa
from bamboo.arch.layout import LUT_ENTRIES
from bamboo.hw.pipeline import delay_chain, register

from .requantizer import Requantizer, RequantParams

__all__ = [
    "LEAKY_MULT",
    "LEAKY_SHIFT",
    "LUT_ENTRIES",
    "MAX_LUT_SLOTS",
    "Activation",
    "ActivationUnit",
    "LaneParams",
    "LutWriteSignature",
    "PostProcessor",
]

# LeakyReLU(0.1) as v * 13 / 2**7, as runtime/elementwise.py (LEAKY_MULT, LEAKY_SHIFT).
LEAKY_MULT, LEAKY_SHIFT = 13, 7
#: Tables the ISA can address (``CONV.lut_slot``/``VEC.lut_slot``); AcceleratorConfig refuses
#: more. LaneParams.lut_slot is one bit wider (its top bit is never set).
MAX_LUT_SLOTS = isa.field(isa.Opcode.CONV, "lut_slot").max + 1


class Activation(enum.Enum, shape=2):
    """What follows the requantizer in a lane; values are the ISA's ``act`` codes."""

    NONE = isa.Activation.NONE  #: the requantized code
    LEAKY = isa.Activation.LEAKY_SHIFT  #: LeakyReLU shift, ``(v * 13) >> 7`` (floor)
    LEAKY_ROUNDED = isa.Activation.LEAKY_ROUNDED  #: LeakyReLU shift, ``(v * 13 + 64) >> 7``
    LUT = isa.Activation.LUT  #: table lookup of the requantized code


class LaneParams(data.Struct):
    """Parameters of one lane for one beat.

    Fields
    ------
    rq : RequantParams
        Scale, zero point and bounds (``requant_fields`` builds them).
    act : Activation
        The activation after requantization.
    lut_slot : unsigned(4)
        Which of the ``cfg.lut_slots`` tables ``Activation.LUT`` reads (taken modulo
        ``cfg.lut_slots``: the high bits are not wired).
    """

    rq: RequantParams
    act: Activation
    lut_slot: unsigned(4)


class LutWriteSignature(wiring.Signature):
    """Write port of the activation tables, from the writer's side.

    Members
    -------
    addr : Out(range(slots * 256))
        ``slot * 256 + index``.
    data : Out(8)
        The table entry (an 8-bit code).
    en : Out(1)
        Write strobe; one entry per cycle, every lane's copy at once.
    """

    def __init__(self, slots):
        super().__init__(
            {
                "addr": Out(range(slots * LUT_ENTRIES)),
                "data": Out(8),
                "en": Out(1),
            }
        )


def _act_tag(slots):
    """What the activation stages need, carried through the requantizer as its tag."""
    return data.StructLayout({"act": Activation, "lut_slot": range(slots)})


class ActivationUnit(wiring.Component):
    """LeakyReLU shift and table lookup of one lane (free-running, no back-pressure).

    Parameters
    ----------
    slots : int
        Number of 256-entry tables (a power of two, at most :data:`MAX_LUT_SLOTS`).

    Attributes
    ----------
    i : In(stream.Signature(...), always_ready)
        The requantizer's output: ``code``, ``zp`` and the ``tag`` (act, lut_slot).
    o : Out(stream.Signature(unsigned(8)), always_ready)
        The code byte, :data:`LATENCY` cycles later.
    lut_w : In(LutWriteSignature(slots))
        Table writes.
    """

    LATENCY = 3

    def __init__(self, slots):
        if not isinstance(slots, int) or not 0 < slots <= MAX_LUT_SLOTS or slots & (slots - 1):
            raise ValueError(
                f"slots must be a power of two of at most {MAX_LUT_SLOTS}, not {slots!r}"
            )
        self._slots = slots
        super().__init__(
            {
                "i": In(
                    stream.Signature(
                        data.StructLayout(
                            {"code": signed(9), "zp": signed(9), "tag": _act_tag(slots)}
                        ),
                        always_ready=True,
                    )
                ),
                "o": Out(stream.Signature(unsigned(8), always_ready=True)),
                "lut_w": In(LutWriteSignature(slots)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        m.submodules.lut = lut = Memory(shape=unsigned(8), depth=self._slots * LUT_ENTRIES, init=[])
        wr = lut.write_port()
        rd = lut.read_port()
        m.d.comb += [
            wr.addr.eq(self.lut_w.addr),
            wr.data.eq(self.lut_w.data),
            wr.en.eq(self.lut_w.en),
        ]

        def reg(value, name, shape=None):
            return register(m, value, name, shape)

        valid = delay_chain(m, self.i.valid, self.LATENCY)[-1]

        # Stage 1: the zero-point-corrected value and its product by 13, written as
        # 8v + 4v + v: a `*` here would cost a DSP48E2 per lane (synthesis maps it so).
        assert LEAKY_MULT == 0b1101
        # The activation is decoded here into flags (``shift1``: a negative value to
        # shift; ``round1``: add half before the shift), so stage 2 is one adder and a mux.
        v = p.code - p.zp
        v13 = reg((v << 3) + (v << 2) + v, "v13_1", signed(14))
        code1, zp1, tag1 = reg(p.code, "code1"), reg(p.zp, "zp1"), reg(p.tag, "tag1")
        act = p.tag.act
        leaky = (act == Activation.LEAKY) | (act == Activation.LEAKY_ROUNDED)
        shift1 = reg(leaky & (v < 0), "shift1")
        round1 = reg(act == Activation.LEAKY_ROUNDED, "round1")
        # Stage 2: shift negative values; the result lies between code and zp, so in range.
        # ((v13 + half) >> s) + zp is (v13 + (zp << s | half)) >> s: half < 2**s.
        zp_half = Cat(Const(0, LEAKY_SHIFT - 1), round1, zp1).as_signed()
        shifted = (v13 + zp_half) >> LEAKY_SHIFT
        code2 = reg(Mux(shift1, shifted, code1), "code2", signed(9))
        tag2 = reg(tag1, "tag2")
        # Stage 3: the table read (the memory's own register) alongside the code itself.
        m.d.comb += rd.addr.eq(Cat(code2[:8], tag2.lut_slot))
        code3 = reg(code2[:8], "code3", unsigned(8))
        use_lut = reg(tag2.act == Activation.LUT, "use_lut3")

        m.d.comb += [
            self.o.valid.eq(valid),
            self.o.payload.eq(Mux(use_lut, rd.data, code3)),
        ]
        return m


class PostProcessor(wiring.Component):
    """Post-processing of ``cfg.cols`` accumulators a beat behind one stream, with
    back-pressure.

    Parameters
    ----------
    cfg : AcceleratorConfig
        ``postproc_lanes`` lanes (``cols`` by default), ``postproc_turns`` cycles a beat;
        ``lut_slots`` tables per lane.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({lanes, narrow})))
        ``lanes`` (``ArrayLayout(lane_in, cols)``), per lane: ``acc``, ``bias`` (int32,
        summed with 32-bit wrap) and ``params`` (:class:`LaneParams`); ``narrow``: only
        the first ``cfg.depthwise_channels`` columns hold results (a depthwise CONV, or
        one with ``narrow``).
    o : Out(stream.Signature(ArrayLayout(unsigned(8), cols)))
        Per lane, the output code byte (uint8, or int8 in two's complement).
    lut_w : In(LutWriteSignature(cfg.lut_slots))
        Table writes, broadcast to every lane.
    """

    #: Cycles from an accepted input beat to its output beat being valid (o.ready high):
    #: the lanes, then the FIFO's write and its output register; with fewer lanes than
    #: columns one more, the group register (:meth:`latency`).
    LATENCY = Requantizer.LATENCY + ActivationUnit.LATENCY + 2
    #: Beats admitted but not yet delivered; covers the pipeline so the lanes run at full rate.
    CREDITS = 32

    def __init__(self, cfg):
        if not isinstance(cfg, AcceleratorConfig):
            raise TypeError(f"cfg must be an AcceleratorConfig, not {cfg!r}")
        if cfg.lut_slots > MAX_LUT_SLOTS:
            raise ValueError(f"lut_slots must be at most {MAX_LUT_SLOTS}, not {cfg.lut_slots!r}")
        self._cfg = cfg
        super().__init__(
            {
                "i": In(stream.Signature(self.input_layout(cfg))),
                "o": Out(stream.Signature(self.output_layout(cfg))),
                "lut_w": In(LutWriteSignature(cfg.lut_slots)),
            }
        )

    @staticmethod
    def input_layout(cfg):
        """Payload layout of ``i`` for ``cfg`` (testbenches pack beats without a component)."""
        lane = data.StructLayout({"acc": signed(32), "bias": signed(32), "params": LaneParams})
        return data.StructLayout({"lanes": data.ArrayLayout(lane, cfg.cols), "narrow": 1})

    @staticmethod
    def output_layout(cfg):
        """Payload layout of ``o`` for ``cfg``."""
        return data.ArrayLayout(unsigned(8), cfg.cols)

    @property
    def cfg(self):
        return self._cfg

    @classmethod
    def latency(cls, cfg):
        """:data:`LATENCY` of ``cfg``'s build: one cycle more with lane groups."""
        return cls.LATENCY + (cfg.postproc_turns > 1)

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        assert self.CREDITS > self.LATENCY + 2  # else the credits, not the lanes, limit the rate

        credits = Signal(range(self.CREDITS + 1))  # beats in the lanes or the FIFO
        take = self.i.valid & self.i.ready
        give = self.o.valid & self.o.ready
        # ``full`` (credits == CREDITS) as a register, set from a compare of the count
        # alone: the taker's handshake does not wait on the count's compare.
        full = Signal()
        turns = cfg.postproc_turns

        def update_full(domain, target):
            """``full``'s next value into ``target``: set from the count's compare when a
            beat comes in and none leaves, cleared when one leaves and none comes in."""
            with m.If(take & ~give):
                domain += target.eq(credits == self.CREDITS - 1)
            with m.Elif(give & ~take):
                domain += target.eq(0)

        if turns == 1:
            m.d.comb += self.i.ready.eq(~full)
        m.d.sync += credits.eq(credits + take - give)
        if turns == 1:
            update_full(m.d.sync, full)
        else:
            # A beat is taken with its last group. ``i.ready`` is a register of its own,
            # set from the next values of ``full`` and of the last-group flag: the
            # executor's handshake (and its OUT-address FIFO's write) starts at one
            # flip-flop, as with one group.
            last_turn = Signal()  # the group of this cycle is the beat's last, a register
            full_next = Signal()
            m.d.comb += full_next.eq(full)
            update_full(m.d.comb, full_next)
            m.d.sync += full.eq(full_next)
            ready = Signal(name="ready_r")
            m.d.comb += self.i.ready.eq(ready)

        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8 * cfg.cols, depth=self.CREDITS)
        if turns == 1:
            lanes_in, feed = [self.i.payload.lanes[n] for n in range(cfg.cols)], take
            narrow = self.i.payload.narrow
        else:
            lanes_in, feed, group_last, narrow, last_next = self._groups(m, full, last_turn)
            m.d.sync += ready.eq(~full_next & last_next)
        codes = []
        for n, lane_in in enumerate(lanes_in):
            rq = Requantizer(tag_shape=_act_tag(cfg.lut_slots))
            act = ActivationUnit(cfg.lut_slots)
            m.submodules[f"requantizer{n}"] = rq
            m.submodules[f"activation{n}"] = act
            m.d.comb += [
                rq.i.valid.eq(feed),
                rq.i.payload.acc.eq(lane_in.acc),
                rq.i.payload.bias.eq(lane_in.bias),
                rq.i.payload.params.eq(lane_in.params.rq),
                rq.i.payload.tag.act.eq(lane_in.params.act),
                rq.i.payload.tag.lut_slot.eq(lane_in.params.lut_slot),  # mod lut_slots
                act.lut_w.addr.eq(self.lut_w.addr),
                act.lut_w.data.eq(self.lut_w.data),
                act.lut_w.en.eq(self.lut_w.en),
            ]
            wiring.connect(m, rq.o, act.i)
            codes.append(act.o.payload)

        # Every lane sees the same valid pattern, so any lane's valid stands for all of them.
        lanes = Requantizer.LATENCY + ActivationUnit.LATENCY
        out_narrow = delay_chain(m, narrow, lanes, "narrow")[-1]
        n = cfg.depthwise_channels
        if turns == 1:
            word = Cat(*codes)
            m.d.comb += fifo.w_en.eq(act.o.valid)
        else:
            # The first groups' codes wait in a shift register (group 0 lowest); the last
            # group writes the word. A beat's groups leave the lanes on consecutive cycles;
            # a narrow beat's S groups are the top S - 1 held ones and the last.
            out_last = delay_chain(m, group_last, lanes, "group_last")[-1]
            group = Cat(*codes)
            held = Signal(len(group) * (turns - 1), name="held_codes", reset_less=True)
            with m.If(act.o.valid):
                m.d.sync += held.eq(Cat(held[len(group) :], group))
            m.d.comb += fifo.w_en.eq(act.o.valid & out_last)
            skipped = turns - cfg.depthwise_emit_turns  # groups a narrow beat skips
            word = Cat(held, group)
            if skipped:
                word = Mux(out_narrow, Cat(held[len(group) * skipped :], group), word)
        if n < cfg.cols:
            word = Cat(word[: 8 * n], Mux(out_narrow, 0, word[8 * n :]))
        m.d.comb += fifo.w_data.eq(word)
        m.d.comb += [
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]
        return m

    def _groups(self, m, full, last_turn):
        """Lane groups of the input beat: ``(lane inputs, their valid, last group of a
        beat, the beat's narrow flag, the next value of last_turn)``, the first four
        registers. A group enters whenever a beat is offered and a credit is free;
        ``full`` cannot rise within a beat (only an accepted beat takes a credit), so a
        beat's groups run on consecutive cycles. A narrow beat ends after
        ``cfg.depthwise_emit_turns`` groups (at least 2, so ``last_turn`` is known a
        cycle ahead from the payload)."""
        cfg = self._cfg
        turns, narrow_turns = cfg.postproc_turns, cfg.depthwise_emit_turns
        lanes = cfg.cols // turns
        turn = Signal(range(turns))
        go = self.i.valid & ~full
        last_next = Signal()  # last_turn's next value
        ends = turn == turns - 2
        if narrow_turns < turns:
            ends = Mux(self.i.payload.narrow, turn == narrow_turns - 2, ends)
        m.d.comb += last_next.eq(Mux(go, ends, last_turn))
        m.d.sync += last_turn.eq(last_next)
        with m.If(go):
            m.d.sync += turn.eq(Mux(last_turn, 0, turn + 1))
        lane_layout = self.input_layout(cfg).members["lanes"].elem_shape
        group = [Signal(lane_layout, name=f"group{j}", reset_less=True) for j in range(lanes)]
        # Each lane selects its group by a one-hot copy of ``turn`` of its own (an AND-OR
        # of registers, no decode of ``turn`` fanning out over every lane's bits).
        for j in range(lanes):
            sel = Signal(turns, init=1, name=f"turn_onehot{j}")
            with m.If(go):
                m.d.sync += sel.eq(Mux(last_turn, 1, sel << 1))
            terms = [
                Mux(sel[g], self.i.payload.lanes[g * lanes + j].as_value(), 0) for g in range(turns)
            ]
            m.d.sync += group[j].eq(reduce(operator.or_, terms))
        valid = Signal(name="group_valid")
        last = Signal(name="group_last")
        narrow = Signal(name="group_narrow")
        m.d.sync += [valid.eq(go), last.eq(go & last_turn), narrow.eq(self.i.payload.narrow)]
        return group, valid, last, narrow, last_next
