"""The zoo's real models: the trained digits classifier and the vendored face detector."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="the model zoo needs torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn", reason="the digits data set comes from scikit-learn")

from bamboo.compiler.reference import reference_session  # noqa: E402
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
    fout, qout = (reference_session(p).run(None, {"input": x}) for p in ultraface)
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


def test_ultraface_priors_follow_the_head_layout(ultraface):
    """One prior per head output, in the heads' order: per stride, row, column, size."""
    shape = onnx.load(str(ultraface[0])).graph.output[1].type.tensor_type.shape
    p = faces.priors()
    assert p.shape == (shape.dim[1].dim_value, 4) == (4420, 4)
    # Stride 8 (40x30 cells, sizes 10/16/24): cell (row 2, column 5), size 16.
    np.testing.assert_allclose(
        p[(2 * 40 + 5) * 3 + 1], [5.5 / 40, 2.5 / 30, 16 / 320, 16 / 240], rtol=1e-6
    )
    # The last prior: stride 64 (5x4 cells), size 256, its height clipped to the frame.
    np.testing.assert_allclose(p[-1], [4.5 / 5, 3.5 / 4, 256 / 320, 1.0], rtol=1e-6)
    assert p.min() >= 0 and p.max() <= 1


def test_ultraface_decode_inverts_the_encoding():
    """Regressions made by the authors' encoding (centre offset over 0.1 x prior size, log
    size ratio over 0.2) decode back to the boxes they encode."""
    rng = np.random.default_rng(1)
    anchors = faces.priors()[rng.choice(4420, 50, replace=False)].astype(np.float64)
    cx = anchors[:, 0] + rng.uniform(-0.05, 0.05, 50)
    cy = anchors[:, 1] + rng.uniform(-0.05, 0.05, 50)
    w, h = anchors[:, 2] * rng.uniform(0.5, 2, 50), anchors[:, 3] * rng.uniform(0.5, 2, 50)
    loc = np.stack(
        [
            (cx - anchors[:, 0]) / anchors[:, 2] / 0.1,
            (cy - anchors[:, 1]) / anchors[:, 3] / 0.1,
            np.log(w / anchors[:, 2]) / 0.2,
            np.log(h / anchors[:, 3]) / 0.2,
        ],
        axis=1,
    )
    np.testing.assert_allclose(
        faces.decode(loc, anchors),
        np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1),
        atol=1e-6,
    )


def _nms_reference(boxes, scores, threshold):
    """Greedy NMS one box at a time with a scalar IoU, as the textbook writes it."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    keep = []
    for i in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        if all(iou(boxes[i], boxes[j]) <= threshold for j in keep):
            keep.append(i)
    return keep


def test_ultraface_nms_against_a_scalar_reference():
    assert faces.iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]).tolist() == [
        [1 / 7, 1.0, 0.0]
    ]
    rng = np.random.default_rng(2)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        xy = rng.uniform(0, 1, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.4, (n, 2))], axis=1)
        scores = rng.uniform(0.7, 1.0, n)
        for threshold in (0.1, 0.3, 0.6):
            assert faces.nms(boxes, scores, threshold).tolist() == _nms_reference(
                boxes, scores, threshold
            )
