"""The compiler back end: a partitioned IR graph to the ``.bmb`` artifact the fabric runs.

Passes, top to bottom (each a module)::

    restrict_to_backend   check.py     fabric nodes the back end cannot lower go to the CPU
    pack_weights          weights.py   WGT/PARAM/LUT blobs in the hardware layouts (pack.py)
    plan_memory           memplan.py   DDR regions, tensor buffers reused by liveness
    Lowerer.segment       lower.py     per-layer tiling (tiling.py) into steps
    assign_tokens         emit.py      dependency tokens; then isa.encode
    build                 artifact_writer.py   sections and header (bamboo.arch.artifact)

:func:`compile_artifact` runs them all.
"""

from dataclasses import dataclass, field

from bamboo.arch.isa import encode_bytes
from bamboo.arch.metadata import Step

from ..partition import CPU, FABRIC, segments
from . import artifact_writer
from .check import fabric_reason, restrict_to_backend
from .emit import encode_steps
from .lower import Lowerer
from .memplan import check_plan, plan_memory
from .weights import pack_weights

__all__ = ["Compiled", "compile_artifact", "fabric_reason", "lower_graph", "restrict_to_backend"]


@dataclass
class Compiled:
    """Everything the back end made: the restricted graph, plan, weights and program."""

    graph: object
    config: object
    plan: object
    weights: bytes
    program: bytes
    steps: list = field(default_factory=list)  # schedule: arch.metadata.Step, in order
    layers: list = field(default_factory=list)  # (node, first insn, count)
    words: list = field(default_factory=list)  # instruction integers
    stats: dict = field(default_factory=dict)


def lower_graph(graph, config, progress=None, column_taps=True):
    """Lower a partitioned graph for ``config``; returns a :class:`Compiled`.

    ``progress(done, total, node_name)`` is called per fabric node (for the CLI).
    ``column_taps``: convs fed by the processor over their kernel columns as channels
    where that takes fewer taps (stem.py); False keeps every conv's own shape.
    """
    graph = restrict_to_backend(graph, config, column_taps)
    weights, winfo = pack_weights(graph, config)
    plan = check_plan(plan_memory(graph, config, len(weights)))
    by_name = {n.name: n for n in graph.nodes}
    lowerer = Lowerer(graph, config, plan, winfo)
    words, layers, steps = [], [], []
    produced_before = {i.tensor for i in graph.inputs}
    total = sum(n.target == FABRIC for n in graph.nodes)
    done = 0
    nbytes = macs = 0
    segs = segments(graph)
    for k, seg in enumerate(segs):
        nodes = [by_name[name] for name in seg.nodes]
        made = {t for n in nodes for t in n.outputs}
        later = {o.tensor for o in graph.outputs} | {
            t for s in segs[k + 1 :] for name in s.nodes for t in by_name[name].inputs
        }
        if seg.target == CPU or all(n.op == "view" for n in nodes):
            # A run of views alone moves no data: the CPU reshapes (the buffer is shared).
            steps.append(Step(CPU, tuple(seg.nodes)))
            produced_before |= made
            continue
        seg_steps = lowerer.segment(
            nodes, progress and (lambda k, name, base=done: progress(base + k, total, name))
        )
        seg_words, ranges = encode_steps(seg_steps)
        first = len(words)
        layers += [(n, first + f, c) for n, f, c in ranges]
        words += seg_words
        nbytes += sum(op.nbytes for s in seg_steps for op in s.loads + s.stores)
        macs += sum(op.macs for s in seg_steps for op in s.computes)

        # Only exchange buffers cross PS/PL; fabric-to-fabric tensors stay in DRAM.
        def exchange(t):
            return plan.buffers[plan.alias.get(t, t)].region == "exchange"

        reads = {t for n in nodes for t in n.inputs if t not in made and exchange(t)}
        steps.append(
            Step(
                FABRIC,
                tuple(seg.nodes),
                first,
                len(seg_words),
                tuple(sorted(reads)),
                tuple(sorted(t for t in made & later if exchange(t))),
            )
        )
        produced_before |= made
        done += len(nodes)
    program = encode_bytes(words)
    regions = dict(plan.regions)
    off = regions["program"][0]
    regions["program"] = (off, len(program))
    plan = plan.__class__(regions=regions, buffers=plan.buffers, alias=plan.alias)
    stats = {
        "instructions": len(words),
        "dram_bytes": nbytes,
        "macs": macs,
        "footprint": plan.footprint,
        "regions": {k: v[1] for k, v in plan.regions.items()},
    }
    return Compiled(
        graph=graph,
        config=config,
        plan=plan,
        weights=weights,
        program=program,
        steps=steps,
        layers=layers,
        words=words,
        stats=stats,
    )


def compile_artifact(graph, config, progress=None, column_taps=True):
    """Compile a partitioned IR ``graph`` for ``config`` to ``.bmb`` bytes (``column_taps``
    as :func:`lower_graph`)."""
    return artifact_writer.build(lower_graph(graph, config, progress, column_taps))
