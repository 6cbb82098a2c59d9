"""DRAM dependencies between steps: a load waits for the stores of the bytes it reads, not
for the whole previous layer (compiler/backend/emit.py).

A barrier (a VEC without pixels) waits for the stores a load needs and goes right after
the last compute the load must follow anyway, so a layer's first loads (its weights and
PARAM words at once, its input rows as soon as they are stored) overlap the previous
layer's last computes and stores; a long input LOAD is cut by the steps that stored its
rows. Every program stays bit-exact and free of races (tests/compiler/test_backend.py's
race check with random durations).
"""

import numpy as np
from bamboo.arch import isa, preset
from bamboo.arch import timing as T
from bamboo.compiler import ir
from bamboo.compiler.backend.emit import Op, _split_rows
from bamboo.compiler.backend.tiling import load_op
from bamboo.compiler.partition import partition
from bamboo.runtime.requant import Requant, conv_scale
from bamboo.sim import cycles
from isa_graphs import _graph, _t, run_both
from test_backend import race_check

U96 = preset("ultra96")


def _conv(name, x, y, cin, cout, k, group, rng):
    s_w = rng.uniform(0.002, 0.01, cout).astype(np.float32)
    attrs = {
        "w": rng.integers(-127, 128, (cout, k, k, cin // group)).astype(np.int8),
        "w_zp": np.zeros(cout, np.int8),
        "bias": rng.integers(-3000, 3000, cout).astype(np.int32),
        "rq": Requant.from_scale(conv_scale(0.02, s_w, 0.05), 110),
        "lut": None,
        "kernel": (k, k),
        "stride": (1, 1),
        "dilation": (1, 1),
        "pads": (k // 2,) * 4,
        "group": group,
    }
    return ir.Node(name, "conv", (x,), (y,), attrs)


def chain_graph(h, w, c0, c1, c2, seed=0):
    """Pointwise ``c0 -> c1``, depthwise 3x3, pointwise ``c1 -> c2`` on an ``h x w`` map
    (an inverted residual block without the add)."""
    rng = np.random.default_rng(seed)
    ts = {
        n: _t(n, (1, h, w, c), 0.02 if n == "x" else 0.05, 110 if n != "x" else 100)
        for n, c in (("x", c0), ("a", c1), ("b", c1), ("y", c2))
    }
    nodes = [
        _conv("expand", "x", "a", c0, c1, 1, 1, rng),
        _conv("dw", "a", "b", c1, c1, 3, c1, rng),
        _conv("project", "b", "y", c1, c2, 1, 1, rng),
    ]
    return _graph(nodes, ts, ["x"], ["y"])


def _times(compiled):
    """``{node: [(opcode, buffer, start, end)]}`` by the cycle model (ultra96, 250 MHz)."""
    (seg,) = [s for s in compiled.steps if s.on_fabric]
    start, end, fields = cycles.simulate(
        U96,
        compiled.words[seg.insn_start : seg.insn_start + seg.insn_count],
        T.BOARDS["ultra96"],
        250.0,
    )
    out = {}
    for node, first, count in compiled.layers:
        out[node] = [
            (f["opcode"], f.get("buffer"), start[i], end[i])
            for i, f in enumerate(fields[first : first + count], first)
        ]
    return out


def test_layers_overlap_at_their_boundaries_bit_exact_and_race_free():
    """The depthwise layer's first LOADs (its weights and the input rows the expand layer
    stored first) start before the expand layer's last STORE ends, and the project
    layer's weights before the depthwise layer's last STORE: with one barrier waiting for
    every store of the layer before, they started after it."""
    g = partition(chain_graph(28, 28, 24, 144, 32))
    ref, got, _, compiled = run_both(g, U96, partitioned=True)
    assert len(ref) == len(got) and all(np.array_equal(a, b) for a, b in zip(ref, got))
    assert race_check(compiled.words, U96, compiled.plan.footprint, seed=1) < 0.9
    t = _times(compiled)
    for before, after in (("expand", "dw"), ("dw", "project")):
        last_store = max(e for op, _, _, e in t[before] if op == isa.Opcode.STORE)
        first_load = min(s for op, _, s, _ in t[after] if op == isa.Opcode.LOAD)
        assert first_load < last_store, (before, after)
    wgt = [s for op, b, s, _ in t["project"] if op == isa.Opcode.LOAD and b == isa.Buffer.WGT]
    dw_stores = [e for op, _, _, e in t["dw"] if op == isa.Opcode.STORE]
    assert min(wgt) < max(dw_stores)


def test_a_long_input_load_is_cut_by_the_steps_that_stored_its_rows():
    """The project layer's first input tile (every channel block, whole rows: one LOAD
    of ~32 KB) is stored by the depthwise layer's groups one after the other: it comes
    in several LOADs, the last of the rows of the last group alone, so only those wait
    for the depthwise layer's last STORE."""
    g = partition(chain_graph(14, 14, 96, 576, 96))
    ref, got, _, compiled = run_both(g, U96, partitioned=True)
    assert len(ref) == len(got) and all(np.array_equal(a, b) for a, b in zip(ref, got))
    node, first, count = [ly for ly in compiled.layers if ly[0] == "project"][0]
    fields = [isa.decode(w) for w in compiled.words[first : first + count]]
    head = []
    for f in fields:
        if f["opcode"] == isa.Opcode.CONV:
            break
        if f["opcode"] == isa.Opcode.LOAD and f["buffer"] == isa.Buffer.INP:
            head.append(f)
    assert len(head) >= 3
    blocks = [f["y_size"] for f in head]
    assert sum(blocks) == 576 // U96.rows and blocks[-1] == U96.depthwise_channels // U96.rows
    assert race_check(compiled.words, U96, compiled.plan.footprint, seed=2) < 0.9


def _written(fields, elem):
    """``{INP word: DRAM byte address or ("pad", value)}`` a LOAD writes (arch/isa.py)."""
    f = fields
    width = f["pad_left"] + f["x_size"] + f["pad_right"]
    out = {}
    for r in range(f["pad_top"] + f["y_size"] + f["pad_bottom"]):
        for q in range(width):
            y, x = r - f["pad_top"], q - f["pad_left"]
            inside = 0 <= y < f["y_size"] and 0 <= x < f["x_size"]
            out[f["sram_addr"] + r * width + q] = (
                f["dram_addr"] + (y * f["x_stride"] + x) * elem if inside else ("pad", 7)
            )
    return out


def test_split_rows_writes_the_same_words():
    op = load_op(isa.Buffer.INP, ("inp", 0), 100, 4096, 9, 5, 20, 8, (2, 1, 3, 1), 7)
    assert isinstance(op, Op)
    for cuts in ([1], [4], [1, 2, 8], [3, 6]):
        pieces = _split_rows(op, cuts)
        assert [p.fields["y_size"] for p in pieces] == [
            b - a for a, b in zip([0] + cuts, cuts + [9])
        ]
        merged = {}
        for p in pieces:
            words = _written(p.fields, 8)
            assert not set(words) & set(merged)
            merged.update(words)
        assert merged == _written(op.fields, 8)
        assert sum(p.nbytes for p in pieces) == op.nbytes
