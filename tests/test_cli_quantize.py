"""``bamboo quantize``: a float model with a dynamic batch, end to end, and its errors.

The model is a small float classifier written with onnx.helper (Conv, Relu,
GlobalAveragePool, Flatten, Gemm) whose batch axis is symbolic, as exporters write it.
What the command did is checked against independent facts: the input's activation
range onnxruntime's MinMax calibration must have seen (computed here from the
calibration data), the float model's outputs, and the compiled artifact on the
instruction simulator against onnxruntime on the quantized file.
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
PIL = pytest.importorskip("PIL.Image")

import ortutil  # noqa: E402
from bamboo.models.quantize import conv_qdq_problems  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bamboo.cli import main as bamboo  # noqa: E402

H = W = 16


def _float_model(path, batch="N", height=H):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 8)).astype(np.float32), "fw"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "fb"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, height, W])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _input_qparams(model):
    """Scale and zero point of the QuantizeLinear that reads the graph input."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    (q,) = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input"]
    return float(inits[q.input[1]]), inits[q.input[2]]


def _minmax_qparams(lo, hi, dtype=np.uint8):
    """onnxruntime's MinMax asymmetric parameters for a range (zero included)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmin, qmax = (0, 255) if dtype == np.uint8 else (-128, 127)
    scale = (hi - lo) / (qmax - qmin)
    return scale, int(round(qmin - lo / scale))


@pytest.fixture
def float_model(tmp_path):
    return _float_model(tmp_path / "tiny.onnx")


def test_npy_calibration_keeps_the_dynamic_batch(float_model, tmp_path, capsys):
    x = np.random.default_rng(1).uniform(-1.5, 2.5, (6, 3, H, W)).astype(np.float32)
    np.save(tmp_path / "calib.npy", x)
    out = tmp_path / "tiny.int8.onnx"
    assert (
        bamboo(
            [
                "quantize",
                str(float_model),
                "-o",
                str(out),
                "--calibration",
                str(tmp_path / "calib.npy"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "calibrating [" in err and "6/6" in err and str(out) in err
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert conv_qdq_problems(model) == []
    scale, zp = _input_qparams(model)
    want_scale, want_zp = _minmax_qparams(float(x.min()), float(x.max()))
    assert scale == pytest.approx(want_scale, rel=1e-6) and int(zp) == want_zp
    assert zp.dtype == np.uint8
    # The int8 model agrees with the float one on a batch of two.
    fx = x[:2]
    (f,) = ortutil.run(onnx.load(str(float_model)), {"input": fx})
    (q,) = ortutil.run(model, {"input": fx})
    assert q.shape == f.shape == (2, 4)
    assert np.abs(q - f).max() <= 0.1 * np.abs(f).max()


def test_image_folder_with_mean_std_then_compile_and_run(float_model, tmp_path, capsys):
    from bamboo.runtime.session import Session

    folder = tmp_path / "images"
    folder.mkdir()
    # Solid colours: any crop and resize leaves them as they are, so the normalised range
    # the calibration must have seen is known exactly.
    for k, colour in enumerate([(0, 0, 0), (255, 255, 255), (255, 0, 64), (10, 200, 30)]):
        PIL.fromarray(np.full((40, 60, 3), colour, np.uint8)).save(folder / f"{k}.png")
    (folder / "notes.txt").write_text("not an image")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = tmp_path / "tiny.qdq.onnx"
    argv = [
        "quantize",
        str(float_model),
        "-o",
        str(out),
        "--calibration",
        str(folder),
        "--input-shape",
        f"input=1x3x{H}x{W}",
        "--mean",
        *map(str, mean),
        "--std",
        *map(str, std),
        "--activation-type",
        "int8",
    ]
    assert bamboo(argv) == 0
    assert "4/4" in capsys.readouterr().err
    model = onnx.load(str(out))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, H, W]
    lo = min((0 - m) / s for m, s in zip(mean, std))
    hi = max((1 - m) / s for m, s in zip(mean, std))
    scale, zp = _input_qparams(model)
    want_scale, want_zp = _minmax_qparams(lo, hi, np.int8)
    assert scale == pytest.approx(want_scale, rel=1e-5) and int(zp) == want_zp
    assert zp.dtype == np.int8

    artifact = tmp_path / "tiny.bmb"
    assert bamboo(["inspect", str(out)]) == 0
    assert bamboo(["compile", str(out), "-o", str(artifact), "--quiet"]) == 0
    x = np.random.default_rng(2).standard_normal((1, 3, H, W), dtype=np.float32)
    (want,) = ortutil.run(model, {"input": x})
    with Session(str(artifact), backend="isa") as sess:
        (got,) = sess.run(None, {"input": x})
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_qoperator_format(float_model, tmp_path):
    x = np.random.default_rng(3).standard_normal((3, 3, H, W), dtype=np.float32)
    np.save(tmp_path / "calib.npy", x)
    out = tmp_path / "tiny.qop.onnx"
    assert (
        bamboo(
            [
                "quantize",
                str(float_model),
                "-o",
                str(out),
                "--calibration",
                str(tmp_path / "calib.npy"),
                "--format",
                "qop",
                "--quiet",
            ]
        )
        == 0
    )
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in ops and "QuantizeLinear" in ops and "Conv" not in ops


def _error(argv, capsys):
    assert bamboo(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bamboo quantize: error: ") and "\n" not in err, err
    return err


def test_errors_are_one_line(float_model, tmp_path, capsys):
    npy = tmp_path / "calib.npy"
    np.save(npy, np.zeros((2, 3, H, W), np.float32))
    base = ["quantize", str(float_model), "--calibration", str(npy)]
    assert "no such file" in _error(
        ["quantize", str(tmp_path / "missing.onnx"), "--calibration", str(npy)], capsys
    )
    assert "--calibration is required" in _error(["quantize", str(float_model)], capsys)
    assert "expected NAME=DxDx" in _error(base + ["--input-shape", "1x3x16x16"], capsys)
    assert "names 'image'" in _error(base + ["--input-shape", "image=1x3x16x16"], capsys)
    assert "dimension 2 is 16" in _error(base + ["--input-shape", "input=1x3x8x16"], capsys)
    assert "must be non-zero" in _error(
        ["quantize", str(float_model), "--calibration", str(tmp_path), "--std", "0.2", "0"], capsys
    )
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 8, 8), np.float32))
    assert "does not match" in _error(
        ["quantize", str(float_model), "--calibration", str(tmp_path / "wrong.npy")], capsys
    )
    assert "no images" in _error(
        ["quantize", str(float_model), "--calibration", str(tmp_path)], capsys
    )
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    assert "not a readable ONNX model" in _error(
        ["quantize", str(tmp_path / "junk.onnx"), "--calibration", str(npy)], capsys
    )
    out = tmp_path / "q.onnx"
    assert bamboo(base + ["-o", str(out), "--quiet"]) == 0
    assert "already quantized" in _error(["quantize", str(out), "--calibration", str(npy)], capsys)


def test_dynamic_spatial_dimension_names_the_flag(tmp_path, capsys):
    model = _float_model(tmp_path / "dyn.onnx", height="height")
    npy = tmp_path / "calib.npy"
    np.save(npy, np.zeros((2, 3, H, W), np.float32))
    err = _error(["quantize", str(model), "--calibration", str(npy)], capsys)
    assert "dynamic dimension 'height'" in err and "--input-shape input=" in err
    out = tmp_path / "pinned.onnx"
    assert (
        bamboo(
            [
                "quantize",
                str(model),
                "-o",
                str(out),
                "--calibration",
                str(npy),
                "--input-shape",
                f"input=1x3x{H}x{W}",
                "--quiet",
            ]
        )
        == 0
    )
