"""Small helpers for pipelined datapaths and sequencers, shared by the units."""

from amaranth.hdl import Mux, Signal, Value

__all__ = [
    "register",
    "delay_chain",
    "bit_length",
    "group_lengths",
    "combine_lengths",
    "round_up",
    "accept",
    "connect_stream",
    "registered_equal",
]


def register(m, value, name, shape=None):
    """A register following ``value``; datapath registers have no reset (SRL/DSP friendly)."""
    reg = Signal(value.shape() if shape is None else shape, name=name, reset_less=True)
    m.d.sync += reg.eq(value)
    return reg


def delay_chain(m, signal, stages, prefix="valid"):
    """``[signal, signal delayed 1, ..., delayed stages]``: a control bit (with reset)
    travelling alongside a pipeline, one register per stage named ``{prefix}{n}``."""
    chain = [signal]
    for n in range(stages):
        v = Signal(name=f"{prefix}{n + 1}")
        m.d.sync += v.eq(chain[-1])
        chain.append(v)
    return chain


def bit_length(m, x, name):
    """``bit_length(x)`` of an unsigned value (0 for 0): a priority encoder, combinational."""
    length = Signal(range(len(x) + 1), name=name)
    for k in range(len(x)):  # later assignments win: the highest set bit
        with m.If(x[k]):
            m.d.comb += length.eq(k + 1)
    return length


def leading_zeros(m, x, name):
    """``len(x) - bit_length(x)`` of an unsigned value, combinational: split in halves
    recursively (the high half's count, or its width plus the low half's), a balanced
    tree rather than the chain of a priority encoder, and no subtractor behind it."""

    def count(bits):
        n = len(bits)
        if n == 1:
            return ~bits[0]
        half = n - n // 2  # the low half's width; the high half gets the rest
        lo, hi = bits[:half], bits[half:]
        return Mux(hi.any(), count(hi), len(hi) + count(lo))

    result = Signal(range(len(x) + 1), name=name)
    m.d.comb += result.eq(count(x))
    return result


def group_lengths(m, x, name, group=8):
    """The first half of a two-stage :func:`bit_length`: ``[(any, bit_length)]`` of each
    ``group``-bit slice of ``x`` from bit 0 (combinational, a few LUT levels)."""
    return [
        (x[lo : lo + group].any(), bit_length(m, x[lo : lo + group], f"{name}{g}"))
        for g, lo in enumerate(range(0, len(x), group))
    ]


def combine_lengths(m, groups, name, group=8):
    """The second half: ``bit_length(x)`` from :func:`group_lengths` (registered by the
    caller in between): the highest non-empty slice's length plus its offset."""
    length = Signal(range(group * len(groups) + 1), name=name)
    for g, (nonzero, part) in enumerate(groups):  # later assignments win
        with m.If(nonzero):
            m.d.comb += length.eq(g * group + part)
    return length


def round_up(q, up):
    """``(mant, carry)``: a rounded mantissa ``q`` plus its round-up bit ``up``, in
    ``len(q)`` bits. A carry out of the top (all-ones ``q`` plus one) renormalizes:
    ``mant`` is the sum shifted right by one (exact, the sum being a power of two) and
    ``carry``, 1, is what the exponent gains."""
    total = q + up
    width = len(q)
    return Mux(total[width], total[1 : width + 1], total[:width]), total[width]


def accept(m, port, reg, next_state):
    """In the current FSM state: ready for ``port`` (a stream); a valid payload is taken
    into the register ``reg`` and the FSM goes to ``next_state``."""
    m.d.comb += port.ready.eq(1)
    with m.If(port.valid):
        m.d.sync += reg.eq(port.payload)
        m.next = next_state


def connect_stream(m, source, sink):
    """Join two streams whose payloads have the same width but not the same shape (a
    FIFO's ``r_stream`` / ``w_stream`` and a unit's structured stream), which
    :func:`amaranth.lib.wiring.connect` refuses."""
    assert len(Value.cast(source.payload)) == len(Value.cast(sink.payload))
    m.d.comb += [
        sink.valid.eq(source.valid),
        sink.payload.eq(source.payload),
        source.ready.eq(sink.ready),
    ]


def registered_equal(m, value, target, before, moved, loaded, at_load, name):
    """``value == target`` this cycle, with no compare after ``value``'s last edge.

    For a counter that, at each edge, holds, moves by one step (``moved``, a register:
    the counter moved at the last edge) or is loaded (``loaded``, likewise): ``value``
    is compared every cycle with ``target`` and with ``before``, the value one step
    short of it, into registers; the result is the one that holds now, or ``at_load``
    (a register set with the load) after a load. ``target`` and ``before`` are
    registers or constants, so each compare is a few LUTs from flip-flops.
    """
    eq, eq_before = Signal(name=f"{name}_eq"), Signal(name=f"{name}_eq_before")
    m.d.sync += [eq.eq(value == target), eq_before.eq(value == before)]
    return Mux(loaded, at_load, Mux(moved, eq_before, eq))
