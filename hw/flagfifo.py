"""A small FIFO whose flags are registers and whose enables are a LUT from every register.

Amaranth's ``SyncFIFO``/``SyncFIFOBuffered`` compute their level and flags through an
adder and, for the buffered one, a handshake between the inner FIFO and the output
register: a read enable that arrives late in the cycle (a consumer's decision) goes
three or four LUTs and a carry chain deep before it reaches a flip-flop. Here the
occupancy is a thermometer code, ``occ[k]`` = "more than ``k`` words": a push shifts a
one in, a pop shifts it out, and the flags are its end bits. Each bit's next value is a
function of the two enables and at most five register bits, one LUT6 up to depth 4.
``r_data`` is a register too, the head: refilled on a pop from the word after it
(selected by a pointer kept one ahead, so no adder sits before the mux), or loaded with
the word written into an empty FIFO. The words are registers: meant for a few.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FlagFIFO", "occupancy"]


def occupancy(m, depth, push, pop, name="occ"):
    """``(code, level)`` of a queue of up to ``depth`` entries. ``code`` is a thermometer
    code: bit ``k`` is "more than ``k`` entries held", shifted up by ``push`` alone and
    down by ``pop`` alone. Its end bits are the not-empty and full flags, registers with
    no adder before them. ``level``, the entries held (the code's population count), is
    for observation: nothing that moves the queue should wait on its adder.
    """
    occ = Signal(depth, name=name)
    with m.Switch(Cat(push, pop)):
        with m.Case(0b01):  # one more entry: shift a one in at the bottom
            m.d.sync += occ.eq(Cat(1, occ[:-1]))
        with m.Case(0b10):  # one fewer: shift it out
            m.d.sync += occ.eq(occ[1:])
    return occ, sum(occ[k] for k in range(depth))


class FlagFIFO(wiring.Component):
    """``depth`` words of ``width`` bits in registers.

    The ports are those of Amaranth's ``FIFOInterface``: ``w_en`` without ``w_rdy``
    and ``r_en`` without ``r_rdy`` do nothing. A word written in a cycle is readable in
    the next one (``r_rdy`` rises a cycle after ``w_en``, as ``SyncFIFO``'s does).

    Parameters
    ----------
    width : int
    depth : int
        A power of two, at least 2.

    Attributes
    ----------
    w_en, w_data, r_en : In
    w_rdy, r_rdy : Out(1)
        Not full, not empty: each a flip-flop of the occupancy code (``w_rdy`` through
        an inverter that the consumer's LUT absorbs).
    r_data : Out(width)
        The oldest word (valid when ``r_rdy``), a register.
    level : Out(range(depth + 1))
        Words held: the occupancy code's population count, for observation (not a
        register; no unit's handshake should depend on it).
    """

    def __init__(self, *, width, depth):
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two of at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__(
            {
                "w_en": In(1),
                "w_data": In(width),
                "w_rdy": Out(1),
                "r_en": In(1),
                "r_data": Out(width),
                "r_rdy": Out(1),
                "level": Out(range(depth + 1)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        words = Array(Signal(self.width, name=f"word{k}", reset_less=True) for k in range(depth))
        w_ptr = Signal(range(depth))
        r_next = Signal(range(depth), init=1)  # the read pointer plus one: the word after the head
        head = Signal(self.width, reset_less=True)
        push = self.w_en & self.w_rdy
        pop = self.r_en & self.r_rdy
        occ, level = occupancy(m, depth, push, pop)  # occ[k]: more than k words held
        m.d.comb += [
            self.r_rdy.eq(occ[0]),
            self.w_rdy.eq(~occ[depth - 1]),
            self.r_data.eq(head),
            self.level.eq(level),
        ]
        with m.If(push):
            m.d.sync += [words[w_ptr].eq(self.w_data), w_ptr.eq(w_ptr + 1)]
        with m.If(pop):
            m.d.sync += r_next.eq(r_next + 1)
            # The word after the head if there is one, else the one written now (if any).
            m.d.sync += head.eq(Mux(occ[1], words[r_next], self.w_data))
        with m.Elif(push & ~occ[0]):
            m.d.sync += head.eq(self.w_data)
        return m
