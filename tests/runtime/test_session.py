"""The runtime session: one test body per backend (instruction simulator, board, RTL).

``board`` runs ``bamboo.runtime.board`` against the fake PYNQ of ``tests/fake_pynq``
(the instruction simulator behind MMIO, with separate cache and DDR copies, so a
missing flush or invalidate fails). ``rtl`` runs when ``bamboo.sim.rtl_device`` can
build the accelerator. References are independent: onnxruntime (EXTENDED) and the
reference executor (``bamboo.compiler.executor``).
"""

import functools
import pathlib

import numpy as np
import pytest
from bamboo.arch import preset
from bamboo.arch.artifact import (
    ArtifactCorruptError,
    ArtifactMismatchError,
    Section,
    read_artifact,
    write_artifact,
)
from bamboo.arch.isa import INSN_BYTES
from bamboo.arch.registers import ErrorCode
from bamboo.runtime.device import DeviceError, DeviceTimeout
from bamboo.runtime.session import Session
from isa_graphs import zoo_graph

FAKE_PYNQ = pathlib.Path(__file__).resolve().parent.parent / "fake_pynq"
CONFIG = "ultra96"


@functools.lru_cache(maxsize=None)
def _compiled(model, config=CONFIG):
    """``(onnx path, IR graph, artifact bytes)`` of a model at test size."""
    from bamboo.compiler.backend import compile_artifact

    path, graph = zoo_graph(model)
    return path, graph, compile_artifact(graph, preset(config))


class Backend:
    """Makes sessions on one backend and reaches its register model (isa, board).

    The RTL simulates every cycle: it runs the ``tiny`` configuration.
    """

    def __init__(self, name, tmp_path, monkeypatch):
        self.name, self.tmp, self.mp = name, tmp_path, monkeypatch
        self.config = "tiny" if name == "rtl" else CONFIG
        self.sessions = []
        self.pynq = None
        if name == "board":
            monkeypatch.syspath_prepend(str(FAKE_PYNQ))
            monkeypatch.delitem(__import__("sys").modules, "pynq", raising=False)
            import pynq

            assert pynq.__version__ == "0.0-fake"
            pynq.reset()
            self.pynq = pynq

    def session(self, blob, latency=0.0, **kw):
        cfg = preset(self.config)
        if self.name == "isa":
            from bamboo.sim.isa_device import IsaDevice

            sess = Session(blob, device=IsaDevice(cfg, latency=latency), **kw)
        elif self.name == "board":
            bit = self.pynq.fake_bitstream(self.tmp / "bamboo.bit", cfg, latency=latency)
            sess = Session(blob, backend="board", bitstream=str(bit), **kw)
        else:  # the RTL of this backend's config, not of the artifact's
            from bamboo.sim.rtl_device import RtlDevice

            device = RtlDevice(cfg)
            try:
                sess = Session(blob, device=device, **kw)
            except Exception:
                device.close()
                raise
        self.sessions.append(sess)
        return sess

    def close(self):
        for sess in self.sessions:
            sess.close()  # the RTL simulation ends with its session

    def regs(self, sess):
        return sess.device.regs if self.name == "isa" else self.pynq.state.pl


@pytest.fixture(
    params=["isa", "board", pytest.param("rtl", marks=[pytest.mark.sim, pytest.mark.slow])]
)
def backend(request, tmp_path, monkeypatch):
    if request.param == "rtl":
        try:
            import bamboo.sim.rtl_device as rtl
        except ImportError as exc:
            pytest.skip(f"rtl backend unavailable: {exc}")
        reason = rtl.unavailable()
        if reason:
            pytest.skip(f"rtl backend unavailable: {reason}")
    be = Backend(request.param, tmp_path, monkeypatch)
    yield be
    be.close()


def _ort(path, x):
    import onnx
    from ortutil import run

    return run(onnx.load(str(path)), x)


@pytest.mark.parametrize("model", ["digits", "mobilenet_v2"])
def test_model_bit_exact(backend, model, diff_cases):
    from bamboo.compiler import executor

    path, graph, blob = _compiled(model, backend.config)
    sess = backend.session(blob)
    (arg,) = sess.get_inputs()
    assert arg.name == graph.inputs[0].onnx_name and arg.type == "tensor(float)"
    assert sess.get_outputs()[0].shape == list(graph.outputs[0].onnx_shape)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(arg.shape).astype(np.float32)
    (got,) = sess.run(None, {arg.name: x})
    (ref,) = executor.run(graph, {arg.name: x})
    (ort,) = _ort(path, x)
    assert got.dtype == np.float32 and np.array_equal(got, ref)
    assert np.array_equal(got, ort), f"{np.count_nonzero(got != ort)} of {got.size} differ"
    diff_cases(f"session:{backend.name}", got.size)
    codes = rng.integers(0, 256, arg.shape).astype(np.uint8)
    (raw,) = sess.run([sess.get_outputs()[0].name], codes, raw=True)
    assert np.array_equal(raw, executor.run(graph, {arg.name: codes}, raw=True)[0])
    st = sess.stats()
    assert st["frames"] == 2 and st["ps_to_pl"]["bytes"] > 0 and st["pl_to_ps"]["bytes"] > 0
    assert all(s["runs"] == 2 for s in st["segments"])
    sess.close()


def test_pipelined_batch_equals_sequential(backend):
    _, _, blob = _compiled("digits", backend.config)
    sess = backend.session(blob)
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(4)
    n = 2 if backend.name == "rtl" else 4  # the RTL simulates every cycle
    feeds = [{name: rng.standard_normal((1, 1, 32, 32)).astype(np.float32)} for _ in range(n)]
    seq = [sess.run(None, f)[0] for f in feeds]
    par = sess.run_batch(feeds, pipeline=True)
    assert all(np.array_equal(a, b[0]) for a, b in zip(seq, par))
    assert sess.stats()["frames"] == 2 * n


def test_mismatched_config_id_is_refused(backend):
    _, _, blob = _compiled("digits", "ultra96" if backend.config == "tiny" else "tiny")
    with pytest.raises(ArtifactMismatchError, match="engine has config_id .* recompile"):
        backend.session(blob)


def test_corrupted_artifact_is_refused(backend):
    _, _, blob = _compiled("digits", backend.config)
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 1
    with pytest.raises(ArtifactCorruptError, match="checksum"):
        backend.session(bytes(bad))


def test_engine_error_raises_with_instruction_index(backend):
    _, _, blob = _compiled("digits", backend.config)
    art = read_artifact(blob)
    program = bytearray(art.program)
    index = 5  # inside the first fabric segment
    program[index * INSN_BYTES : (index + 1) * INSN_BYTES] = (15).to_bytes(INSN_BYTES, "little")
    sections = dict(art.sections)
    sections[Section.PROGRAM] = bytes(program)
    bad = write_artifact(sections, config_id=art.config_id)
    sess = backend.session(bad)
    with pytest.raises(DeviceError, match=f"instruction {index} .*ILLEGAL_OPCODE") as info:
        sess.run(None, np.zeros((1, 1, 32, 32), np.float32))
    assert info.value.code == ErrorCode.ILLEGAL_OPCODE and info.value.index == index


def test_timeout_soft_resets_and_raises(backend):
    if backend.name == "rtl":
        pytest.skip("the RTL engine cannot be made to hang from here")
    _, _, blob = _compiled("digits")
    sess = backend.session(blob, latency=float("inf"), timeout=0.05)
    x = np.zeros((1, 1, 32, 32), np.float32)
    regs = backend.regs(sess)
    with pytest.raises(DeviceTimeout, match="soft-reset"):
        sess.run(None, x)
    assert regs.soft_resets == 1 and sess.device.read_field("STATUS", "busy") == 0
    regs.latency = 0.0  # the engine recovers after the reset
    assert sess.run(None, x)[0].shape == (1, 10)


def test_board_cache_discipline_is_checked(tmp_path, monkeypatch):
    """The fake PYNQ fails a run that skips a flush, and one that skips an invalidate."""
    from bamboo.runtime import board

    be = Backend("board", tmp_path, monkeypatch)
    _, graph, blob = _compiled("digits")
    sess = be.session(blob)
    x = np.random.default_rng(5).standard_normal((1, 1, 32, 32)).astype(np.float32)
    (good,) = sess.run(None, x)
    events = [e for e, _ in be.pynq.state.events]
    assert events[-3:] == ["flush", "start", "invalidate"]
    with monkeypatch.context() as m:
        m.setattr(board.BoardBuffer, "flush", lambda self: None)
        with pytest.raises(be.pynq.FakePynqError, match="never flushed"):
            sess.run(None, -x)
    with monkeypatch.context() as m:
        m.setattr(board.BoardBuffer, "invalidate", lambda self: None)
        (stale,) = sess.run(None, -x)
    (fresh,) = sess.run(None, -x)
    assert not np.array_equal(stale, fresh)


def test_board_bare_bitstream_sets_clock_and_port_widths(tmp_path, monkeypatch):
    be = Backend("board", tmp_path, monkeypatch)
    _, _, blob = _compiled("digits")
    cfg = preset(CONFIG)
    bit = be.pynq.fake_bitstream(tmp_path / "bare.bit", cfg, hwh=False)
    sess = Session(blob, backend="board", bitstream=str(bit))
    assert be.pynq.Clocks.fclk0_mhz == cfg.clock_mhz
    events = [e for e, _ in be.pynq.state.events]
    assert events.index("clock") < events.index("download")  # as Overlay.download
    assert be.pynq.state.ps_regs[0xFD380000] & 3 == 0  # HP0 at 128 bits
    assert sess.run(None, np.zeros((1, 1, 32, 32), np.float32))[0].shape == (1, 10)


def test_board_interrupt_completion(tmp_path, monkeypatch):
    be = Backend("board", tmp_path, monkeypatch)
    _, graph, blob = _compiled("digits")
    bit = be.pynq.fake_bitstream(tmp_path / "irq.bit", preset(CONFIG), interrupt=True)
    assert Session(blob, backend="board", bitstream=str(bit)).device.interrupt is None
    sess = Session(blob, backend="board", bitstream=str(bit), interrupt=True)
    assert sess.device.interrupt is not None
    x = np.ones((1, 1, 32, 32), np.float32)
    from bamboo.compiler import executor

    ref = executor.run(graph, x)[0]
    assert np.array_equal(sess.run(None, x)[0], ref)
    # Waits come from run_batch's worker threads too: the loop thread serves them all.
    outs = sess.run_batch([{sess.get_inputs()[0].name: x}] * 3, pipeline=True)
    assert all(np.array_equal(o[0], ref) for o in outs)
    sess.close()
    assert not sess.device.buffers


def test_board_fake_accepts_no_more_than_pynq(tmp_path, monkeypatch):
    """The fake refuses what pynq 3.0.1 refuses (tests/pynq_board checks the real one)."""
    import asyncio

    be = Backend("board", tmp_path, monkeypatch)
    pynq = be.pynq
    with pytest.raises(RuntimeError, match="Overlay is not downloaded"):
        pynq.allocate((16,), np.uint8)
    bit = pynq.fake_bitstream(tmp_path / "irq.bit", preset(CONFIG), interrupt=True)
    ov = pynq.Overlay(str(bit))
    assert set(ov.ip_dict) == {"bamboo"}
    with pytest.raises(ValueError, match="No Pin of name bamboo/intr"):
        pynq.Interrupt("bamboo/intr")
    irq = pynq.Interrupt("bamboo/irq")
    loop = asyncio.new_event_loop()
    with pytest.raises(RuntimeError, match="different event loop"):
        loop.run_until_complete(irq.wait())
    loop.close()
    buf = pynq.allocate((16,), np.uint8)
    with pytest.warns(DeprecationWarning):
        buf.close()
    assert any(b is buf for b in pynq.state.buffers)  # close() freed nothing


def test_unknown_backend_and_bad_feeds():
    from bamboo.runtime.errors import RuntimeBambooError

    _, _, blob = _compiled("digits")
    with pytest.raises(RuntimeBambooError, match="backend must be one of"):
        Session(blob, backend="gpu")
    sess = Session(blob, backend="isa")
    with pytest.raises(RuntimeBambooError, match=r"has shape \[1, 32, 32\]"):
        sess.run(None, np.zeros((1, 32, 32), np.float32))
    with pytest.raises(RuntimeBambooError, match="no output named 'nope'"):
        sess.run(["nope"], np.zeros((1, 1, 32, 32), np.float32))


@pytest.mark.sim
def test_rtl_runs_digits_end_to_end():
    """`make test` runs one model on the RTL of the whole accelerator (Verilator, tiny):
    bit-exact with onnxruntime, with the hardware's cycle counters reported, and profiled
    (``bamboo profile``'s counter column, against the cycle model behind the cocotb memory)."""
    import bamboo.sim.rtl_device as rtl
    from bamboo.runtime.profiling import profile, render
    from bamboo.runtime.session import Session

    reason = rtl.unavailable()
    if reason:
        pytest.skip(f"rtl backend unavailable: {reason}")
    path, _, blob = _compiled("digits", "tiny")
    sess = Session(blob, backend="rtl")
    try:
        (arg,) = sess.get_inputs()
        x = np.random.default_rng(5).standard_normal(arg.shape).astype(np.float32)
        (got,) = sess.run(None, {arg.name: x})
        (ort,) = _ort(path, x)
        assert np.array_equal(got, ort), f"{np.count_nonzero(got != ort)} of {got.size} differ"
        segments = sess.stats()["segments"]
        assert segments and all(s["cycles"] > 0 for s in segments)
        print("RTL cycle counters per fabric segment:", [s["cycles"] for s in segments])
        prof = profile(sess, memory="cocotb")  # the frame just run: no second RTL frame
        assert [s.counter_cycles for s in prof.segments] == [s["cycles"] for s in segments]
        assert prof.totals["fabric_source"] == "counters"
        # tests/sim/test_cycles.py holds the model to 5 % per layer; the sum is as close.
        assert prof.totals["model_cycles"] == pytest.approx(prof.totals["counter_cycles"], rel=0.05)
        print(render(prof))
    finally:
        sess.close()
