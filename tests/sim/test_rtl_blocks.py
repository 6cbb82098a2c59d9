"""Whole network blocks on the ``ultra96`` RTL: bit-exact, and the cycle model on each segment.

The blocks of ``bamboo.models.blocks`` (a MobileNetV2 inverted residual, its stride-2
block, an EfficientNet MBConv whose squeeze-excite runs on the CPU between two fabric
segments), compiled for ``ultra96`` and run through :class:`bamboo.runtime.Session` on
the RTL of the whole accelerator (``bamboo.sim.rtl_device``: Verilator, the runtime
driving every fabric segment and the CPU steps between them). Each output must equal
onnxruntime's, the instruction simulator's and the reference executor's; the cycle
model behind the cocotb memory (``BOARDS["cocotb"]``) must be within 5 % of the
engine's ``CYCLES`` counter on every fabric segment.

The Verilator build is the one of tests/hw/test_top.py's ``test_rtl_ultra96_accelerator``
(the same watchdog, so the same Verilog): cached by design hash under ``build/sim``.
``make test`` runs one block; the slow set runs all and records the figures in
:data:`bamboo.bench.RTL_RECORD` (see :func:`bamboo.bench.record_rtl_cycles`).
"""

import functools

import numpy as np
import pytest
from bamboo.arch import preset
from bamboo.models.blocks import BLOCKS

CONFIG = "ultra96"
#: The watchdog of tests/hw/test_top.py: the same Verilog, one Verilator build.
WATCHDOG = 4096
#: ``make test``'s block: two fabric segments with the CPU's squeeze-excite between them.
FAST = ("block_mbconv_se",)
TOLERANCE = 0.05


@functools.lru_cache(maxsize=None)
def _compiled(name):
    """``(onnx path, IR graph, artifact bytes)`` of block ``name``."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch", reason="the blocks are built with torch")
    from bamboo.compiler.backend import compile_artifact
    from bamboo.compiler.onnx_import import import_onnx
    from bamboo.compiler.passes import compile_graph
    from bamboo.models import zoo

    e = zoo.EXTRA[name]
    path = zoo.build_quantized(name, e.test_resolution, e.test_width)
    graph = compile_graph(import_onnx(onnx.load(str(path))))
    return path, graph, compile_artifact(graph, preset(CONFIG))


def _run_block(name, x):
    """Run block ``name`` on the RTL, its output checked against every other backend;
    ``(the Verilog's name, [(counter cycles, model cycles)] per fabric segment)``."""
    import onnx
    from bamboo.compiler import executor
    from bamboo.runtime.profiling import profile
    from bamboo.runtime.session import Session
    from ortutil import run

    path, graph, blob = _compiled(name)
    feed = {graph.inputs[0].onnx_name: x}
    (ort,) = run(onnx.load(str(path)), x)
    (ref,) = executor.run(graph, feed)
    with Session(blob, backend="isa") as sess:
        (isa,) = sess.run(None, feed)
    with Session(blob, backend="rtl", watchdog=WATCHDOG) as sess:
        (got,) = sess.run(None, feed)
        prof = profile(sess, memory="cocotb")
    for other, what in (
        (ort, "onnxruntime"),
        (ref, "the reference executor"),
        (isa, "the instruction simulator"),
    ):
        assert np.array_equal(got, other), (
            f"{name}: {np.count_nonzero(got != other)} of {got.size} differ from {what}"
        )
        design = sess.device.design
    return design, [(s.counter_cycles, s.model_cycles) for s in prof.segments]


def _usable():
    import bamboo.sim.rtl_device as rtl

    reason = rtl.unavailable()
    if reason:
        pytest.skip(f"rtl backend unavailable: {reason}")


@pytest.mark.sim
@pytest.mark.parametrize(
    "names",
    [pytest.param(FAST, id="fast"), pytest.param(tuple(BLOCKS), id="all", marks=pytest.mark.slow)],
)
def test_blocks_on_ultra96_rtl(names):
    """Every block bit-exact on the RTL; the cycle model within 5 % of ``CYCLES`` on each of
    its fabric segments. The full set records its figures for the bench."""
    _usable()
    rng = np.random.default_rng(7)
    segments = {}
    for name in names:
        x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
        design, segments[name] = _run_block(name, x)
    bad = {}
    for name, segs in segments.items():
        errors = [(model - rtl) / rtl for rtl, model in segs]
        print(
            f"{name}: {len(segs)} fabric segments, RTL {[r for r, _ in segs]} cycles, "
            f"model error {[f'{e:+.2%}' for e in errors]}"
        )
        if any(abs(e) > TOLERANCE for e in errors):
            bad[name] = errors
    assert set(segments) == set(names)
    assert not bad, bad
    if set(names) == set(BLOCKS):
        from bamboo.bench import record_rtl_cycles

        record_rtl_cycles(
            "blocks",
            {k: [{"rtl": r, "model": m} for r, m in v] for k, v in segments.items()},
            design,
        )


def test_blocks_cover_the_issue():
    """A residual block, a stride-2 block and one with squeeze-excite on the CPU between two
    fabric segments (the placement is the compiler's: checked here without RTL)."""
    from bamboo.arch.artifact import read_artifact

    kinds = {}
    for name in BLOCKS:
        _, graph, blob = _compiled(name)
        meta = read_artifact(blob).metadata
        ops = {n.op for n in graph.nodes}
        fabric = [s for s in meta.steps if s.on_fabric]
        cpu_ops = {meta.cpu_nodes[n].op for s in meta.steps if not s.on_fabric for n in s.nodes}
        kinds[name] = (ops, len(fabric), cpu_ops)
    assert "add" in kinds["block_mbv2_residual"][0] and kinds["block_mbv2_residual"][1] == 1
    assert "add" not in kinds["block_mbv2_stride2"][0]
    ops, fabric, cpu_ops = kinds["block_mbconv_se"]
    assert fabric == 2 and cpu_ops and "add" in ops, kinds["block_mbconv_se"]
