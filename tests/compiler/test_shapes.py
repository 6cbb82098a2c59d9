"""Input shapes: ``--input-shape``, a symbolic batch pinned to 1, zero-size and huge shapes."""

import subprocess
import sys
import time

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from bamboo.compiler import errors  # noqa: E402
from bamboo.compiler.onnx_import import import_onnx  # noqa: E402
from bamboo.compiler.shapes import MAX_TENSOR_BYTES, parse_input_shapes  # noqa: E402
from test_frontend import ROOT, convnet, qdq  # noqa: E402


def _model(*dims):
    """The quantized convnet with its input's dimensions replaced (str: symbolic, int: value)."""
    m = onnx.ModelProto.FromString(qdq(convnet(), (1, 3, 16, 16), "convnet").SerializeToString())
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, dims):
        if isinstance(v, str):
            d.dim_param = v
        else:
            d.dim_value = v
    return m


def test_parse_input_shapes():
    assert parse_input_shapes(["x=1x3x224x224", "y:0=2X5"]) == {
        "x": (1, 3, 224, 224),
        "y:0": (2, 5),
    }
    assert parse_input_shapes([]) == {}


@pytest.mark.parametrize(
    "spec, words",
    [
        ("x", ["'x'", "NAME=DxDx"]),
        ("x=1x3xax4", ["integers"]),
        ("x=1x0x4x4", ["at least 1"]),
        ("=1x3", ["NAME="]),
    ],
)
def test_parse_input_shapes_errors(spec, words):
    with pytest.raises(errors.CompilerError) as exc:
        parse_input_shapes([spec])
    for w in words:
        assert w in str(exc.value)
    with pytest.raises(errors.CompilerError, match="twice"):
        parse_input_shapes(["x=1", "x=2"])


def test_symbolic_batch_compiles_as_one_and_says_so():
    static = import_onnx(_model())
    g = import_onnx(_model("batch"))
    assert [n.op for n in g.nodes] == [n.op for n in static.nodes]
    assert g.inputs[0].onnx_shape == (1, 3, 16, 16)
    assert len(g.notes) == 1 and "'batch' compiled as 1" in g.notes[0]
    assert not static.notes


def test_dynamic_spatial_dims_need_the_flag():
    with pytest.raises(errors.DynamicShapeError) as exc:
        import_onnx(_model("batch", 3, "height", "width"))
    assert "'height'" in str(exc.value) and "--input-shape x=" in str(exc.value)
    g = import_onnx(_model("batch", 3, "height", "width"), input_shapes={"x": (1, 3, 16, 16)})
    assert g.inputs[0].onnx_shape == (1, 3, 16, 16)
    assert "'height' = 16" in g.notes[0] and "--input-shape" in g.notes[0]


@pytest.mark.parametrize(
    "shapes, words",
    [
        ({"y": (1, 3, 16, 16)}, ["'y'", "not an input", "'x'"]),
        ({"x": (1, 3, 16)}, ["3 dimensions", "declares 4"]),
        ({"x": (1, 4, 16, 16)}, ["dimension 1 is 3"]),
    ],
)
def test_input_shape_must_fit_the_model(shapes, words):
    with pytest.raises(errors.CompilerError) as exc:
        import_onnx(_model("batch"), input_shapes=shapes)
    for w in words:
        assert w in str(exc.value)


def test_zero_size_dimension_has_its_own_message():
    with pytest.raises(errors.DynamicShapeError) as exc:
        import_onnx(_model(1, 3, 0, 16))
    assert "dimension 2 as 0" in str(exc.value) and "empty" in str(exc.value)
    assert "dynamic" not in str(exc.value)


def test_huge_declared_shape_is_refused_early():
    """Issue 14 item 4: 1x3x100000x100000 was 50 GB in inspect and a MemoryError in compile."""
    start = time.process_time()
    with pytest.raises(errors.CompilerError) as exc:
        import_onnx(_model(1, 3, 100000, 100000))
    assert f"{MAX_TENSOR_BYTES:,} bytes" in str(exc.value) and "dram_addr" in str(exc.value)
    assert time.process_time() - start < 30  # bounded: nothing of that size is allocated
    # Below the limit per tensor, but the activations together exceed it.
    with pytest.raises(errors.CompilerError, match="activations exceed"):
        import_onnx(_model(1, 3, 16384, 16384))


def _bamboo(*args):
    return subprocess.run(
        [sys.executable, "-m", "bamboo", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_input_shape(tmp_path):
    path = tmp_path / "dyn.onnx"
    onnx.save(_model("batch", 3, "h", "w"), str(path))
    r = _bamboo("inspect", path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "--input-shape" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _bamboo("inspect", path, "--input-shape", "x=1x3x16x16")
    assert r.returncode == 0, r.stderr
    assert "note: input 'x': dynamic 'batch' = 1, dynamic 'h' = 16" in r.stdout
    out = tmp_path / "dyn.bmb"
    r = _bamboo("compile", path, "--input-shape", "x=1x3x16x16", "-o", out, "--fabric-se")
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and "note: input 'x'" in r.stderr
    r = _bamboo("compile", path, "--input-shape", "x=1x3x16", "-o", out)
    assert r.returncode == 1 and "declares 4" in r.stderr and "Traceback" not in r.stderr


def test_inputs_of_the_pinned_model_run_like_the_static_one():
    from bamboo.arch import preset
    from bamboo.compiler.backend import compile_artifact
    from bamboo.compiler.passes import compile_graph
    from bamboo.runtime.session import Session

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    outs = []
    for m in (_model(), _model("batch")):
        blob = compile_artifact(compile_graph(import_onnx(m)), preset("ultra96"))
        with Session(blob, backend="isa") as s:
            outs.append(s.run(None, {"x": x}))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_negative_dimension_is_invalid():
    with pytest.raises(errors.DynamicShapeError, match="dimension 3 as -4: a negative size"):
        import_onnx(_model(1, 3, 16, -4))
