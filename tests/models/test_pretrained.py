"""The zoo's real models: the trained digits classifier and the vendored face detector."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="the model zoo needs torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn", reason="the digits data set comes from scikit-learn")

from bamboo.models import digits, faces, quantize  # noqa: E402


@pytest.mark.slow
def test_digits_float_and_int8_accuracy():
    acc = digits.report()
    print(acc)
    assert acc["float"] >= 0.95
    assert abs(acc["onnxruntime-int8"] - acc["float"]) <= 0.02
    assert quantize.float_ops_after_optimization(digits.build_quantized()) == []


def test_digits_dataset_split():
    x_tr, y_tr, x_te, y_te = digits.dataset()
    assert x_tr.shape == (1347, 1, 32, 32) and x_te.shape == (450, 1, 32, 32)
    assert x_tr.dtype == np.float32 and -1.0 <= x_tr.min() and x_tr.max() <= 1.0
    # Stratified: each digit's held-out share is a quarter of its images, give or take one.
    counts = np.bincount(np.concatenate([y_tr, y_te]))
    assert np.all(np.abs(np.bincount(y_te) - counts / 4) <= 1)


@pytest.fixture(scope="module")
def ultraface():
    return faces.build_float(), faces.build_quantized()


def test_ultraface_quantizes_to_integer(ultraface):
    fpath, qpath = ultraface
    fmodel = onnx.load(str(fpath))
    inits = {t.name for t in fmodel.graph.initializer}
    assert [i.name for i in fmodel.graph.input] == ["input"] and not inits & {"input"}
    assert fmodel.opset_import[0].version == 13
    assert quantize.conv_qdq_problems(qpath) == []
    assert quantize.float_ops_after_optimization(qpath) == []


def test_ultraface_int8_agrees_with_float(ultraface):
    x = faces.calibration_images(1)  # the astronaut: one face
    fout, qout = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                  .run(None, {"input": x}) for p in ultraface)
    assert fout[0].shape == qout[0].shape == (1, 4420, 2)
    assert np.corrcoef(fout[0].ravel(), qout[0].ravel())[0, 1] > 0.99
    assert np.corrcoef(fout[1].ravel(), qout[1].ravel())[0, 1] > 0.98
    assert (fout[0][0, :, 1] > 0.7).any() and (qout[0][0, :, 1] > 0.7).any()


def test_ultraface_is_vendored_with_its_licence():
    import hashlib

    src = faces.source_model()
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    note = (src.parent / "README.md").read_text()
    assert digest in note, "the vendored model differs from the one its README describes"
    assert (src.parent / "LICENSE").read_text().startswith("MIT License")


def test_lfw_inputs_are_the_labelled_subset():
    x, labels = faces.lfw_inputs([0, 99, 100, 199])
    assert x.shape == (4, 3, faces.HEIGHT, faces.WIDTH) and x.dtype == np.float32
    assert labels.tolist() == [1, 1, 0, 0]
    # The frame around the scaled image is mid-grey, the image itself is not flat.
    assert np.all(x[:, :, 0, 0] == (128 - 127) / 128)
    assert all(x[k, 0].std() > 0.05 for k in range(4))


def _lfw_check(indices, min_accuracy):
    acc = faces.lfw_accuracy(indices)
    print(acc)
    assert acc["bit_exact"] == acc["images"] == len(indices)
    assert acc["bamboo-isa"] == acc["onnxruntime-int8"]
    assert acc["float"] >= min_accuracy and acc["onnxruntime-int8"] >= min_accuracy


def test_lfw_face_accuracy_subset_on_the_instruction_simulator():
    """Ten faces and ten non-faces: the compiled detector decides as onnxruntime, bit-exact."""
    _lfw_check(list(range(0, 100, 10)) + list(range(105, 200, 10)), 0.85)


@pytest.mark.slow
def test_lfw_face_accuracy_all_200():
    _lfw_check(list(range(200)), 0.9)
