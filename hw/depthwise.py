"""Depthwise CONV on the systolic array: kernel columns on rows, channels on columns.

A dense CONV shares each input pixel across all output channels, which is what
the array's row broadcast is for. A depthwise CONV shares nothing across channels;
its reuse is along the image, between overlapping windows. In depthwise mode
(:attr:`~bamboo.hw.array.SystolicArray.depthwise`) column ``c`` therefore hears
channel ``c`` of the words entering the array, on all rows at once, while partial
sums keep stepping down one row per cycle. The sum leaving column ``c`` for the word
entered in cycle ``t`` is ``sum_r w[c][r] * x_{t+r}[c]``: a transposed FIR filter
whose taps are the rows, so streaming one input row gives one horizontal 1-D
convolution per channel, one output per cycle, with no line buffer and no extra
multiplier.

Two things keep more of the array busy than one INP word's ``rows`` channels on
``kernel_w`` rows would:

- Channel blocks (``config.depthwise_blocks``): the unit reads block ``b`` of the
  same pixel (``inp_addr + b * inp_block_stride``) through its own INP read port, so
  ``config.depthwise_channels`` columns work at once.
- Row groups (``config.depthwise_groups``): when a kernel row fits ``Rg = rows /
  groups`` rows, group ``g`` (rows ``g*Rg ..``) holds kernel row ``ky = p*G + g`` of
  pass ``p`` and hears input row ``oy*stride_h + ky*dilation_h`` through its own read
  port (the array delays it ``g*Rg`` cycles, as the partial sum arrives that late), so
  one pass covers ``G`` kernel rows.

:class:`DepthwiseWalker` streams, for each pass ``p`` (one weight word, one "tap" of
the sequencer), each output row ``oy``, the ``stride_w*(out_w-1) + kernel_w`` input
pixels of group 0's row ``oy*stride_h + p*G*dilation_h`` in order, without gaps (the
FIR needs consecutive words). Every ``stride_w``-th word starts an output window and
is written to ACC word ``oy*out_w + ox``; the other words only feed the taps. The
passes accumulate in ACC like the taps of a dense CONV.

Weight word of pass ``p``: ``w[c*s][g*Rg + kx] = weight(channel c, p*G + g, kx)`` and
**0 elsewhere** (other rows see other windows' pixels; a group past ``kernel_h`` in
the last pass reads a row of no use). See arch/isa.py.

Limits: ``kernel_w <= rows``; ``dilation_w`` must be 1 (``dilation_h`` is free).
MAC utilization is in docs/compute.md.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import accept
from .walker import Countdown, command_layout, pick

__all__ = ["DepthwiseWalker", "depthwise_geometry"]


def depthwise_geometry(insn, rows, groups):
    """``(grouped, passes)`` of a depthwise CONV ``insn`` as expressions:
    ``config.depthwise_row_groups`` and ``config.depthwise_passes`` in hardware."""
    if groups == 1:
        return 0, insn.kernel_h
    grouped = insn.kernel_w <= rows // groups
    shift = (groups - 1).bit_length()
    return grouped, Mux(grouped, (insn.kernel_h + groups - 1) >> shift, insn.kernel_h)


class DepthwiseWalker(wiring.Component):
    """Depthwise CONV loop nest: ``for pass (tap): for oy: for j in row: word``.

    Parameters
    ----------
    insn_layout : data.StructLayout
        The CONV instruction layout.
    acc_addr_width : int
    rows, groups : int
        ``config.rows`` and ``config.depthwise_groups``.

    Members
    -------
    i_insn : ``In(stream.Signature(insn_layout))``
    o_cmd : ``Out(stream.Signature(command_layout(acc_addr_width)))``
        ``write`` marks words that start an output window.
    """

    def __init__(self, insn_layout, acc_addr_width, rows=1, groups=1):
        self.insn_layout = insn_layout
        self.rows, self.groups = rows, groups
        super().__init__(
            {
                "i_insn": In(stream.Signature(insn_layout)),
                "o_cmd": Out(stream.Signature(command_layout(acc_addr_width))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        insn = Signal(self.insn_layout)
        # INP addresses and their steps: the width of the instruction's INP address.
        row_step = Signal.like(insn.inp_addr, name="row_step")
        dil_row = Signal.like(insn.inp_addr, name="dil_row")
        ky = Signal.like(insn.inp_addr, name="ky")
        # Loops: passes, output rows, words of a row (down-counters, registered flags).
        kp = Countdown(m, 8, "pass")
        y = Countdown(m, len(insn.out_h), "y")
        j = Countdown(m, 14, "j")
        phase = Signal(3, name="phase")
        # Words of a row less one, stride_w * (out_w - 1) + kernel_w - 1, in two steps:
        # the product stride_w * out_w and the rest, summed in ARM.
        span = Signal(14, name="span")  # stride_w * out_w
        span_adj = Signal(14, name="span_adj")  # kernel_w - 1 - stride_w, modulo 2**14
        wrap = Signal(name="wrap")  # phase == stride_w - 1
        in_win = Signal(name="in_win")  # the word's window ox < out_w
        win_left = Signal(12, name="win_left")  # windows of the row after the current one
        tap_base = Signal.like(insn.inp_addr, name="tap_base")
        row_addr = Signal.like(insn.inp_addr, name="row_addr")
        inp_ptr = Signal.like(insn.inp_addr, name="inp_ptr")
        acc_row = Signal.like(self.o_cmd.payload.acc_addr, name="acc_row")
        acc_ptr = Signal.like(self.o_cmd.payload.acc_addr, name="acc_ptr")

        go = Signal(name="go")  # RUN and the command is taken
        # RUN as a register of its own (as in DenseWalker): ``go`` decodes no state.
        running = Signal(name="running")
        # ``running & j.last`` (a row ends) and ``running & j.last & y.last`` (a pass
        # ends) as registers of their own (see DenseWalker's run_tap).
        run_row, run_pass = Signal(name="run_row"), Signal(name="run_pass")
        cmd = self.o_cmd.payload
        m.d.comb += [
            self.o_cmd.valid.eq(running),
            go.eq(running & self.o_cmd.ready),
            cmd.inp_addr.eq(inp_ptr),
            cmd.acc_addr.eq(acc_ptr),
            cmd.tap.eq(ky),
            cmd.write.eq((phase == 0) & in_win),
            cmd.tap_last.eq(j.last & y.last),
            cmd.tap_final.eq(kp.last),
            cmd.last.eq(cmd.tap_last & cmd.tap_final),
        ]

        with m.FSM():
            with m.State("IDLE"):
                accept(m, self.i_insn, insn, "SETUP")
            with m.State("SETUP"):
                grouped, n_pass = depthwise_geometry(insn, self.rows, self.groups)
                shift = (self.groups - 1).bit_length()
                kp.setup(m, n_pass)
                y.setup(m, insn.out_h)
                m.d.sync += [
                    span.eq(insn.stride_w * insn.out_w),
                    span_adj.eq(insn.kernel_w - 1 - insn.stride_w),
                ]
                m.d.sync += [
                    phase.eq(0),
                    wrap.eq(insn.stride_w == 1),
                    in_win.eq(insn.out_w != 0),
                    win_left.eq(insn.out_w - 1),
                    inp_ptr.eq(insn.inp_addr),
                ]
                m.d.sync += [
                    row_step.eq(insn.stride_h * insn.in_w),
                    # One pass moves group 0 down G kernel rows when grouped.
                    dil_row.eq(
                        Mux(
                            grouped,
                            (insn.dilation_h * insn.in_w) << shift,
                            insn.dilation_h * insn.in_w,
                        )
                    ),
                    ky.eq(0),
                    acc_row.eq(0),
                    acc_ptr.eq(0),
                    tap_base.eq(insn.inp_addr),
                    row_addr.eq(insn.inp_addr),
                ]
                m.next = "ARM"
            with m.State("ARM"):
                for counter in (kp, y):
                    counter.arm(m)
                j_one = (insn.out_w == 1) & (insn.kernel_w == 1)
                # Words of a row less one: span + span_adj, 0 only for out_w = kernel_w = 1
                # and 1 only for out_w = 1, kernel_w = 2 or out_w = 2, stride_w =
                # kernel_w = 1 (the dispatcher refuses zero out_w, stride_w and kernel_w).
                j.start(
                    m,
                    span + span_adj,
                    j_one,
                    ((insn.out_w == 1) & (insn.kernel_w == 2))
                    | ((insn.out_w == 2) & (insn.stride_w == 1) & (insn.kernel_w == 1)),
                )
                m.d.sync += [
                    running.eq(1),
                    run_row.eq(j_one),
                    run_pass.eq(j_one & y.one),
                ]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(go & cmd.last):
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"

        # RUN, as one-hot cases of the registered loop flags (see DenseWalker): the
        # next word of the row (c_j; it starts the next window if wrap), the next
        # output row (c_y), the next pass (c_p).
        c_j = ~j.last
        c_y = j.last & ~y.last
        c_p = j.last & y.last
        win = c_j & wrap
        next_row, next_tap = row_addr + row_step, tap_base + dil_row
        acc_next_row = acc_row + insn.out_w
        ready = self.o_cmd.ready
        end_row = ready & run_row  # go & ~c_j
        end_pass = ready & run_pass  # go & c_p
        # Each loop moves on one enable and restarts by its flag (DenseWalker's).
        j.move(m, go, j.last)
        y.move(m, end_row, y.last)
        kp.advance(m, end_pass)
        with m.If(go):
            j_next = j.next_last
            y_next = Mux(j.last, y.next_last, y.last)
            m.d.sync += [
                inp_ptr.eq(pick((c_j, inp_ptr + 1), (c_y, next_row), (c_p, next_tap))),
                # phase counts words modulo stride_w; a window starts at 0.
                phase.eq(Mux(c_j & ~wrap, phase + 1, 0)),
                wrap.eq(Mux(c_j & ~wrap, phase + 2 == insn.stride_w, insn.stride_w == 1)),
                acc_ptr.eq(pick((win, acc_ptr + 1), (c_j & ~wrap, acc_ptr), (c_y, acc_next_row))),
                # After the last command ``running`` falls, and the products with it.
                run_row.eq(j_next & ~cmd.last),
                run_pass.eq(j_next & y_next & ~cmd.last),
            ]
            with m.If(win):
                m.d.sync += [win_left.eq(win_left - 1), in_win.eq(in_win & (win_left != 0))]
        with m.If(end_row):
            m.d.sync += [
                win_left.eq(insn.out_w - 1),
                in_win.eq(insn.out_w != 0),
                row_addr.eq(Mux(c_y, next_row, next_tap)),
                acc_row.eq(Mux(c_y, acc_next_row, 0)),
            ]
        with m.If(end_pass):
            m.d.sync += [ky.eq(ky + 1), tap_base.eq(next_tap)]
        return m
