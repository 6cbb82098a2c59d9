"""The engine-generation-2 levers of the cycle model (``arch.timing.EngineLevers``): each
on hand-sized instructions against a hand computation, and the defaults against the
model figures the RTL validated (``bench/rtl_cycles_ultra96.json``)."""

import dataclasses
import json
from pathlib import Path

import pytest
from bamboo.arch import isa, preset
from bamboo.arch import timing as T
from bamboo.arch.errors import ConfigError
from bamboo.arch.timing import EngineLevers
from bamboo.sim import cycles
from configs import X8X32
from test_cycles import AXIRAM, RTL_LAYERS, _compiled, _runs

U96 = preset("ultra96")  # the configuration of the RTL record
#: The hand computations' array: the 8 x 32 ultra96 of sessions 12-15 (array latency 8 +
#: 16 + 2 = 26), tests/configs.py.
RECORD = Path(__file__).parents[2] / "bench" / "rtl_cycles_ultra96.json"


def _engine(levers, cal=cycles.Calibration(), config=X8X32):
    return cycles._Engine(config, T.BOARDS["ideal"], config.clock_mhz, cal, levers)


def _conv(**f):
    base = dict(
        opcode=isa.Opcode.CONV,
        mode=isa.ConvMode.DENSE,
        kernel_h=1,
        kernel_w=1,
        stride_h=1,
        stride_w=1,
        dilation_h=1,
        dilation_w=1,
        in_blocks=1,
        acc_emit=1,
    )
    return base | f


def test_default_levers_reproduce_the_rtl_validated_model():
    """Today's engine: every layer of the RTL record, at ultra96, gets exactly the model
    cycles that were checked against the RTL's CYCLES counter (within 5 %)."""
    rec = json.loads(RECORD.read_text())["layers"]["runs"]
    for name in RTL_LAYERS:
        compiled = _compiled(name, U96)
        got = [
            cycles.simulate(U96, compiled.words[f : f + n], AXIRAM, levers=EngineLevers())[1][-1]
            for f, n in _runs(compiled)
        ]
        assert [round(g) for g in got] == [r["model"] for r in rec[name]], name


def test_levers_are_checked():
    for bad, msg in [
        (dict(dw_lanes=6), "dw_lanes"),
        (dict(dw_kernel=7), "dw_kernel"),
        (dict(dw_multiplier="x"), "dw_multiplier"),
        (dict(dma_words=4), "dma_words"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            EngineLevers(**bad)
    assert EngineLevers().describe() == "today"
    assert EngineLevers(dw_lanes=8, fuse_block=True).describe() == "dw8x3+fuse-block"


def test_depthwise_engine_by_hand():
    """A 3x3 depthwise CONV of 8 x 8 outputs, stride 1: the engine scans the padded
    10 x 10 frame once per ``lanes`` channels, then drains its pipeline (5 stages, 4
    adder levels for 9 taps, 2 FIFO registers = 11), then post-processing (``P``, the
    calibration's ``compute_post``: 27)."""
    P = cycles.Calibration().compute_post
    assert P == 27
    assert T.dw_engine_latency(3) == 11 and T.dw_engine_latency(5) == 12
    f = _conv(mode=isa.ConvMode.DEPTHWISE, kernel_h=3, kernel_w=3, out_h=8, out_w=8)
    assert X8X32.depthwise_channels == 16
    end, free = _engine(EngineLevers(dw_lanes=16)).compute(f, 0)
    assert end == free == 10 * 10 + 11 + P
    end, _ = _engine(EngineLevers(dw_lanes=8)).compute(f, 0)
    assert end == 2 * 100 + 11 + P  # two channel groups
    # Stride 2, 4 x 4 outputs: the frame is 9 x 9, every position scanned.
    s2 = dict(f, stride_h=2, stride_w=2, out_h=4, out_w=4)
    end, _ = _engine(EngineLevers(dw_lanes=16)).compute(s2, 0)
    assert end == 9 * 9 + 11 + P
    # A 3x3 kernel on a 5x5 engine runs embedded: one more padding each side (12 x 12).
    end, _ = _engine(EngineLevers(dw_lanes=16, dw_kernel=5)).compute(f, 0)
    assert end == 12 * 12 + 12 + P
    # A 7x7 kernel does not fit a 3x3 engine: the array's mapping, as today.
    f7 = dict(f, kernel_h=7, kernel_w=7)
    assert _engine(EngineLevers(dw_lanes=16)).compute(f7, 0) == _engine(EngineLevers()).compute(
        f7, 0
    )


def test_acc_banks_and_postproc_lanes_by_hand():
    """1x1 CONVs of 16 x 16 pixels, one tap: MACs ``M = 1 + (1 + 256) + (26 + 4) = 288``
    cycles (26: the array's latency, 8 + 16 + 2; 4: the ACC's read, old-word register,
    add and write), emit ``256 + 1`` plus post-processing ``P`` (the calibration's
    ``compute_post``: 27). Both levers are configuration fields (hw/postproc.py lane
    groups, hw/compute.py ACC banks)."""
    P = cycles.Calibration().compute_post
    assert P == 27
    M = 288
    f = _conv(out_h=16, out_w=16)
    today, _ = _engine(EngineLevers()).compute(f, 0)
    assert today == M + 257 + P
    # Two banks: the MACs' side is free once it hands its bank to the emitter.
    two = dataclasses.replace(X8X32, acc_banks=2)
    eng = _engine(EngineLevers(), config=two)
    assert eng.compute(f, 0) == (M + 257 + P, M)
    assert eng.compute(f, M + 1) == (M + 1 + M + 257 + P, M + 1 + M)
    # Half the post-processing lanes: an emitted pixel takes 2 cycles and the lane-group
    # register adds one to the latency (emit 2 * 256 + 1 = 513, longer than the MACs).
    # Conv 2 hands over when conv 1's emitter is free (M + 513), conv 3 (taken as conv 2
    # hands over) when conv 2's is.
    pp16 = dataclasses.replace(X8X32, postproc_lanes=16)
    assert pp16.postproc_turns == 2 and T.postproc_group_latency(pp16) == 1
    emit, post = 2 * 256 + 1, P + 1
    eng = _engine(EngineLevers(), config=dataclasses.replace(pp16, acc_banks=2))
    assert eng.compute(f, 0) == (M + emit + post, M)
    assert eng.compute(f, M + 1) == (M + 2 * emit + post, M + emit)
    assert eng.compute(f, M + emit + 1) == (M + 3 * emit + post, M + 2 * emit)
    # One bank: the emit holds the unit.
    assert _engine(EngineLevers(), config=pp16).compute(f, 0) == (M + emit + post,) * 2
    # A VEC waits until no CONV is left.
    vec = dict(opcode=isa.Opcode.VEC, vop=isa.VecOp.COPY, out_h=1, out_w=4, kernel_h=0, kernel_w=0)
    n = T.vec_insn_cycles(X8X32, vec) + cycles.Calibration().vec_post
    assert eng.compute(vec, 600) == (M + 3 * emit + post + n,) * 2


def test_two_dma_words_by_hand():
    """A LOAD of 64 INP words (8 bytes each) in one row, behind an ideal 16-byte bus: 32
    beats; the engine side takes 64 cycles today, 32 with two words a cycle. Pre 10, post
    4 (``Calibration``). A STORE of 64 elements: 64 -> 32 engine cycles (pre 13, post 2)."""
    cal = cycles.Calibration()
    assert (cal.load_pre, cal.load_post, cal.store_pre, cal.store_post) == (10, 4, 13, 2)
    load = dict(
        opcode=isa.Opcode.LOAD,
        buffer=isa.Buffer.INP,
        dram_addr=0,
        y_size=1,
        x_size=64,
        x_stride=64,
        pad_top=0,
        pad_bottom=0,
        pad_left=0,
        pad_right=0,
    )
    assert _engine(EngineLevers()).dma(load, 0) == 10 + 64 + 4
    assert _engine(EngineLevers(dma_words=2)).dma(load, 0) == 10 + 32 + 4
    store = dict(opcode=isa.Opcode.STORE, dram_addr=0, y_size=1, x_size=64, x_stride=64)
    assert _engine(EngineLevers()).dma(store, 0) == 13 + 64 + 2
    assert _engine(EngineLevers(dma_words=2)).dma(store, 0) == 13 + 32 + 2


def _ld(buffer=isa.Buffer.INP):
    return dict(opcode=isa.Opcode.LOAD, buffer=buffer)


def _st():
    return dict(opcode=isa.Opcode.STORE)


def _vec(vop, pixels=4):
    return dict(opcode=isa.Opcode.VEC, vop=vop, out_h=1, out_w=pixels)


def test_fusion_removes_what_the_fused_hardware_does_elsewhere():
    dw = _conv(mode=isa.ConvMode.DEPTHWISE, kernel_h=3, kernel_w=3)

    def conv_layer(conv):  # weights, input, CONV, store
        return [_ld(isa.Buffer.WGT), _ld(), conv, _st()]

    fields = [
        *conv_layer(_conv()),  # 0-3 expand (pointwise)
        *conv_layer(dw),  # 4-7 depthwise
        *conv_layer(_conv()),  # 8-11 project (pointwise)
        _ld(), _ld(), _vec(isa.VecOp.ADD), _vec(isa.VecOp.COPY, 0), _st(),  # 12-16 add
        _ld(), _vec(isa.VecOp.AVG_POOL, 1), _st(),  # 17-19 global pool
        _ld(), _ld(isa.Buffer.PARAM), _vec(isa.VecOp.MUL_CHANNEL), _st(),  # 20-23 SE scale
    ]  # fmt: skip
    layers = [(0, 4), (4, 4), (8, 4), (12, 5), (17, 3), (20, 4)]
    kinds = [cycles.layer_kind(fields[a : a + n]) for a, n in layers]
    assert kinds == ["pointwise", "depthwise", "pointwise", "add", "gap", "scale"]
    assert cycles.fused_away(fields, layers, EngineLevers()) == set()
    # The band stays on chip: expand's store, dw's input load and store, project's input
    # load. Weights are still loaded.
    assert cycles.fused_away(fields, layers, EngineLevers(fuse_block=True)) == {3, 5, 7, 9}
    # Add: one operand load (the conv's output), the VEC and the store; the skip tensor's
    # load and the zero-pixel token pass stay.
    assert cycles.fused_away(fields, layers, EngineLevers(fuse_add=True)) == {13, 14, 16}
    # SE: the pool's reload and VEC (its one-pixel store stays); the scale's whole pass
    # except its PARAM load.
    assert cycles.fused_away(fields, layers, EngineLevers(fuse_se=True)) == {17, 18, 20, 22, 23}


def test_fused_block_saves_exactly_the_removed_traffic():
    """On a compiled MobileNetV2 (inverted residuals: expand, depthwise, project, Add) at
    32 x 32: the fused run's DRAM bytes are today's minus the removed instructions' bytes
    (``insn_costs``), and it is faster."""
    from bamboo.compiler.backend import lower_graph
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.models import zoo

    graph = compile_model(str(zoo.build_quantized("mobilenet_v2", 32, 1.0)))
    compiled = lower_graph(graph, U96)
    lv = EngineLevers(fuse_block=True, fuse_add=True)
    today = cycles.model_compiled(compiled, T.BOARDS["ultra96"])
    fused = cycles.model_compiled(compiled, T.BOARDS["ultra96"], levers=lv)
    removed = 0
    for s in (s for s in compiled.steps if s.on_fabric):
        words = compiled.words[s.insn_start : s.insn_start + s.insn_count]
        fields = [isa.decode(w) for w in words]
        spans = [
            (a - s.insn_start, n)
            for _, a, n in compiled.layers
            if s.insn_start <= a < s.insn_start + s.insn_count
        ]
        skip = cycles.fused_away(fields, spans, lv)
        removed += sum(cycles.insn_costs(U96, fields[i])[2] for i in skip)
    assert removed > 0 and fused.bytes == today.bytes - removed
    assert fused.total < today.total
    kinds = {r.kind for r in today.layers}
    assert {"pointwise", "depthwise", "add"} <= kinds
