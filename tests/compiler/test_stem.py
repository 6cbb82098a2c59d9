"""Kernel columns as channels for convs fed by the processor (compiler/backend/stem.py).

The rewritten conv computes the model's sums: bit-exact with the reference executor on
the instruction simulator over kernel sizes, strides, symmetric and asymmetric (TF
"same") pads, odd maps and signed codes; fewer taps on the array; the model's MAC count
in the reports; left alone where it would not save taps or where a fabric node feeds
the conv.
"""

import numpy as np
import pytest
from bamboo.arch import isa, preset
from bamboo.compiler import inspect, ir
from bamboo.compiler.backend import lower_graph
from bamboo.compiler.partition import partition
from bamboo.runtime.cpu_ops import run_op
from configs import X8X32
from isa_graphs import check_bounds, conv_graph, run_both

U96 = preset("ultra96")


def test_column_taps_kernel_pads_with_the_zero_point():
    x = np.arange(2 * 5 * 2, dtype=np.uint8).reshape(1, 2, 5, 2)
    q = ir.QType("uint8", 0.1, 7)
    attrs = {"kernel_w": 3, "stride_w": 2, "pad_left": 1, "width": 3}
    y = run_op("column_taps", attrs, [x], [q], q)
    assert y.shape == (1, 2, 3, 6)
    # pixel (0, 0): input columns -1 (padding), 0, 1
    assert list(y[0, 0, 0]) == [7, 7, *x[0, 0, 0], *x[0, 0, 1]]
    # pixel (1, 2): input columns 3, 4, 5 (padding)
    assert list(y[0, 1, 2]) == [*x[0, 1, 3], *x[0, 1, 4], 7, 7]


CASES = {  # h, w, cin, cout, k, stride, pads, signed
    "stem_3x3_s2": (16, 14, 3, 20, 3, 2, (1, 1, 1, 1), False),
    "stem_3x3_s1": (13, 17, 3, 16, 3, 1, (1, 1, 1, 1), False),
    "odd_3x3_s2": (15, 13, 3, 8, 3, 2, (1, 1, 1, 1), False),
    "tf_same_s2": (12, 11, 3, 40, 3, 2, (0, 0, 1, 1), True),
    "5x5_s2": (17, 18, 2, 9, 5, 2, (2, 2, 2, 2), False),
    "7x7_s2": (23, 21, 2, 16, 7, 2, (3, 3, 3, 3), False),
    "valid_3x3": (13, 12, 4, 8, 3, 1, (0, 0, 0, 0), True),
}


def _conv_taps(compiled):
    return [
        f["kernel_h"] * f["kernel_w"] * f["in_blocks"]
        for f in map(isa.decode, compiled.words)
        if f["opcode"] == isa.Opcode.CONV
    ]


@pytest.mark.parametrize("config", ["ultra96", "x8x32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_stem_rewrite_bit_exact(case, config):
    h, w, cin, cout, k, stride, pads, signed = CASES[case]
    cfg = X8X32 if config == "x8x32" else U96
    g = conv_graph(h, w, cin, cout, k=k, stride=stride, pads=pads, signed=signed, seed=len(case))
    ref, got, _, compiled = run_both(g, cfg, column_taps=True)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
    for word in compiled.words:
        check_bounds(word, cfg)
    nodes = {n.op: n for n in compiled.graph.nodes}
    assert nodes["column_taps"].target == "cpu" and nodes["conv"].target == "fabric"
    conv = nodes["conv"]
    blocks = -(-k * cin // cfg.rows)
    assert conv.attrs["kernel"] == (k, 1) and set(_conv_taps(compiled)) <= {k * blocks}
    assert k * blocks < k * k
    # the reports count the model's MACs
    out = compiled.graph.tensors[conv.outputs[0]]
    assert inspect.macs(compiled.graph, conv) == out.size * k * k * cin


def test_not_rewritten_without_a_saving_or_behind_the_fabric():
    # tiny (4 rows): 9 channels take 3 input blocks, 3 x 3 taps: no fewer than 9 x 1
    g = partition(conv_graph(9, 9, 3, 4, stride=2))
    assert "column_taps" not in {n.op for n in lower_graph(g, preset("tiny")).graph.nodes}
    # 1x1: nothing to save; 16 channels: already a whole block
    for g in (conv_graph(9, 9, 3, 4, k=1, pad=0), conv_graph(9, 9, 16, 4)):
        assert "column_taps" not in {n.op for n in lower_graph(partition(g), U96).graph.nodes}


def test_zoo_stem_takes_three_taps():
    """MobileNetV2's 3x3 stride-2 stem at test size: the CPU lays the kernel columns out
    as 9 channels, the array's CONVs take 3 taps of one block; a conv behind the fabric
    is left alone (tests/compiler/test_zoo_exact.py checks every zoo model bit-exact)."""
    from isa_graphs import zoo_graph

    _, graph = zoo_graph("mobilenet_v2")
    compiled = lower_graph(graph, U96)
    taps = [n for n in compiled.graph.nodes if n.op == "column_taps"]
    assert len(taps) == 1 and taps[0].target == "cpu"
    stem = next(n for n in compiled.graph.nodes if n.inputs[0] == taps[0].outputs[0])
    assert stem.attrs["w"].shape[1:] == (3, 1, 9) and stem.attrs["columns_of"] == (3, 3, 3)
