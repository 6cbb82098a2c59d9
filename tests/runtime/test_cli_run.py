"""``bamboo run``: the compiler-free command (``bamboo.runtime.cli_run``)."""

import argparse
import io

import numpy as np
import pytest
from bamboo.arch import preset
from bamboo.runtime.cli_run import add_run_parser, cmd_run, main
from test_session import _compiled


def _args(argv):
    parser = argparse.ArgumentParser()
    add_run_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["run", *argv])


@pytest.fixture
def digits_bmb(tmp_path):
    _, graph, blob = _compiled("digits")
    path = tmp_path / "digits.bmb"
    path.write_bytes(blob)
    return path, graph


def test_npy_in_npy_out(digits_bmb, tmp_path):
    from bamboo.compiler import executor

    path, graph = digits_bmb
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = io.StringIO()
    assert (
        cmd_run(
            _args(
                [str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
            ),
            out,
        )
        == 0
    )
    y = np.load(tmp_path / "y.npy")
    assert np.array_equal(y, executor.run(graph, x)[0])
    text = out.getvalue()
    assert "float32[1, 10]" in text and "top-5: " in text
    # the stride-2 stem's kernel columns as channels (compiler/backend/stem.py): 32 x 16
    # pixels of 3 channels, padded to a block of rows
    rows = preset("ultra96").rows
    assert f"PS->PL: 1 transfers, {32 * 16 * rows} bytes" in text and "cpu: " in text
    assert text.split("top-5: ")[1].startswith(str(int(np.argmax(y))))


def test_image_input(digits_bmb, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path, _ = digits_bmb
    img = (np.random.default_rng(1).random((40, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "x.png")
    out = io.StringIO()
    assert cmd_run(_args([str(path), "--input", str(tmp_path / "x.png")]), out) == 0
    assert "top-5" in out.getvalue()


def test_errors_are_one_line(digits_bmb, tmp_path, capsys):
    path, _ = digits_bmb
    assert main([str(path), "--input", str(tmp_path / "missing.npy")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.npy does not exist" in err
    np.save(tmp_path / "bad.npy", np.zeros((3, 3), np.float32))
    assert main([str(path), "--input", str(tmp_path / "bad.npy")]) == 1
    assert "has shape [3, 3]" in capsys.readouterr().err
    (tmp_path / "junk.bmb").write_bytes(b"hello")
    assert main([str(tmp_path / "junk.bmb"), "--input", str(tmp_path / "bad.npy")]) == 1
    assert "bad magic" in capsys.readouterr().err
