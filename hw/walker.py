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

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import accept, registered_equal

__all__ = ["command_layout", "both_last_next", "Countdown", "DenseWalker", "pick"]


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
    tap_last : unsigned(1)
        Last command of its tap (the next command's ``tap`` is one more).
    tap_final : unsigned(1)
        The command belongs to the instruction's last tap.

    The flags come from registers, so the sequencer needs no comparator on ``tap``.
    """
    return data.StructLayout(
        {
            "inp_addr": 16,
            "acc_addr": acc_addr_width,
            "tap": 16,
            "write": 1,
            "last": 1,
            "tap_last": 1,
            "tap_final": 1,
        }
    )


class Countdown:
    """A loop counter as its registered ``last`` flag: ``left`` counts the iterations
    after the current one, and ``last`` (``left == 0``) is set a cycle early, when
    ``left`` steps from 1, so no comparator sits between the flag and its users;
    ``penult`` (``left == 1``) likewise, for :func:`both_last_next`. Its own next value
    on a step, ``left == 2``, is not compared behind the step's enable either
    (:func:`~bamboo.hw.pipeline.registered_equal`: ``left`` compared with 2 and 3 every
    cycle into registers; after a start, ``n_m1 == 2``).

    ``setup(m, n)`` (``m.d.sync``, once per instruction) keeps the loop length ``n``
    and its flags, and ``arm(m)``, a cycle later, starts the loop from those registers;
    ``step(m)`` counts one iteration; ``move(m, enable, restart)`` does either.
    """

    def __init__(self, m, width, name):
        self.left = Signal(width, name=f"{name}_left")
        self.last = Signal(name=f"{name}_last")
        self.n_m1 = Signal(width, name=f"{name}_n_m1")
        self.one = Signal(name=f"{name}_one")  # a loop of one iteration
        self.two = Signal(name=f"{name}_two")  # a loop of two iterations
        self.penult = Signal(name=f"{name}_penult")  # left == 1
        # What moved ``left`` at the last edge, and ``left == 2`` from compares made
        # before it (``registered_equal``; after a start, the new length's).
        self._stepped = Signal(name=f"{name}_stepped")
        self._started = Signal(name=f"{name}_started")
        m.d.sync += [self._stepped.eq(0), self._started.eq(0)]
        self._at2_now = registered_equal(
            m, self.left, 2, 3, self._stepped, self._started, self.n_m1 == 2, f"{name}_left2"
        )

    def setup(self, m, n):
        """Keep a loop of ``n`` iterations, with its one- and two-iteration flags."""
        m.d.sync += [self.n_m1.eq(n - 1), self.one.eq(n == 1), self.two.eq(n == 2)]

    def arm(self, m):
        self.start(m, self.n_m1, self.one, self.two)

    def start(self, m, n_m1, one, two):
        """Keep the length and start the loop in one go (``one``: ``n_m1 == 0``, ``two``:
        ``n_m1 == 1``, each given from the loop's length without the subtraction)."""
        m.d.sync += [
            self.n_m1.eq(n_m1),
            self.one.eq(one),
            self.two.eq(two),
            self.left.eq(n_m1),
            self.last.eq(one),
            self.penult.eq(two),
            self._started.eq(1),
        ]

    @property
    def next_last(self):
        """``last`` after a move that restarts the loop on its last iteration and steps
        it otherwise: a one-iteration loop's, or ``penult``."""
        return Mux(self.last, self.one, self.penult)

    def step(self, m):
        m.d.sync += [
            self.left.eq(self.left - 1),
            self.last.eq(self.penult),
            self.penult.eq(self._at2_now),
            self._stepped.eq(1),
        ]

    def advance(self, m, step):
        """Count one iteration if ``step``."""
        with m.If(step):
            self.step(m)

    def move(self, m, enable, restart):
        """On ``enable``, start again if ``restart`` (a register, e.g. the loop's own
        ``last``), else count one iteration. Each register then loads on ``enable``
        alone (a flip-flop's clock enable) with a next value chosen by registers only,
        so a late enable passes one LUT."""
        with m.If(enable):
            m.d.sync += [
                self.left.eq(Mux(restart, self.n_m1, self.left - 1)),
                self.last.eq(Mux(restart, self.one, self.penult)),
                self.penult.eq(Mux(restart, self.two, self._at2_now)),
                self._stepped.eq(~restart),
                self._started.eq(restart),
            ]


def both_last_next(inner, outer):
    """``inner.last & outer.last`` after one move of a two-level loop nest: ``inner``
    steps unless last; else it restarts and ``outer`` steps unless last; else both
    restart. A step ends on its last iteration at ``left == 1`` (``penult``), a restart
    at once if the loop is one long.

    Read from the two counters' flags alone (six inputs: one LUT), not from the move's
    one-hot selects nor from a register holding the product, which would only add
    inputs that the flags already decide.
    """
    return Mux(
        inner.last,
        inner.one & outer.next_last,
        inner.penult & outer.last,
    )


def pick(*cases):
    """AND-OR of ``(select, value)`` pairs with one-hot selects (0 if none)."""
    out = 0
    for sel, value in cases:
        out = out | Mux(sel, value, 0)
    return out


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
        # INP addresses and their steps: the width of the instruction's INP address.
        row_step = Signal.like(insn.inp_addr, name="row_step")
        dil_row = Signal.like(insn.inp_addr, name="dil_row")
        s = Signal.like(self.o_cmd.payload.tap, name="s")
        # Loop counters: ox, oy, kx, ky, blk, as down-counters with registered flags.
        x, y = Countdown(m, len(insn.out_w), "x"), Countdown(m, len(insn.out_h), "y")
        kx, ky = Countdown(m, len(insn.kernel_w), "kx"), Countdown(m, len(insn.kernel_h), "ky")
        blk = Countdown(m, len(insn.in_blocks), "blk")
        # Registered products of the flags, each set from the flags' next values: the
        # command ends its tap (x and y last: ``tap_last``), the tap ends a kernel
        # window (kx and ky last). No AND chain of the five flags sits before a step.
        tap_last, win_last = Signal(name="tap_last"), Signal(name="win_last")
        # ``tap_last & win_last & blk.last`` (the instruction's last command) as a
        # register of its own, set from the three flags' next values: the compute unit's
        # state and issue logic take it from one flip-flop.
        last, arming = Signal(name="last"), Signal(name="arming")
        # RUN as a register of its own: the counters' enable does not decode the state.
        running = Signal(name="running")
        pix = Signal.like(self.o_cmd.payload.acc_addr, name="pix")
        # The addresses a tap can start from next, as registers: the next column of the
        # kernel (``nb_tap``: this tap's base + the dilation), the next kernel row
        # (``nb_ky``) and the next block (``nb_blk``); each is set to the chosen start
        # plus its step when its loop moves, so no adder sits between a base and the
        # pick of the next start.
        nb_tap = Signal.like(insn.inp_addr, name="nb_tap")
        nb_ky = Signal.like(insn.inp_addr, name="nb_ky")
        nb_blk = Signal.like(insn.inp_addr, name="nb_blk")
        row_addr = Signal.like(insn.inp_addr, name="row_addr")
        pix_addr = Signal.like(insn.inp_addr, name="pix_addr")

        go = Signal(name="go")  # RUN and the command is taken
        cmd = self.o_cmd.payload
        m.d.comb += [
            cmd.inp_addr.eq(pix_addr),
            cmd.acc_addr.eq(pix),
            cmd.tap.eq(s),
            cmd.write.eq(1),
            cmd.tap_last.eq(tap_last),
            cmd.tap_final.eq(win_last & blk.last),
            cmd.last.eq(last),
            self.o_cmd.valid.eq(running),
            go.eq(running & self.o_cmd.ready),
        ]

        # ``running`` ANDed with the flags that select a tap's end (``tap_last``) and a
        # window's end (``win_last``), kept as registers of their own, so the enables of
        # the kernel loops are ``ready`` and one flip-flop: ``go`` (two) and the flags do
        # not stack up in front of them.
        run_tap, run_win = Signal(name="run_tap"), Signal(name="run_win")
        run_x = Signal(name="run_x")  # running & x.last: a row of pixels ends

        with m.FSM():
            with m.State("IDLE"):
                accept(m, self.i_insn, insn, "SETUP")
            with m.State("SETUP"):
                for counter, n in (
                    (x, insn.out_w),
                    (y, insn.out_h),
                    (kx, insn.kernel_w),
                    (ky, insn.kernel_h),
                    (blk, insn.in_blocks),
                ):
                    counter.setup(m, n)
                m.d.sync += [
                    row_step.eq(insn.stride_h * insn.in_w),
                    dil_row.eq(insn.dilation_h * insn.in_w),
                    s.eq(0),
                    pix.eq(0),
                    nb_tap.eq(insn.inp_addr + insn.dilation_w),
                    nb_blk.eq(insn.inp_addr + insn.inp_block_stride),
                    row_addr.eq(insn.inp_addr),
                    pix_addr.eq(insn.inp_addr),
                ]
                m.next = "ARM"
            with m.State("ARM"):
                # The counters and flags start below, after the RUN updates: the start
                # takes priority, so ``arming`` (a state decode) selects their data and
                # ``ready`` only enables them.
                m.d.comb += arming.eq(1)
                m.d.sync += running.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(go & cmd.last):
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"

        # RUN: what the next command changes, as one-hot cases of the registered loop
        # flags, each register choosing among its candidates with an AND-OR: the
        # next pixel (c_x), the next row (c_y), the next tap (c_t), which steps kx,
        # else ky, else the block (t_blk), by the dilation or the pitch.
        # ``ready`` (the compute unit's issue register) is only ever an enable: every
        # register's next value is chosen by registers, and ``go``, ``step_t``,
        # ``t_row`` and ``t_blk`` reach the flip-flops' clock enables alone. While
        # running, ``run_tap`` equals ``tap_last`` and ``run_win`` equals ``tap_last &
        # win_last``: the enables read the ``run_*`` registers, the data either.
        c_x = ~x.last
        c_y = x.last & ~tap_last
        c_t = tap_last
        ready = self.o_cmd.ready
        step_t = ready & run_tap  # go & c_t
        t_row = step_t & kx.last  # t_ky | t_blk: a kernel row ends
        t_blk = ready & run_win  # go & c_t & win_last
        nb = pick((~kx.last, nb_tap), (kx.last & ~ky.last, nb_ky), (win_last, nb_blk))
        next_row = row_addr + row_step
        # Each loop moves on one enable and restarts by its flag: x on every command, y
        # at a row's end (c_y or c_t), kx at a tap's end, ky at a kernel row's end
        # (t_ky or t_blk), the block at a window's end.
        x.move(m, go, x.last)
        y.move(m, ready & run_x, tap_last)
        kx.move(m, step_t, kx.last)
        ky.move(m, t_row, ky.last)
        blk.advance(m, t_blk)
        # The flags after this command: the tap's end (x and y last), the window's end
        # (kx and ky last, moved only at a tap's end) and the instruction's.
        tap_next = both_last_next(x, y)
        win_next = Mux(c_t, both_last_next(kx, ky), win_last)
        last_next = tap_next & win_next & Mux(run_win, blk.penult, blk.last)
        with m.If(go):
            m.d.sync += [
                pix.eq(Mux(c_t, 0, pix + 1)),
                pix_addr.eq(pick((c_x, pix_addr + insn.stride_w), (c_y, next_row), (c_t, nb))),
                tap_last.eq(tap_next),
                win_last.eq(win_next),
                last.eq(last_next),
                # After the last command ``running`` falls, and the products with it.
                run_tap.eq(tap_next & ~last),
                run_x.eq(x.next_last & ~last),
                run_win.eq(tap_next & win_next & ~last),
            ]
            with m.If(~c_x):
                m.d.sync += row_addr.eq(Mux(c_y, next_row, nb))
        with m.If(step_t):
            # The next start plus the dilation, picked after the adds (each from a
            # register) so the pick's selects do not wait in front of a carry chain.
            dw = insn.dilation_w
            m.d.sync += [
                s.eq(s + 1),
                nb_tap.eq(
                    pick(
                        (~kx.last, nb_tap + dw),
                        (kx.last & ~ky.last, nb_ky + dw),
                        (win_last, nb_blk + dw),
                    )
                ),
            ]
        with m.If(t_row):  # kx.last: the next start is nb_ky, or nb_blk if a window ends
            m.d.sync += nb_ky.eq(Mux(win_last, nb_blk + dil_row, nb_ky + dil_row))
        with m.If(t_blk):  # the next start is nb_blk
            m.d.sync += nb_blk.eq(nb_blk + insn.inp_block_stride)
        with m.If(arming):  # the counters start, with their one-iteration flags
            for counter in (x, y, kx, ky, blk):
                counter.arm(m)
            tap0, win0 = x.one & y.one, kx.one & ky.one  # registers since SETUP
            m.d.sync += [
                nb_ky.eq(insn.inp_addr + dil_row),  # dil_row is set in SETUP
                tap_last.eq(tap0),
                win_last.eq(win0),
                last.eq(tap0 & win0 & blk.one),
                run_tap.eq(tap0),
                run_win.eq(tap0 & win0),
                run_x.eq(x.one),
            ]
        return m
