"""The compute queue's executor: CONV to the ComputeUnit, VEC to the vector unit, and the
accumulators through post-processing into OUT.

:class:`ComputeExecutor` takes the compute queue's issued instruction (an
:func:`~bamboo.hw.queues.entry_layout` stream), reads its opcode through the header
layout and hands CONV to ``conv`` and VEC to ``vec``; FINISH (and VEC without a vector
unit: a token barrier, the dispatcher refused the others) ends at once.

A CONV with ``acc_emit`` is done when its last beat (``last``) is written to OUT; one
without, when the ComputeUnit reports it (``conv_kept``) and no beat of an emit before it
is left in the PostProcessor. With two ACC banks the queue issues a CONV while the one
before emits (hw/compute.py); everything else waits until no CONV is left, so OUT has
one writer at a time and ``done`` pulses in issue order.

Each ``acc`` beat goes to the PostProcessor with the PARAM lanes of the instruction's
``param_addr`` (read through :func:`~bamboo.hw.isa_layout.param_word_layout`)
and its zero point, bounds and activation (a depthwise CONV's beats, and those of a CONV
with ``narrow``, are narrow: their results fill the first columns only); its OUT address
waits in a FIFO for the post-processed beat. The vector unit's OUT writes
(``vec_out_w``) pass through to ``out_w``.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import Activation, ConvMode, Opcode
from ..arch.layout import PARAM_DEPTH
from .flagfifo import FlagFIFO
from .isa_layout import instruction_layout, param_word_layout
from .load import param_layout
from .postproc import Activation as PostActivation
from .postproc import PostProcessor
from .queues import entry_layout, header_layout
from .store import out_layout

__all__ = ["ComputeExecutor"]


class ComputeExecutor(wiring.Component):
    """Runs the compute queue's instructions on the ComputeUnit and the vector unit.

    Parameters
    ----------
    config : AcceleratorConfig
    acc : stream.Signature
        The ComputeUnit's ``o_acc`` signature (its payload: ``acc``, ``out_addr``,
        ``insn``).
    vector : bool
        A vector unit is present (``vec``, ``vec_done``, ``vec_out_w``).

    Attributes
    ----------
    i_insn : In(stream.Signature(entry_layout()))
        The compute queue's issued instruction.
    done : Out(1)
        Pulse: the instruction is done (the queue pushes its tokens).
    finish_irq : Out(1)
        Pulse: a FINISH with ``irq`` set was taken.
    conv : Out(stream.Signature(instruction_layout(Opcode.CONV)))
    conv_busy : In(1)
        The ComputeUnit is busy.
    conv_kept : In(1)
        The ComputeUnit's ``kept_done``: a CONV without ``acc_emit`` is done there.
    acc : In(acc)
    post_i : Out(stream.Signature(PostProcessor.input_layout(config)))
    post_o : In(stream.Signature(PostProcessor.output_layout(config)))
    param_r : In(memory.ReadPort.Signature)
        PARAM, read at the beat's ``param_addr`` (a synchronous port, always enabled).
    out_w : In(memory.WritePort.Signature)
        OUT (``In``: this side drives the port, as the units' buffer ports).
    vec : Out(stream.Signature(instruction_layout(Opcode.VEC)))
    vec_done : In(1)
    vec_out_w : Out(memory.WritePort.Signature)
        The vector unit's OUT writes.
    """

    def __init__(self, config, *, acc, vector=True):
        self.config = config
        self.vector = bool(vector)
        out_aw = config.buffer_addr_width(config.output_buffer_depth)
        write = memory.WritePort.Signature(addr_width=out_aw, shape=out_layout(config))
        ports = {
            "i_insn": In(stream.Signature(entry_layout())),
            "done": Out(1),
            "finish_irq": Out(1),
            "conv": Out(stream.Signature(instruction_layout(Opcode.CONV))),
            "conv_busy": In(1),
            "conv_kept": In(1),
            "acc": In(acc),
            "post_i": Out(stream.Signature(PostProcessor.input_layout(config))),
            "post_o": In(stream.Signature(PostProcessor.output_layout(config))),
            "param_r": In(
                memory.ReadPort.Signature(
                    addr_width=(PARAM_DEPTH - 1).bit_length(), shape=param_layout(config)
                )
            ),
            "out_w": In(write),
        }
        if self.vector:
            ports.update(
                {
                    "vec": Out(stream.Signature(instruction_layout(Opcode.VEC))),
                    "vec_done": In(1),
                    "vec_out_w": Out(write),
                }
            )
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        ex = self.i_insn

        def view(opcode):
            layout = instruction_layout(opcode) if opcode is not None else header_layout()
            return data.View(layout, ex.payload.word[: layout.size])

        opcode = view(None).opcode
        is_conv = opcode == Opcode.CONV
        is_vec = (opcode == Opcode.VEC) if self.vector else 0
        taken = ex.valid & ex.ready
        # No CONV left: the ComputeUnit idle, no beat in post-processing, no CONV waiting
        # for its end to be reported. Anything but a CONV waits for it.
        quiet = Signal()
        m.d.comb += [
            self.conv.payload.eq(view(Opcode.CONV)),
            self.conv.valid.eq(ex.valid & is_conv),
            ex.ready.eq(Mux(is_conv, self.conv.ready, quiet)),
            self.finish_irq.eq(taken & (opcode == Opcode.FINISH) & view(Opcode.FINISH).irq),
        ]
        vec_done = Signal()
        if self.vector:
            m.d.comb += [
                self.vec.payload.eq(view(Opcode.VEC)),
                self.vec.valid.eq(ex.valid & is_vec & quiet),
            ]
            with m.If(is_vec):
                m.d.comb += ex.ready.eq(self.vec.ready & quiet)
            # Registered: a VEC without pixels is done in the cycle it is accepted.
            m.d.sync += vec_done.eq(self.vec_done)
        other_done = Signal()
        m.d.sync += other_done.eq(taken & ~is_conv & ~is_vec)

        # A beat's OUT address (and its ``last``) waits for its post-processed beat. The
        # FIFO holds one per beat inside the PostProcessor, at most its CREDITS (the
        # FIFO's depth), so it has room whenever post_i.ready: no w_rdy in the handshake.
        acc = self.acc
        # Flags from a thermometer code (FlagFIFO): the level's adder stays off the
        # handshakes of the beats.
        aw = len(acc.payload.out_addr)
        m.submodules.out_addr_fifo = addr_q = FlagFIFO(width=aw + 1, depth=PostProcessor.CREDITS)
        out_last = addr_q.r_data[aw]
        # The ends of CONVs, registered as the others: the queue's token logic starts
        # from flip-flops. An emit ends as its last beat is written; a kept CONV once no
        # beat is left (its report comes after its emitter's last beat, so at most the
        # beats of one emit are ahead of it).
        emit_done, kept, kept_done = Signal(), Signal(), Signal()
        kept_end = kept & ~addr_q.r_rdy
        m.d.sync += [
            emit_done.eq(self.post_o.valid & out_last),
            kept_done.eq(kept_end),
        ]
        with m.If(self.conv_kept):
            m.d.sync += kept.eq(1)
        with m.Elif(kept_end):
            m.d.sync += kept.eq(0)
        m.d.comb += [
            quiet.eq(~self.conv_busy & ~addr_q.r_rdy & ~kept),
            self.done.eq(other_done | emit_done | kept_done | vec_done),
        ]

        # ACC -> PostProcessor with the PARAM lanes of the instruction -> OUT.
        insn = acc.payload.insn
        m.d.comb += [self.param_r.addr.eq(insn.param_addr), self.param_r.en.eq(1)]
        # One process drives the activation and every lane copies it: Icarus's always_comb
        # loops at time 0 when several processes write slices of one vector.
        post_act = Signal(PostActivation)
        with m.Switch(insn.act):
            for isa_act, hw_act in (
                (Activation.LEAKY_SHIFT, PostActivation.LEAKY),
                (Activation.LEAKY_ROUNDED, PostActivation.LEAKY_ROUNDED),
                (Activation.LUT, PostActivation.LUT),
            ):
                with m.Case(isa_act):
                    m.d.comb += post_act.eq(hw_act)
            with m.Default():
                m.d.comb += post_act.eq(PostActivation.NONE)
        lanes = data.View(param_word_layout(cfg), self.param_r.data)
        m.d.comb += self.post_i.payload.narrow.eq((insn.mode == ConvMode.DEPTHWISE) | insn.narrow)
        for c in range(cfg.cols):
            lane, p = lanes[c], self.post_i.payload.lanes[c]
            m.d.comb += [
                p.acc.eq(acc.payload.acc[c]),
                p.bias.eq(lane.bias),
                p.params.rq.m.eq(lane.m),
                p.params.rq.e.eq(lane.e),
                p.params.lut_slot.eq(insn.lut_slot),
                p.params.act.eq(post_act),
            ]
            for field, name in (("zp", "out_zp"), ("qmin", "qmin"), ("qmax", "qmax")):
                v = getattr(insn, name)
                m.d.comb += getattr(p.params.rq, field).eq(Mux(insn.signed, v.as_signed(), v))
        out = self.out_w
        m.d.comb += [
            self.post_i.valid.eq(acc.valid),
            acc.ready.eq(self.post_i.ready),
            addr_q.w_en.eq(acc.valid & acc.ready),
            addr_q.w_data.eq(Cat(acc.payload.out_addr, acc.payload.last)),
            self.post_o.ready.eq(1),
            addr_q.r_en.eq(self.post_o.valid),
            out.en.eq(self.post_o.valid),
            out.addr.eq(addr_q.r_data[:aw]),
            out.data.eq(self.post_o.payload),
        ]
        if self.vector:
            with m.If(self.vec_out_w.en):
                m.d.comb += [
                    out.en.eq(1),
                    out.addr.eq(self.vec_out_w.addr),
                    out.data.eq(self.vec_out_w.data),
                ]
        return m
