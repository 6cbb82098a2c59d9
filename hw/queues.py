"""Instruction queues and dependency tokens: the access-execute split (arch/isa.py).

The dispatcher (hw/fetch.py) fills three FIFOs of :func:`entry_layout` entries: the
load, compute and store queues. Each queue's head goes through a
:class:`QueueController`, which waits until the tokens its header asks to pop are
there, takes them, hands the instruction to its unit and, when the unit reports it
done, pushes the tokens it asks to push. Tokens live in :class:`TokenCounter`\\ s,
one per direction between neighbours (load -> compute, compute -> load,
compute -> store, store -> compute).

Ref: Moreau et al., "A Hardware-Software Blueprint for Flexible Deep Learning
Specialization" (VTA), 2019, section 3 (decoupled access-execute).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..arch.isa import HEADER, INSN_BITS
from .flagfifo import occupancy

__all__ = [
    "INDEX_BITS",
    "Fault",
    "InstructionFIFO",
    "QueueController",
    "TokenCounter",
    "entry_layout",
    "header_layout",
]

#: Width of an instruction index (``ERR_INSN``, ``INSN_COUNT``).
INDEX_BITS = 32


class Fault:
    """``entry.fault``: what the fetch unit saw while reading the instruction."""

    NONE = 0
    AXI_ERROR = 1  # RRESP was SLVERR or DECERR
    MISALIGNED = 2  # INSN_BASE is not a multiple of the bus width


def entry_layout():
    """A queued instruction: the raw ``word``, its ``index`` from INSN_BASE, a fetch ``fault``."""
    return data.StructLayout({"word": INSN_BITS, "index": INDEX_BITS, "fault": 2})


def header_layout():
    """The header every instruction starts with (opcode and token flags)."""
    return data.StructLayout({f.name: f.width for f in HEADER})


class InstructionFIFO(wiring.Component):
    """A queue's FIFO of :func:`entry_layout` entries, its head in a register.

    As :class:`amaranth.lib.fifo.SyncFIFOBuffered` seen from its ports (``depth``
    entries, two cycles from a write into an empty FIFO to a valid head, ``w_stream.ready``
    as soon as a read frees a place), but the head is refilled only while it is empty:
    the refill's enable, which fans out to every bit of the head register, then comes
    from registers alone, not from the reader's ``ready`` (a QueueController's token
    check). After a read the head is empty for a cycle; a QueueController takes an
    instruction at most every third cycle, so it never waits on the refill.

    Parameters
    ----------
    depth : int
        Entries held (the head and the LUT RAM behind it), a power of two.

    Attributes
    ----------
    w_stream : In(stream.Signature(entry_layout()))
    r_stream : Out(stream.Signature(entry_layout()))
    level : Out(range(depth + 1))
        Entries held: a population count, for observation (no handshake should use it).
    empty : Out(1)
        No entry held, a flip-flop (through an inverter).
    """

    def __init__(self, depth):
        if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two of at least 2, not {depth!r}")
        self.depth = depth
        entry = stream.Signature(entry_layout())
        super().__init__(
            {
                "w_stream": In(entry),
                "r_stream": Out(entry),
                "level": Out(range(depth + 1)),
                "empty": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        # The RAM holds up to ``depth`` entries: all of them while the head is empty.
        m.submodules.storage = storage = memory.Memory(shape=entry_layout(), depth=depth, init=[])
        w_port = storage.write_port()
        r_port = storage.read_port(domain="comb")
        produce, consume = Signal(range(depth)), Signal(range(depth))
        stored = Signal(range(depth + 1))  # entries in the RAM
        head = Signal(entry_layout(), reset_less=True)
        head_valid = Signal()
        full = Signal()
        write = self.w_stream.valid & ~full
        read = head_valid & self.r_stream.ready
        # Entries held (stored + head_valid) as a thermometer code: the flags are its
        # end bits, with no adder behind the read's handshake.
        occ, level = occupancy(m, depth, write & ~read, read & ~write)
        m.d.comb += [
            full.eq(occ[depth - 1]),
            self.empty.eq(~occ[0]),
            self.level.eq(level),
            self.w_stream.ready.eq(~full),
            self.r_stream.valid.eq(head_valid),
            self.r_stream.payload.eq(head),
        ]
        refill = (stored != 0) & ~head_valid  # registers only
        m.d.comb += [
            w_port.addr.eq(produce),
            w_port.data.eq(self.w_stream.payload),
            w_port.en.eq(write),
            r_port.addr.eq(consume),
        ]
        with m.If(write):
            m.d.sync += produce.eq(produce + 1)
        with m.If(refill):
            m.d.sync += [head.eq(r_port.data), head_valid.eq(1), consume.eq(consume + 1)]
        with m.Elif(self.r_stream.ready):
            m.d.sync += head_valid.eq(0)
        with m.If(write & ~refill):
            m.d.sync += stored.eq(stored + 1)
        with m.Elif(refill & ~write):
            m.d.sync += stored.eq(stored - 1)
        return m


class TokenCounter(wiring.Component):
    """Tokens sent one way between two neighbouring queues.

    Attributes
    ----------
    push, pop : In(1)
        One token in / out this cycle (pop only when ``avail``).
    avail : Out(1)
        At least one token is there.

    ``push`` and ``pop`` only select among registers: ``count`` and the registers
    ``count + 1`` and ``count - 1`` kept beside it, and the flags ``avail``
    (``count != 0``) and ``one`` (``count == 1``), so a strobe decided late in the cycle
    runs through one multiplexer rather than an adder's carry chain and a zero test.
    """

    def __init__(self, width=16):
        self._width = width
        super().__init__({"push": In(1), "pop": In(1), "avail": Out(1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(self._width)
        inc = Signal(self._width, init=1)  # count + 1
        dec = Signal(self._width, init=(1 << self._width) - 1)  # count - 1
        one = Signal()  # count == 1
        two = Signal()  # count == 2
        avail = Signal()
        m.d.comb += self.avail.eq(avail)
        with m.If(self.push & ~self.pop):
            m.d.sync += [
                count.eq(inc),
                inc.eq(inc + 1),
                dec.eq(count),
                avail.eq(1),
                one.eq(~avail),
                two.eq(one),
            ]
        with m.Elif(self.pop & ~self.push):
            m.d.sync += [
                count.eq(dec),
                inc.eq(count),
                dec.eq(dec - 1),
                avail.eq(~one),
                one.eq(two),
                two.eq(dec == 2),
            ]
        return m


class QueueController(wiring.Component):
    """Pops tokens, issues the head instruction to its unit, pushes tokens when it is done.

    Parameters
    ----------
    prev, next : bool
        Whether this queue has a previous / next neighbour (load has no previous,
        store no next; the dispatcher rejects token bits towards a missing one).
    inflight : int
        Instructions the unit may hold at once, 1 or 2. With 2 (the compute queue of an
        accelerator with two ACC banks) the controller issues the next instruction
        while the previous one still runs; the unit must then pulse ``done`` once per
        instruction, in the order they were issued, and the push flags wait in a
        two-entry FIFO for their ``done``.

    Attributes
    ----------
    i_insn : In(stream.Signature(entry_layout()))
        The queue FIFO's head.
    o_exec : Out(stream.Signature(entry_layout()))
        To the unit; after the handshake the unit pulses ``done`` (a later cycle).
    done : In(1)
    prev_avail, next_avail : In(1)
        Tokens waiting from the previous / next queue.
    pop_prev, pop_next, push_prev, push_next : Out(1)
        One-cycle strobes into the token counters. The pops are registered: they strobe
        in the cycle after the head is taken (in ISSUE), and this controller reads
        ``*_avail`` again only in IDLE, two cycles later at the earliest.
    busy : Out(1)
        An instruction has been issued and is not done.
    stall : Out(1)
        The head instruction waits for a token.
    idle : Out(1)
        Nothing issued and the queue is empty.
    index : Out(INDEX_BITS)
        Index of the head (when ``stall``) or of the issued instruction.
    """

    def __init__(self, *, prev=True, next=True, inflight=1):
        if inflight not in (1, 2):
            raise ValueError(f"inflight must be 1 or 2, not {inflight!r}")
        self._prev, self._next = prev, next
        self.inflight = inflight
        super().__init__(
            {
                "i_insn": In(stream.Signature(entry_layout())),
                "o_exec": Out(stream.Signature(entry_layout())),
                "done": In(1),
                "prev_avail": In(1),
                "next_avail": In(1),
                "pop_prev": Out(1),
                "pop_next": Out(1),
                "push_prev": Out(1),
                "push_next": Out(1),
                "busy": Out(1),
                "stall": Out(1),
                "idle": Out(1),
                "index": Out(INDEX_BITS),
            }
        )

    def elaborate(self, platform):
        m = Module()
        head = data.View(header_layout(), self.i_insn.payload.word[: header_layout().size])
        cur = Signal(entry_layout())
        hdr = data.View(header_layout(), cur.word[: header_layout().size])
        prev_ok = ~head.pop_prev | self.prev_avail if self._prev else 1
        next_ok = ~head.pop_next | self.next_avail if self._next else 1
        m.d.comb += self.o_exec.payload.eq(cur)

        # inflight 2: the push flags of the issued instructions not yet done, oldest in
        # slot 0.
        pushes = data.StructLayout({"prev": 1, "next": 1})
        slots = [Signal(pushes, name=f"push_slot{k}") for k in range(2)]
        held = [Signal(name=f"held{k}") for k in range(2)]  # slot k holds an entry
        if self.inflight == 2:
            enq = self.o_exec.valid & self.o_exec.ready
            mine = Signal(pushes)
            m.d.comb += [
                mine.prev.eq(hdr.push_prev if self._prev else 0),
                mine.next.eq(hdr.push_next if self._next else 0),
            ]
            with m.If(self.done):
                m.d.comb += [
                    self.push_prev.eq(slots[0].prev),
                    self.push_next.eq(slots[0].next),
                ]
            # Shift on done, append at the first free slot after the shift.
            keep1 = held[1] & ~self.done
            after0 = Mux(self.done, held[1], held[0])
            m.d.sync += [
                held[0].eq(after0 | enq),
                held[1].eq(keep1 | (enq & after0)),
            ]
            with m.If(self.done):
                m.d.sync += slots[0].eq(slots[1])
            with m.If(enq & ~after0):
                m.d.sync += slots[0].eq(mine)
            with m.If(enq & after0):
                m.d.sync += slots[1].eq(mine)
        outstanding = held[0] if self.inflight == 2 else 0
        room = ~held[1] if self.inflight == 2 else 1

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [
                    self.idle.eq(~self.i_insn.valid & ~outstanding),
                    self.index.eq(self.i_insn.payload.index),
                    self.busy.eq(outstanding),
                ]
                # inflight 2: at most two outstanding, one of them issued here.
                with m.If(self.i_insn.valid & room):
                    with m.If(prev_ok & next_ok):
                        m.d.comb += self.i_insn.ready.eq(1)
                        m.d.sync += [
                            cur.eq(self.i_insn.payload),
                            self.pop_prev.eq(head.pop_prev if self._prev else 0),
                            self.pop_next.eq(head.pop_next if self._next else 0),
                        ]
                        m.next = "ISSUE"
                    with m.Else():
                        m.d.comb += self.stall.eq(1)
            with m.State("ISSUE"):
                m.d.sync += [self.pop_prev.eq(0), self.pop_next.eq(0)]
                m.d.comb += [self.o_exec.valid.eq(1), self.busy.eq(1), self.index.eq(cur.index)]
                with m.If(self.o_exec.ready):
                    m.next = "RUN" if self.inflight == 1 else "IDLE"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), self.index.eq(cur.index)]
                with m.If(self.done):
                    m.d.comb += [
                        self.push_prev.eq(hdr.push_prev if self._prev else 0),
                        self.push_next.eq(hdr.push_next if self._next else 0),
                    ]
                    m.next = "IDLE"
        return m
