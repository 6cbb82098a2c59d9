"""Cycle model: per-layer cycles of a Bamboo program, from its instruction stream alone.

An event simulation of the engine (hw/top.py) at instruction granularity:

* Fetch reads one instruction per AXI burst, in program order, not pipelined
  (``INSN_FETCH_OVERHEAD`` + read latency + beats each); the dispatcher hands it to its
  queue after ``DISPATCH_LATENCY`` cycles, and stalls while that queue already holds
  ``QUEUE_DEPTH`` instructions not yet started (head-of-line blocking, as the RTL).
* The load, compute and store units each run one instruction at a time, one idle
  cycle between instructions. An instruction starts when dispatched, when its unit is
  free and when the tokens it pops have been pushed (the k-th pop of a token FIFO takes
  the k-th push, pushed when the pushing instruction ends).
* Durations: CONV and VEC from :mod:`bamboo.arch.timing` (the RTL formulas); LOAD and
  STORE the larger of the engine side (a chunk or element per cycle) and the memory
  side (the transfer's beats, a beat per cycle on its AXI channel, read or write, and a
  burst announced every ``BURST_ISSUE_CYCLES``, a LOAD's in turn with the fetcher's; with a
  finite bandwidth also at the sustained DDR rate plus a per-burst overhead through one
  DDR shared by both channels: transfers reserve it in the order they start), plus
  latency and the engine's fixed overheads.

:func:`simulate` runs a list of instruction words; :func:`model_artifact` (or
:func:`model_program`, from a loaded artifact's sections) runs every fabric segment of a
``.bmb`` and attributes cycles to layers. CPU steps are not timed.

Engine generation 2 (:class:`bamboo.arch.timing.EngineLevers`, ``levers=``): projections
of unbuilt hardware on the same instruction stream. The depthwise engine and the two
DMA words change durations; ACC ping-pong lets a CONV's emit overlap the next
accumulation; fusion levers remove the instructions whose work the fused hardware does
elsewhere (:func:`fused_away`: no fetch, no time, no traffic). The defaults are today's
engine, bit-identical (tests/sim/test_cycles.py).
"""

import math
from dataclasses import dataclass, field

from bamboo.arch import isa
from bamboo.arch import timing as T
from bamboo.arch.layout import transfer_elem_bytes

__all__ = [
    "Calibration",
    "CycleReport",
    "concurrent_dw_cycles",
    "LayerCycles",
    "insn_costs",
    "model_artifact",
    "model_compiled",
    "model_program",
    "fused_away",
    "layer_kind",
    "render",
    "simulate",
]

# Queues by index (arch/isa.py QUEUES order: load, compute, store).
_LOAD_Q, _COMPUTE_Q = isa.QUEUES.index("load"), isa.QUEUES.index("compute")
_QUEUE = {op: isa.QUEUES.index(q) for op, q in isa.QUEUE_OF.items()}
#: Cycles from the fetcher's start on an instruction to its read burst's announcement.
INSN_ISSUE = 1
# (queue, header bit) -> token FIFO name
_POP = {(isa.QUEUES.index(t.dst), t.pop): t.name for t in isa.TOKEN_FIFOS}
_PUSH = {(isa.QUEUES.index(t.src), t.push): t.name for t in isa.TOKEN_FIFOS}


@dataclass(frozen=True)
class Calibration:
    """Fixed per-instruction overheads of the RTL around the formulas, in cycles.

    The defaults were fitted to the ``CYCLES`` counter of hw/top.py (tiny, behind the
    cocotb AxiRam, ``BOARDS["cocotb"]``) on half of the layers of
    tests/sim/test_cycles.py (and the fetch-bound ``pointwise_wide``); the other half is
    held out (the errors: docs/cycles.md, "Validation against the RTL"). ``compute_post``:
    the PostProcessor's latency, the OUT write and the end-of-CONV handshake of hw/top.py.

    ``load_pre``: command accepted to first AR (window check, burst setup);
    ``load_post``/``store_post``: last beat to done; ``compute_post``: a CONV's last
    emit beat to its OUT write (post-processing pipeline); ``dispatch``: fetched to
    queued; ``fetch``: fetcher cycles per instruction beyond ``INSN_FETCH_OVERHEAD``,
    the latency and the beats (arbitration, the dispatcher's checks); ``run``: start
    to first fetch plus last instruction to ``done`` (bus quiet); ``queue_depth``:
    instructions a queue holds (hw/top.py QUEUE_DEPTH).
    """

    load_pre: int = 10
    # +1 each since session 11: the units' done pulses (hw/dma_insn.py, the executor's
    # CONV done) are registered, a cycle after the engine's status.
    load_post: int = 4
    store_pre: int = 13
    store_post: int = 2
    compute_post: int = 27
    vec_post: int = 6
    dispatch: int = 3
    fetch: int = 0
    # +1 since session 12: the control unit's end-of-run test (every queue idle) is a
    # register, a cycle after the queues go idle.
    run: int = 1
    queue_depth: int = isa.QUEUE_DEPTH
    gap: int = 1


@dataclass
class LayerCycles:
    node: str
    cycles: int = 0  # attributed wall cycles (sums to the total)
    compute: int = 0  # compute-unit busy cycles
    load: int = 0  # load-unit busy cycles
    store: int = 0  # store-unit busy cycles
    macs: int = 0
    bytes: int = 0
    instructions: int = 0
    bound: str = ""
    utilization: float = 0.0
    kind: str = ""  # layer_kind of its instructions


@dataclass
class CycleReport:
    config: object
    memory: object
    clock_mhz: float
    total: int = 0
    layers: list = field(default_factory=list)
    busy: dict = field(default_factory=dict)
    macs: int = 0
    bytes: int = 0

    @property
    def seconds(self):
        return self.total / (self.clock_mhz * 1e6)

    @property
    def fps(self):
        return 1.0 / self.seconds if self.total else float("inf")

    @property
    def utilization(self):
        return self.macs / (self.config.macs_per_cycle * self.total) if self.total else 0.0


def insn_costs(config, f):
    """``(queue, macs, bytes)`` of a decoded instruction (no timing)."""
    op = f["opcode"]
    B, C = config.rows, config.cols
    if op == isa.Opcode.CONV:
        P = f["out_h"] * f["out_w"]
        if f["mode"] == isa.ConvMode.DEPTHWISE:
            return _COMPUTE_Q, P * f["kernel_h"] * f["kernel_w"] * config.depthwise_channels, 0
        return _COMPUTE_Q, P * f["kernel_h"] * f["kernel_w"] * f["in_blocks"] * B * C, 0
    if op in (isa.Opcode.LOAD, isa.Opcode.STORE):
        return _QUEUE[op], 0, f["y_size"] * f["x_size"] * transfer_elem_bytes(config, f)
    return _QUEUE[op], 0, 0


class _Engine:
    """The event simulation of one run (see the module docstring)."""

    def __init__(self, config, memory, clock_mhz, cal, levers=T.EngineLevers(), skip=()):
        self.c, self.cal, self.levers, self.skip = config, cal, levers, frozenset(skip)
        self.emit_free = 0.0  # two ACC banks: when the emitter is free
        self.conv_end = 0.0  # when the last CONV is done (the executor is quiet)
        self.bpc = memory.bytes_per_cycle(config, clock_mhz)
        self.rd_lat, self.wr_lat = memory.latencies(clock_mhz)
        self.burst_ovh = memory.burst_overhead_ns * clock_mhz / 1000.0
        self.fetch = (
            T.INSN_FETCH_OVERHEAD
            + self.rd_lat
            + cal.fetch
            + -(-isa.INSN_BYTES // config.axi_data_bytes)
        )
        self.mem_free = 0.0
        self.chan_free = [0.0, 0.0]
        self.fetch_issue = []  # when the fetcher announces each instruction's burst

    def _memory(self, channel, t0, beats, bursts):
        """When the memory side of a transfer ends: its AXI channel (read or write) moves a
        beat per cycle and takes a burst every ``BURST_ISSUE_CYCLES`` (reads between the
        fetcher's, see :meth:`_issue`), and with a finite bandwidth the DDR behind both
        channels is shared (each transfer reserves both in the order transfers start)."""
        c0 = max(t0, self.chan_free[channel])
        last_issue = self._issue(channel, c0, bursts)
        end = max(c0 + beats, last_issue + -(-beats // bursts))
        self.chan_free[channel] = end
        if self.bpc < self.c.axi_data_bytes or self.burst_ovh:
            ddr = beats * self.c.axi_data_bytes / self.bpc + bursts * self.burst_ovh
            d0 = max(t0, self.mem_free)
            self.mem_free = d0 + ddr
            end = max(end, d0 + ddr)
        return end

    def _issue(self, channel, t0, bursts):
        """When the last of ``bursts`` bursts from ``t0`` is announced: one every
        ``BURST_ISSUE_CYCLES``; on the read channel the fetcher's bursts (one per fetched
        instruction, :attr:`fetch_issue`) that fall among them take their turn too."""
        step = T.BURST_ISSUE_CYCLES
        last = t0 + step * (bursts - 1)
        if channel == 0 and bursts > 1:
            taken = -1
            while True:
                n = sum(t0 <= t <= last for t in self.fetch_issue)
                if n == taken:
                    break
                taken, last = n, t0 + step * (bursts - 1 + n)
        return last

    def dma(self, f, start):
        c, cal = self.c, self.cal
        load = f["opcode"] == isa.Opcode.LOAD
        eb = transfer_elem_bytes(c, f)
        beats, bursts = T.transfer_beats(
            c, f["dram_addr"], f["y_size"], f["x_size"], f["x_stride"], eb
        )
        if load:
            words = (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * (
                f["pad_left"] + f["x_size"] + f["pad_right"]
            )
            lut = f["buffer"] == isa.Buffer.LUT
            engine = T.load_chunks(c, eb, words, lut=lut)
            if not lut:
                engine = -(-engine // self.levers.dma_words)
            t0 = start + cal.load_pre
            mem_end = self._memory(0, t0, beats, bursts)
            return max(t0 + engine, mem_end) + self.rd_lat + cal.load_post
        engine = -(-f["y_size"] * f["x_size"] // self.levers.dma_words)
        t0 = start + cal.store_pre
        mem_end = self._memory(1, t0, beats, bursts)
        return max(t0 + engine, mem_end) + self.wr_lat + cal.store_post

    def on_dw_engine(self, f):
        """Whether a CONV runs on the depthwise engine (a square odd kernel that fits its
        window, no dilation); the others keep the array's depthwise mapping."""
        lv = self.levers
        return (
            lv.dw_lanes
            and f["mode"] == isa.ConvMode.DEPTHWISE
            and f["kernel_h"] == f["kernel_w"] <= lv.dw_kernel
            and f["kernel_h"] % 2
            and f["dilation_h"] <= 1
            and f["dilation_w"] <= 1
        )

    def compute(self, f, start):
        """``(end, unit free)`` of a compute-queue instruction started at ``start``."""
        op, lv = f["opcode"], self.levers
        post = self.cal.compute_post + T.postproc_group_latency(self.c)
        if op == isa.Opcode.CONV and self.on_dw_engine(f):
            grow = lv.dw_kernel - f["kernel_h"]  # a smaller kernel runs embedded
            in_h = f["stride_h"] * (f["out_h"] - 1) + f["kernel_h"] + grow
            in_w = f["stride_w"] * (f["out_w"] - 1) + f["kernel_w"] + grow
            n = T.dw_engine_cycles(lv, self.c.depthwise_channels, in_h, in_w)
            end = start + n + (post if f["acc_emit"] else 0)
            return end, end
        if op == isa.Opcode.CONV and self.c.acc_banks == 2:
            # hw/compute.py with two ACC banks: the MACs' side hands its bank to the
            # emitter once the emitter is free, and is then free for the next CONV, which
            # accumulates in the other bank while the emit (conv_cycles'
            # ``emit_pixels * turns + 1``) drains. Done pulses stay in order.
            mac_end = start + T.conv_insn_cycles(self.c, {**f, "acc_emit": 0})
            handoff = max(mac_end, self.emit_free)
            if f["acc_emit"]:
                turns = self.c.emit_turns(T.narrow_emit(f))
                self.emit_free = handoff + f["out_h"] * f["out_w"] * turns + 1
                end = self.emit_free + post
            else:
                end = max(handoff, self.conv_end)
            self.conv_end = end
            return end, handoff
        if op == isa.Opcode.CONV:
            end = start + T.conv_insn_cycles(self.c, f) + (post if f["acc_emit"] else 0)
            self.conv_end = end
            return end, end
        start = max(start, self.conv_end)  # VEC and FINISH wait until no CONV is left
        if op == isa.Opcode.VEC:
            n = T.vec_insn_cycles(self.c, f)
            end = start + (n + self.cal.vec_post if n else 0)
            return end, end
        return start, start

    def run(self, fields):
        """``(start, end)`` per instruction of one run (ends at FINISH or the last word)."""
        cal = self.cal
        n = len(fields)
        queue = [_QUEUE[f["opcode"]] for f in fields]
        qpos, qlists = [], tuple([] for _ in isa.QUEUES)
        for i, q in enumerate(queue):
            qpos.append(len(qlists[q]))
            qlists[q].append(i)
        start, end, disp = [None] * n, [None] * n, [None] * n
        pushes = {t.name: [] for t in isa.TOKEN_FIFOS}
        pops = {k: 0 for k in pushes}
        head = [0] * len(isa.QUEUES)
        free = [0.0] * len(isa.QUEUES)
        fetched = float(cal.run)  # when the fetcher may start the next instruction
        p = 0  # next instruction to dispatch
        done = 0
        while done < n:
            # Dispatch in order as far as queue space is known.
            while p < n:
                q, k = queue[p], qpos[p]
                if k >= cal.queue_depth:
                    blocker = qlists[q][k - cal.queue_depth]
                    if start[blocker] is None:
                        break
                    space = start[blocker]
                else:
                    space = 0.0
                if p in self.skip:  # fused away: never fetched
                    disp[p] = max(fetched, space)
                    p += 1
                    continue
                ready = fetched + self.fetch
                self.fetch_issue.append(fetched + INSN_ISSUE)
                disp[p] = max(ready, space)
                fetched = disp[p]
                p += 1
            best = None
            for q in range(len(isa.QUEUES)):
                if head[q] >= len(qlists[q]):
                    continue
                i = qlists[q][head[q]]
                if disp[i] is None:
                    continue
                t = max(disp[i] if i in self.skip else disp[i] + cal.dispatch, free[q])
                f = fields[i]
                ok = True
                for (qq, bit), fifo in _POP.items():
                    if qq == q and f[bit]:
                        k = pops[fifo]
                        if k >= len(pushes[fifo]):
                            ok = False
                            break
                        t = max(t, pushes[fifo][k])
                if ok and (best is None or t < best[0]):
                    best = (t, q, i)
            if best is None:
                raise RuntimeError(
                    f"cycle model deadlock at instruction {p} (a pop whose push never comes)"
                )
            t, q, i = best
            f = fields[i]
            for (qq, bit), fifo in _POP.items():
                if qq == q and f[bit]:
                    pops[fifo] += 1
            if i in self.skip:
                e = busy = t
            elif q != _COMPUTE_Q:
                e = busy = self.dma(f, t)
            else:
                e, busy = self.compute(f, t)
            start[i], end[i] = t, e
            for (qq, bit), fifo in _PUSH.items():
                if qq == q and f[bit]:
                    pushes[fifo].append(e)
            free[q] = busy if i in self.skip else busy + cal.gap
            head[q] += 1
            done += 1
        return start, end


def _decode_run(words):
    fields = [isa.decode(w) for w in words]
    for k, f in enumerate(fields):
        if f["opcode"] == isa.Opcode.FINISH:
            return fields[: k + 1]
    return fields


def simulate(
    config,
    words,
    memory=T.BOARDS["ideal"],
    clock_mhz=None,
    cal=Calibration(),
    levers=T.EngineLevers(),
    skip=(),
):
    """``(start, end, fields)`` cycle times of ``words`` (ints, one run ending in FINISH);
    ``skip``: indices of instructions fused away (:func:`fused_away`)."""
    clock = config.clock_mhz if clock_mhz is None else clock_mhz
    fields = _decode_run(words)
    start, end = _Engine(config, memory, clock, cal, levers, skip).run(fields)
    return start, end, fields


def layer_kind(fields):
    """What a layer's instructions do: ``"depthwise"``, ``"pointwise"`` (dense 1x1),
    ``"conv"`` (other dense), ``"add"``, ``"gap"`` (average pools to one pixel),
    ``"scale"`` (MUL_CHANNEL), ``"vector"`` (other VEC) or ``"dma"``. A VEC of no pixels
    (the compiler's token plumbing) does not count."""
    convs = [f for f in fields if f["opcode"] == isa.Opcode.CONV]
    if any(f["mode"] == isa.ConvMode.DEPTHWISE for f in convs):
        return "depthwise"
    if convs:
        one = all(f["kernel_h"] == f["kernel_w"] == 1 for f in convs)
        return "pointwise" if one else "conv"
    vecs = [f for f in fields if f["opcode"] == isa.Opcode.VEC and f["out_h"] * f["out_w"]]
    vops = {f["vop"] for f in vecs}
    if vops == {isa.VecOp.ADD}:
        return "add"
    if vops == {isa.VecOp.MUL_CHANNEL}:
        return "scale"
    if vops == {isa.VecOp.AVG_POOL} and all(f["out_h"] == f["out_w"] == 1 for f in vecs):
        return "gap"
    return "vector" if vecs else "dma"


def concurrent_dw_cycles(report):
    """Total cycles of ``report`` if a depthwise engine ran concurrently with the array
    inside each block: every depthwise layer hides behind its pointwise neighbours (the
    expand before it, the project after it) as far as their cycles reach,
    ``total - sum(min(dw, expand + project))``. An upper bound on the overlap (band
    dependencies and the shared DMA not modelled), not an event simulation."""
    rows, saved = report.layers, 0
    for k, row in enumerate(rows):
        if row.kind != "depthwise":
            continue
        near = [rows[j] for j in (k - 1, k + 1) if 0 <= j < len(rows)]
        saved += min(row.cycles, sum(r.cycles for r in near if r.kind == "pointwise"))
    return report.total - saved


def _is(f, op, buffer=None):
    return f["opcode"] == op and (buffer is None or f["buffer"] == buffer)


def _work(f):
    """A VEC that moves pixels (not a zero-pixel token pass)."""
    return f["opcode"] == isa.Opcode.VEC and f["out_h"] * f["out_w"] > 0


def fused_away(fields, layers, levers):
    """Indices into ``fields`` of the instructions the fusion levers remove.

    ``layers``: ``(first, count)`` per layer in program order, as indices into ``fields``.
    * ``fuse_add``: an Add layer's VEC, its STOREs and every second INP LOAD (the
      producing conv's output; the skip tensor is still read, now by post-processing).
    * ``fuse_se``: a MUL_CHANNEL layer's VEC, INP LOADs and STOREs (the scale applied as
      the next conv loads); a global average pool's VEC and INP LOADs (accumulated in
      the producing conv's post-processing; its one-pixel STORE stays).
    * ``fuse_block``: on every pointwise -> depthwise and depthwise -> pointwise edge, the
      producer's STOREs and the consumer's INP LOADs (the band stays on chip).
    """
    if not levers.fused:
        return set()
    kinds = [layer_kind(fields[a : a + n]) for a, n in layers]
    skip = set()

    def take(k, pred):
        a, n = layers[k]
        skip.update(i for i in range(a, a + n) if pred(fields[i]))

    for k, kind in enumerate(kinds):
        if levers.fuse_add and kind == "add":
            a, n = layers[k]
            loads = [i for i in range(a, a + n) if _is(fields[i], isa.Opcode.LOAD, isa.Buffer.INP)]
            skip.update(loads[1::2])
            take(k, lambda f: _work(f) or _is(f, isa.Opcode.STORE))
        if levers.fuse_se and kind == "scale":
            take(
                k,
                lambda f: (
                    _work(f) or _is(f, isa.Opcode.STORE) or _is(f, isa.Opcode.LOAD, isa.Buffer.INP)
                ),
            )
        if levers.fuse_se and kind == "gap":
            take(k, lambda f: _work(f) or _is(f, isa.Opcode.LOAD, isa.Buffer.INP))
        if levers.fuse_block and k + 1 < len(kinds):
            pair = (kind, kinds[k + 1])
            if pair in (("pointwise", "depthwise"), ("depthwise", "pointwise")):
                take(k, lambda f: _is(f, isa.Opcode.STORE))
                take(k + 1, lambda f: _is(f, isa.Opcode.LOAD, isa.Buffer.INP))
    return skip


def _attribute(config, report, fields, start, end, layers, offset, base, skip=()):
    """Add the per-layer rows of one run to ``report`` (``layers``: ``(node, first, count)``
    in absolute instruction indices; ``offset``: index of ``fields[0]``)."""
    prev = 0.0
    n = len(fields)
    for node, first, count in layers:
        lo, hi = first - offset, min(first - offset + count, n)
        if hi <= 0 or lo >= n:
            continue
        lo = max(lo, 0)
        row = LayerCycles(node, kind=layer_kind(fields[lo:hi]))
        last = prev
        # Compute-queue instructions overlap with two ACC banks (an emit drains beside the
        # next CONV): the unit's busy time is the union of their spans, which start in
        # order.
        covered = -math.inf
        for i in range(lo, hi):
            f = fields[i]
            if i in skip:
                last = max(last, end[i])
                continue
            q, macs, nbytes = insn_costs(config, f)
            dur = end[i] - start[i]
            if q == _LOAD_Q:
                row.load += dur
            elif q == _COMPUTE_Q:
                row.compute += max(0.0, end[i] - max(start[i], covered))
                covered = max(covered, end[i])
            else:
                row.store += dur
            row.macs += macs
            row.bytes += nbytes
            row.instructions += 1
            last = max(last, end[i])
        row.cycles = last - prev
        prev = last
        report.layers.append(row)
    return prev


def _finish(config, report):
    for row in report.layers:
        busy = {"compute": row.compute, "load": row.load, "store": row.store}
        row.bound = max(busy, key=busy.get) if row.cycles else ""
        if row.bound in ("load", "store"):
            row.bound = "dma:" + row.bound
        row.utilization = row.macs / (config.macs_per_cycle * row.cycles) if row.cycles else 0.0
        for k in ("cycles", "compute", "load", "store"):
            setattr(row, k, int(round(getattr(row, k))))
    report.total = sum(r.cycles for r in report.layers)
    report.macs = sum(r.macs for r in report.layers)
    report.bytes = sum(r.bytes for r in report.layers)
    report.busy = {
        k: sum(getattr(r, k) for r in report.layers) for k in ("compute", "load", "store")
    }
    return report


def _model(config, words, runs, layers, memory, clock_mhz, cal, levers):
    clock = config.clock_mhz if clock_mhz is None else clock_mhz
    report = CycleReport(config, memory, clock)
    for first, count in runs:
        mine = [ly for ly in layers if first <= ly[1] < first + count]
        run_words = words[first : first + count]
        skip = ()
        if levers.fused:
            decoded = _decode_run(run_words)
            n = len(decoded)
            spans = [(a - first, min(c, n - (a - first))) for _, a, c in mine if a - first < n]
            skip = fused_away(decoded, spans, levers)
        start, end, fields = simulate(config, run_words, memory, clock, cal, levers, skip)
        _attribute(config, report, fields, start, end, mine, first, 0, skip)
    return _finish(config, report)


def model_compiled(
    compiled,
    memory=T.BOARDS["ideal"],
    clock_mhz=None,
    cal=Calibration(),
    levers=T.EngineLevers(),
):
    """:class:`CycleReport` of a :class:`bamboo.compiler.backend.Compiled`."""
    runs = [(s.insn_start, s.insn_count) for s in compiled.steps if s.on_fabric]
    return _model(
        compiled.config, compiled.words, runs, compiled.layers, memory, clock_mhz, cal, levers
    )


def model_artifact(
    blob, config, memory=T.BOARDS["ideal"], clock_mhz=None, cal=Calibration(), levers=None
):
    """:class:`CycleReport` of ``.bmb`` bytes for ``config``."""
    from bamboo.arch.artifact import read_artifact

    art = read_artifact(blob, config_id=config.config_id)
    return model_program(config, art.program, art.metadata, memory, clock_mhz, cal, levers)


def model_program(
    config,
    program,
    meta,
    memory=T.BOARDS["ideal"],
    clock_mhz=None,
    cal=Calibration(),
    levers=None,
):
    """:class:`CycleReport` of an artifact's PROGRAM bytes and METADATA
    (:class:`bamboo.arch.metadata.Metadata`: steps, layers)."""
    words = isa.decode_bytes(program)
    runs = [(s.insn_start, s.insn_count) for s in meta.steps if s.on_fabric]
    layers = [(ly.node, ly.first, ly.count) for ly in meta.layers]
    return _model(config, words, runs, layers, memory, clock_mhz, cal, levers or T.EngineLevers())


def render(report, top=None):
    """The per-layer table and totals as text."""
    lines = [
        f"{'layer':<40} {'cycles':>10} {'compute':>10} {'load':>10} {'store':>10} "
        f"{'bound':>11} {'MAC util':>8}"
    ]
    rows = report.layers if top is None else sorted(report.layers, key=lambda r: -r.cycles)[:top]
    for r in rows:
        lines.append(
            f"{r.node[:40]:<40} {r.cycles:>10} {r.compute:>10} {r.load:>10} "
            f"{r.store:>10} {r.bound:>11} {r.utilization:>8.3f}"
        )
    lines.append(
        f"total {report.total} cycles = {report.seconds * 1e3:.3f} ms at "
        f"{report.clock_mhz:g} MHz ({report.fps:.1f} FPS), MAC utilization "
        f"{report.utilization:.3f}, busy {report.busy}, memory {report.memory.name}"
    )
    return "\n".join(lines)
