"""Soak (issue 14, slow set): one Session per model shared by 8 threads, frames of mixed
models interleaved on ``isa``; every output equals the sequential run's and the resident
memory stays flat after the warm-up. ``BAMBOO_SOAK_FRAMES`` sets the frame count
(default 10,000)."""

import os
import resource
import threading

import numpy as np
import pytest
from bamboo.runtime import Session
from test_session import _compiled

MODELS = ("digits", "mobilenet_v2")
THREADS = 8


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.slow
def test_soak_shared_sessions():
    frames = int(os.environ.get("BAMBOO_SOAK_FRAMES", "10000"))
    rng = np.random.default_rng(0)
    sessions, inputs, want = {}, {}, {}
    for name in MODELS:
        sess = sessions[name] = Session(_compiled(name)[2], backend="isa")
        arg = sess.get_inputs()[0]
        inputs[name] = [rng.standard_normal(arg.shape).astype(np.float32) for _ in range(16)]
        want[name] = [sess.run(None, x)[0] for x in inputs[name]]
    plan = [(MODELS[i % len(MODELS)], int(rng.integers(16))) for i in range(frames)]
    wrong, errors, rss = [], [], []
    warm = max(frames // 10, THREADS * 4)

    def worker(k):
        try:
            for i in range(k, frames, THREADS):
                name, j = plan[i]
                (y,) = sessions[name].run(None, inputs[name][j])
                if not np.array_equal(y, want[name][j]):
                    wrong.append(i)
                if k == 0 and i >= warm and (i // THREADS) % 50 == 0:
                    rss.append(_rss_mb())
        except Exception as exc:  # reported below, with the frame
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sess in sessions.values():
        sess.close()
    assert not errors and not wrong, (errors[:3], wrong[:10])
    if len(rss) >= 2:
        assert rss[-1] - rss[0] < 64, f"resident memory grew {rss[0]:.0f} -> {rss[-1]:.0f} MB"
    print(f"soak: {frames} frames, {THREADS} threads, RSS {rss[:1]} -> {rss[-1:]} MB")
