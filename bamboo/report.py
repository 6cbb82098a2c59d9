"""Per-layer figures of a compiled model: op kinds, the cycle table, CPU-side time, charts.

A top-level tool like :mod:`bamboo.bench`: it joins the compiler's IR graph (what each
layer is and its MACs, ``bamboo.compiler.inspect.macs``) with the cycle model's report
(``bamboo.sim.cycles``: cycles, busy units, bound) and the processor-side cost model
(``bamboo.arch.timing.HostTiming``, fed by timing the runtime's own CPU work here).
``bamboo demo`` and ``python -m bamboo.bench`` print and plot these; nothing here is
measured on a board.

MAC utilization here counts the network's own multiply-accumulates (no channel padding,
no selection matrices of channel moves) against ``rows x cols`` per cycle of the layer's
attributed time, so it is what a roofline of the layer shows.
"""

import sys
import time
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "LayerRow",
    "bit_equal",
    "host_time",
    "kind_summary",
    "layer_rows",
    "op_kind",
    "ort_session",
    "progress",
    "render_table",
    "write_roofline_png",
    "write_utilization_png",
]

#: Op kinds of the per-type figures; ``other`` is pooling, elementwise and channel moves.
KINDS = ("conv", "depthwise", "pointwise", "fc", "other")
_ARRAY_KINDS = ("conv", "depthwise", "pointwise", "fc")
_COLORS = {
    "conv": "tab:blue",
    "depthwise": "tab:orange",
    "pointwise": "tab:green",
    "fc": "tab:purple",
    "other": "tab:gray",
}


def op_kind(graph, node):
    """``"depthwise"`` (one input channel per group), ``"pointwise"`` (any other 1x1
    convolution), ``"conv"`` (any other convolution), ``"fc"`` or ``"other"``."""
    if node.op == "fc":
        return "fc"
    if node.op != "conv":
        return "other"
    w = node.attrs["w"]
    kh, kw, cg = w.shape[1:]
    cin = graph.tensors[node.inputs[0]].shape[-1]
    if cg == 1 and node.attrs.get("group", 1) == cin > 1:
        return "depthwise"
    return "pointwise" if kh == kw == 1 else "conv"


@dataclass
class LayerRow:
    """One layer of a cycle report with the graph's view of it.

    ``macs``: the network's multiply-accumulates; ``array_macs``: what the array's
    instructions issue (channel padding included, ``bamboo.sim.cycles.insn_costs``);
    ``bytes``: DRAM bytes its loads and stores move.
    """

    node: str
    kind: str
    cycles: int
    compute: int
    load: int
    store: int
    bound: str
    macs: int
    array_macs: int
    bytes: int
    instructions: int
    utilization: float = 0.0

    def seconds(self, clock_mhz):
        return self.cycles / (clock_mhz * 1e6)

    def ops_per_byte(self):
        """Arithmetic intensity: 2 ops per MAC over the layer's DRAM bytes."""
        return 2.0 * self.macs / self.bytes if self.bytes else float("inf")


def layer_rows(compiled, report):
    """:class:`LayerRow` per layer of ``report`` (a :class:`bamboo.sim.cycles.CycleReport`
    of ``compiled``); the rows' cycles sum to ``report.total``."""
    from bamboo.compiler.inspect import macs as node_macs

    graph, config = compiled.graph, compiled.config
    by_name = {n.name: n for n in graph.nodes}
    rows = []
    for r in report.layers:
        node = by_name.get(r.node)
        kind = op_kind(graph, node) if node is not None else "other"
        macs = node_macs(graph, node) if kind in _ARRAY_KINDS else 0
        util = macs / (config.macs_per_cycle * r.cycles) if r.cycles else 0.0
        rows.append(
            LayerRow(
                r.node,
                kind,
                r.cycles,
                r.compute,
                r.load,
                r.store,
                r.bound,
                macs,
                r.macs,
                r.bytes,
                r.instructions,
                util,
            )
        )
    return rows


def kind_summary(rows, config):
    """Per op kind: layers, cycles, share of the total, MACs, utilization, and the share of
    its cycles in layers bound by the compute unit (the rest wait on DMA).

    ``occupancy``: the kind's MACs per cycle the compute unit was busy with it, over the
    array's peak: what the mapping reaches when nothing else stalls it.
    """
    total = sum(r.cycles for r in rows) or 1
    out = {}
    for kind in KINDS:
        mine = [r for r in rows if r.kind == kind]
        if not mine:
            continue
        cycles = sum(r.cycles for r in mine)
        macs = sum(r.macs for r in mine)
        busy = sum(r.compute for r in mine)
        compute_bound = sum(r.cycles for r in mine if r.bound == "compute")
        out[kind] = {
            "layers": len(mine),
            "cycles": cycles,
            "share": cycles / total,
            "macs": macs,
            "utilization": macs / (config.macs_per_cycle * cycles) if cycles else 0.0,
            "occupancy": macs / (config.macs_per_cycle * busy) if busy else 0.0,
            "compute_bound_share": compute_bound / cycles if cycles else 0.0,
        }
    return out


def _codes(rng, shape, dtype):
    import numpy as np

    return rng.integers(0, 256, shape).astype(np.uint8).view(np.dtype(dtype))


def _cpu_seconds(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def host_time(blob, host, repeats=5):
    """Projected processor-side seconds per frame on the board, and what they are made of.

    The runtime's own CPU work for one frame of the artifact ``blob`` runs here on random
    codes of the right shapes, timed in process CPU time (the best of ``repeats``, so
    other load of the machine hardly matters): every CPU node
    (``bamboo.runtime.cpu_ops.run_op``, as the session runs it), quantizing the float
    inputs and dequantizing the outputs (``bamboo.runtime.quant``), and channel-blocking
    each tensor a fabric step reads from or writes to the processor
    (``bamboo.runtime.layout``). :meth:`bamboo.arch.timing.HostTiming.seconds` scales
    that to the board and adds each fabric step's fixed cost and the copies.

    Returns
    -------
    dict
        ``seconds`` (board), ``workstation_cpu_s``, ``cpu_nodes`` (count per op),
        ``cpu_node_s`` (workstation CPU seconds per op), ``cpu_named_s`` (the same per
        CPU node name), ``fabric_steps``,
        ``exchange_bytes`` (copied across PS/PL per frame).
    """
    import numpy as np

    from bamboo.arch.artifact import read_artifact
    from bamboo.arch.layout import act_bytes
    from bamboo.runtime.cpu_ops import QInfo, decode_value, run_op
    from bamboo.runtime.layout import from_blocked, to_blocked
    from bamboo.runtime.quant import dequantize, quantize

    art = read_artifact(blob)
    meta = art.metadata
    rows = art.config.rows
    tensors = meta.tensors
    rng = np.random.default_rng(0)

    def q(name):
        t = tensors[name]
        return QInfo(t.dtype, t.scale, t.zp)

    node_s, named_s, ops = {}, {}, {}
    total = 0.0
    for spec in art.ioquant.inputs:
        if spec.float:
            x = rng.standard_normal(spec.onnx_shape).astype(np.float32)
            total += _cpu_seconds(
                lambda: quantize(x, np.float32(spec.scale), spec.zp, np.dtype(spec.dtype)), repeats
            )
    for spec in art.ioquant.outputs:
        if spec.float:
            y = _codes(rng, spec.onnx_shape, spec.dtype)
            total += _cpu_seconds(lambda: dequantize(y, np.float32(spec.scale), spec.zp), repeats)
    on_device, steps, exchange = set(), 0, 0
    for step in meta.steps:
        if not step.on_fabric:
            for name in step.nodes:
                n = meta.cpu_nodes[name]
                attrs = {k: decode_value(v) for k, v in n.attrs.items()}
                xs = [_codes(rng, tensors[i].shape, tensors[i].dtype) for i in n.inputs]
                tins, tout = [q(i) for i in n.inputs], q(n.outputs[0])
                sec = _cpu_seconds(lambda: run_op(n.op, attrs, xs, tins, tout), repeats)
                node_s[n.op] = node_s.get(n.op, 0.0) + sec
                named_s[name] = sec
                ops[n.op] = ops.get(n.op, 0) + 1
                total += sec
            on_device -= {o for name in step.nodes for o in meta.cpu_nodes[name].outputs}
            continue
        steps += 1
        for t in step.inputs:
            if t in on_device:
                continue  # the session leaves a fabric step's output in DDR
            x = _codes(rng, tensors[t].shape, tensors[t].dtype)
            total += _cpu_seconds(lambda: to_blocked(x, rows), repeats)
            exchange += act_bytes(*tensors[t].canon, rows)
        for t in step.outputs:
            h, w, c = tensors[t].canon
            n = act_bytes(h, w, c, rows)
            buf = rng.integers(0, 256, n).astype(np.uint8)
            dtype = np.dtype(tensors[t].dtype)
            total += _cpu_seconds(lambda: from_blocked(buf, h, w, c, rows, dtype), repeats)
            exchange += n
        on_device |= set(step.outputs)
    return {
        "seconds": host.seconds(total, steps, exchange),
        "workstation_cpu_s": total,
        "cpu_nodes": dict(sorted(ops.items())),
        "cpu_node_s": dict(sorted(node_s.items())),
        "cpu_named_s": named_s,
        "fabric_steps": steps,
        "exchange_bytes": exchange,
    }


def render_table(rows, report, top=None):
    """The per-layer cycle table as text (``top``: only the N slowest layers)."""
    clock = report.clock_mhz
    shown = rows if top is None else sorted(rows, key=lambda r: -r.cycles)[:top]
    width = max([24] + [min(len(r.node), 44) for r in shown])
    lines = [
        f"{'layer':<{width}} {'kind':<9} {'cycles':>9} {'us':>8} {'bound':>9} "
        f"{'MACs':>11} {'DRAM B':>10} {'MAC util':>8}"
    ]
    for r in shown:
        name = r.node if len(r.node) <= width else "..." + r.node[-(width - 3) :]
        lines.append(
            f"{name:<{width}} {r.kind:<9} {r.cycles:>9} "
            f"{r.seconds(clock) * 1e6:>8.1f} {r.bound or '-':>9} {r.macs:>11,} "
            f"{r.bytes:>10,} {r.utilization:>8.1%}"
        )
    total = sum(r.cycles for r in rows)
    macs = sum(r.macs for r in rows)
    util = macs / (report.config.macs_per_cycle * total) if total else 0.0
    lines.append(
        f"{'total':<{width}} {'':<9} {total:>9} {total / clock:>8.1f} {'':>9} "
        f"{macs:>11,} {sum(r.bytes for r in rows):>10,} {util:>8.1%}"
    )
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a build machine or the board
    import matplotlib.pyplot as plt

    return plt


def write_utilization_png(rows, config, path, title):
    """A bar per layer (in program order) of its MAC utilization, coloured by kind."""
    plt = _pyplot()
    shown = [r for r in rows if r.cycles]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(shown) + 2), 4.0), dpi=100)
    try:
        xs = range(len(shown))
        ax.bar(
            xs,
            [100 * r.utilization for r in shown],
            color=[_COLORS[r.kind] for r in shown],
            width=0.8,
        )
        from matplotlib.patches import Patch

        handles = [
            Patch(color=_COLORS[k], label=k) for k in KINDS if any(r.kind == k for r in shown)
        ]
        ax.set_xlabel("layer (program order)")
        ax.set_ylabel(f"MAC utilization, % of {config.macs_per_cycle} MACs/cycle")
        ax.set_ylim(0, 100)
        ax.set_title(title, fontsize=9)
        ax.legend(handles=handles, fontsize=8, loc="upper right")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_roofline_png(rows, config, memory, clock_mhz, path, title):
    """Layers as points (ops per DRAM byte, achieved GOP/s) under the array's peak and the
    memory's sustained bandwidth (``memory.bytes_per_cycle`` at ``clock_mhz``)."""
    plt = _pyplot()
    peak = 2.0 * config.macs_per_cycle * clock_mhz / 1e3  # GOP/s
    bw = memory.bytes_per_cycle(config, clock_mhz) * clock_mhz / 1e3  # GB/s
    pts = [
        (r.ops_per_byte(), 2.0 * r.macs / r.seconds(clock_mhz) / 1e9, r.kind)
        for r in rows
        if r.macs and r.bytes and r.cycles
    ]
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    try:
        lo = min([0.1] + [p[0] for p in pts]) / 2
        hi = max([10 * peak / bw] + [p[0] for p in pts]) * 2
        ridge = peak / bw
        ax.plot([lo, ridge, hi], [lo * bw, peak, peak], color="black", linewidth=1.2)
        ax.annotate(f"array peak {peak:.0f} GOP/s", (hi, peak), ha="right", va="bottom", fontsize=8)
        x = (lo * ridge) ** 0.5
        ax.annotate(
            f"DDR {bw:.2f} GB/s ({memory.name})",
            (x, x * bw * 1.5),
            ha="right",
            va="bottom",
            fontsize=8,
        )
        for kind in KINDS:
            mine = [p for p in pts if p[2] == kind]
            if mine:
                ax.scatter(
                    [p[0] for p in mine],
                    [p[1] for p in mine],
                    s=14,
                    color=_COLORS[kind],
                    label=kind,
                    alpha=0.8,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(min([peak / 1e3] + [p[1] / 2 for p in pts]), peak * 2)
        ax.set_xlabel("arithmetic intensity (ops per DRAM byte)")
        ax.set_ylabel("achieved GOP/s (cycle model)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, which="both", linewidth=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def progress(label, i, n, start, now, out=None):
    """A one-line text progress bar (``start``/``now``: seconds, for the rate)."""
    out = out or sys.stderr
    width = 30
    done = int(width * i / n) if n else width
    rate = i / max(now - start, 1e-9)
    speed = f"{rate:.1f}/s" if rate >= 1 else f"{1 / rate:.0f} s each" if rate else "..."
    out.write(f"\r  {label} [{'#' * done}{'.' * (width - done)}] {i}/{n} ({speed})")
    if i == n:
        out.write("\n")
    out.flush()


def ort_session(path):
    """An onnxruntime session of ``path`` as the references are made
    (``bamboo.compiler.reference``: EXTENDED graph optimizations, the level Bamboo's
    numerics match, one thread, CPU, exact integer kernels on every processor)."""
    from bamboo.compiler.reference import reference_session

    return reference_session(path)


def bit_equal(a, b):
    """Whether two float32 arrays are equal bit for bit (``==`` would pass -0.0 for 0.0)."""
    import numpy as np

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))
