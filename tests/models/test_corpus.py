"""The corpus of real exports (``bamboo.models.corpus``), each file exactly as exported.

Every entry at its small resolution (``make test``; the nominal resolution under
``slow``): the quantized file keeps the exporter's dynamic batch axis, ``bamboo inspect``
and ``bamboo compile`` take it as it is (exit code 0), and the artifact on
``Session(backend="isa")`` is bit-exact with onnxruntime (CPU, ``ORT_ENABLE_EXTENDED``,
one thread) on seeded random inputs, compared as float32 bit patterns. For int8-activation
QDQ files the reference is onnxruntime on the file's uint8 twin (``uint8_twin``: the same
integer model; onnxruntime runs the int8 file partly in float).

Building the corpus from an empty cache (export, pre-processing, calibration) is most of
the time; the files are cached under ``build/models/corpus``.
"""

import numpy as np
import pytest

pytest.importorskip("torch", reason="the corpus is exported from torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage", reason="calibration photos come from scikit-image")

import ortutil  # noqa: E402
from bamboo.models import corpus  # noqa: E402
from bamboo.models.quantize import uint8_twin  # noqa: E402
from bamboo.runtime.session import Session  # noqa: E402

from bamboo.cli import main as bamboo  # noqa: E402

INPUTS = 2
# Entries Bamboo still refuses (issue 13, open), each with the one line it must print: the
# test fails when the refusal changes, and when the model starts working (then drop it here).
REFUSED = {}
NAMES = sorted(corpus.CORPUS)


def _check(name, full, tmp_path, capsys, diff_cases):
    path = corpus.build(name, full)
    model = onnx.load(str(path))
    (inp,) = [
        i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    ]
    batch = inp.type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value"), (
        f"{path}: the batch axis is not dynamic as exported"
    )

    if name in REFUSED:
        assert bamboo(["inspect", str(path)]) == 1
        err = capsys.readouterr().err
        assert REFUSED[name] in err and len(err.strip().splitlines()) == 1, err
        return
    assert bamboo(["inspect", str(path)]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "bytes crossing PS/PL" in text, text

    artifact = tmp_path / f"{name}.bmb"
    assert (
        bamboo(["compile", str(path), "-o", str(artifact), "--config", "ultra96", "--quiet"]) == 0
    ), capsys.readouterr().err

    # int8-activation QDQ: onnxruntime runs part of the graph in float; its integer result
    # is the uint8 twin's (tests/models/test_quantize.py). A no-op for the other entries.
    ref = ortutil.session(uint8_twin(model))
    with Session(str(artifact), backend="isa") as sess:
        (spec,) = sess.io.inputs
        assert [o.name for o in sess.get_outputs()] == [o.name for o in ref.get_outputs()]
        for x in corpus.random_inputs(name, INPUTS, full):
            want = ref.run(None, {inp.name: x})
            got = sess.run(None, {spec.name: x})
            for g, w, out in zip(got, want, sess.io.outputs):
                assert g.dtype == w.dtype == np.float32 and g.shape == w.shape, out.name
                differ = np.count_nonzero(g.view(np.uint32) != w.view(np.uint32))
                assert differ == 0, f"{out.name}: {differ} of {g.size} values differ"
                diff_cases("corpus", g.size)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_entry_inspects_compiles_and_is_bit_exact(name, tmp_path, capsys, diff_cases):
    _check(name, False, tmp_path, capsys, diff_cases)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_corpus_entry_full_resolution(name, tmp_path, capsys, diff_cases):
    _check(name, True, tmp_path, capsys, diff_cases)


def test_corpus_covers_every_axis():
    """Each exporter, pre-processing choice, format and activation type appears, and
    every format and activation type under both exporters."""
    entries = corpus.CORPUS.values()
    seen = {(e.exporter, e.format) for e in entries} | {(e.exporter, e.activation) for e in entries}
    for exporter in ("legacy", "dynamo"):
        for value in ("qdq", "qoperator", "uint8", "int8"):
            assert (exporter, value) in seen, (exporter, value)
    assert {e.pre_process for e in entries} == {True, False}
    assert {e.library for e in entries} == {"torchvision", "timm", "detector"}


def test_list_names_every_entry(capsys):
    assert corpus.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(corpus.CORPUS)
    assert corpus.main(["no_such_model"]) == 2


def test_table_row_and_readme_section(tmp_path):
    import io

    lines = corpus.table(["tv_mobilenet_v2"], out=io.StringIO())
    assert len(lines) == 3 and lines[2].startswith("| tv_mobilenet_v2 | torchvision mobilenet_v2 |")
    assert lines[2].count(" | ") == lines[0].count(" | ") == 9
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{corpus.README_BEGIN}\nold\n{corpus.README_END}\nrest\n")
    corpus.write_readme(readme, lines, "python -m bamboo.models.corpus --table")
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "Generated by `python -m bamboo.models.corpus --table`." in text
    assert lines[2] in text
