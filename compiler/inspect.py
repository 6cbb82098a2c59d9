"""``bamboo inspect``: a per-node table and a partition summary of a compiled graph."""

import sys
import types

import numpy as np

from . import ir
from .partition import segments, transitions

__all__ = ["macs", "node_rows", "summary", "render"]


def macs(graph, node):
    """Multiply-accumulates of ``node`` per frame (0 for ops that only move codes)."""
    out = graph.tensors[node.outputs[0]]
    if node.op == "conv":
        # the model's kernel where the back end laid its columns out as channels (stem.py)
        kh, kw, cg = node.attrs.get("columns_of", node.attrs["w"].shape[1:])
        stuffed = node.attrs.get("w_stuffed", 1)  # zero columns the back end added
        return out.size * kh * ((kw - 1) // stuffed + 1) * cg
    if node.op == "fc":
        return out.size * node.attrs["w"].shape[1]
    if node.op in ("gap", "avgpool"):
        return (
            graph.tensors[node.inputs[0]].size
            if node.op == "gap"
            else out.size * int(np.prod(node.attrs["kernel"]))
        )
    if node.op in ("add", "mul"):
        return out.size
    return 0


def node_rows(graph):
    """One dict per node: name, op, shapes (ONNX layout), MACs, target, reason, fused."""
    rows = []
    for n in graph.nodes:
        ins = " ".join("x".join(map(str, ir.logical_shape(graph.tensors[i]))) for i in n.inputs)
        out = "x".join(map(str, ir.logical_shape(graph.tensors[n.outputs[0]])))
        fused = ", ".join(n.fused)
        if n.attrs.get("approx"):
            fused += f" [approx {n.attrs['approx']}: {n.attrs['approx_wrong_codes']}/256 codes off]"
        rows.append(
            {
                "node": n.name,
                "op": n.op,
                "in": ins,
                "out": out,
                "macs": macs(graph, n),
                "target": n.target or "-",
                "why": n.reason,
                "fused": fused,
            }
        )
    return rows


def summary(graph):
    """Totals: MACs per side, segments, transitions with bytes, bytes crossing per frame."""
    segs = segments(graph)
    trans = transitions(graph)
    per = {}
    for n in graph.nodes:
        per[n.target] = per.get(n.target, 0) + macs(graph, n)
    return {
        "nodes": len(graph.nodes),
        "macs": per,
        "segments": [(s.target, len(s.nodes)) for s in segs],
        "transitions": [(t.src, t.dst, t.tensors, t.nbytes) for t in trans],
        "bytes_per_frame": sum(t.nbytes for t in trans),
    }


def _table(rows, cols):
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)).rstrip())
    return lines


def render(graph, title=""):
    """The inspect report as text."""
    rows = node_rows(graph)
    lines = [f"{title or graph.name}: {len(rows)} nodes"]
    lines += [f"note: {note}" for note in graph.notes]
    lines += _table(rows, ["node", "op", "in", "out", "macs", "target", "why", "fused"])
    s = summary(graph)
    lines.append("")
    lines.append("MACs per frame: " + ", ".join(f"{k} {v:,}" for k, v in s["macs"].items()))
    lines.append(
        f"segments: {len(s['segments'])} (" + ", ".join(f"{t}:{n}" for t, n in s["segments"]) + ")"
    )
    lines.append(f"transitions: {len(s['transitions'])}")
    for src, dst, tensors, nbytes in s["transitions"]:
        names = ", ".join(tensors[:3]) + (" ..." if len(tensors) > 3 else "")
        lines.append(f"  {src} -> {dst}: {nbytes:,} bytes ({names})")
    lines.append(f"bytes crossing PS/PL per frame: {s['bytes_per_frame']:,}")
    return "\n".join(lines)


class _InspectModule(types.ModuleType):
    """This module, callable: ``bamboo.compiler.inspect(model)`` is
    :func:`bamboo.compiler.api.inspect`, and ``render``/``summary``/``macs`` stay its
    attributes (a function of that name in the package would be replaced by this module
    as soon as anything imported it)."""

    def __call__(self, model, **options):
        from .api import inspect  # here: keeps importing render/summary free of the back end

        return inspect(model, **options)


sys.modules[__name__].__class__ = _InspectModule
