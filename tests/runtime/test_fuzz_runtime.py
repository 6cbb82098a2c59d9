"""Runtime fuzz (issue 14): mutated artifacts whose checksum is recomputed (so only the
schema and consistency checks can catch them), random feeds, API misuse, threads.

Every case ends in one of: a :class:`BambooError` raised by the project, or outputs
equal to the unmutated model's (the reference executor's for feeds). Never another
exception, never different outputs, never a hang (each run has a timeout). Seeded;
bounded to well under a minute on 2 cores.
"""

import json
import threading

import numpy as np
import pytest
from bamboo.arch import artifact as art
from bamboo.arch.errors import BambooError
from test_session import _compiled

#: Integer fields whose change moves data or instructions (never a legitimate numeric
#: change of the model): a mutation must be refused or leave the outputs unchanged.
_STRUCTURAL = {
    "offset",
    "size",
    "footprint",
    "insn_start",
    "insn_count",
    "first",
    "count",
    "live",
    "canon",
    "shape",
    "onnx_shape",
    "weights",
    "activations",
    "exchange",
    "program",
    "version",
}
_JUNK = [None, "x", -1, 1.5, [], {}, True, 2**40, "uint16", "NCHW"]
CASES = 600


def _paths(node, path=()):
    """Every (path, value) in a JSON tree, except CPU node attributes and the config."""
    if path[-1:] in (("attrs",), ("config",), ("placement",)):
        return
    yield path, node
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for k, v in items:
        yield from _paths(v, (*path, k))


def _set(tree, path, value):
    for k in path[:-1]:
        tree = tree[k]
    if value is _DELETE:
        del tree[path[-1]]
    else:
        tree[path[-1]] = value


_DELETE = object()


def _mutate(rng, sections):
    kind = rng.integers(6)
    if kind == 0:  # a section dropped, cut or grown
        k = int(rng.choice(list(art.REQUIRED)))
        what = rng.integers(3)
        if what == 0:
            del sections[k]
        else:
            data = sections[k]
            n = int(rng.integers(1, 64))
            sections[k] = data[:-n] if what == 1 else data + bytes(n)
        return
    k = art.Section.METADATA if kind < 5 else art.Section.IOQUANT
    tree = json.loads(sections[k])
    paths = [p for p, _ in _paths(tree) if p]
    path = paths[int(rng.integers(len(paths)))]
    value = dict(_paths(tree))[path]
    key = next((x for x in reversed(path) if isinstance(x, str)), "")
    choice = rng.integers(3)
    if choice == 0:
        new = _DELETE
    elif isinstance(value, int) and not isinstance(value, bool) and key in _STRUCTURAL:
        new = value + int(rng.choice([-64, -1, 1, 32, 1 << 20]))
    else:
        new = _JUNK[int(rng.integers(len(_JUNK)))]
    if (
        isinstance(value, (str, float))
        and not isinstance(new, (list, dict, type(None)))
        and type(new) is type(value)
    ):
        new = _DELETE  # replacing a name or a scale by another of its type may be legal
    _set(tree, path, new)
    sections[k] = tree


@pytest.fixture(scope="module")
def digits():
    _, graph, blob = _compiled("digits")
    return graph, blob


def test_mutated_artifacts(digits):
    from bamboo.runtime import Session

    _, blob = digits
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    with Session(blob) as sess:
        (want,) = sess.run(None, x)
    base = art.read_artifact(blob)
    rng = np.random.default_rng(14)
    outcomes = {"refused": 0, "same": 0}
    for case in range(CASES):
        sections = dict(base.sections)
        _mutate(rng, sections)
        bad = art.write_artifact(sections, config_id=base.config_id)
        try:
            with Session(bad, timeout=5.0) as sess:
                (got,) = sess.run(None, x)
        except BambooError as exc:
            assert "\n" not in str(exc), (case, exc)
            outcomes["refused"] += 1
            continue
        assert np.array_equal(got, want), f"case {case}: silently wrong output"
        outcomes["same"] += 1
    assert outcomes["refused"] > CASES // 2, outcomes


def test_random_feeds_and_misuse(digits):
    from bamboo.compiler import executor
    from bamboo.runtime import Session

    graph, blob = digits
    rng = np.random.default_rng(7)
    shapes = [(1, 1, 32, 32), (32, 32, 1), (1, 32, 32, 1), (1, 1, 32), (), (1, 1, 32, 33)]
    dtypes = [
        np.float32,
        np.float64,
        np.float16,
        np.uint8,
        np.int64,
        np.complex64,
        np.bool_,
        np.str_,
    ]
    with Session(blob) as sess:
        for _ in range(60):
            shape = shapes[int(rng.integers(len(shapes)))]
            dtype = dtypes[int(rng.integers(len(dtypes)))]
            raw = bool(rng.integers(2))
            with np.errstate(invalid="ignore", over="ignore"):  # 1e30 into ints
                x = (
                    (rng.standard_normal(shape) * rng.choice([1, 100, 1e30])).astype(dtype)
                    if dtype is not np.str_
                    else np.full(shape, "a")
                )
            if dtype in (np.float32, np.float64) and x.size:
                x.flat[rng.integers(x.size, size=3)] = [np.nan, np.inf, -np.inf]
            try:
                (got,) = sess.run(None, x, raw=raw)
            except BambooError:
                continue
            assert x.shape == (1, 1, 32, 32)
            if raw:
                want = executor.run(graph, {"input": x.astype(np.uint8)}, raw=True)[0]
            else:
                with np.errstate(invalid="ignore", over="ignore"):
                    want = executor.run(graph, x.astype(np.float32))[0]
            assert np.array_equal(got, want)
        for args in [(None, {}), ([], None), (["output", 1], x), ({"a": 1}, x)]:
            with pytest.raises(BambooError):
                sess.run(*args)


def test_threads_with_errors_mixed_in(digits):
    """Threads sharing a session, some feeding bad input: good frames stay right."""
    from bamboo.runtime import Session

    _, blob = digits
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(12)]
    with Session(blob) as sess:
        want = [sess.run(None, x)[0] for x in xs]
        bad, got = [], {}

        def worker(k):
            for i in range(k, len(xs), 3):
                try:
                    sess.run(None, xs[i].astype(np.uint8))
                except BambooError:
                    bad.append(i)
                got[i] = sess.run(None, xs[i])[0]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a run hung"
    assert sorted(bad) == list(range(len(xs)))
    assert all(np.array_equal(got[i], want[i]) for i in range(len(xs)))
