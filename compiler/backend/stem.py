"""Kernel columns as channels for convolutions fed by the processor (a network's stem).

A 3-channel 3x3 stem fills 3 of the array's rows and takes 9 taps an output pixel. The
processor, which hands the fabric its input anyway, lays each output column's ``kw``
input columns side by side as channels (``column_taps``, a CPU node: channel ``kx * C +
c`` of pixel ``(y, j)`` is input ``(y, j * stride_w + kx - pad_left)``, the zero point's
code outside the map); the conv becomes a ``kh x 1`` conv over that map with stride 1
along W, the model's weights reshaped (OHWI ``[ky][kx][c]`` is ``[ky][0][kx * C + c]``).
The sums are the model's, term for term. A 3x3 stem on 16 rows: 9 rows, 3 taps; the map
crosses PS/PL in the same 16-byte words (a stride-2 stem's in half of them).
"""

import numpy as np

from .. import ir
from ..partition import CPU, FABRIC

__all__ = ["column_taps_stems"]


def _rewrite(node, graph, config, fabric_reason):
    """``(column_taps node, its tensor, the conv over it)`` for ``node``, or None."""
    a = node.attrs
    if node.op != "conv" or node.target != FABRIC or a["group"] != 1 or a["dilation"][1] != 1:
        return None
    x = graph.tensors[node.inputs[0]]
    if x.layout != ir.NHWC or len(x.shape) != 4 or x.shape[0] != 1:
        return None
    c = x.shape[3]
    o, kh, kw, _ = a["w"].shape
    rows = config.rows
    if -(-kw * c // rows) * kh >= -(-c // rows) * kh * kw:
        return None  # no fewer taps x input blocks
    pt, pl, pb, pr = a["pads"]
    (sh, sw), wo = a["stride"], graph.tensors[node.outputs[0]].shape[2]
    t = ir.Tensor(f"{x.name}/column_taps", (1, x.shape[1], wo, kw * c), x.q, ir.NHWC)
    taps = ir.Node(
        f"{node.name}/column_taps",
        "column_taps",
        (x.name,),
        (t.name,),
        {"kernel_w": kw, "stride_w": sw, "pad_left": pl, "width": wo},
        source=node.source,
        target=CPU,
        reason="kernel columns of a conv fed by the processor as channels (back end)",
    )
    conv = node.replace(
        inputs=(t.name,) + tuple(node.inputs[1:]),
        attrs={
            **a,
            "w": np.ascontiguousarray(a["w"]).reshape(o, kh, 1, kw * c),
            "kernel": (kh, 1),
            "stride": (sh, 1),
            "pads": (pt, 0, pb, 0),
            "columns_of": (kh, kw, c),
        },
    )
    if fabric_reason(conv, graph.replace(tensors={**graph.tensors, t.name: t}), config):
        return None
    return taps, t, conv


def column_taps_stems(graph, config, fabric_reason):
    """``graph`` with every fabric conv whose input comes from the processor (a graph
    input or a CPU node's output) rewritten over its kernel columns as channels, where
    that takes fewer taps times input blocks and the back end can lower it."""
    prod = graph.producers()
    nodes, tensors, changed = [], dict(graph.tensors), False
    for n in graph.nodes:
        p = prod.get(n.inputs[0]) if n.inputs else None
        from_cpu = p is None or p.target == CPU
        new = _rewrite(n, graph, config, fabric_reason) if from_cpu else None
        if new is None:
            nodes.append(n)
            continue
        taps, t, conv = new
        tensors[t.name] = t
        nodes += [taps, conv]
        changed = True
    return graph.replace(nodes=tuple(nodes), tensors=tensors) if changed else graph
