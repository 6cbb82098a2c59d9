"""The weight region image: every fabric node's WGT words, PARAM words and LUTs, packed.

:func:`pack_weights` walks the fabric nodes and appends their parameters in the
hardware layouts (pack.py), each blob aligned to the AXI data width, and returns the
image with ``{node name: {"wgt"|"param"|"lut": offset, ...}}``.
"""

import numpy as np
from bamboo.arch.layout import align
from bamboo.runtime.requant import Requant
from bamboo.runtime.requant import qrange as _qrange

from ..partition import FABRIC
from . import pack
from .check import canon, is_depthwise, move_kind, pool_on_array
from .tiling import pool_shapes

__all__ = ["WeightImage", "conv_weights_2d", "depthwise_chunks", "pack_weights"]

_f32 = np.float32


class WeightImage:
    """A growing byte image; :meth:`add` returns each blob's offset."""

    def __init__(self, alignment):
        self.alignment = alignment
        self.data = bytearray()

    def add(self, blob):
        off = align(len(self.data), self.alignment)
        self.data += bytes(off - len(self.data)) + np.ascontiguousarray(blob).tobytes()
        return off


def conv_weights_2d(node, graph=None):
    """OHWI weights of a conv or fc node (fc: ``(O, 1, 1, K)``).

    A grouped (not depthwise) conv comes back dense, zero outside its groups: exact, at
    ``group`` times the MACs.
    """
    w = node.attrs["w"]
    if node.op == "fc":
        return w.reshape(w.shape[0], 1, 1, w.shape[1])
    g = node.attrs.get("group", 1)
    if g == 1 or (graph is not None and is_depthwise(node, graph)):
        return w
    o, kh, kw, cg = w.shape
    full = np.zeros((o, kh, kw, cg * g), np.int8)
    og = o // g
    for k in range(g):
        full[k * og : (k + 1) * og, :, :, k * cg : (k + 1) * cg] = w[k * og : (k + 1) * og]
    return full


def depthwise_chunks(w, config):
    """``(words, chunks)``: the WGT words of depthwise ``w`` ``(C, kh, kw, 1)`` and its column
    chunks.

    A kernel wider than ``rows`` runs as column chunks of up to ``rows`` columns summed in
    ACC; chunk ``k`` is ``(kx0, width, first, passes)``: its ``passes =
    config.depthwise_passes(kh, width)`` WGT words start at word ``first`` of every channel
    group's run. ``words``: uint8 ``(groups, sum of passes, C*B)``, a channel group
    (``config.depthwise_channels`` channels, one CONV) after the other."""
    rows, kh, kw = config.rows, w.shape[1], w.shape[2]
    blobs, chunks, first = [], [], 0
    for x0 in range(0, kw, rows):
        width = min(rows, kw - x0)
        blobs.append(
            pack.depthwise_weights(
                w[:, :, x0 : x0 + width],
                rows,
                config.cols,
                config.depthwise_column_step,
                config.depthwise_channels,
                config.depthwise_row_groups(width),
            )
        )
        passes = config.depthwise_passes(kh, width)
        chunks.append((x0, width, first, passes))
        first += passes
    return np.concatenate(blobs, axis=1), chunks


def _lut_blob(table):
    return np.asarray(table).view(np.uint8)


def pack_weights(graph, config):
    """``(bytes, {node: offsets and derived constants})`` for every fabric node of ``graph``."""
    img = WeightImage(config.axi_data_bytes)
    rows, cols = config.rows, config.cols
    info = {}
    for n in graph.nodes:
        if n.target != FABRIC:
            continue
        a, d = n.attrs, {}
        tin = graph.tensors[n.inputs[0]]
        tout = graph.tensors[n.outputs[0]]
        signed = tin.q.dtype == "int8"
        if n.op in ("conv", "fc"):
            w = conv_weights_2d(n, graph)
            cout = w.shape[0]
            in_zp = pack.in_zp_for(config, tin.q.zp, signed)
            bias = pack.fold_in_zp(a["bias"], w, tin.q.zp, in_zp)
            m, e = pack.requant_of(a["rq"], cout)
            if n.op == "conv" and is_depthwise(n, graph):
                words, d["dw_chunks"] = depthwise_chunks(w, config)
                d["wgt"] = img.add(words)
                d["param"] = img.add(pack.param_words(bias, m, e, cols, config.depthwise_channels))
                d["depthwise"] = True
            else:
                d["wgt"] = img.add(pack.dense_weights(w, rows, cols))
                d["param"] = img.add(pack.param_words(bias, m, e, cols))
                d["depthwise"] = False
            d["in_zp"] = in_zp
            if a.get("lut") is not None:
                d["lut"] = img.add(_lut_blob(a["lut"]))
        elif n.op == "gap":
            h, w, _ = canon(tin)
            if pool_on_array(h, w):
                _gap_pool(n, tin, config, img, d)
            else:
                m, e = pack.requant_of(a["rq"], rows)
                d["param"] = img.add(pack.param_words(np.zeros(rows, np.int64), m, e, cols))
        elif n.op == "add":
            ta, tb = graph.tensors[n.inputs[0]], graph.tensors[n.inputs[1]]
            swap = all(v == 1 for v in canon(ta))  # runtime swaps when nothing varies
            if swap:
                ta, tb = tb, ta
            d["swap"] = swap
            d["param"] = img.add(
                pack.add_params(
                    ta.q.scale, tb.q.scale, tout.q.scale, ta.q.zp, tb.q.zp, tout.q.zp, cols
                )
            )
        elif n.op == "mul":
            x, s = n.inputs
            if canon(graph.tensors[x])[:2] == (1, 1) and canon(graph.tensors[s])[:2] != (1, 1):
                x, s = s, x
            d["elementwise"] = canon(graph.tensors[x]) == canon(graph.tensors[s])
            tx, ts = graph.tensors[x], graph.tensors[s]
            scale = _f32(_f32(_f32(tx.q.scale) * _f32(ts.q.scale)) / _f32(tout.q.scale))
            rq = Requant.from_scale(scale, tout.q.zp, tout.q.np_dtype)
            if not -54 <= int(rq.e) <= 0:
                raise ValueError(f"node {n.name!r}: mul scale out of range")
            d["x"], d["s"] = x, s
            d["param"] = img.add(
                pack.param_words(
                    np.zeros(1, np.int64), np.atleast_1d(rq.m), np.atleast_1d(rq.e), cols
                )
            )
        elif n.op in ("concat", "slice", "shuffle") and move_kind(n, graph, config)[0] == "gather":
            _gather(n, graph, config, img, d)
        elif n.op == "concat":
            d["luts"] = [None if t is None else img.add(_lut_blob(t)) for t in a["luts"]]
        elif n.op == "lut":
            d["lut"] = img.add(_lut_blob(a["table"]))
        d["qrange"] = _qrange(tout.q.np_dtype)
        info[n.name] = d
    return bytes(img.data), info


def _gap_pool(n, tin, config, img, d):
    """A global pool past the VEC window as depthwise CONVs with all-ones kernels
    (tiling.py :func:`~.tiling.pool_windows`): ``d["windows"]`` ``{(kh, kw): WGT word}``
    of the window shapes the bands take, their words in one blob ``d["wgt"]``; depthwise
    PARAM words (one, the same for every channel group) with the input zero point folded
    into the bias."""
    h, w, _ = canon(tin)
    n_ch = config.depthwise_channels
    words, d["windows"] = [], {}
    for kh, kw in pool_shapes(config, h, w):  # kw <= rows: one column chunk, one group
        d["windows"][kh, kw] = len(words)
        ones, _ = depthwise_chunks(np.ones((n_ch, kh, kw, 1), np.int8), config)
        words += list(ones[0])
    d["wgt"] = img.add(np.stack(words))
    d["wgt_words"] = len(words)
    d["in_zp"] = pack.in_zp_for(config, tin.q.zp, tin.q.dtype == "int8")
    bias = np.full(n_ch, (d["in_zp"] - int(tin.q.zp)) * h * w, np.int64)
    m, e = pack.requant_of(n.attrs["rq"], n_ch)
    d["param"] = img.add(pack.param_words(bias, m, e, config.cols, n_ch))


def _gather(n, graph, config, img, d):
    """A channel move as a 1x1 CONV: 0/1 selection weights over the inputs' blocks stacked
    ("virtual" input channel ``block * rows + lane``), unit requantizer (``S = 2**23 * 2**-23``:
    ``y = x - in_zp + in_zp``, exact)."""
    rows, cols = config.rows, config.cols
    tin = graph.tensors[n.inputs[0]]
    cout = canon(graph.tensors[n.outputs[0]])[2]
    srcs, first = [], {}
    for t in n.inputs:
        first[t] = len(srcs)
        srcs += [(t, b) for b in range(-(-canon(graph.tensors[t])[2] // rows))]
    src = []  # input (tensor, channel) of each output channel
    if n.op == "concat":
        for t in n.inputs:
            src += [(t, c) for c in range(canon(graph.tensors[t])[2])]
    elif n.op == "slice":
        a = n.attrs
        src = [(n.inputs[0], c) for c in range(a["start"], a["end"], a["step"])][:cout]
    else:  # shuffle: output j * g + k <- input k * (C / g) + j
        g = n.attrs["groups"]
        per = cout // g
        src = [(n.inputs[0], (o % g) * per + o // g) for o in range(cout)]
    assert len(src) == cout
    w = np.zeros((cout, 1, 1, len(srcs) * rows), np.int8)
    for o, (t, c) in enumerate(src):
        w[o, 0, 0, first[t] * rows + c] = 1
    signed = tin.q.dtype == "int8"
    in_zp = pack.in_zp_for(config, tin.q.zp, signed)
    bias = pack.fold_in_zp(np.zeros(cout, np.int64), w, tin.q.zp, in_zp)
    d["wgt"] = img.add(pack.dense_weights(w, rows, cols))
    d["param"] = img.add(pack.param_words(bias, np.full(cout, 1 << 23), np.full(cout, -23), cols))
    d.update(in_zp=in_zp, depthwise=False, srcs=srcs)
