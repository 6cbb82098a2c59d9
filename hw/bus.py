"""The engine's one AXI4 manager port: fetch and load reads, store writes, and a safe abort.

:class:`BusArbiter` joins the fetch unit's and the load unit's read channels (round
robin per burst, AR registered) and passes the store unit's write channels, and
keeps the port legal when the engine aborts (error, soft reset, end of a run): the
units are reset at once, but every burst the arbiter has already announced still
completes. Read beats still owed are taken and dropped; write beats still owed are
sent with ``WSTRB = 0`` (they write nothing, so an aborted STORE never writes
partly past the point it was stopped at), and every write response is taken. After
an error response to the load or the store unit (which stops the engine) the store
unit's beats go out with ``WSTRB = 0`` as well, until the abort.

The load unit's R beats and the store unit's W beats pass :class:`~bamboo.hw.axi.
RegisterSlice` registers (one cycle more each way, one beat per cycle still), so the
engines' logic and the arbiter's tracking FIFOs are never in one combinational path.
``idle`` says when nothing is outstanding and the engine may report that it stopped.

A burst enters the arbiter's AR/AW register only when its tracking FIFO has room,
and a unit's W beat passes only once its burst's AW is in that FIFO, so the
arbiter always knows how many beats it owes.

Ref: ARM IHI 0022E, A3.2.1 (once VALID is asserted it must stay until the handshake),
A3.3.1 (W may precede AW).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, BurstCounter, RegisterSlice
from .flagfifo import FlagFIFO

__all__ = ["BusArbiter"]

#: Bursts announced and not yet finished, per direction.
TRACK_DEPTH = 4


class BusArbiter(wiring.Component):
    """Two AXI4 read managers and one write manager onto one AXI4 port.

    Parameters
    ----------
    config : AcceleratorConfig
        Bus widths.

    Attributes
    ----------
    fetch, load : In(AXI4Signature(read=True, write=False))
        Read managers (instruction fetch, LOAD data).
    store : In(AXI4Signature(read=False, write=True))
        The write manager (STORE data).
    m_axi : Out(AXI4Signature)
        The engine's port.
    abort : In(1)
        The units are held in reset: take no new burst from the next cycle on, drain the
        announced ones (and one accepted in abort's first cycle).
    idle : Out(1)
        No burst announced and unfinished, no write response outstanding.
    """

    def __init__(self, config):
        self.config = config
        rd = AXI4Signature.from_config(config, write=False)
        wr = AXI4Signature.from_config(config, read=False)
        super().__init__(
            {
                "fetch": In(rd),
                "load": In(rd),
                "store": In(wr),
                "m_axi": Out(AXI4Signature.from_config(config)),
                "abort": In(1),
                "idle": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bus, fe, ld, st = self.m_axi, self.fetch, self.load, self.store
        # Register flags (FlagFIFO): RVALID/WREADY-driven pops reach a flip-flop in a LUT.
        m.submodules.rtrack = rtrack = FlagFIFO(width=1, depth=TRACK_DEPTH)
        m.submodules.wtrack = wtrack = FlagFIFO(width=8, depth=TRACK_DEPTH)

        # ``abort`` fans out into every unit's reset; the two accept paths, which lead on
        # into the units' burst logic, take a local copy one cycle late instead. A burst
        # accepted in abort's first cycle is drained like any other: the engine waits for
        # ``idle`` from abort's second cycle on (hw/control.py), and the beats that reach
        # the units stay gated by ``abort`` itself.
        aborting = Signal(init=1)
        m.d.sync += aborting.eq(self.abort)

        # AR: one register, loaded from the fetch or the load unit (round robin).
        ar_full = Signal()
        prio_fetch = Signal()
        pick_fetch = fe.arvalid & (~ld.arvalid | prio_fetch)
        take_ar = ~ar_full & rtrack.w_rdy & ~aborting & (fe.arvalid | ld.arvalid)
        m.d.comb += [
            bus.arvalid.eq(ar_full),
            rtrack.w_en.eq(take_ar),
            rtrack.w_data.eq(~pick_fetch),
        ]
        with m.If(take_ar):
            m.d.sync += [ar_full.eq(1), prio_fetch.eq(~pick_fetch)]
            for name in ("araddr", "arlen", "arsize", "arburst", "arcache", "arprot"):
                m.d.sync += getattr(bus, name).eq(
                    Mux(pick_fetch, getattr(fe, name), getattr(ld, name))
                )
            m.d.comb += [fe.arready.eq(pick_fetch), ld.arready.eq(~pick_fetch)]
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += ar_full.eq(0)

        # R: to the owner of the oldest burst; dropped while aborting. The load unit's
        # beats pass a register slice: its read engine's chunk logic hangs off RVALID and
        # drives RREADY, and the slice keeps the tracking FIFO's read out of those paths.
        owner_load = rtrack.r_data[0]
        r_fields = ("rdata", "rresp", "rlast", "rid")
        m.submodules.load_r = load_r = RegisterSlice(
            data.StructLayout({name: len(getattr(bus, name)) for name in r_fields})
        )
        m.d.comb += [
            load_r.flush.eq(self.abort),
            # Not gated by ``abort``: the slice's flush drops what it takes meanwhile, and
            # the fetcher is held in reset by it (hw/top.py).
            load_r.i.valid.eq(bus.rvalid & rtrack.r_rdy & owner_load),
            ld.rvalid.eq(load_r.o.valid),
            load_r.o.ready.eq(ld.rready),
            fe.rvalid.eq(bus.rvalid & rtrack.r_rdy & ~owner_load),
        ]
        for name in r_fields:
            m.d.comb += [
                getattr(load_r.i.payload, name).eq(getattr(bus, name)),
                getattr(ld, name).eq(getattr(load_r.o.payload, name)),
                getattr(fe, name).eq(getattr(bus, name)),
            ]
        m.d.comb += [
            # Drained from ``aborting`` on: in abort's first cycle a beat the owner would
            # take is taken and dropped (its valid is gated by ``abort``), one it would
            # not is drained a cycle later. abort's fanout stays off the R tracker.
            bus.rready.eq(rtrack.r_rdy & (aborting | Mux(owner_load, load_r.i.ready, fe.rready))),
            rtrack.r_en.eq(bus.rvalid & bus.rready & bus.rlast),
        ]

        # AW: one register; the burst's length goes to the W tracker at the same time.
        aw_full = Signal()
        take_aw = ~aw_full & wtrack.w_rdy & ~aborting & st.awvalid
        m.d.comb += [
            bus.awvalid.eq(aw_full),
            st.awready.eq(take_aw),
            wtrack.w_en.eq(take_aw),
            wtrack.w_data.eq(st.awlen),
        ]
        with m.If(take_aw):
            m.d.sync += aw_full.eq(1)
            for name in ("awaddr", "awlen", "awsize", "awburst", "awcache", "awprot"):
                m.d.sync += getattr(bus, name).eq(getattr(st, name))
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += aw_full.eq(0)

        # W: the unit's beats of announced bursts, through a register slice (the store
        # engine's packer sees a registered WREADY); while aborting, empty beats.
        w_fields = ("wdata", "wstrb")
        m.submodules.store_w = store_w = RegisterSlice(
            data.StructLayout({name: len(getattr(bus, name)) for name in w_fields})
        )
        m.d.comb += [
            store_w.flush.eq(self.abort),
            store_w.i.valid.eq(st.wvalid & ~self.abort),
            st.wready.eq(store_w.i.ready),
            store_w.i.payload.wdata.eq(st.wdata),
            store_w.i.payload.wstrb.eq(st.wstrb),
        ]
        # After an error response to the load or the store unit, which stops the engine
        # (hw/top.py), the store unit's beats go out empty until the abort: the slices
        # delay both the load unit's view of an R error and the store unit's beats.
        w_quiet = Signal()
        load_rerr = load_r.i.valid & load_r.i.ready & bus.rresp[1]
        with m.If(self.abort):
            m.d.sync += w_quiet.eq(0)
        with m.Elif(load_rerr | (bus.bvalid & bus.bready & bus.bresp[1])):
            m.d.sync += w_quiet.eq(1)
        # The burst W is in, from the tracker's head (WLAST a register).
        wb = BurstCounter("w")
        # ``aborting`` (abort a cycle late), not ``abort``: abort's fanout stays off the W
        # handshake. In abort's first cycle a beat the slice still holds goes out as it is.
        with m.If(aborting):
            m.d.comb += [bus.wvalid.eq(wb.valid), bus.wstrb.eq(0), bus.wdata.eq(0)]
        with m.Else():
            m.d.comb += [
                bus.wvalid.eq(store_w.o.valid & wb.valid),
                bus.wstrb.eq(Mux(w_quiet, 0, store_w.o.payload.wstrb)),
                bus.wdata.eq(store_w.o.payload.wdata),
                store_w.o.ready.eq(bus.wready & wb.valid),
            ]
        m.d.comb += bus.wlast.eq(wb.last)
        # ``~valid | (WVALID & WREADY & last)``, written without WVALID's own LUT.
        w_load = ~wb.valid | (bus.wready & wb.last & (aborting | store_w.o.valid))
        wb.follow(m, wtrack, w_load, bus.wvalid & bus.wready)

        # B: always taken; counted so the engine knows when every write has landed.
        pending_b = Signal(range(2 * TRACK_DEPTH + 2))
        m.d.comb += [
            bus.bready.eq(1),
            st.bvalid.eq(bus.bvalid & ~self.abort),
            st.bresp.eq(bus.bresp),
            st.bid.eq(bus.bid),
        ]
        m.d.sync += pending_b.eq(pending_b + take_aw - (bus.bvalid & bus.bready))

        m.d.comb += self.idle.eq(
            ~ar_full & ~rtrack.r_rdy & ~aw_full & ~wtrack.r_rdy & ~wb.valid & (pending_b == 0)
        )
        return m
