"""Pipelined sessions on an emulated fabric (``IsaDevice(pace=True)``, ``bamboo.sim.pacing``).

The plain ``isa`` backend cannot show what ``Session.run_batch`` overlaps: the simulator
holds the GIL. The paced device ends each run the cycle model's time after its start
(waited for in ``time.sleep``) and memoizes the simulator's results, so fabric time costs
the host nothing, as on the board. Checked here: the paced device gives the plain
device's outputs (also for alternating inputs: no stale memo), its runs last at least the
modelled time, a trap is never memoized; with fabric and host times comparable the
pipeline beats sequential runs (MobileNetV2: one segment, then the CPU) and, on a
squeeze-excite model, gives the same outputs.
"""

import numpy as np
import pytest
from bamboo.arch import preset
from bamboo.arch.artifact import Section, read_artifact, write_artifact
from bamboo.arch.isa import INSN_BYTES
from bamboo.runtime.device import DeviceError
from bamboo.runtime.profiling import throughput
from bamboo.runtime.session import Session
from bamboo.sim.isa_device import IsaDevice
from test_session import _compiled

CONFIG = preset("ultra96")
SE_MODEL = "mobilenet_v3_small"


def _inputs(shape, n, seed=11):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def test_paced_device_gives_the_simulator_outputs_and_the_model_time():
    _, graph, blob = _compiled(SE_MODEL)
    shape = graph.inputs[0].onnx_shape
    xs = _inputs(shape, 2)
    with Session(blob, backend="isa") as plain:
        want = [plain.run(None, x)[0] for x in xs]
    assert not np.array_equal(want[0], want[1])
    # 100 times the modelled time: runs of milliseconds, well above the sleep's jitter.
    device = IsaDevice(CONFIG, pace=100.0)
    with Session(blob, device=device) as sess:
        assert sess.backend == "isa-paced"
        for x, y in zip(xs + xs[::-1], want + want[::-1]):
            assert np.array_equal(sess.run(None, x)[0], y)
        pacer = device.pacer
        segments = sum(s.on_fabric for s in sess.steps)
        assert pacer.misses == 2 * segments and pacer.hits == 2 * segments
        for seg in sess.stats()["segments"]:
            words = read_artifact(blob).program[
                seg["insn_start"] * INSN_BYTES : (seg["insn_start"] + seg["insn_count"])
                * INSN_BYTES
            ]
            modelled = pacer.program(words, sess.meta.memory.footprint).seconds
            assert modelled > 0 and seg["seconds"] / seg["runs"] >= modelled


def test_a_trap_is_not_memoized():
    _, _, blob = _compiled("digits")
    art = read_artifact(blob)
    program = bytearray(art.program)
    program[5 * INSN_BYTES : 6 * INSN_BYTES] = (15).to_bytes(INSN_BYTES, "little")
    sections = dict(art.sections)
    sections[Section.PROGRAM] = bytes(program)
    bad = write_artifact(sections, config_id=art.config_id)
    device = IsaDevice(CONFIG, pace=True)
    with Session(bad, device=device) as sess:
        for _ in range(2):
            with pytest.raises(DeviceError, match="ILLEGAL_OPCODE"):
                sess.run(None, np.zeros((1, 1, 32, 32), np.float32))
        assert device.pacer.hits == 0 and device.regs.starts == 2


def _host_seconds(blob, x, frames=4):
    """Host time of a frame with next to no fabric time (paced at the model's time, warm)."""
    with Session(blob, backend="isa", pace=True) as sess:
        sess.run(None, x)
        sess.reset_stats()
        for _ in range(frames):
            sess.run(None, x)
        return sess.stats()["frame_seconds"] / frames


def _pipelined(model, rounds=5):
    """:func:`~bamboo.runtime.profiling.throughput` of ``model`` on the paced device, its
    fabric stretched to the measured host time per frame; outputs checked on the way."""
    from bamboo.sim import cycles

    _, graph, blob = _compiled(model)
    (x,) = _inputs(graph.inputs[0].onnx_shape, 1)
    with Session(blob, backend="isa") as plain:
        want = plain.run(None, x)[0]
    host = _host_seconds(blob, x)
    modelled = cycles.model_artifact(blob, CONFIG, cycles.T.BOARDS["ultra96"]).seconds
    stretch = host / modelled
    with Session(blob, backend="isa", pace=stretch) as sess:
        assert np.array_equal(sess.run(None, x)[0], want)
        tp = throughput(sess, x, frames=8, rounds=rounds)
        outs = sess.run_batch([x] * 3, pipeline=True)
    assert tp["outputs_equal"] and all(np.array_equal(o[0], want) for o in outs)
    print(
        f"{model}: host {host * 1e3:.2f} ms/frame, emulated fabric {stretch:.1f}x the "
        f"model's {modelled * 1e3:.3f} ms: sequential {tp['sequential_fps']:.1f} frames/s, "
        f"pipelined {tp['pipelined_fps']:.1f} frames/s, gain {tp['gain']:.2f}x"
    )
    return tp


@pytest.mark.slow
def test_pipeline_overlaps_emulated_fabric():
    """MobileNetV2 (test size): one fabric segment, then the classifier on the CPU. With
    the fabric stretched to the measured host time per frame, two frames in flight can
    reach 2x; measured 1.26x to 1.46x on the reference machine under a load of 5 (a
    thread that never sleeps gets a smaller share of a loaded machine than one that does).
    Asserted: more than 1.15x, and equal outputs. In the slow set (`make bench-tests`):
    a clean-clone `make test` beside the Verilator runs measured 0.99x once, a throughput
    that depends on the machine's other load is no gate for every commit."""
    tp = _pipelined("mobilenet_v2")
    assert tp["gain"] > 1.15, tp


def test_pipeline_on_an_se_model_gives_the_same_outputs():
    """MobileNetV3-small alternates eight fabric segments with its squeeze-excite FCs on
    the CPU and ends in two FCs on the CPU: the pipeline's gain there is bounded well below
    2x (docs/runtime.md has the measurements); here its outputs must equal sequential
    runs' and the plain simulator's."""
    _pipelined(SE_MODEL, rounds=1)


def test_engine_serves_the_oldest_waiting_frame_first():
    import threading
    import time

    from bamboo.runtime.session import _Engine

    engine, order = _Engine(), []
    engine.acquire(5)

    def step(frame):
        engine.acquire(frame)
        order.append(frame)
        engine.release()

    threads = []
    for frame in (9, 7, 8):  # arrive youngest first
        t = threading.Thread(target=step, args=(frame,))
        t.start()
        threads.append(t)
        while len(engine._waiting) < len(threads):
            time.sleep(1e-3)
    engine.release()
    for t in threads:
        t.join(5)
    assert order == [7, 8, 9]
