"""IR-to-IR passes, each a function ``graph -> graph`` runnable and testable alone.

:func:`compile_graph` runs the pipeline, top to bottom::

    fold_views                  view of a view is one view; a no-op view disappears
    cancel_transposes           a transpose undone by the next one disappears
    recognize_channel_shuffle   NCHW Reshape-Transpose-Reshape on a map becomes ``shuffle``
    approx_leaky_shift          only with approx={"leaky-shift"}: LeakyReLU tables by shift
    fuse_unary_mul              ``x * f(x)`` (SiLU, HardSwish by parts) becomes one ``lut``
    fuse_activation             a lut/clamp after conv/fc goes into its post-processing
    prune                       drop what no output needs
    partition                   place every node on fabric or CPU (partition.py)

``BAMBOO_VERIFY_IR=1`` verifies the IR after every pass, ``BAMBOO_DUMP_IR=1`` prints it.
"""

import sys

import numpy as np
from bamboo.runtime.cpu_ops import run_op

from . import ir
from .lut import input_codes

__all__ = [
    "fold_views",
    "cancel_transposes",
    "recognize_channel_shuffle",
    "approx_leaky_shift",
    "fuse_unary_mul",
    "fuse_activation",
    "prune",
    "substitute",
    "pipeline",
    "run_passes",
    "compile_graph",
]


def substitute(graph, mapping, drop=()):
    """Rename tensor reads by ``mapping`` and remove the nodes called in ``drop``."""

    def m(name):
        while name in mapping:
            name = mapping[name]
        return name

    drop = set(drop)
    nodes = [
        n.replace(inputs=tuple(m(i) for i in n.inputs)) for n in graph.nodes if n.name not in drop
    ]
    outputs = [o.replace(tensor=m(o.tensor)) for o in graph.outputs]
    return graph.replace(nodes=tuple(nodes), outputs=tuple(outputs)).prune()


def _single_consumer(graph, tensor, consumers=None):
    consumers = graph.consumers() if consumers is None else consumers
    users = consumers.get(tensor, [])
    if len(users) != 1 or any(o.tensor == tensor for o in graph.outputs):
        return None
    return users[0]


def fold_views(graph):
    """Merge chains of ``view`` nodes and drop views that change nothing."""
    prod = graph.producers()
    mapping, drop, nodes = {}, set(), []
    for n in graph.nodes:
        if n.op == "view":
            src = n.inputs[0]
            while src in mapping:
                src = mapping[src]
            p = prod.get(src)
            st, ot = graph.tensors[src], graph.tensors[n.outputs[0]]
            if (
                st.shape == ot.shape
                and st.layout == ot.layout
                and not any(o.tensor == n.outputs[0] for o in graph.outputs)
            ):
                mapping[n.outputs[0]] = src
                drop.add(n.name)
                continue
            if p is not None and p.op == "view":
                n = n.replace(inputs=(p.inputs[0],), fused=p.fused + (p.name,) + n.fused)
        nodes.append(n)
    return substitute(graph.replace(nodes=tuple(nodes)), mapping, drop)


def cancel_transposes(graph):
    """Remove ``transpose`` pairs whose permutations compose to the identity."""
    prod = graph.producers()
    mapping, drop = {}, set()
    for n in graph.nodes:
        if n.op != "transpose":
            continue
        p = prod.get(n.inputs[0])
        if p is None or p.op != "transpose":
            continue
        composed = tuple(p.attrs["perm"][i] for i in n.attrs["perm"])
        src = graph.tensors[p.inputs[0]]
        if (
            composed == tuple(range(len(composed)))
            and src.layout == graph.tensors[n.outputs[0]].layout
            and not any(o.tensor == n.outputs[0] for o in graph.outputs)
        ):
            mapping[n.outputs[0]] = p.inputs[0]
            drop.add(n.name)
    return substitute(graph, mapping, drop) if drop else graph


def recognize_channel_shuffle(graph):
    """``to NCHW -> view (N,g,C/g,H,W) -> transpose (0,2,1,3,4) -> view (N,C,H,W) -> to NHWC``
    becomes one ``shuffle`` node on the NHWC map (ShuffleNet's channel shuffle)."""
    prod, cons = graph.producers(), graph.consumers()
    nodes = list(graph.nodes)
    for last in graph.nodes:
        if last.op != "transpose" or last.attrs["perm"] != (0, 2, 3, 1):
            continue
        chain = [last]
        for op in ("view", "transpose", "view", "transpose"):
            p = prod.get(chain[-1].inputs[0])
            if p is None or p.op != op or _single_consumer(graph, p.outputs[0], cons) is None:
                break
            chain.append(p)
        if len(chain) != 5:
            continue
        first, v5, tr, _, _ = chain[4], chain[3], chain[2], chain[1], chain[0]
        src = graph.tensors[first.inputs[0]]
        if (
            first.attrs["perm"] != (0, 3, 1, 2)
            or src.layout != ir.NHWC
            or tr.attrs["perm"] != (0, 2, 1, 3, 4)
            or len(v5.attrs["shape"]) != 5
        ):
            continue
        n_, g, cg, h, w = v5.attrs["shape"]
        out = graph.tensors[last.outputs[0]]
        if out.shape != src.shape:
            continue
        names = {c.name for c in chain}
        shuffle = ir.Node(
            tr.name,
            "shuffle",
            (first.inputs[0],),
            last.outputs,
            {"groups": int(g)},
            source=sum((c.source for c in reversed(chain)), ()),
            fused=tuple(c.name for c in reversed(chain[1:])),
        )
        nodes = [
            shuffle if n.name == last.name else n
            for n in nodes
            if n.name not in names or n.name == last.name
        ]
    return graph.replace(nodes=tuple(nodes)).prune()


def approx_leaky_shift(graph):
    """Replace exact LeakyReLU tables by the shift approximation (opt-in: ``--approx``).

    The table becomes the codes of :func:`bamboo.runtime.elementwise.leaky_shift`
    (rounded form); ``approx_wrong_codes`` records how many of the 256 codes differ
    from the exact (onnxruntime) table, which is the accuracy cost to report.
    """
    from bamboo.runtime.elementwise import leaky_shift

    nodes = []
    for n in graph.nodes:
        if (
            n.op == "lut"
            and n.attrs.get("fn") in ("LeakyRelu", "QLinearLeakyRelu")
            and abs(n.attrs.get("alpha", 0) - 0.1) < 1e-6
        ):
            ti, to = graph.tensors[n.inputs[0]], graph.tensors[n.outputs[0]]
            codes = np.arange(256, dtype=np.uint8).view(ti.q.np_dtype)
            table = leaky_shift(
                codes,
                np.float32(ti.q.scale),
                ti.q.zp,
                np.float32(to.q.scale),
                to.q.zp,
                dtype=to.q.np_dtype,
                rounded=True,
            )
            wrong = int(np.count_nonzero(table != n.attrs["table"]))
            n = n.with_attrs(table=table, approx="leaky-shift", approx_wrong_codes=wrong)
        nodes.append(n)
    return graph.replace(nodes=tuple(nodes))


def _unary_chain(prod, tensor):
    """``(tensors, nodes)`` back from ``tensor`` through ``lut`` and ``view`` nodes:
    ``tensors[k]`` is written by ``nodes[k]``, which reads ``tensors[k + 1]``."""
    tensors, nodes = [tensor], []
    while True:
        p = prod.get(tensors[-1])
        if p is None or p.op not in ("lut", "view"):
            return tensors, nodes
        nodes.append(p)
        tensors.append(p.inputs[0])


def _chain_codes(graph, nodes, codes):
    """``codes`` sent through ``nodes`` (listed from the last back to the first) with the
    executor's kernels; a view moves no data, so on a flat code vector it is the identity."""
    for n in reversed(nodes):
        if n.op == "lut":
            codes = run_op(
                "lut",
                n.attrs,
                [codes],
                [graph.tensors[n.inputs[0]].q],
                graph.tensors[n.outputs[0]].q,
            )
    return codes


def fuse_unary_mul(graph):
    """Replace ``mul(a, b)`` where ``a`` and ``b`` are both elementwise functions of one
    tensor ``t`` (``x * Sigmoid(x)``: SiLU; ``x * HardSigmoid(x)``: HardSwish by parts) by
    one ``lut`` node ``t -> y``.

    Each side is ``t`` itself or ``t`` through ``lut`` and ``view`` nodes, with at least one
    ``lut`` in all. Then every output code is a function of the one input code, and the table
    is measured by running the executor's own kernels (``bamboo.runtime.cpu_ops.run_op``: the
    tables, then onnxruntime's QLinearMul formula) on all 256 codes of ``t``: bit-exact by
    construction. Conditions: the mul's operands and output have one shape (no broadcast),
    every ``lut`` on the way has no reader but the next node (it disappears), and none is an
    opt-in approximation (its accuracy cost is counted per table). The new node reads ``t``
    when ``t`` has the output's shape and layout, so :func:`fuse_activation` can fold it into
    the producing conv, else the operand that is ``t`` through views only.
    """
    prod, cons = graph.producers(), graph.consumers()
    outputs = {o.tensor for o in graph.outputs}
    replace = {}
    for m in graph.nodes:
        if m.op != "mul":
            continue
        (a, b), y = m.inputs, graph.tensors[m.outputs[0]]
        ta, tb = graph.tensors[a], graph.tensors[b]
        if not ta.shape == tb.shape == y.shape or ta.q.dtype != tb.q.dtype:
            continue
        (pa, na), (pb, nb) = _unary_chain(prod, a), _unary_chain(prod, b)
        root = next((t for t in pa if t in pb), None)
        if root is None:
            continue
        na, nb = na[: pa.index(root)], nb[: pb.index(root)]
        luts = [n for n in na + nb if n.op == "lut"]
        if (
            not luts
            or any(n.attrs.get("approx") for n in luts)
            or any(
                len({r.name for r in cons.get(n.outputs[0], [])}) != 1 or n.outputs[0] in outputs
                for n in luts
            )
        ):
            continue
        t = graph.tensors[root]
        if t.shape == y.shape and t.layout == y.layout:
            src = root
        else:
            src = next(
                (
                    x
                    for x, chain in ((a, na), (b, nb))
                    if not any(n.op == "lut" for n in chain) and graph.tensors[x].layout == y.layout
                ),
                None,
            )
            if src is None:
                continue
        codes = input_codes(t.q.np_dtype)
        table = run_op(
            "mul",
            m.attrs,
            [_chain_codes(graph, na, codes), _chain_codes(graph, nb, codes)],
            [ta.q, tb.q],
            y.q,
        )
        luts = luts[::-1]  # in the order they run
        fn = "+".join([n.attrs.get("fn", "lut") for n in luts] + ["Mul"])
        replace[m.name] = ir.Node(
            m.name,
            "lut",
            (src,),
            m.outputs,
            {"table": table, "fn": fn},
            source=sum((n.source for n in luts), ()) + m.source,
            fused=sum(((n.name,) + n.fused for n in luts), ()) + m.fused,
        )
    if not replace:
        return graph
    nodes = [replace.get(n.name, n) for n in graph.nodes]
    return graph.replace(nodes=tuple(nodes)).prune()


def _is_clamp(table, q):
    codes = np.arange(256, dtype=np.uint8).view(q.np_dtype).astype(np.int64)
    t = np.asarray(table).astype(np.int64)
    inside = t == codes
    if not inside.any():
        return None
    lo, hi = int(codes[inside].min()), int(codes[inside].max())
    if np.array_equal(t, np.clip(codes, lo, hi)):
        return lo, hi
    return None


def fuse_activation(graph):
    """Fold a ``lut`` that is the only reader of a conv/fc output into that conv/fc.

    A clamp table (same quantization, ``clip(code, lo, hi)``) narrows the requantizer's
    saturation bounds; any other table becomes the conv's post-requant LUT.
    """
    prod, cons = graph.producers(), graph.consumers()
    replace, drop = {}, set()
    for n in graph.nodes:
        if n.op != "lut" or n.name in drop:
            continue
        p = prod.get(n.inputs[0])
        if p is None or p.op not in ("conv", "fc") or p.name in drop:
            continue
        p = replace.get(p.name, p)
        if p.attrs.get("lut") is not None or _single_consumer(graph, p.outputs[0], cons) is None:
            continue
        tin, tout = graph.tensors[p.outputs[0]], graph.tensors[n.outputs[0]]
        if tin.q.dtype != tout.q.dtype:
            continue
        clamp = _is_clamp(n.attrs["table"], tin.q) if tin.q == tout.q else None
        rq = p.attrs["rq"]
        if clamp is not None:
            rq = rq.__class__(rq.m, rq.e, rq.zp, max(rq.qmin, clamp[0]), min(rq.qmax, clamp[1]))
            fused = p.with_attrs(rq=rq)
        else:
            fused = p.with_attrs(lut=n.attrs["table"], lut_fn=n.attrs.get("fn", "lut"))
        if n.attrs.get("approx"):
            fused = fused.with_attrs(
                approx=n.attrs["approx"], approx_wrong_codes=n.attrs["approx_wrong_codes"]
            )
        fused = fused.replace(
            outputs=n.outputs, fused=p.fused + (n.name,) + n.fused, source=p.source + n.source
        )
        replace[p.name] = fused
        drop.add(n.name)
    if not replace:
        return graph
    nodes = [replace.get(n.name, n) for n in graph.nodes if n.name not in drop]
    return graph.replace(nodes=tuple(nodes)).prune()


def prune(graph):
    """Drop nodes and tensors that no graph output depends on."""
    return graph.prune()


def pipeline(approx=(), fabric_options=None):
    """The named passes :func:`compile_graph` runs, in order."""
    from .partition import partition

    passes = [
        ("fold_views", fold_views),
        ("cancel_transposes", cancel_transposes),
        ("recognize_channel_shuffle", recognize_channel_shuffle),
    ]
    if "leaky-shift" in set(approx):
        passes.append(("approx_leaky_shift", approx_leaky_shift))
    passes += [
        ("fuse_unary_mul", fuse_unary_mul),
        ("fuse_activation", fuse_activation),
        ("prune", prune),
        ("partition", lambda g: partition(g, **(fabric_options or {}))),
    ]
    return passes


def run_passes(graph, passes, *, verify=None, dump=None, out=None):
    """Run ``passes`` (``(name, function)`` pairs); verify/dump per the environment."""
    verify = ir.env_flag("BAMBOO_VERIFY_IR") if verify is None else verify
    dump = ir.env_flag("BAMBOO_DUMP_IR") if dump is None else dump
    out = out or sys.stderr
    if verify:
        ir.verify(graph)
    for name, fn in passes:
        graph = fn(graph)
        if verify:
            ir.verify(graph)
        if dump:
            print(ir.dump(graph, f"after {name}"), file=out)
    return graph


def compile_graph(graph, *, approx=(), fabric_options=None, **kw):
    """Run the whole pipeline on an imported graph."""
    return run_passes(graph, pipeline(approx, fabric_options), **kw)
