"""The AXI4-Lite register file, generated from the table in ``bamboo.arch.registers``.

Nothing here names a register: the read multiplexer, the write decoder and the
engine-facing ports are built by iterating over :data:`~bamboo.arch.registers.REGISTERS`
and dispatching on each field's *kind*. Adding a register to the table adds it to
the hardware, the runtime's view and ``docs/registers.md`` at once.

Port naming: the bus is an ``s_axi`` interface whose members are the AXI names in
lower case (``awaddr``, ``wvalid``...); Amaranth flattens it to ``s_axi__awaddr``
in Verilog. The board top level renames or attributes those ports for Vivado's
``X_INTERFACE_INFO`` inference.

Ref: AMBA AXI and ACE Protocol Specification (ARM IHI 0022E), part B1 (AXI4-Lite).
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..arch.config import AcceleratorConfig
from ..arch.registers import REGISTERS

__all__ = ["AXI4LiteSignature", "ControlSignature", "RegisterFile", "RESP_OKAY", "RESP_SLVERR"]

RESP_OKAY = 0b00
RESP_SLVERR = 0b10

# Kinds whose engine signal the register file drives; every other signal is an input.
_OUTPUT_KINDS = ("rw", "pulse")


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite from the manager's side (flip it, ``In(...)``, for a subordinate).

    Parameters
    ----------
    addr_width : int
        Byte address width.
    data_width : int
        Data width, 32 or 64 bits.
    """

    def __init__(self, addr_width, data_width=32):
        if not isinstance(addr_width, int) or not 3 <= addr_width <= 64:
            raise ValueError(f"addr_width must be an integer from 3 to 64, not {addr_width!r}")
        if data_width not in (32, 64):
            raise ValueError(f"data_width must be 32 or 64, not {data_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__(
            {
                "awaddr": Out(addr_width),
                "awprot": Out(3),
                "awvalid": Out(1),
                "awready": In(1),
                "wdata": Out(data_width),
                "wstrb": Out(data_width // 8),
                "wvalid": Out(1),
                "wready": In(1),
                "bresp": In(2),
                "bvalid": In(1),
                "bready": Out(1),
                "araddr": Out(addr_width),
                "arprot": Out(3),
                "arvalid": Out(1),
                "arready": In(1),
                "rdata": In(data_width),
                "rresp": In(2),
                "rvalid": In(1),
                "rready": Out(1),
            }
        )

    def __eq__(self, other):
        return (
            type(other) is type(self)
            and other.addr_width == self.addr_width
            and other.data_width == self.data_width
        )

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))


def _engine_signals():
    """Engine-facing signals from the table: ``{name: (is_output, width)}``."""
    signals = {}

    def add(name, out, width):
        prev_out, prev_width = signals.get(name, (out, 0))
        assert prev_out == out, name  # arch.registers._check guarantees one direction
        signals[name] = (out, max(prev_width, width))

    for reg in REGISTERS:
        for f in reg.fields:
            if f.signal is None or f.kind == "config":
                continue
            if f.kind == "counter":
                add(f.signal, False, 1)  # a strobe; the count lives here
            else:
                add(f.signal, f.kind in _OUTPUT_KINDS, f.signal_lsb + f.width)
            if f.trigger is not None:
                add(f.trigger, False, 1)
    return signals


class ControlSignature(wiring.Signature):
    """What the register file drives to the engine and reads back, from the register file's side.

    Outputs: ``start`` and ``soft_reset`` (one-cycle pulses), ``irq_enable``,
    ``insn_base``, ``insn_count``, ``window_base``, ``window_size``. Inputs:
    ``busy`` (level), ``done`` and ``error`` (pulses), ``done_irq`` (pulses with ``done``
    when the run ended at a FINISH with ``irq`` set: the interrupt source), ``error_code``
    and ``err_insn`` (valid with ``error``), and a busy and stall strobe per unit
    (``fetch_busy``, ``fetch_stall``...). The list is derived from the register table.
    """

    def __init__(self):
        super().__init__(
            {
                name: (Out if out else In)(width)
                for name, (out, width) in sorted(_engine_signals().items())
            }
        )

    def __eq__(self, other):
        return type(other) is type(self)

    def __hash__(self):
        return hash(type(self))


class RegisterFile(wiring.Component):
    """AXI4-Lite register file of the accelerator, with its interrupt line.

    Writes accept AW and W in either order (one of each is buffered) and answer
    on B once both have arrived; reads answer on R one cycle after AR. Both
    response channels hold their data until the manager is ready.

    Parameters
    ----------
    config : AcceleratorConfig
        Gives the AXI-Lite address width and the ``config_id`` constant.
    unmapped_error : bool
        Answer SLVERR to accesses outside the map. The default answers OKAY,
        reads zero and ignores the write, because an external abort on the Zynq
        MPSoC's HPM port can take down the process or kernel that strayed.

    Attributes
    ----------
    s_axi : In(AXI4LiteSignature)
        The AXI4-Lite subordinate port (Verilog ``s_axi__awaddr``...).
    engine : Out(ControlSignature)
        Control outputs and status/counter inputs (Verilog ``engine__start``...).
    irq : Out(1)
        High while ``CTRL.irq_enable`` and any ``IRQ_STATUS`` bit are set.
    """

    def __init__(self, config, *, unmapped_error=False):
        if not isinstance(config, AcceleratorConfig):
            raise ValueError(f"config must be an AcceleratorConfig, not {config!r}")
        if not isinstance(unmapped_error, bool):
            raise ValueError(f"unmapped_error must be a bool, not {unmapped_error!r}")
        end = max(r.offset for r in REGISTERS) + 4
        if end > 1 << config.axil_addr_width:
            raise ValueError(
                f"the register map needs {end} bytes; axil_addr_width "
                f"{config.axil_addr_width} gives {1 << config.axil_addr_width}"
            )
        self.config = config
        self.unmapped_error = unmapped_error
        self.registers = REGISTERS
        super().__init__(
            {
                "s_axi": In(AXI4LiteSignature(config.axil_addr_width)),
                "engine": Out(ControlSignature()),
                "irq": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bus, eng = self.s_axi, self.engine
        pulses = {}  # signal -> requested this cycle by a write (comb)
        store = {}  # (register, field) or signal -> state signal
        counters = {}  # strobe -> (count, shadow or None)
        clear = Signal()  # start or soft reset accepted: zero status and counters

        # State for every field that holds a value, created from the table.
        for name, (out, width) in _engine_signals().items():
            if out and name not in ("start", "soft_reset"):
                init = sum(
                    f.reset << f.signal_lsb for r in REGISTERS for f in r.fields if f.signal == name
                )
                store[name] = Signal(width, init=init, name=f"q_{name}")
                m.d.comb += getattr(eng, name).eq(store[name])
        for reg in REGISTERS:
            for f in reg.fields:
                key = (reg.name, f.name)
                if f.kind == "rw" and f.signal is None:
                    store[key] = Signal(f.width, init=f.reset, name=f"q_{reg.name}_{f.name}")
                elif f.kind in ("sticky", "capture", "event"):
                    store[key] = Signal(f.width, name=f"q_{reg.name}_{f.name}")
                elif f.kind == "pulse":
                    pulses[f.signal] = Signal(name=f"req_{f.signal}")
                elif f.kind == "counter" and f.signal not in counters:
                    width = max(
                        g.signal_lsb + g.width
                        for r in REGISTERS
                        for g in r.fields
                        if g.kind == "counter" and g.signal == f.signal
                    )
                    # Counters wider than a word keep a shadow of their upper bits,
                    # latched when the low word is read, so LO-then-HI reads agree.
                    shadow = Signal(width - 32, name=f"shadow_{f.signal}") if width > 32 else None
                    counters[f.signal] = (Signal(width, name=f"count_{f.signal}"), shadow)

        def value(reg, f):
            """The field's current value as software reads it."""
            if f.kind in ("const", "config"):
                v = f.reset if f.kind == "const" else getattr(self.config, f.signal)
                return Const((v >> f.signal_lsb) & ((1 << f.width) - 1), f.width)
            if f.kind == "pulse":
                return Const(0, f.width)
            if f.kind == "status":
                return getattr(eng, f.signal)[f.signal_lsb : f.signal_lsb + f.width]
            if f.kind == "counter":
                count, shadow = counters[f.signal]
                if f.signal_lsb >= 32:
                    return shadow[f.signal_lsb - 32 : f.signal_lsb - 32 + f.width]
                return count[f.signal_lsb : f.signal_lsb + f.width]
            if f.signal is not None and f.kind == "rw":
                return store[f.signal][f.signal_lsb : f.signal_lsb + f.width]
            return store[(reg.name, f.name)]

        def word(reg):
            parts, pos = [], 0
            for f in sorted(reg.fields, key=lambda f: f.lsb):
                parts += [Const(0, f.lsb - pos)] if f.lsb > pos else []
                parts.append(value(reg, f))
                pos = f.lsb + f.width
            return Cat(*parts, Const(0, 32 - pos))

        # AXI write: AW and W each land in a one-deep buffer, in whichever order they come.
        aw_full = Signal()
        w_full, w_data, w_strb = Signal(), Signal(32), Signal(4)
        do_write = Signal()
        m.d.comb += [
            bus.awready.eq(~aw_full),
            bus.wready.eq(~w_full),
            do_write.eq(aw_full & w_full & (~bus.bvalid | bus.bready)),
        ]
        # One comparator per register, decoded as the address is taken (so a write's
        # enables start from flip-flops) and shared by every field's write enable; the
        # read side below does the same for its AND-OR multiplexer.
        w_hit = {r.name: Signal(name=f"w_hit_{r.name}") for r in REGISTERS}
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += aw_full.eq(1)
            m.d.sync += [w_hit[r.name].eq(bus.awaddr[2:] == r.offset >> 2) for r in REGISTERS]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        # Byte-lane mask from WSTRB: a write touches only the lanes it enables.
        w_mask = Cat(*(b.replicate(8) for b in w_strb))
        w_ones = w_data & w_mask
        # The registers take the write a cycle after AW and W are released, from a flag
        # of its own, so the handshake's logic does not reach every field's enable;
        # ``w_data``, ``w_strb`` and ``w_hit`` still hold the write then (the next AW or
        # W is taken at that cycle's edge at the earliest). B answers in the same cycle
        # (set below, after its handshake's clear): a write has taken effect when B
        # comes, and the next cannot be released before B is free again.
        write = Signal()
        m.d.sync += write.eq(do_write)
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0)]
        with m.If(write):
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(RESP_OKAY)]
            if self.unmapped_error:
                with m.If(~Cat(*w_hit.values()).any()):
                    m.d.sync += bus.bresp.eq(RESP_SLVERR)
        for reg in REGISTERS:
            with m.If(write & w_hit[reg.name]):
                for f in reg.fields:
                    bits = slice(f.lsb, f.lsb + f.width)
                    if f.kind == "rw":
                        old = value(reg, f)
                        m.d.sync += old.eq((old & ~w_mask[bits]) | w_ones[bits])
                    elif f.kind == "pulse":
                        m.d.comb += pulses[f.signal].eq(w_ones[bits].any())
                    elif f.kind == "event":
                        q = store[(reg.name, f.name)]
                        m.d.sync += q.eq(q & ~w_ones[bits])

        # AXI read: AR is buffered one deep; R is registered and held until RREADY.
        ar_full = Signal()
        r_hit = {r.name: Signal(name=f"r_hit_{r.name}") for r in REGISTERS}
        do_read = Signal()
        m.d.comb += [bus.arready.eq(~ar_full), do_read.eq(ar_full & (~bus.rvalid | bus.rready))]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += ar_full.eq(1)
            m.d.sync += [r_hit[r.name].eq(bus.araddr[2:] == r.offset >> 2) for r in REGISTERS]
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        # The read multiplexer is an AND-OR tree over the registered one-hot decode
        # (flatter than a Switch per field after Yosys).
        with m.If(do_read):
            m.d.sync += [
                ar_full.eq(0),
                bus.rvalid.eq(1),
                bus.rresp.eq(RESP_OKAY),
                bus.rdata.eq(
                    functools.reduce(
                        operator.or_, (Mux(r_hit[r.name], word(r), 0) for r in REGISTERS)
                    )
                ),
            ]
            if self.unmapped_error:
                with m.If(~Cat(*r_hit.values()).any()):
                    m.d.sync += bus.rresp.eq(RESP_SLVERR)
            for reg in REGISTERS:
                for f in reg.fields:
                    if f.kind == "counter" and f.signal_lsb == 0:
                        count, shadow = counters[f.signal]
                        if shadow is not None:
                            with m.If(r_hit[reg.name]):
                                m.d.sync += shadow.eq(count[32:])

        # Engine pulses: start is refused while busy so a running job's counters survive.
        start_ok = pulses["start"] & ~eng.busy
        m.d.comb += clear.eq(start_ok | pulses["soft_reset"])
        m.d.sync += [eng.start.eq(start_ok), eng.soft_reset.eq(pulses["soft_reset"])]

        # Hardware-side updates, after the bus writes so they win: an engine event
        # arriving in the same cycle as its acknowledgement is not lost.
        # The counters clear a cycle after the start or soft reset is written (from a
        # register: the clear reaches every counter bit), before any engine strobe of
        # the new run, which begins with the registered start.
        clear_counters = Signal()
        m.d.sync += clear_counters.eq(clear)
        for strobe, (count, _) in counters.items():
            with m.If(clear_counters):
                m.d.sync += count.eq(0)
            with m.Elif(getattr(eng, strobe)):
                m.d.sync += count.eq(count + 1)
        for reg in REGISTERS:
            for f in reg.fields:
                if f.kind not in ("sticky", "capture", "event"):
                    continue
                assert f.kind == "capture" or f.width == 1, f.name  # set by a 1-bit pulse
                q = store[(reg.name, f.name)]
                # Events (interrupt sources) survive a new start; only soft reset drops them.
                with m.If(pulses["soft_reset"] if f.kind == "event" else clear):
                    m.d.sync += q.eq(0)
                if f.kind == "capture":
                    with m.If(getattr(eng, f.trigger)):
                        m.d.sync += q.eq(getattr(eng, f.signal)[f.signal_lsb :][: f.width])
                else:
                    with m.If(getattr(eng, f.signal)):
                        m.d.sync += q.eq(1)

        events = [store[(r.name, f.name)] for r in REGISTERS for f in r.fields if f.kind == "event"]
        m.d.comb += self.irq.eq(eng.irq_enable & Cat(*events).any())
        # Kept so a simulation can preload a counter near a carry (2**32 cycles is too long).
        self._counters = {strobe: count for strobe, (count, _) in counters.items()}
        return m
