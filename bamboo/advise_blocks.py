"""Per-block figures of ``bamboo advise``: the network's own units and what bounds each.

A block is the unit the exporter's node names show (``/features/features.3/...``,
``/blocks/blocks.2/blocks.2.1/...``, ``/7/...``): the first numbered part of the
name, and the numbered part below it when that level holds several units of their own
(nested stages); a node without a numbered part is a block of its own (a layer). The
figures come from one :class:`bamboo.advise.Estimate` (the compiler, the cycle model and
the processor-side cost model, as ``make bench`` runs them).
"""

import re

__all__ = ["BOUNDS", "block_key", "block_rows", "group_blocks"]

#: What can bound a block, in the order they are listed.
BOUNDS = ("array", "depthwise path", "vector unit", "load/store", "DDR", "CPU", "PS/PL transfer")
_NUMBERED = re.compile(r"(^|\.)\d+$")
_COMPUTE = {
    "conv": "array",
    "pointwise": "array",
    "fc": "array",
    "depthwise": "depthwise path",
    "other": "vector unit",
}


def _parts(node):
    name = node.source[0] if node.source else node.name
    parts = [p for p in name.split("/") if p]
    return parts[:-1] if len(parts) > 1 else parts


def block_key(parts, nested):
    """The block of a node whose name (without its op) is ``parts``; ``nested``: the
    numbered prefixes whose numbered children are units of their own."""
    for i, p in enumerate(parts):
        if _NUMBERED.search(p):
            key = parts[: i + 1]
            while (
                len(parts) > len(key)
                and "/".join(key) in nested
                and _NUMBERED.search(parts[len(key)])
            ):
                key = parts[: len(key) + 1]
            return "/".join(key)
    return "/".join(parts)


def group_blocks(graph):
    """``{node name: block name}`` for every node of ``graph``, in program order."""
    parts = {n.name: _parts(n) for n in graph.nodes}
    # A numbered prefix is nested when two or more numbered children hold several nodes.
    counts = {}
    for ps in parts.values():
        for i in range(len(ps) - 1):
            if _NUMBERED.search(ps[i]) and _NUMBERED.search(ps[i + 1]):
                child = "/".join(ps[: i + 2])
                counts.setdefault("/".join(ps[: i + 1]), {}).setdefault(child, 0)
                counts["/".join(ps[: i + 1])][child] += 1
    nested = {k for k, ch in counts.items() if sum(c >= 2 for c in ch.values()) >= 2}
    return {name: block_key(ps, nested) for name, ps in parts.items()}


def block_rows(est):
    """One dict per block of the estimate ``est`` (program order): ``block``, ``nodes``,
    ``macs``, ``cycles`` (fabric), ``fabric_ms``, ``cpu_ms``, ``pspl_bytes``,
    ``pspl_ms``, ``share`` (of the frame's fabric + processor work), ``utilization``
    (MACs over the array's peak in the block's fabric cycles), ``bound`` (the largest of
    :data:`BOUNDS`) and ``split`` (nodes on fabric / CPU)."""
    from bamboo.compiler.inspect import macs as node_macs

    from .report import op_kind

    g, clock = est.compiled.graph, est.clock_mhz
    host = est.host
    blocks = group_blocks(g)
    by_name = {n.name: n for n in g.nodes}
    ideal = {r.node: r for r in est.ideal.layers}
    out = {}

    def row(node_name):
        b = blocks.get(node_name, node_name)
        if b not in out:
            out[b] = {
                "block": b,
                "nodes": 0,
                "fabric_nodes": 0,
                "cpu_nodes": 0,
                "macs": 0,
                "cycles": 0,
                "cpu_ms": 0.0,
                "pspl_bytes": 0,
                "pspl_ms": 0.0,
                "time": dict.fromkeys(BOUNDS, 0.0),
            }
        return out[b]

    for n in g.nodes:
        r = row(n.name)
        r["nodes"] += 1
        r["fabric_nodes" if n.target == "fabric" else "cpu_nodes"] += 1
        if n.op in ("conv", "fc"):
            r["macs"] += node_macs(g, n)
        if n.target == "cpu":
            ms = 1e3 * host.slowdown * est.cpu["cpu_named_s"].get(n.name, 0.0)
            r["cpu_ms"] += ms
            r["time"]["CPU"] += ms
    for lr in est.report.layers:
        r = row(lr.node)
        r["cycles"] += lr.cycles
        ms = 1e3 * lr.cycles / (clock * 1e6)
        if lr.bound == "compute":
            node = by_name.get(lr.node)
            r["time"][_COMPUTE[op_kind(g, node) if node else "other"]] += ms
        else:
            base = min(lr.cycles, ideal[lr.node].cycles if lr.node in ideal else lr.cycles)
            r["time"]["load/store"] += 1e3 * base / (clock * 1e6)
            r["time"]["DDR"] += ms - 1e3 * base / (clock * 1e6)
    prod = g.producers()
    rows = est.compiled.config.rows
    for step in est.compiled.steps:
        if not step.on_fabric:
            continue
        first = row(step.nodes[0])
        first["pspl_ms"] += 1e-3 * host.step_us
        for t in step.inputs + step.outputs:
            p = prod.get(t)
            r = row(p.name) if p is not None and t in step.outputs else first
            shape = g.tensors[t].shape
            c = shape[-1]
            n = -(-c // rows) * rows * (g.tensors[t].size // c if c else 0)
            r["pspl_bytes"] += n
            r["pspl_ms"] += 1e-3 * n / host.copy_bytes_per_us
    total = est.fabric_s * 1e3 + est.cpu_s * 1e3 or 1.0
    result = []
    for r in out.values():
        r["time"]["PS/PL transfer"] += r["pspl_ms"]
        r["fabric_ms"] = 1e3 * r["cycles"] / (clock * 1e6)
        r["share"] = (r["fabric_ms"] + r["cpu_ms"] + r["pspl_ms"]) / total
        peak = est.compiled.config.macs_per_cycle * r["cycles"]
        fabric_macs = sum(
            node_macs(g, n)
            for n in g.nodes
            if n.op in ("conv", "fc") and n.target == "fabric" and blocks[n.name] == r["block"]
        )
        r["utilization"] = fabric_macs / peak if peak else 0.0
        r["bound"] = max(BOUNDS, key=lambda k: r["time"][k]) if any(r["time"].values()) else "-"
        r["split"] = f"{r['fabric_nodes']}/{r['cpu_nodes']}"
        r["time"] = {k: round(v, 4) for k, v in r["time"].items() if v}
        result.append(r)
    return result
