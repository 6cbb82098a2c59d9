"""The instruction simulator running compiled artifacts, bit-exact with the reference executor.

Reference: ``compiler.executor.run`` (raw codes), itself bit-exact with onnxruntime
(tests/compiler/test_executor.py). Fabric segments run on the simulator, CPU nodes on
``executor.run_node``.
"""

import dataclasses
import time

import numpy as np
import pytest
from bamboo.arch import isa, preset
from bamboo.arch.metadata import Layer
from bamboo.arch.registers import ErrorCode
from bamboo.sim.isa import IsaSimError, Machine, layer_stats
from isa_graphs import (
    add_graph,
    check_bounds,
    conv_graph,
    fc_graph,
    gap_graph,
    maxpool_graph,
    mul_graph,
    resize_graph,
    run_both,
    zoo_graph,
)

CONFIGS = ["tiny", "ultra96"]

LAYERS = {
    "conv3x3_s1": lambda: conv_graph(9, 8, 6, 10),
    "conv3x3_s2": lambda: conv_graph(9, 7, 5, 9, stride=2),
    "conv5x5_s2_dilated": lambda: conv_graph(13, 12, 8, 8, k=5, stride=2, dilation=2, pad=3),
    "conv_tiled": lambda: conv_graph(40, 37, 24, 40, seed=3),
    "pointwise": lambda: conv_graph(6, 6, 20, 12, k=1, pad=0),
    "pointwise_wide": lambda: conv_graph(8, 8, 300, 20, k=1, pad=0, seed=4),
    "depthwise_s1": lambda: conv_graph(8, 8, 6, 6, group=6),
    "depthwise_s2": lambda: conv_graph(33, 30, 20, 20, group=20, stride=2, seed=5),
    "depthwise_5x5": lambda: conv_graph(11, 10, 9, 9, k=5, group=9),  # wider than tiny's rows
    "depthwise_7x7_s2": lambda: conv_graph(15, 14, 6, 6, k=7, stride=2, group=6),
    "depthwise_40_s2": lambda: conv_graph(17, 19, 40, 40, group=40, stride=2, seed=11),
    # Dilated in W: the back end widens the kernel with zero columns (LR-ASPP's 5x5, d=2).
    "depthwise_5x5_dilated": lambda: conv_graph(
        14, 13, 20, 20, k=5, dilation=2, pad=4, group=20, seed=13
    ),
    "depthwise_3x3_d3_s2": lambda: conv_graph(
        16, 17, 9, 9, dilation=3, stride=2, pad=3, group=9, seed=14
    ),
    "int8_depthwise_dilated": lambda: conv_graph(
        9, 11, 6, 6, dilation=2, pad=2, group=6, signed=True, seed=15
    ),
    "grouped_conv": lambda: conv_graph(8, 8, 12, 6, group=3, seed=9),
    "conv_lut_clamp": lambda: conv_graph(5, 5, 4, 6, lut=True, clamp=(3, 200)),
    "add": lambda: add_graph(15, 14, 9),
    "maxpool": lambda: maxpool_graph(17, 16, 5),
    "gap": lambda: gap_graph(7, 7, 40),
    "gap_large": lambda: gap_graph(19, 17, 10),  # past the 15x15 window: all-ones CONVs
    "int8_conv3x3_s2": lambda: conv_graph(9, 7, 5, 9, stride=2, signed=True, seed=7),
    "int8_depthwise": lambda: conv_graph(8, 8, 6, 6, group=6, signed=True, seed=8),
    "int8_depthwise_1x1": lambda: conv_graph(
        6, 7, 21, 21, k=1, pad=0, group=21, signed=True, seed=12
    ),
    "int8_pointwise_lut": lambda: conv_graph(6, 6, 20, 12, k=1, pad=0, signed=True, lut=True),
    "int8_add": lambda: add_graph(5, 6, 7, signed=True),
    "int8_maxpool": lambda: maxpool_graph(9, 8, 5, signed=True),
    "int8_gap": lambda: gap_graph(5, 5, 7, signed=True),
    "mul_channel": lambda: mul_graph(6, 5, 10),
    "mul_elementwise": lambda: mul_graph(7, 9, 10, seed=2, elementwise=True),
    "resize_2x": lambda: resize_graph(6, 5, 10, 2, 2),
    "resize_3x2": lambda: resize_graph(5, 7, 9, 3, 2),
    "resize_rows_only": lambda: resize_graph(4, 6, 5, 2, 1),
    "resize_tiled": lambda: resize_graph(30, 29, 3, 2, 2),
    "resize_wide_3x": lambda: resize_graph(3, 200, 4, 3, 3),  # tiles narrower than a row
    "int8_resize_2x": lambda: resize_graph(7, 6, 12, 2, 2, signed=True),
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_single_layer_bit_exact(layer, config, diff_cases):
    cfg = preset(config)
    ref, got, machine, compiled = run_both(LAYERS[layer](), cfg)
    assert all(n.target == "fabric" for n in compiled.graph.nodes)
    for a, b in zip(ref, got):
        assert a.dtype == b.dtype and np.array_equal(a, b), (
            f"{np.count_nonzero(a != b)} of {a.size} differ"
        )
        diff_cases(f"isa-sim:{config}", a.size)
    for word in compiled.words:
        check_bounds(word, cfg)
    assert machine.tokens == {"l2c": 0, "c2l": 0, "c2s": 0, "s2c": 0}


@pytest.mark.parametrize("config", CONFIGS)
def test_fc_on_fabric(config):
    ref, got, _, compiled = run_both(fc_graph(1300, 70), preset(config), fc_on_fabric=True)
    assert compiled.graph.nodes[0].target == "fabric"
    assert np.array_equal(ref[0], got[0])


def _model_graph(name):
    return zoo_graph(name)[1]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("model", ["digits", "mobilenet_v2"])
def test_model_bit_exact(model, config, diff_cases):
    graph = _model_graph(model)
    cfg = preset(config)
    rng = np.random.default_rng(1)
    spec = graph.inputs[0]
    feeds = {spec.onnx_name: rng.integers(0, 256, spec.onnx_shape).astype(np.uint8)}
    start = time.perf_counter()
    ref, got, machine, compiled = run_both(graph, cfg, feeds, partitioned=True)
    elapsed = time.perf_counter() - start
    assert np.array_equal(ref[0], got[0]), f"{np.count_nonzero(ref[0] != got[0])} differ"
    diff_cases(f"isa-sim:{model}", ref[0].size)
    # Every fabric node lowered; only the classifier stays on the CPU by default.
    assert [n.op for n in compiled.graph.nodes if n.target == "cpu"] == ["fc"]
    per_layer = layer_stats(machine.stats, [Layer(n, f, c) for n, f, c in compiled.layers])
    convs = [n.name for n in compiled.graph.nodes if n.op == "conv"]
    assert all(per_layer[n]["macs"] > 0 and per_layer[n]["bytes"] > 0 for n in convs)
    assert sum(d["macs"] for d in per_layer.values()) == machine.stats.macs
    print(f"{model}@{config}: {machine.stats.instructions}, {elapsed:.2f} s compile+run")


# Traps ---------------------------------------------------------------------------------------


def _machine(config="tiny", size=4096):
    return Machine(preset(config), np.zeros(size, np.uint8))


def _expect(machine, words, code, match):
    with pytest.raises(IsaSimError, match=match) as info:
        machine.run(words)
    assert info.value.code == code
    return info.value


def test_illegal_opcode_traps_with_its_index():
    m = _machine()
    fin = isa.encode(isa.Opcode.FINISH)
    err = _expect(
        m,
        [isa.encode(isa.Opcode.VEC, vop=isa.VecOp.COPY), 0, fin],
        ErrorCode.ILLEGAL_OPCODE,
        "instruction 1: ILLEGAL_OPCODE",
    )
    assert err.index == 1
    _expect(_machine(), [15], ErrorCode.ILLEGAL_OPCODE, "illegal opcode 15")


def test_buffer_overrun_is_malformed():
    cfg = preset("tiny")
    load = isa.encode(
        isa.Opcode.LOAD,
        buffer=isa.Buffer.INP,
        sram_addr=cfg.input_buffer_depth - 2,
        y_size=1,
        x_size=3,
        x_stride=3,
    )
    _expect(_machine(), [load], ErrorCode.MALFORMED_INSTRUCTION, "input|rows buffer depth")
    conv = isa.encode(
        isa.Opcode.CONV,
        kernel_h=3,
        kernel_w=3,
        stride_h=1,
        stride_w=1,
        dilation_h=1,
        dilation_w=1,
        out_h=8,
        out_w=8,
        in_w=10,
        in_blocks=1,
        inp_addr=cfg.input_buffer_depth - 50,
        acc_init=1,
    )
    _expect(_machine(), [conv], ErrorCode.MALFORMED_INSTRUCTION, "INP words up to")
    big = isa.encode(
        isa.Opcode.CONV,
        kernel_h=1,
        kernel_w=1,
        stride_h=1,
        stride_w=1,
        dilation_h=1,
        dilation_w=1,
        out_h=32,
        out_w=32,
        in_w=32,
        in_blocks=1,
    )
    _expect(_machine(), [big], ErrorCode.MALFORMED_INSTRUCTION, "exceed ACC depth")
    store = isa.encode(isa.Opcode.STORE, y_size=1, x_size=1, x_stride=1, lane=1)
    _expect(_machine(), [store], ErrorCode.MALFORMED_INSTRUCTION, "STORE lane 1 of 1")
    bits = isa.encode(isa.Opcode.FINISH) | (1 << 200)
    _expect(_machine(), [bits], ErrorCode.MALFORMED_INSTRUCTION, "bits set above")


def test_dma_outside_window():
    load = isa.encode(
        isa.Opcode.LOAD, buffer=isa.Buffer.INP, dram_addr=4070, y_size=2, x_size=8, x_stride=8
    )
    _expect(_machine(size=4096), [load], ErrorCode.DMA_OUT_OF_WINDOW, "leave the 4096-byte window")


def test_pop_without_push_would_hang():
    conv_pop = isa.encode(isa.Opcode.VEC, vop=isa.VecOp.COPY, pop_prev=1)
    _expect(_machine(), [conv_pop], ErrorCode.TIMEOUT, "pop_prev waits")
    load_bad = isa.encode(isa.Opcode.LOAD, pop_prev=1, y_size=1, x_size=1)
    _expect(_machine(), [load_bad], ErrorCode.MALFORMED_INSTRUCTION, "load queue has no pop_prev")


def test_load_pads_and_store_lanes():
    """LOAD inserts pad_value around a strided region; STORE writes one lane slice."""
    cfg = dataclasses.replace(
        preset("ultra96"),
        rows=16,
        cols=32,  # two lanes per OUT word
        depthwise_blocks=1,
    )
    m = Machine(cfg, np.arange(4096, dtype=np.int64).astype(np.uint8))
    m.run(
        [
            isa.encode(
                isa.Opcode.LOAD,
                buffer=isa.Buffer.INP,
                sram_addr=3,
                dram_addr=32,
                y_size=2,
                x_size=2,
                x_stride=4,
                pad_top=1,
                pad_left=1,
                pad_value=0xEE,
            )
        ]
    )
    tile = m.inp[3 : 3 + 3 * 3].reshape(3, 3, 16)
    assert (tile[0] == 0xEE).all() and (tile[:, 0] == 0xEE).all()
    assert tile[1, 1, 0] == 32 and tile[2, 2, 0] == (32 + 16 * 5) % 256
    m.out[5] = np.arange(32)
    m.run(
        [
            isa.encode(
                isa.Opcode.STORE,
                sram_addr=5,
                dram_addr=1000,
                y_size=1,
                x_size=1,
                x_stride=1,
                lane=1,
            )
        ]
    )
    assert list(m.dram[1000:1016]) == list(range(16, 32))


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize(
    "model",
    [
        "efficientnet_b0",
        "efficientnet_b4",
        "ghostnet",
        "mcunet",
        "mobilenet_v1",
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "shufflenet_v1",
        "shufflenet_v2",
        "squeezenet1_1",
        "tiny_yolov3",
    ],
)
def test_zoo_bit_exact(model, config):
    graph = _model_graph(model)
    rng = np.random.default_rng(2)
    feeds = {s.onnx_name: rng.integers(0, 256, s.onnx_shape).astype(np.uint8) for s in graph.inputs}
    ref, got, _, _ = run_both(graph, preset(config), feeds, partitioned=True)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))
