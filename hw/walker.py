"""Address walkers: the loop nests of a CONV instruction, one pixel command per cycle.

A walker turns one CONV instruction into a stream of commands, one per word that
enters the systolic array: which INP word to read, which ACC word the result adds
to, which kernel tap (weight word) it belongs to, and whether the array's result
for it is written at all. :class:`~bamboo.hw.compute.ComputeUnit` owns the buffers,
the weight banks and the accumulators and runs whichever walker the instruction's
``mode`` selects: :class:`DenseWalker` here, ``DepthwiseWalker`` in
``hw/depthwise.py``. Walkers hold counters only; address products are formed once
per instruction in a setup cycle.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import accept

__all__ = ["command_layout", "DenseWalker"]


def command_layout(acc_addr_width):
    """One walker command.

    Fields
    ------
    inp_addr : unsigned(16)
        INP word to read.
    acc_addr : unsigned(acc_addr_width)
        ACC word the array's result adds to.
    tap : unsigned(16)
        Weight word index (``wgt_addr + tap``), non-decreasing within an instruction.
    write : unsigned(1)
        The result is accumulated (0: the word only feeds the depthwise taps).
    last : unsigned(1)
        Last command of the instruction.
    """
    return data.StructLayout(
        {"inp_addr": 16, "acc_addr": acc_addr_width, "tap": 16, "write": 1, "last": 1}
    )


class DenseWalker(wiring.Component):
    """Dense CONV loop nest: ``for blk, ky, kx (tap): for oy, ox: pixel``.

    Tap ``n = (blk * kernel_h + ky) * kernel_w + kx`` reads INP word
    ``inp_addr + blk*inp_block_stride + (oy*stride_h + ky*dilation_h)*in_w
    + ox*stride_w + kx*dilation_w`` and accumulates into ACC word ``oy*out_w + ox``.

    Parameters
    ----------
    insn_layout : data.StructLayout
        The CONV instruction layout (:func:`~bamboo.hw.isa_layout.instruction_layout`).
    acc_addr_width : int

    Members
    -------
    i_insn : ``In(stream.Signature(insn_layout))``
        Accepted when the previous instruction's last command has gone out.
    o_cmd : ``Out(stream.Signature(command_layout(acc_addr_width)))``
    """

    def __init__(self, insn_layout, acc_addr_width):
        self.insn_layout = insn_layout
        super().__init__(
            {
                "i_insn": In(stream.Signature(insn_layout)),
                "o_cmd": Out(stream.Signature(command_layout(acc_addr_width))),
            }
        )

    def elaborate(self, platform):
        m = Module()
        insn = Signal(self.insn_layout)
        row_step, dil_row = Signal(16), Signal(16)
        s = Signal(16)
        kx, ky, blk = Signal(4), Signal(4), Signal(8)
        ox, oy = Signal(10), Signal(10)
        pix = Signal.like(self.o_cmd.payload.acc_addr)
        blk_base, ky_base, tap_base = Signal(16), Signal(16), Signal(16)
        row_addr, pix_addr = Signal(16), Signal(16)

        last_x = ox == insn.out_w - 1
        last_y = oy == insn.out_h - 1
        last_kx = kx == insn.kernel_w - 1
        last_ky = ky == insn.kernel_h - 1
        last_blk = blk == insn.in_blocks - 1
        cmd = self.o_cmd.payload
        m.d.comb += [
            cmd.inp_addr.eq(pix_addr),
            cmd.acc_addr.eq(pix),
            cmd.tap.eq(s),
            cmd.write.eq(1),
            cmd.last.eq(last_x & last_y & last_kx & last_ky & last_blk),
        ]

        with m.FSM():
            with m.State("IDLE"):
                accept(m, self.i_insn, insn, "SETUP")
            with m.State("SETUP"):
                m.d.sync += [
                    row_step.eq(insn.stride_h * insn.in_w),
                    dil_row.eq(insn.dilation_h * insn.in_w),
                    s.eq(0),
                    kx.eq(0),
                    ky.eq(0),
                    blk.eq(0),
                    ox.eq(0),
                    oy.eq(0),
                    pix.eq(0),
                    blk_base.eq(insn.inp_addr),
                    ky_base.eq(insn.inp_addr),
                    tap_base.eq(insn.inp_addr),
                    row_addr.eq(insn.inp_addr),
                    pix_addr.eq(insn.inp_addr),
                ]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.o_cmd.valid.eq(1)
                with m.If(self.o_cmd.ready):
                    with m.If(~last_x):
                        m.d.sync += [
                            ox.eq(ox + 1),
                            pix.eq(pix + 1),
                            pix_addr.eq(pix_addr + insn.stride_w),
                        ]
                    with m.Elif(~last_y):
                        m.d.sync += [
                            ox.eq(0),
                            oy.eq(oy + 1),
                            pix.eq(pix + 1),
                            row_addr.eq(row_addr + row_step),
                            pix_addr.eq(row_addr + row_step),
                        ]
                    with m.Else():
                        # Next tap: kx steps by the dilation, then ky, then the block.
                        nb = Signal(16)
                        with m.If(~last_kx):
                            m.d.comb += nb.eq(tap_base + insn.dilation_w)
                            m.d.sync += kx.eq(kx + 1)
                        with m.Elif(~last_ky):
                            m.d.comb += nb.eq(ky_base + dil_row)
                            m.d.sync += [kx.eq(0), ky.eq(ky + 1), ky_base.eq(nb)]
                        with m.Else():
                            m.d.comb += nb.eq(blk_base + insn.inp_block_stride)
                            m.d.sync += [
                                kx.eq(0),
                                ky.eq(0),
                                blk.eq(blk + 1),
                                blk_base.eq(nb),
                                ky_base.eq(nb),
                            ]
                        m.d.sync += [
                            ox.eq(0),
                            oy.eq(0),
                            pix.eq(0),
                            s.eq(s + 1),
                            tap_base.eq(nb),
                            row_addr.eq(nb),
                            pix_addr.eq(nb),
                        ]
                    with m.If(cmd.last):
                        m.next = "IDLE"
        return m
