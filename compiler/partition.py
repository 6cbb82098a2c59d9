"""Placement of IR nodes on the fabric or the CPU, segments and PS/PL transitions.

The capability table (:data:`CAPABILITIES`) is the documented default until the
hardware configuration defines one: everything convolutional runs on the fabric;
fully connected layers, Softmax, layout transposes and the squeeze-excite
bottleneck (GAP -> FC -> ReLU -> FC -> HardSigmoid/Sigmoid -> channel Mul) run on
the CPU. In the squeeze-excite pattern the GAP and the channel Mul stay on the
fabric by default: they read or write the whole feature map, and keeping them
there makes only the C-byte pooled vector and the C-byte scale cross PS/PL, not
the map. ``se_on_fabric=True`` puts the FCs on the fabric too (as 1x1 convs).

Views (``view``) move no data and take the placement of their producer, so they
never add a transition. Nodes are then rescheduled (a topological order that
prefers staying on the current side) to minimise fabric<->CPU switches.
"""

from dataclasses import dataclass

from .ir import CPU, FABRIC
from .resize import placement

__all__ = [
    "CAPABILITIES",
    "partition",
    "segments",
    "Segment",
    "transitions",
    "Transition",
    "find_squeeze_excite",
]

# op -> (target, reason)
CAPABILITIES = {
    "conv": (FABRIC, "convolution"),
    "gap": (FABRIC, "pooling"),
    "avgpool": (FABRIC, "pooling"),
    "maxpool": (FABRIC, "pooling"),
    "add": (FABRIC, "elementwise"),
    "mul": (FABRIC, "elementwise"),
    "concat": (FABRIC, "channel concat (address offsets)"),
    "slice": (FABRIC, "channel slice (address offsets)"),
    "shuffle": (FABRIC, "channel shuffle (address pattern)"),
    "resize": (FABRIC, "nearest resize by integer factors (data movement)"),
    "lut": (FABRIC, "256-entry LUT"),
    "view": (None, "view: no data moves"),
    "fc": (CPU, "fully connected (CPU by default)"),
    "transpose": (CPU, "layout transpose"),
    "softmax": (CPU, "softmax (CPU)"),
    "add_const": (CPU, "per-channel constant operand (CPU)"),
    "mul_const": (CPU, "per-channel constant operand (CPU)"),
    "pad": (CPU, "explicit Pad that does not fold into the next Conv/pool's padding"),
    "column_taps": (CPU, "kernel columns of a conv's input as channels (back end)"),
}


def find_squeeze_excite(graph):
    """Names of the nodes between GAP and a channel Mul that form a squeeze-excite block.

    Returns ``{mul node name: [inner node names]}``; the inner nodes are everything
    between the GAP's output and the Mul's per-channel operand: fc, 1x1 conv, lut and
    view nodes, and elementwise add/mul of two such vectors (the ``x * sigmoid(x)`` of a
    SiLU or ``x * hsigmoid(x)`` of a HardSwish inside the bottleneck), at least one fc or
    conv, all of it fed by the one GAP. Listed from the Mul's operand backwards.
    """
    prod = graph.producers()
    found = {}
    for n in graph.nodes:
        if n.op != "mul":
            continue
        for k, i in enumerate(n.inputs):
            t = graph.tensors[i]
            other = graph.tensors[n.inputs[1 - k]]
            if t.size * 4 > other.size:  # the per-channel operand is the small one
                continue
            chain = _bottleneck(graph, prod, i)
            if chain:
                found[n.name] = chain
    return found


def _bottleneck(graph, prod, tensor):
    """The nodes producing ``tensor`` back to one GAP (see :func:`find_squeeze_excite`),
    or None when something else feeds it."""
    chain, gaps, has_fc = [], set(), False
    todo, seen = [tensor], set()
    while todo:
        cur = prod.get(todo.pop())
        if cur is None:
            return None
        if cur.op == "gap":
            gaps.add(cur.name)
            continue
        if cur.name in seen:
            continue
        seen.add(cur.name)
        size = graph.tensors[cur.outputs[0]].size
        if cur.op in ("fc", "lut", "view", "conv"):
            inputs = cur.inputs[:1]
        elif cur.op in ("mul", "add") and all(graph.tensors[x].size == size for x in cur.inputs):
            inputs = cur.inputs  # elementwise on the bottleneck vector, no broadcast
        else:
            return None
        has_fc |= cur.op in ("fc", "conv")
        chain.append(cur.name)
        todo.extend(inputs)
    return chain if has_fc and len(gaps) == 1 else None


def partition(graph, *, se_on_fabric=False, fc_on_fabric=False):
    """Return ``graph`` with ``target`` and ``reason`` set on every node, rescheduled."""
    se = find_squeeze_excite(graph)
    inner = {name for chain in se.values() for name in chain}
    prod = graph.producers()
    placed, nodes = {}, []
    for n in graph.nodes:
        target, reason = CAPABILITIES[n.op]
        if n.op == "resize":
            target, reason = placement(n.attrs)
        if n.name in inner and n.op != "view":
            if se_on_fabric:
                target, reason = FABRIC, "squeeze-excite on fabric (FC as 1x1 conv)"
            else:
                target, reason = CPU, "squeeze-excite bottleneck (CPU by default)"
        elif n.op == "fc" and fc_on_fabric:
            target, reason = FABRIC, "fully connected as 1x1 conv (option)"
        if target is None:
            p = prod.get(n.inputs[0])
            target = placed[p.name] if p is not None else FABRIC
        placed[n.name] = target
        nodes.append(n.replace(target=target, reason=reason))
    return graph.replace(nodes=_schedule(graph, nodes))


def _schedule(graph, nodes):
    """Topological order that keeps running on one side as long as it can."""
    prod = {o: n.name for n in nodes for o in n.outputs}
    deps = {n.name: {prod[i] for i in n.inputs if i in prod} for n in nodes}
    order = {n.name: k for k, n in enumerate(nodes)}
    by_name = {n.name: n for n in nodes}
    done, out = set(), []
    side = nodes[0].target if nodes else FABRIC
    while len(out) < len(nodes):
        ready = [n for n in nodes if n.name not in done and deps[n.name] <= done]
        same = [n for n in ready if n.target == side]
        pick = min(same or ready, key=lambda n: order[n.name])
        side = pick.target
        done.add(pick.name)
        out.append(by_name[pick.name])
    return tuple(out)


@dataclass(frozen=True)
class Segment:
    """A maximal run of consecutive scheduled nodes on one side."""

    target: str
    nodes: tuple


@dataclass(frozen=True)
class Transition:
    """Data crossing PS/PL between two segments (or at the graph edge)."""

    src: str
    dst: str
    tensors: tuple
    nbytes: int


def segments(graph):
    """The graph's segments in schedule order."""
    segs = []
    for n in graph.nodes:
        if segs and segs[-1].target == n.target:
            segs[-1] = Segment(n.target, segs[-1].nodes + (n.name,))
        else:
            segs.append(Segment(n.target, (n.name,)))
    return segs


def transitions(graph):
    """Every PS/PL crossing per frame: graph inputs (from the CPU), segment boundaries,
    graph outputs (to the CPU). Bytes count each tensor once per crossing."""
    where = {i.tensor: CPU for i in graph.inputs}
    for n in graph.nodes:
        for o in n.outputs:
            where[o] = n.target
    seg_of = {}
    segs = segments(graph)
    for k, s in enumerate(segs):
        for name in s.nodes:
            seg_of[name] = k
    out = []
    for k, s in enumerate(segs):
        crossing = []
        for n in graph.nodes:
            if seg_of[n.name] != k:
                continue
            for i in n.inputs:
                if where[i] != s.target and i not in crossing:
                    crossing.append(i)
        if crossing:
            src = CPU if s.target == FABRIC else FABRIC
            out.append(
                Transition(
                    src, s.target, tuple(crossing), sum(graph.tensors[t].size for t in crossing)
                )
            )
    to_cpu = tuple(o.tensor for o in graph.outputs if where.get(o.tensor) == FABRIC)
    if to_cpu:
        out.append(Transition(FABRIC, CPU, to_cpu, sum(graph.tensors[t].size for t in to_cpu)))
    return out
