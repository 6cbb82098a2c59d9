"""What the back end can lower: the capability check behind the partition, per configuration.

:func:`restrict_to_backend` is a pass run after :func:`bamboo.compiler.partition.partition`:
every fabric node the back end cannot lower for ``config`` moves to the CPU with the
reason in ``node.reason`` (``"back end: ..."``), never silently. Views then follow
their producer again and the schedule is recomputed.
"""

import numpy as np
from bamboo.arch import isa

from .. import ir
from ..partition import CPU, FABRIC, _schedule
from .stem import column_taps_stems
from .tiling import pool_bands, pool_shapes

__all__ = [
    "canon",
    "fabric_reason",
    "is_depthwise",
    "pool_on_array",
    "restrict_to_backend",
    "widen_dilation_w",
]

_K_MAX, _S_MAX, _D_MAX, _PAD_MAX = 15, 7, 7, 15


def pool_on_array(h, w):
    """Whether a global pool over ``h x w`` is past VEC AVG_POOL's window and runs on the
    array (depthwise CONVs with all-ones kernels, tiling.py)."""
    return (
        h > isa.field(isa.Opcode.VEC, "kernel_h").max
        or w > isa.field(isa.Opcode.VEC, "kernel_w").max
    )


def canon(t):
    """``(h, w, c)`` of a tensor with a channel-blocked DRAM form, else None."""
    if t.layout == ir.NHWC and len(t.shape) == 4 and t.shape[0] == 1:
        return tuple(int(v) for v in t.shape[1:])
    if t.layout == ir.ND and len(t.shape) == 2 and t.shape[0] == 1:
        return (1, 1, int(t.shape[1]))
    if t.layout == ir.ND and len(t.shape) == 4 and t.shape[0] == 1 and t.shape[1:3] == (1, 1):
        return (1, 1, int(t.shape[3]))
    return None


def is_depthwise(node, graph):
    a = node.attrs
    cin = canon(graph.tensors[node.inputs[0]])[2]
    cout = canon(graph.tensors[node.outputs[0]])[2]
    return a["group"] == cin == cout and a["w"].shape[3] == 1 and a["group"] > 1


def _conv_reason(node, graph, config, depthwise):
    a = node.attrs
    w = a["w"]
    kh, kw = w.shape[1:3] if node.op == "conv" else (1, 1)
    stride = a.get("stride", (1, 1))
    dil = a.get("dilation", (1, 1))
    pads = a.get("pads", (0, 0, 0, 0))
    if np.any(np.asarray(a["w_zp"]) != 0):
        return "asymmetric weights (w_zp != 0)"
    if w.dtype != np.int8:
        return f"{w.dtype} weights (the array takes int8)"
    if config.dsp_packing and np.any(w == -128):
        return "weight -128 breaks the packed DSP lanes (symmetric int8 weights required)"
    if max(kh, kw) > _K_MAX or max(stride) > _S_MAX or max(dil) > _D_MAX or max(pads) > _PAD_MAX:
        return f"kernel {kh}x{kw}, stride {stride}, dilation {dil} or pads {pads} exceed the ISA"
    span = ((kh - 1) * dil[0] + 1) * ((kw - 1) * dil[1] + 1)
    if span > config.input_buffer_depth // 2:
        return "one output pixel's window does not fit half the input buffer"
    if depthwise:
        if dil[1] != 1:
            return "depthwise needs dilation_w 1"
        if config.depthwise_channels < config.rows:
            return "depthwise needs cols / depthwise_column_step >= rows"
        if span * (config.depthwise_channels // config.rows) > config.input_buffer_depth // 2:
            return (
                "one output pixel's window of every depthwise block does not fit half "
                "the input buffer"
            )
        if kh > config.weight_buffer_depth // 2:
            return "kernel too tall for the weight buffer"
    elif kh * kw > config.weight_buffer_depth // 2:
        return "one kernel does not fit half the weight buffer"
    return None


def move_kind(node, graph, config):
    """How a channel move (concat, slice, shuffle) lowers: ``("copy" | "gather", None)`` or
    ``(None, reason)``. ``copy``: whole channel blocks through VEC COPY (and a concat
    input's LUT); ``gather``: a 1x1 CONV with a 0/1 selection matrix and a unit
    requantizer (exact), for moves that do not keep channel blocks whole."""
    a, B = node.attrs, config.rows
    ts = [graph.tensors[n] for n in node.inputs + node.outputs]
    if node.op != "shuffle" and a["axis"] != len(ts[0].shape) - 1:
        return None, f"{node.op} along an axis other than channels"
    if any(canon(t)[:2] != canon(ts[-1])[:2] for t in ts):
        return None, f"{node.op} of maps of different sizes"
    same_q = all(t.q == ts[-1].q for t in ts)
    if node.op == "concat":
        chans = [canon(t)[2] for t in ts[:-1]]
        if not any(c % B for c in chans[:-1]):
            return "copy", None
        if any(lut is not None for lut in a["luts"]) or not same_q:
            why = f"concat with requantized inputs at channel offsets not multiples of rows ({B})"
            return None, why
        return "gather", None
    if node.op == "slice" and a["step"] == 1 and a["start"] % B == 0:
        return "copy", None
    return ("gather", None) if same_q else (None, f"{node.op} changes the quantization")


def fabric_reason(node, graph, config):
    """Why ``node`` cannot run on the fabric of ``config`` (a string), or None if it can."""
    ts = [graph.tensors[n] for n in node.inputs + node.outputs]
    for t in ts:
        if canon(t) is None:
            return f"tensor {t.name!r} of shape {t.shape} has no channel-blocked DRAM form"
    if len({t.q.dtype for t in ts}) != 1:
        return "mixed uint8/int8 codes"
    op, a = node.op, node.attrs
    if op in ("conv", "fc"):
        return _conv_reason(node, graph, config, op == "conv" and is_depthwise(node, graph))
    if op == "gap":
        h, w, _ = canon(ts[0])
        if not pool_on_array(h, w):
            return None  # VEC AVG_POOL
        if config.depthwise_channels < config.rows:
            return "global pool past 15x15 needs cols / depthwise_column_step >= rows"
        if pool_bands(config, h, w) is None:
            return f"global pool: a row of {w} pixels does not fit half the input buffer"
        words = sum(config.depthwise_passes(kh, kw) for kh, kw in pool_shapes(config, h, w))
        if words > config.weight_buffer_depth // 2:
            return f"global pool: its {words} all-ones WGT words exceed half the weight buffer"
        return None
    if op == "maxpool":
        if (
            tuple(a["dilation"]) != (1, 1)
            or max(a["kernel"]) > _K_MAX
            or max(a["stride"]) > _S_MAX
            or max(a["pads"]) > _PAD_MAX
        ):
            return "max pool with dilation or window beyond the ISA"
        return None
    if op == "add":
        if not canon(ts[0]) == canon(ts[1]) == canon(ts[2]):
            return "broadcasting add is not lowered yet"
        return None
    if op == "mul":
        x, s, out = canon(ts[0]), canon(ts[1]), canon(ts[2])
        if x == s == out:
            return None  # elementwise (SiLU)
        if x[:2] == (1, 1):
            x, s = s, x
        if s[:2] != (1, 1) or x[:2] == (1, 1) or x != out or s[2] != out[2]:
            return "broadcasting mul other than per-channel (squeeze-excite) is not lowered"
        return None
    if op == "lut":
        return None
    if op in ("slice", "concat", "shuffle"):
        return move_kind(node, graph, config)[1]
    if op == "view":
        src, dst = canon(ts[0]), canon(ts[1])
        if src != dst and not (src[:2] == dst[:2] == (1, 1) and src[2] == dst[2]):
            return "view changes the channel-blocked layout"
        return None
    if op == "resize":
        if a["mode"] != "nearest" or a["scale"] is None:
            return "resize other than a nearest pixel repeat"
        if a["scale"][1] > _K_MAX:
            return f"horizontal repeat {a['scale'][1]} beyond the VEC window ({_K_MAX})"
        return None
    if op == "avgpool":
        return "non-global AvgPool: onnxruntime computes it in float (CPU)"
    return f"{op}: not lowered by the back end yet"


def split_concat_luts(graph, config):
    """A fabric concat of requantized inputs at unaligned channel offsets becomes ``lut``
    nodes (VEC COPY through the table, into a tensor of the output's quantization) and a
    concat without tables (a gather). Exact: the executor applies the same tables first."""
    nodes, tensors, changed = [], dict(graph.tensors), False
    for n in graph.nodes:
        luts = n.attrs.get("luts") if n.op == "concat" else None
        if (
            n.target != FABRIC
            or luts is None
            or all(t is None for t in luts)
            or move_kind(n, graph, config)[0] is not None
        ):
            nodes.append(n)
            continue
        tout = graph.tensors[n.outputs[0]]
        inputs = []
        for k, (src, table) in enumerate(zip(n.inputs, luts)):
            if table is None:
                inputs.append(src)
                continue
            t = graph.tensors[src]
            name = f"{n.name}/requant{k}"
            tensors[name] = ir.Tensor(name, t.shape, tout.q, t.layout)
            nodes.append(
                ir.Node(
                    name,
                    "lut",
                    (src,),
                    (name,),
                    {"table": table, "fn": "requant"},
                    source=n.source,
                    target=FABRIC,
                    reason="concat input requantization (table)",
                )
            )
            inputs.append(name)
        nodes.append(
            n.replace(inputs=tuple(inputs), attrs={**n.attrs, "luts": (None,) * len(inputs)})
        )
        changed = True
    return graph.replace(nodes=tuple(nodes), tensors=tensors) if changed else graph


def widen_dilation_w(node, graph, config):
    """A fabric depthwise conv with ``dilation_w > 1`` as one the depthwise engine runs:
    ``dilation_w`` 1 and the kernel widened to ``(kw - 1) * dilation_w + 1`` columns, the
    model's taps every ``dilation_w``-th column and zeros between them. The same sums (a
    zero weight adds nothing, padding and output size are unchanged); the engine does
    the zero taps' multiply-accumulates too. ``attrs["w_stuffed"]`` keeps ``dilation_w``
    so the MAC count stays the model's. Other nodes, and widened kernels the back end
    still cannot lower, are returned as they are."""
    a = node.attrs
    if (
        node.op != "conv"
        or node.target != FABRIC
        or a["dilation"][1] == 1
        or not is_depthwise(node, graph)
    ):
        return node
    (dh, dw), (o, kh, kw, _) = a["dilation"], a["w"].shape
    w = np.zeros((o, kh, (kw - 1) * dw + 1, 1), a["w"].dtype)
    w[:, :, ::dw] = a["w"]
    wide = node.replace(
        attrs={**a, "w": w, "kernel": (kh, w.shape[2]), "dilation": (dh, 1), "w_stuffed": dw}
    )
    return wide if fabric_reason(wide, graph, config) is None else node


def restrict_to_backend(graph, config, column_taps=True):
    """Move fabric nodes the back end cannot lower for ``config`` to the CPU, with the reason
    (after :func:`~.stem.column_taps_stems`, if ``column_taps``, and
    :func:`widen_dilation_w`)."""
    graph = split_concat_luts(graph, config)
    if column_taps:
        graph = column_taps_stems(graph, config, fabric_reason)
    prod = graph.producers()
    placed, nodes = {}, []
    for n in graph.nodes:
        if n.target == FABRIC:
            n = widen_dilation_w(n, graph, config)
            why = fabric_reason(n, graph, config)
            if why is not None:
                n = n.replace(target=CPU, reason=f"back end: {why}")
        if n.op == "view":
            p = prod.get(n.inputs[0])
            target = placed.get(p.name, FABRIC) if p is not None else n.target
            if target == FABRIC and fabric_reason(n, graph, config) is not None:
                target = CPU
            n = n.replace(target=target)
        placed[n.name] = n.target
        nodes.append(n)
    return graph.replace(nodes=_schedule(graph, nodes))
