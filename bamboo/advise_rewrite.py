"""Graph rewrites behind ``bamboo advise``'s findings: the network as it could be designed.

Each rewrite takes the compiler's partitioned IR graph (``bamboo.compiler.passes``
output) and returns a changed graph of the same kind, which ``bamboo advise`` lowers and
runs through the cycle model and the processor-side cost model again, so a finding's
effect is measured on the rewritten network, never estimated by a rule. The weights of
a rewritten layer are not meaningful (the network would be retrained); its shapes,
operators and placement are, and they decide the time.

* :func:`table_activations_to_relu`: h-swish, SiLU, sigmoid, ... (a 256-entry table after
  the requantizer, or a separate LUT pass) replaced by a ReLU, which is the requantizer's
  clamp and costs nothing;
* :func:`remove_squeeze_excite`: the network without its squeeze-excite blocks;
* :func:`depthwise_to_3x3`: 5x5 / 7x7 depthwise kernels shrunk to 3x3 (same padding
  rule, same output size);
* :func:`pad_channels`: the channel counts of the layers ``names`` rounded up to a
  multiple (the array's width), with every channel-wise reader of those tensors (depthwise
  convs, pools, LUTs, adds, squeeze-excite) widened along and the next conv or FC reading
  the zero channels;
* :func:`at_resolution`: a quantized ONNX file with another input size (shapes inferred
  again by the importer);
* squeeze-excite or FC on the fabric are the compiler's own options
  (``partition(se_on_fabric=..., fc_on_fabric=...)``).

A top-level tool's helper: it uses the compiler's IR and passes.
"""

import numpy as np

__all__ = [
    "ACTIVATION_FREE",
    "at_resolution",
    "depthwise_to_3x3",
    "pad_channels",
    "paddable_layers",
    "remove_squeeze_excite",
    "repartition",
    "table_activations",
    "table_activations_to_relu",
]

#: Table names (``fn`` of a ``lut``) that a ReLU-like clamp or a requantizer stands for.
ACTIVATION_FREE = ("Relu", "Clip", "requant", "lut")


def repartition(graph, options):
    """Place and schedule ``graph`` again (the compiler's last pass) with ``options``."""
    from bamboo.compiler.partition import partition

    return partition(graph, **options)


def _se_inner(graph):
    from bamboo.compiler.partition import find_squeeze_excite

    return {name for chain in find_squeeze_excite(graph).values() for name in chain}


def table_activations(graph, include_se=False):
    """``{node name: table fn}`` of the activations that cost a table: convs/FCs with a
    fused non-clamp LUT and standalone ``lut`` nodes (squeeze-excite gates excluded unless
    ``include_se``)."""
    se = set() if include_se else _se_inner(graph)
    out = {}
    for n in graph.nodes:
        if n.name in se:
            continue
        if n.op in ("conv", "fc") and n.attrs.get("lut") is not None:
            fn = n.attrs.get("lut_fn", "lut")
        elif n.op == "lut":
            fn = n.attrs.get("fn", "lut")
        else:
            continue
        if fn not in ACTIVATION_FREE:
            out[n.name] = fn
    return out


def table_activations_to_relu(graph, names):
    """``graph`` with the activations ``names`` (see :func:`table_activations`) made ReLUs:
    a fused table dropped (the requantizer's clamp is the ReLU), a LUT node removed."""
    from bamboo.compiler.passes import substitute

    names = set(names)
    mapping, drop, nodes = {}, set(), []
    for n in graph.nodes:
        if n.name in names and n.op in ("conv", "fc"):
            n = n.with_attrs(lut=None, lut_fn=None)
        elif n.name in names and n.op == "lut":
            mapping[n.outputs[0]] = n.inputs[0]
            drop.add(n.name)
        nodes.append(n)
    graph = graph.replace(nodes=tuple(nodes))
    # A LUT writing a graph output stays (the output keeps its tensor).
    keep = {o.tensor for o in graph.outputs}
    mapping = {k: v for k, v in mapping.items() if k not in keep}
    drop = {n.name for n in graph.nodes if n.name in drop and n.outputs[0] in mapping}
    return substitute(graph, mapping, drop) if mapping else graph


def remove_squeeze_excite(graph):
    """``graph`` without its squeeze-excite blocks: each channel Mul passes its feature map
    through, and the pool and bottleneck that fed it are pruned."""
    from bamboo.compiler.partition import find_squeeze_excite
    from bamboo.compiler.passes import substitute

    by_name = {n.name: n for n in graph.nodes}
    mapping, drop = {}, set()
    for name in find_squeeze_excite(graph):
        mul = by_name[name]
        big = max(mul.inputs, key=lambda t: graph.tensors[t].size)
        if mul.outputs[0] in {o.tensor for o in graph.outputs}:
            continue
        mapping[mul.outputs[0]] = big
        drop.add(name)
    return substitute(graph, mapping, drop) if mapping else graph


def _is_depthwise(graph, n):
    if n.op != "conv":
        return False
    cin = graph.tensors[n.inputs[0]].shape[-1]
    return n.attrs["w"].shape[-1] == 1 and n.attrs.get("group", 1) == cin > 1


def depthwise_to_3x3(graph, names=None):
    """``graph`` with depthwise convs larger than 3x3 (or those in ``names``) made 3x3: the
    centre taps kept, each pad reduced by the same amount, so the output size is kept."""
    nodes = []
    for n in graph.nodes:
        if _is_depthwise(graph, n) and (names is None or n.name in names):
            kh, kw = n.attrs["kernel"]
            if kh > 3 or kw > 3:
                dh, dw = (kh - 3) // 2 if kh > 3 else 0, (kw - 3) // 2 if kw > 3 else 0
                w = n.attrs["w"][:, dh : dh + min(kh, 3), dw : dw + min(kw, 3), :]
                dil = n.attrs.get("dilation", (1, 1))
                t, left, b, r = n.attrs["pads"]
                pads = (
                    max(0, t - dh * dil[0]),
                    max(0, left - dw * dil[1]),
                    max(0, b - dh * dil[0]),
                    max(0, r - dw * dil[1]),
                )
                n = n.with_attrs(
                    w=np.ascontiguousarray(w), kernel=(w.shape[1], w.shape[2]), pads=pads
                )
        nodes.append(n)
    return graph.replace(nodes=tuple(nodes))


# Ops whose output channel c depends only on input channel c (channel-wise), and which
# pass a channel count through unchanged.
_CHANNELWISE = ("gap", "avgpool", "maxpool", "lut", "add", "mul", "view")


def _channel_group(graph, start):
    """Tensors that must grow together with the output of conv ``start``, the convs/FCs
    producing them (their output channels grow) and reading them (their input channels
    grow); None when something else (concat, slice, views, graph edges, grouped convs)
    touches the group."""
    prod, cons = graph.producers(), graph.consumers()
    io = {i.tensor for i in graph.inputs} | {o.tensor for o in graph.outputs}
    group, producers, readers = set(), set(), set()
    todo = [start.outputs[0]]
    while todo:
        t = todo.pop()
        if t in group:
            continue
        if t in io or graph.tensors[t].shape[-1] != graph.tensors[start.outputs[0]].shape[-1]:
            return None
        group.add(t)
        p = prod.get(t)
        if p is None:
            return None
        if _is_depthwise(graph, p) or p.op in _CHANNELWISE:
            todo.extend(p.inputs)
        elif p.op in ("conv", "fc") and p.attrs.get("group", 1) == 1:
            producers.add(p.name)
        else:
            return None
        for c in cons.get(t, []):
            if _is_depthwise(graph, c) or c.op in _CHANNELWISE:
                todo.extend(c.outputs)
                if c.op in ("add", "mul"):
                    todo.extend(c.inputs)
            elif (
                c.op in ("conv", "fc")
                and c.attrs.get("group", 1) == 1
                and len(graph.tensors[t].shape) in (2, 4)
            ):
                readers.add(c.name)
            else:
                return None
    return group, producers, readers


def paddable_layers(graph, multiple):
    """``{conv name: channels}`` of the convs (not depthwise, not grouped) whose output
    channel count is not a multiple of ``multiple`` and can be padded."""
    out = {}
    for n in graph.nodes:
        if n.op == "conv" and not _is_depthwise(graph, n) and n.attrs.get("group", 1) == 1:
            c = graph.tensors[n.outputs[0]].shape[-1]
            if c % multiple and _channel_group(graph, n) is not None:
                out[n.name] = c
    return out


def _pad_last(a, extra, axis=-1):
    """``a`` with ``extra`` more entries along ``axis``: copies of the first (scales,
    zero points) so every padded channel is a valid but zero-weight channel."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a
    first = np.take(a, [0], axis=axis)
    return np.concatenate([a, np.repeat(first, extra, axis=axis)], axis=axis)


def _pad_out(n, extra):
    a = dict(n.attrs)
    w = a["w"]
    zeros = np.zeros((extra,) + w.shape[1:], w.dtype)
    new = {
        "w": np.concatenate([w, zeros]),
        "bias": np.concatenate([a["bias"], np.zeros(extra, a["bias"].dtype)]),
    }
    new["w_zp"] = _pad_last(a["w_zp"], extra)
    rq = a["rq"]
    new["rq"] = rq.__class__(
        _pad_last(rq.m, extra), _pad_last(rq.e, extra), rq.zp, rq.qmin, rq.qmax
    )
    if _depthwise_attrs(n):
        new["group"] = a["group"] + extra
    return n.with_attrs(**new)


def _depthwise_attrs(n):
    return n.op == "conv" and n.attrs["w"].shape[-1] == 1 and n.attrs.get("group", 1) > 1


def _pad_in(n, extra):
    w = n.attrs["w"]
    zeros = np.zeros(w.shape[:-1] + (extra,), w.dtype)
    return n.with_attrs(w=np.concatenate([w, zeros], axis=-1))


def pad_channels(graph, names, multiple):
    """``graph`` with the output channels of the convs ``names`` rounded up to a multiple
    of ``multiple`` (see :func:`paddable_layers`), and everything reading them widened."""
    from bamboo.compiler.ir import Tensor

    by_name = {n.name: n for n in graph.nodes}
    grow_t, grow_out, grow_in = {}, {}, {}
    for name in names:
        found = _channel_group(graph, by_name[name])
        if found is None:
            continue
        group, producers, readers = found
        c = graph.tensors[by_name[name].outputs[0]].shape[-1]
        extra = -c % multiple
        for t in group:
            grow_t[t] = extra
        for p in producers:
            grow_out[p] = extra
        for r in readers:
            grow_in[r] = extra
    tensors = dict(graph.tensors)
    for t, extra in grow_t.items():
        old = tensors[t]
        shape = old.shape[:-1] + (old.shape[-1] + extra,)
        tensors[t] = Tensor(old.name, shape, old.q, old.layout)
    nodes = []
    for n in graph.nodes:
        if n.name in grow_out:
            n = _pad_out(n, grow_out[n.name])
        elif _depthwise_attrs(n) and n.outputs[0] in grow_t:
            n = _pad_out(n, grow_t[n.outputs[0]])
        elif n.op == "view" and n.outputs[0] in grow_t:
            n = n.with_attrs(shape=tensors[n.outputs[0]].shape)
        if n.name in grow_in:
            n = _pad_in(n, grow_in[n.name])
        nodes.append(n)
    return graph.replace(nodes=tuple(nodes), tensors=tensors)


def at_resolution(path, height, width, out):
    """Write ``path`` (an ONNX model with one NCHW image input) with its input made
    ``height`` x ``width`` to ``out``; intermediate shapes are dropped so the importer
    infers them again. Returns ``out``."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name for i in g.initializer}
    inp = [i for i in g.input if i.name not in inits][0]
    dims = inp.type.tensor_type.shape.dim
    dims[2].ClearField("dim_param")
    dims[3].ClearField("dim_param")
    dims[2].dim_value, dims[3].dim_value = height, width
    del g.value_info[:]
    for o in g.output:
        o.type.tensor_type.ClearField("shape")
    onnx.save(model, str(out))
    return out
