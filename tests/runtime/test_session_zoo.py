"""``Session(..., backend="isa")`` on every zoo model and the face detector, bit-exact with
onnxruntime.

Each zoo model at its test size (``ZooModel.test_resolution``/``test_width``), quantized
to QDQ, is compiled for a configuration, run through the session on float inputs (two
real calibration photos, as tests/compiler/test_zoo_exact.py) and compared with
onnxruntime (``ORT_ENABLE_EXTENDED``) on the quantized model as float32 bit patterns,
then run again on the input codes (``raw=True``) and compared as output codes. That
onnxruntime's optimized graph of these files runs integer kernels (what makes it golden)
is checked by tests/compiler/test_zoo_exact.py.

``make test`` runs the whole zoo and the face detector on ``ultra96`` (about 20 s on the
reference machine once the models are built); the ``tiny`` configuration (4x4 array,
many more tiles: about a minute) runs under the ``slow`` marker.
"""

import functools

import numpy as np
import pytest

pytest.importorskip("torch", reason="the model zoo needs torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage", reason="calibration photos come from scikit-image")

import ortutil  # noqa: E402
from bamboo.arch import preset  # noqa: E402
from bamboo.compiler.backend import compile_artifact  # noqa: E402
from bamboo.compiler.cli_inspect import compile_model  # noqa: E402
from bamboo.models import calibration, faces, zoo  # noqa: E402
from bamboo.runtime.quant import quantize  # noqa: E402
from bamboo.runtime.session import Session  # noqa: E402

PHOTOS = 2


@functools.lru_cache(maxsize=None)
def _onnx_path(name):
    if name == "ultraface":
        return faces.build_quantized("qdq")
    e = zoo.ZOO[name]
    return zoo.build_quantized(name, e.test_resolution, e.test_width)


def _images(name):
    if name == "ultraface":
        return faces.calibration_images(PHOTOS)
    return calibration.photos(zoo.ZOO[name].test_resolution, count=PHOTOS)


def _check(name, config, diff_cases):
    path = _onnx_path(name)
    blob = compile_artifact(compile_model(path), preset(config))
    ort = ortutil.session(onnx.load(str(path)))
    images = _images(name)
    with Session(blob, backend="isa") as sess:
        (spec,) = sess.io.inputs
        assert [o.name for o in sess.get_outputs()] == [o.name for o in ort.get_outputs()]
        for k in range(len(images)):
            x = images[k : k + 1]
            want = ort.run(None, {spec.name: x})
            got = sess.run(None, {spec.name: x})
            for g, w, out in zip(got, want, sess.io.outputs):
                assert g.dtype == w.dtype == np.float32 and g.shape == w.shape
                differ = np.count_nonzero(g.view(np.uint32) != w.view(np.uint32))
                assert differ == 0, f"{out.name}: {differ} of {g.size} values differ"
                diff_cases(f"session-zoo:{config}", g.size)
            codes = quantize(x, np.float32(spec.scale), spec.zp, np.dtype(spec.dtype))
            raw = sess.run(None, {spec.name: codes}, raw=True)
            for r, w, out in zip(raw, want, sess.io.outputs):
                want_codes = np.rint(w / np.float32(out.scale)).astype(np.int64) + out.zp
                assert r.dtype == np.dtype(out.dtype)
                assert np.array_equal(r.astype(np.int64), want_codes), out.name
        st = sess.stats()
        assert st["frames"] == 2 * len(images) and st["segments"]


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_session_isa_bit_exact(name, diff_cases):
    _check(name, "ultra96", diff_cases)


def test_face_detector_session_isa_bit_exact(diff_cases):
    _check("ultraface", "ultra96", diff_cases)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_zoo_session_isa_bit_exact_tiny(name, diff_cases):
    _check(name, "tiny", diff_cases)
