"""The whole accelerator: register file, fetch, three queues, load / compute / store units.

::

    AXI-Lite -> RegisterFile -> engine control (start, soft reset, window, counters, irq)
    m_axi <- BusArbiter <- Fetcher -> Dispatcher (checks) -> load / compute / store queues
                         <- LoadUnit  (LOAD -> INP, WGT, PARAM, LUT)
                         <- StoreUnit (STORE <- OUT)
    compute queue -> ComputeUnit (CONV) -> PostProcessor (PARAM lanes) -> OUT

Queues run decoupled and synchronize through dependency tokens (hw/queues.py), so
loads and stores overlap compute as the compiler's tokens allow (arch/isa.py).

Run control (:class:`~bamboo.hw.control.RunControl`, hw/control.py) starts and ends
runs; this module only instantiates and connects the units. Runs end in one way: the
units are held in reset and :class:`~bamboo.hw.bus.BusArbiter`
finishes the bursts already announced (reads dropped, writes with no strobes), then
``done`` or ``error`` pulses into the register file. A run ends

* when FINISH (or the last of ``INSN_COUNT`` instructions) has been dispatched and
  every queue is empty and idle: ``done``;
* when an instruction fails the dispatcher's checks (hw/fetch.py): dispatch stops, the
  instructions already dispatched finish as far as their tokens allow, then ``error``
  with the failing instruction's index, so memory holds what the instruction simulator
  leaves (nothing of the failing instruction or anything after it);
* when an AXI error response (SLVERR, DECERR) reaches the load or the store unit:
  ``AXI_ERROR`` with that unit's instruction index, the units held in reset from the
  next cycle, so no write beat carries strobes after the response (a fetch error is
  the fetched instruction's fault, reported in program order as above);
* when nothing moves for ``watchdog`` cycles (a token nobody pushes): ``TIMEOUT``,
  with the index of the oldest instruction waiting for a token;
* on a soft reset: silently (STATUS and IRQ_STATUS are cleared by the register file).

``done`` comes with ``done_irq`` (the interrupt source ``IRQ_STATUS.done``) only when
the compute queue ran a FINISH with ``irq`` set (arch/isa.py); errors always interrupt.

``busy`` stays high until the bus is quiet, and the register file ignores a start
while busy, so a start after an error or a soft reset always begins from a clean
engine. If the bus does not go quiet within ``watchdog`` cycles the arbiter is reset.

VEC: the compute queue's executor hands VEC to the vector unit (hw/vector.py), which
has its own INP and PARAM read ports and shares the OUT write port (the compute queue
runs one instruction at a time). Built without it (``vector=False``), VEC with pixels
is refused by the dispatcher and VEC without pixels is a token barrier.
"""

from amaranth.hdl import Cat, Module, ResetInserter, Signal
from amaranth.lib import fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from ..arch.config import AcceleratorConfig
from ..arch.isa import QUEUE_DEPTH, QUEUES, TOKEN_FIFOS
from ..arch.layout import PARAM_DEPTH
from .axi import AXI4Signature
from .bus import BusArbiter
from .compute import ComputeUnit
from .control import RunControl
from .executor import ComputeExecutor
from .fetch import Dispatcher, Fetcher
from .load import LoadUnit, param_layout
from .pipeline import connect_stream
from .postproc import PostProcessor
from .queues import InstructionFIFO, QueueController, TokenCounter, entry_layout
from .regfile import AXI4LiteSignature, RegisterFile
from .store import StoreUnit, out_layout
from .vector import VectorUnit

__all__ = ["Accelerator", "QUEUE_DEPTH", "WATCHDOG_CYCLES", "queue_fifo"]

#: Cycles without progress before a run stops with TIMEOUT.
WATCHDOG_CYCLES = 1 << 20


def queue_fifo():
    """The FIFO of one instruction queue (between the dispatcher and a QueueController)."""
    return InstructionFIFO(QUEUE_DEPTH)


class Accelerator(wiring.Component):
    """The Bamboo engine for one :class:`~bamboo.arch.config.AcceleratorConfig`.

    Parameters
    ----------
    config : AcceleratorConfig
    watchdog : int
        Cycles without progress (no bus handshake, no compute, no instruction issued
        or finished) before a run stops with ``TIMEOUT``.
    vector : bool
        Include the vector unit (hw/vector.py). Without it, VEC with pixels is an
        ``ILLEGAL_OPCODE``.

    Attributes
    ----------
    s_axi : In(AXI4LiteSignature(config.axil_addr_width))
        The register file (arch/registers.py).
    m_axi : Out(AXI4Signature.from_config(config))
        The one AXI4 manager port: instruction fetch, LOAD reads, STORE writes.
    irq : Out(1)
        ``CTRL.irq_enable`` and any ``IRQ_STATUS`` bit.
    """

    def __init__(self, config, *, watchdog=WATCHDOG_CYCLES, vector=True):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")
        if not isinstance(watchdog, int) or watchdog < 16:
            raise ValueError(f"watchdog must be an integer of at least 16, not {watchdog!r}")
        self.config = config
        self.watchdog = watchdog
        self.vector = bool(vector)
        super().__init__(
            {
                "s_axi": In(AXI4LiteSignature(config.axil_addr_width)),
                "m_axi": Out(AXI4Signature.from_config(config)),
                "irq": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.regfile = regs = RegisterFile(cfg)
        m.submodules.control = run = RunControl(cfg, watchdog=self.watchdog)
        wiring.connect(m, wiring.flipped(self.s_axi), regs.s_axi)
        wiring.connect(m, regs.engine, run.engine)
        m.d.comb += self.irq.eq(regs.irq)
        abort = run.abort  # units held in reset (a register)

        def unit(name, u, reset=abort):
            m.submodules[name] = ResetInserter({"sync": reset})(u)
            return u

        bus = unit("bus", BusArbiter(cfg), run.force)
        wiring.connect(m, bus.m_axi, wiring.flipped(self.m_axi))
        m.d.comb += bus.abort.eq(abort)
        fetcher = unit("fetcher", Fetcher(cfg))
        disp = unit("dispatcher", Dispatcher(cfg, vector=self.vector))
        load = unit("load", LoadUnit(cfg))
        store = unit("store", StoreUnit(cfg))
        compute = unit("compute", ComputeUnit(cfg))
        post = unit("postproc", PostProcessor(cfg))
        vec = unit("vector", VectorUnit(cfg, param_depth=PARAM_DEPTH)) if self.vector else None
        wiring.connect(m, fetcher.m_axi, bus.fetch)
        wiring.connect(m, load.m_axi, bus.load)
        wiring.connect(m, store.m_axi, bus.store)
        # A small FIFO lets fetch run ahead of the checks; it also keeps Icarus's always_comb
        # from looping at time 0 over the fetcher's and the dispatcher's comb handshakes.
        prefetch = unit("prefetch", fifo.SyncFIFOBuffered(width=entry_layout().size, depth=2))
        connect_stream(m, fetcher.o_insn, prefetch.w_stream)
        connect_stream(m, prefetch.r_stream, disp.i_insn)

        # Run parameters, sampled at start.
        for u in (disp, load, store):
            m.d.comb += [u.window_base.eq(run.window_base), u.window_size.eq(run.window_size)]
        m.d.comb += [
            fetcher.go.eq(run.go),
            fetcher.insn_base.eq(run.insn_base),
            fetcher.insn_count.eq(run.insn_count),
            disp.go.eq(run.go),
            disp.insn_count.eq(run.insn_count),
        ]

        # Queues and tokens. The queue FIFOs register their head (InstructionFIFO): the
        # controller's token check then starts at a register, not at a LUT RAM read behind
        # the read pointer (one cycle more from dispatch to the head of an empty queue:
        # sim/cycles.py Calibration.dispatch).
        queues, fifos = {}, {}
        for k, name in enumerate(QUEUES):
            out, prev, nxt = getattr(disp, f"o_{name}"), k > 0, k < len(QUEUES) - 1
            q = unit(f"{name}_fifo", queue_fifo())
            # With two ACC banks the compute queue issues a CONV while the one before emits.
            inflight = cfg.acc_banks if name == "compute" else 1
            ctl = unit(f"{name}_queue", QueueController(prev=prev, next=nxt, inflight=inflight))
            wiring.connect(m, out, q.w_stream)
            wiring.connect(m, q.r_stream, ctl.i_insn)
            queues[name] = ctl
            fifos[name] = q
        ql, qc, qs = queues["load"], queues["compute"], queues["store"]
        for tok in TOKEN_FIFOS:
            src, dst = queues[tok.src], queues[tok.dst]
            avail = tok.pop.removeprefix("pop_") + "_avail"  # prev_avail / next_avail
            t = unit(f"tokens_{tok.name}", TokenCounter())
            m.d.comb += [
                t.push.eq(getattr(src, tok.push)),
                t.pop.eq(getattr(dst, tok.pop)),
                getattr(dst, avail).eq(t.avail),
            ]
        wiring.connect(m, ql.o_exec, load.i_insn)
        wiring.connect(m, qs.o_exec, store.i_insn)
        m.d.comb += [ql.done.eq(load.done), qs.done.eq(store.done)]

        # Buffers of this level: PARAM (load -> post-processing), OUT (post -> store).
        param_mem = memory.Memory(shape=param_layout(cfg), depth=PARAM_DEPTH, init=[])
        out_mem = memory.Memory(shape=out_layout(cfg), depth=cfg.output_buffer_depth, init=[])
        m.submodules.param_mem, m.submodules.out_mem = param_mem, out_mem
        wiring.connect(m, load.param_w, param_mem.write_port())
        wiring.connect(m, load.inp_w, compute.inp_w)
        wiring.connect(m, load.wgt_w, compute.wgt_w)
        wiring.connect(m, load.lut_w, post.lut_w)
        wiring.connect(m, store.out_r, out_mem.read_port())
        param_rd = param_mem.read_port()
        out_wr = out_mem.write_port()
        if vec is not None:
            # The vector unit's PARAM read port, and the INP port the ComputeUnit lends it.
            wiring.connect(m, vec.inp_r, compute.inp_r)
            wiring.connect(m, vec.param_r, param_mem.read_port())
            m.d.comb += [
                vec.lut_w.addr.eq(load.lut_w.addr),
                vec.lut_w.data.eq(load.lut_w.data),
                vec.lut_w.en.eq(load.lut_w.en),
            ]

        # The compute queue's executor: CONV, VEC, FINISH; ACC -> PostProcessor -> OUT.
        ex = unit(
            "executor", ComputeExecutor(cfg, acc=compute.o_acc.signature, vector=vec is not None)
        )
        wiring.connect(m, qc.o_exec, ex.i_insn)
        wiring.connect(m, ex.conv, compute.i_insn)
        wiring.connect(m, compute.o_acc, ex.acc)
        wiring.connect(m, ex.post_i, post.i)
        wiring.connect(m, post.o, ex.post_o)
        wiring.connect(m, ex.param_r, param_rd)
        wiring.connect(m, ex.out_w, out_wr)
        m.d.comb += [
            qc.done.eq(ex.done),
            run.finish_irq.eq(ex.finish_irq),
            ex.conv_busy.eq(compute.status.busy),
            ex.conv_kept.eq(compute.kept_done),
        ]
        if vec is not None:
            wiring.connect(m, ex.vec, vec.i_insn)
            wiring.connect(m, vec.out_w, ex.vec_out_w)
            m.d.comb += ex.vec_done.eq(vec.status.done)

        # Run control (hw/control.py): what it watches.
        m.d.comb += [
            run.disp_error.eq(disp.error),
            run.disp_code.eq(disp.error_code),
            run.disp_index.eq(disp.error_index),
            run.all_dispatched.eq(disp.all_dispatched),
            run.bus_idle.eq(bus.idle),
            run.load_error.eq(load.error),
            run.load_code.eq(load.error_code),
            run.load_resp_error.eq(load.m_axi.rvalid & load.m_axi.rready & load.m_axi.rresp[1]),
            run.store_error.eq(store.error),
            run.store_code.eq(store.error_code),
            run.store_resp_error.eq(store.m_axi.bvalid & store.m_axi.bready & store.m_axi.bresp[1]),
            run.status.fetch_busy.eq(fetcher.busy),
            run.status.fetch_stall.eq(disp.stall),
        ]
        for name, q in queues.items():
            m.d.comb += [
                # An instruction on its way to the FIFO's head register is not idle.
                getattr(run, f"{name}_idle").eq(q.idle & fifos[name].empty),
                getattr(run, f"{name}_stall").eq(q.stall),
                getattr(run, f"{name}_index").eq(q.index),
                getattr(run.status, f"{name}_busy").eq(q.busy),
                getattr(run.status, f"{name}_stall").eq(q.stall),
            ]
        # Each sign of progress is registered on its own and the OR taken after: the
        # handshakes are late signals, and the watchdog can hear of them a cycle later.
        bus_port = self.m_axi
        signs = [
            bus_port.arvalid & bus_port.arready,
            bus_port.rvalid & bus_port.rready,
            bus_port.awvalid & bus_port.awready,
            bus_port.wvalid & bus_port.wready,
            bus_port.bvalid & bus_port.bready,
            compute.status.busy,
            disp.busy,
            load.done,
            store.done,
            qc.done,
            ql.i_insn.ready,
            qc.i_insn.ready,
            qs.i_insn.ready,
            fetcher.o_insn.valid & fetcher.o_insn.ready,
        ]
        if vec is not None:
            signs.append(vec.status.busy)
        seen = Signal(len(signs), name="progress_seen")
        m.d.sync += seen.eq(Cat(*signs))
        m.d.comb += run.progress.eq(seen.any())
        return m
