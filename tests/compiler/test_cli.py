"""``bamboo inspect`` from a shell: a table on success, one line on stderr and exit code 1
on a bad model, never a traceback."""

import subprocess
import sys

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from test_frontend import ROOT, convnet, qdq  # noqa: E402


def _inspect(path):
    return subprocess.run(
        [sys.executable, "-m", "bamboo", "inspect", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _quantized():
    return qdq(convnet(), (1, 3, 16, 16), "convnet")


def _truncated(tmp_path):
    data = _quantized().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    return path


def _float(tmp_path):
    path = tmp_path / "float.onnx"
    onnx.save(convnet(), str(path))
    return path


def _opset9(tmp_path):
    model = _quantized()
    model.opset_import[0].version = 9
    path = tmp_path / "opset9.onnx"
    onnx.save(model, str(path))
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (_truncated, ["cut.onnx", "truncated"]),
        (_float, ["float", "quantize_static"]),
        (lambda tmp: tmp / "missing.onnx", ["missing.onnx", "cannot read"]),
        (lambda tmp: tmp, ["cannot read"]),  # a directory
        (_opset9, ["opset 9", "convert_version"]),
        (_empty, ["empty"]),
    ],
    ids=["truncated", "float", "missing", "directory", "opset9", "empty"],
)
def test_bad_model_is_one_line_and_exit_1(tmp_path, make, words):
    r = _inspect(make(tmp_path))
    assert "Traceback" not in r.stderr
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bamboo inspect: error: "), r.stderr
    for w in words:
        assert w in lines[0]
    assert r.stdout == ""


def test_shared_opset9_face_detector_is_rejected():
    """The original UltraFace file (float, opset 9) as a user would first try it."""
    from test_frontend import ULTRAFACE

    if not ULTRAFACE.exists():
        pytest.skip(f"{ULTRAFACE} is missing")
    r = _inspect(ULTRAFACE)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "opset 9" in r.stderr


def test_quantized_model_prints_the_table(tmp_path):
    path = tmp_path / "convnet.onnx"
    onnx.save(_quantized(), str(path))
    r = _inspect(path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.startswith(f"{path}: ") and "bytes crossing PS/PL per frame" in r.stdout


def test_internal_errors_become_one_line(tmp_path, monkeypatch, capsys):
    """A compiler bug (a non-Bamboo exception) still reaches the user as one line."""
    from bamboo.compiler import inspect

    from bamboo import cli

    def broken(graph, title=""):
        raise KeyError("boom")

    monkeypatch.setattr(inspect, "render", broken)
    path = tmp_path / "convnet.onnx"
    onnx.save(_quantized(), str(path))
    assert cli.main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal compiler error (KeyError" in err[0]
