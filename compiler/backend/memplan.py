"""DDR memory plan: where every tensor, weight and instruction lives in the DMA window.

The window (``WINDOW_BASE`` .. ``+ footprint``) holds four regions, each aligned to
the AXI data width (the program to ``INSN_BYTES``), in this order::

    weights       WGT words, PARAM words, LUTs (read-only, from the artifact)
    activations   tensors produced and consumed on the fabric only: reused by liveness
    exchange      tensors crossing PS/PL (graph inputs/outputs, CPU <-> fabric): one
                  buffer each, never reused, so the CPU can read or write them any time
    program       the instruction words (last: its size is known only after emission)

Tensors are channel-blocked (``bamboo.arch.layout``). A fabric ``view`` aliases its
source's buffer. Activation buffers are placed first-fit in order of first
definition; two buffers share bytes only if their live ranges (schedule positions
from the producing node to the last reader, inclusive) are disjoint.
"""

import itertools
from dataclasses import dataclass, field

from bamboo.arch.isa import INSN_BYTES
from bamboo.arch.layout import act_bytes, align
from bamboo.arch.metadata import Buffer, Memory

from ..partition import FABRIC
from .check import canon

__all__ = ["MemoryPlan", "TensorBuffer", "check_plan", "plan_memory"]


@dataclass(frozen=True)
class TensorBuffer:
    """One tensor's DRAM buffer: ``region``, window ``offset``, ``size`` and live range."""

    tensor: str
    region: str
    offset: int
    size: int
    start: int
    end: int


@dataclass(frozen=True)
class MemoryPlan:
    """The plan: ``regions`` ``{name: (offset, size)}``, ``buffers`` by tensor (aliases too)."""

    regions: dict
    buffers: dict
    alias: dict = field(default_factory=dict)

    @property
    def footprint(self):
        return max((o + s for o, s in self.regions.values()), default=0)

    def offset(self, tensor):
        return self.buffers[self.alias.get(tensor, tensor)].offset

    def schema(self):
        """The plan as the artifact records it (:class:`bamboo.arch.metadata.Memory`)."""
        return Memory(
            {k: tuple(v) for k, v in self.regions.items()},
            self.footprint,
            {
                k: Buffer(b.region, b.offset, b.size, (b.start, b.end))
                for k, b in self.buffers.items()
            },
            dict(self.alias),
        )


def _tensor_bytes(graph, name, rows):
    h, w, c = canon(graph.tensors[name])
    return act_bytes(h, w, c, rows)


def plan_memory(graph, config, weights_size, program_size=0):
    """Plan the window for a partitioned, back-end-restricted ``graph``.

    Parameters
    ----------
    weights_size : int
        Bytes of the packed weight region.
    program_size : int
        Bytes of the program (may be 0 while emitting: the program region comes last).
    """
    a = config.axi_data_bytes
    rows = config.rows
    alias = {}
    for n in graph.nodes:
        if n.op == "view" and n.target == FABRIC:
            src = n.inputs[0]
            alias[n.outputs[0]] = alias.get(src, src)

    def root(t):
        return alias.get(t, t)

    outputs = {root(o.tensor) for o in graph.outputs}
    pos = {n.name: k for k, n in enumerate(graph.nodes)}
    start, end, side_in, side_out, touched = {}, {}, {}, {}, set()
    for i in graph.inputs:
        start[i.tensor], side_in[i.tensor] = -1, "cpu"
    for n in graph.nodes:
        k = pos[n.name]
        if n.op == "view" and n.target == FABRIC:
            continue
        for t in n.outputs:
            start[root(t)] = k
            side_in[root(t)] = n.target
        for t in n.inputs:
            end[root(t)] = max(end.get(root(t), -1), k)
            side_out.setdefault(root(t), set()).add(n.target)
        if n.target == FABRIC:
            touched.update(root(t) for t in n.inputs + n.outputs)
    buffers = {}
    off = align(weights_size, a)
    regions = {"weights": (0, weights_size)}
    act_base = off
    live = []  # (offset, size, start, end)
    act_top = act_base
    for t in sorted(
        (
            t
            for t in touched
            if side_in[t] == FABRIC and t not in outputs and side_out.get(t, set()) <= {FABRIC}
        ),
        key=lambda t: (start[t], t),
    ):
        size = align(_tensor_bytes(graph, t, rows), a)
        s, e = start[t], end.get(t, start[t])
        busy = sorted((o, o + sz) for o, sz, bs, be in live if not (be < s or bs > e))
        cand = act_base
        for lo, hi in busy:
            if cand + size <= lo:
                break
            cand = max(cand, hi)
        live.append((cand, size, s, e))
        buffers[t] = TensorBuffer(t, "activations", cand, size, s, e)
        act_top = max(act_top, cand + size)
    regions["activations"] = (act_base, act_top - act_base)
    off = ex_base = align(act_top, a)
    for t in sorted(touched - set(buffers), key=lambda t: (start[t], t)):
        size = align(_tensor_bytes(graph, t, rows), a)
        buffers[t] = TensorBuffer(t, "exchange", off, size, start[t], end.get(t, len(pos)))
        off += size
    regions["exchange"] = (ex_base, off - ex_base)
    # The fetcher reads whole instructions: INSN_BASE must be a multiple of INSN_BYTES
    # (hw/fetch.py faults otherwise), wider than the AXI data width.
    regions["program"] = (align(off, max(a, INSN_BYTES)), program_size)
    return MemoryPlan(regions=regions, buffers=buffers, alias=alias)


def check_plan(plan):
    """Assert that no two buffers with overlapping live ranges share a byte; return ``plan``."""
    bufs = sorted(plan.buffers.values(), key=lambda b: b.offset)
    for i, x in enumerate(bufs):
        for y in bufs[i + 1 :]:
            if y.offset >= x.offset + x.size:
                break
            overlap_time = not (x.end < y.start or y.end < x.start)
            if overlap_time or "exchange" in (x.region, y.region):
                raise AssertionError(f"buffers {x.tensor!r} and {y.tensor!r} overlap while live")
    regions = sorted(plan.regions.values())
    for (o1, s1), (o2, _) in itertools.pairwise(regions):
        assert o1 + s1 <= o2, "regions overlap"
    return plan
