"""Issue 14 regressions on the runtime side: threads, inconsistent artifacts, feeds,
output paths, API misuse, NaN input. References are independent: the reference
executor (``bamboo.compiler.executor``) and sequential runs of the same session."""

import json
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from bamboo.arch import artifact as art
from bamboo.arch.errors import BambooError
from bamboo.runtime.errors import RuntimeBambooError
from test_session import _compiled


@pytest.fixture(scope="module")
def digits():
    _, graph, blob = _compiled("digits")
    return graph, blob


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 1, 32, 32)).astype(np.float32) for _ in range(n)]


def test_session_is_importable_from_the_package_root():
    from bamboo.runtime import Session
    from bamboo.runtime.session import Session as S

    assert Session is S


def test_threads_share_one_session(digits):
    """Four threads on one Session (item 1): every output equals the sequential run's."""
    from bamboo.runtime import Session

    _, blob = digits
    xs = _frames(24)
    with Session(blob, backend="isa") as sess:
        want = [sess.run(None, x)[0] for x in xs]
        got = [None] * len(xs)

        def worker(k):
            for i in range(k, len(xs), 4):
                got[i] = sess.run(None, {sess.get_inputs()[0].name: xs[i]})[0]

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
        batch = sess.run_batch(xs[:6], pipeline=True)
        assert all(np.array_equal(b[0], w) for b, w in zip(batch, want))


def _rewrite(blob, change):
    """``blob`` with its sections changed by ``change(sections)``; checksum recomputed."""
    a = art.read_artifact(blob, validate=False)
    sections = dict(a.sections)
    change(sections)
    return art.write_artifact(sections, config_id=a.config_id)


def _fabric_step(meta):
    return next(s for s in meta["steps"] if s["target"] == "fabric")


def _meta_change(fn):
    def change(sections):
        meta = json.loads(sections[art.Section.METADATA])
        fn(meta)
        sections[art.Section.METADATA] = meta

    return change


INCONSISTENT = {
    "short weights": (
        lambda s: s.__setitem__(art.Section.WEIGHTS, s[art.Section.WEIGHTS][:-8]),
        "WEIGHTS section has",
    ),
    "metadata not JSON": (
        lambda s: s.__setitem__(art.Section.METADATA, b"{not json"),
        "not UTF-8 JSON",
    ),
    "no METADATA": (lambda s: s.pop(art.Section.METADATA), "lacks its METADATA"),
    "no steps": (_meta_change(lambda m: m.pop("steps")), "lacks 'steps'"),
    "old schema": (_meta_change(lambda m: m.__setitem__("version", 0)), "schema version 0"),
    "program past the end": (
        _meta_change(lambda m: _fabric_step(m).__setitem__("insn_count", 10**6)),
        "instructions",
    ),
    "unknown tensor": (
        _meta_change(lambda m: _fabric_step(m).__setitem__("inputs", ["nope"])),
        "'nope'",
    ),
    "fabric fields on a CPU step": (
        _meta_change(
            lambda m: next(s for s in m["steps"] if s["target"] == "cpu").__setitem__(
                "insn_count", 3
            )
        ),
        "runs on the CPU but has fabric fields",
    ),
    "region outside window": (
        _meta_change(lambda m: m["memory"].__setitem__("footprint", 64)),
        "outside the window",
    ),
}


@pytest.mark.parametrize("case", sorted(INCONSISTENT))
def test_inconsistent_artifact_is_refused_before_running(digits, case):
    """Item 2: checksum-valid, inconsistent content -> one ArtifactError line, no run."""
    from bamboo.runtime import Session

    change, match = INCONSISTENT[case]
    bad = _rewrite(digits[1], change)
    with pytest.raises(art.ArtifactError, match=match) as info:
        Session(bad, backend="isa")
    assert "\n" not in str(info.value)


def test_feeds_follow_onnxruntime(digits):
    """Item 8: refuse undeclared dtypes, other shapes (no reshape), out-of-range codes,
    complex; raw codes are integers."""
    from bamboo.compiler import executor
    from bamboo.runtime import Session

    graph, blob = digits
    x = _frames(1)[0]
    with Session(blob) as sess:
        bad = {
            "uint8": (x * 0).astype(np.uint8),
            "complex": x.astype(np.complex64),
            "HWC": x.reshape(32, 32, 1),
            "strings": np.full((1, 1, 32, 32), "a"),
        }
        for name, v in bad.items():
            with pytest.raises(RuntimeBambooError, match="input 'input'"):
                sess.run(None, v)
        with pytest.raises(RuntimeBambooError, match="takes uint8 codes"):
            sess.run(None, x, raw=True)
        with pytest.raises(RuntimeBambooError, match=r"codes in \[300, 300\], outside"):
            sess.run(None, np.full((1, 1, 32, 32), 300, np.int64), raw=True)
        codes = np.random.default_rng(1).integers(0, 256, (1, 1, 32, 32)).astype(np.int64)
        (raw,) = sess.run(None, codes, raw=True)
        assert np.array_equal(
            raw, executor.run(graph, {"input": codes.astype(np.uint8)}, raw=True)[0]
        )


def test_nan_input_keeps_stderr_clean(digits):
    """Item 13: NaN input gives no numpy warning, and the output the executor gives."""
    from bamboo.compiler import executor
    from bamboo.runtime import Session

    graph, blob = digits
    x = _frames(1)[0]
    x[0, 0, :4] = np.nan
    x[0, 0, 5, :3] = np.inf
    with Session(blob) as sess, warnings.catch_warnings():
        warnings.simplefilter("error")
        (y,) = sess.run(None, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(y, executor.run(graph, x)[0])


def test_api_misuse_raises_project_errors(digits):
    """Item 12: misuse raises a BambooError that says what to do."""
    from bamboo.runtime import Session

    _, blob = digits
    for arg in (None, 3, [1, 2]):
        with pytest.raises(RuntimeBambooError, match="takes a .bmb path"):
            Session(arg)
    with pytest.raises(RuntimeBambooError, match="timeout"):
        Session(blob, timeout=-1)
    with pytest.raises(RuntimeBambooError, match="config must be"):
        Session(blob, config="ultra96")
    with pytest.raises(RuntimeBambooError, match="does not take"):
        Session(blob, nonsense=1)
    sess = Session(blob)
    x = _frames(1)[0]
    for call in (
        lambda: sess.run(None, None),
        lambda: sess.run("y", x),
        lambda: sess.run(["nope"], x),
        lambda: sess.run_batch(x),
        lambda: sess.run(None, {"other": x}),
    ):
        with pytest.raises(RuntimeBambooError):
            call()
    sess.close()
    sess.close()
    with pytest.raises(RuntimeBambooError, match="session is closed"):
        sess.run(None, x)


def _bamboo(*argv, **kw):
    return subprocess.run(
        [sys.executable, "-m", "bamboo", *argv], capture_output=True, text=True, timeout=300, **kw
    )


def test_run_cli_inputs_and_outputs(digits, tmp_path):
    """Items 5, 7, 8: bad .npy inputs and unwritable -o paths are one line, exit 1; a
    failed write leaves no file behind."""
    _, blob = digits
    model = tmp_path / "d.bmb"
    model.write_bytes(blob)
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    np.save(tmp_path / "hwc.npy", _frames(1)[0].reshape(32, 32, 1))
    np.save(tmp_path / "x.npy", _frames(1)[0])
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cases = [
        (["--input", str(tmp_path / "empty.npy")], "cannot read"),
        (["--input", str(tmp_path / "str.npy")], "input 'input'"),
        (["--input", str(tmp_path / "hwc.npy")], "no reshaping"),
        (
            ["--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "no" / "y.npy")],
            "does not exist",
        ),
        (["--input", str(tmp_path / "x.npy"), "-o", str(tmp_path)], "is a directory"),
        (["--input", str(tmp_path / "x.npy"), "-o", "/proc/y.npy"], "cannot write"),
        (["--input", str(tmp_path / "x.npy"), "-o", "/dev/full"], "cannot write"),
        (["--input", str(tmp_path / "x.npy"), "-o", str(model)], "refusing to overwrite"),
    ]
    import os

    if os.geteuid() != 0:  # root writes into read-only folders
        cases.append(
            (["--input", str(tmp_path / "x.npy"), "-o", str(ro / "y.npy")], "cannot write")
        )
    for argv, match in cases:
        r = _bamboo("run", str(model), *argv)
        assert r.returncode == 1 and match in r.stderr, (argv, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert model.read_bytes() == blob
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["d.bmb", "empty.npy", "str.npy", "hwc.npy", "x.npy", "ro"]
    )
    r = _bamboo(
        "run", str(model), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")
    )
    assert r.returncode == 0 and np.load(tmp_path / "y.npy").shape == (1, 10)


def test_load_image_refuses_zero_std(tmp_path):
    from bamboo.runtime.cli_run import load_image

    with pytest.raises(RuntimeBambooError, match="--std"):
        load_image(tmp_path / "x.png", [1, 3, 8, 8], std=0.0)


def test_errors_derive_from_bamboo_error():
    assert issubclass(RuntimeBambooError, BambooError)


@pytest.fixture(scope="module")
def onnx_model():
    import pathlib

    return pathlib.Path(_compiled("digits")[0])  # the quantized digits model


def test_compile_output_paths(onnx_model, tmp_path):
    """Items 5 and 6: unwritable -o is one line; compile never overwrites its input."""
    import os
    import shutil

    src = tmp_path / "m.onnx"
    shutil.copy(onnx_model, src)
    disguised = tmp_path / "model.bmb"  # an ONNX file named .bmb, no -o
    shutil.copy(onnx_model, disguised)
    cases = [
        (["-o", str(src)], "refusing to overwrite"),
        ([], "refusing to overwrite"),
        (["-o", str(tmp_path / "no" / "m.bmb")], "does not exist"),
        (["-o", str(tmp_path)], "is a directory"),
        (["-o", "/proc/m.bmb"], "cannot write"),
        (["-o", "/dev/full"], "cannot write"),
    ]
    for argv, match in cases:
        model = str(disguised) if not argv else str(src)
        r = _bamboo("compile", model, "--config", "tiny", "--quiet", *argv)
        assert r.returncode == 1 and match in r.stderr, (argv, r.stderr)
        assert r.stderr.count("\n") == 1
    assert src.read_bytes() == onnx_model.read_bytes() == disguised.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "model.bmb"]
    r = _bamboo("compile", str(src), "--config", "tiny", "--quiet")
    assert r.returncode == 0 and art.read_artifact((tmp_path / "m.bmb").read_bytes())


def test_inspect_into_a_closed_pipe_is_quiet(onnx_model):
    """Item 9: ``bamboo inspect MODEL | head -1`` prints one line, no BrokenPipeError."""
    r = subprocess.run(
        f"{sys.executable} -m bamboo inspect {onnx_model} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and r.stderr == ""
