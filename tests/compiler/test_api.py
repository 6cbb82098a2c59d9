"""The public Python API at the package roots (docs/api.md): the same results as the CLI,
and the artifact runs bit-exact against onnxruntime."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
import bamboo.compiler  # noqa: E402
from bamboo.arch import PRESETS, ConfigError  # noqa: E402
from bamboo.compiler.reference import reference_session  # noqa: E402
from test_frontend import convnet, qdq  # noqa: E402

from bamboo.cli import build_parser  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "convnet.onnx"
    onnx.save(qdq(convnet(), (1, 3, 16, 16), "convnet"), str(path))
    return path


def test_inspect_is_what_the_cli_prints(model, capsys):
    graph = bamboo.compiler.inspect(model)
    assert bamboo.compiler.inspect.summary(graph)["nodes"] == len(graph.nodes)
    args = build_parser().parse_args(["inspect", str(model)])
    args.func(args)
    assert capsys.readouterr().out == bamboo.compiler.inspect.render(graph, str(model)) + "\n"


def test_compile_is_what_the_cli_writes(model, tmp_path):
    out = tmp_path / "m.bmb"
    args = build_parser().parse_args(
        ["compile", str(model), "-o", str(out), "--config", "tiny", "--quiet"]
    )
    args.func(args)
    assert bamboo.compiler.compile(model, "tiny") == out.read_bytes()
    assert bamboo.compiler.compile(model, PRESETS["tiny"]) == out.read_bytes()


def test_column_taps_option_in_the_cli_and_the_api(model, tmp_path):
    """On ultra96 the 3-channel stem runs over its kernel columns (a CPU column_taps node);
    ``--no-column-taps`` / ``column_taps=False`` keeps the conv's own shape."""
    from bamboo.arch.artifact import read_artifact

    def ops(blob):
        return {n.op for n in read_artifact(blob).metadata.cpu_nodes.values()}

    out = tmp_path / "m.bmb"
    cli = ["compile", str(model), "-o", str(out), "--quiet", "--no-column-taps"]
    args = build_parser().parse_args(cli)
    args.func(args)
    off = bamboo.compiler.compile(model, column_taps=False)
    assert off == out.read_bytes() and "column_taps" not in ops(off)
    assert "column_taps" in ops(bamboo.compiler.compile(model))


def test_compiled_artifact_runs_bit_exact(model):
    from bamboo.runtime.session import Session

    blob = bamboo.compiler.compile(model, "tiny")
    ref = reference_session(model)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    name = ref.get_inputs()[0].name
    with Session(blob, backend="isa", config=PRESETS["tiny"]) as sess:
        got = sess.run(None, {name: x})
    want = ref.run(None, {name: x})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_compile_refuses_an_unknown_config(model):
    with pytest.raises(ConfigError, match="unknown configuration 'nope'"):
        bamboo.compiler.compile(model, "nope")
