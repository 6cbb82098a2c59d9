"""The real pretrained face detector vendored in ``models/pretrained/ultraface``, quantized.

UltraFace RFB-320 (``ultraface_rfb_320.onnx``, MIT; source and licence in
``models/pretrained/ultraface/``) is a
float opset-9 model whose initializers are also listed in ``graph.input`` (IR v4
style). Before quantizing, those inputs are dropped (onnxruntime treats a listed
initializer as an overridable input: it neither folds nor quantizes it as a
constant weight) and the model is converted to opset 13 (per-channel
QuantizeLinear/DequantizeLinear needs the ``axis`` attribute of opset 13).
Calibration uses the sample photos at 320x240, normalised as ``(x - 127) / 128``.
"""

import hashlib
import pathlib

__all__ = [
    "FACE_THRESHOLD",
    "HEIGHT",
    "IOU_THRESHOLD",
    "LFW_SIZE",
    "WIDTH",
    "build_float",
    "build_quantized",
    "decode",
    "demo_image",
    "detect",
    "iou",
    "is_face",
    "lfw_accuracy",
    "lfw_inputs",
    "nms",
    "priors",
    "source_model",
    "to_input",
]

HEIGHT, WIDTH = 240, 320
FILE = "ultraface_rfb_320.onnx"


def source_model():
    """Path of the original float model, vendored in the repository."""
    return pathlib.Path(__file__).resolve().parent / "pretrained" / "ultraface" / FILE


def _key(path, kind):
    from .zoo import _SOURCES, cache_dir, source_hash

    h = hashlib.sha256(source_hash(*_SOURCES, "faces").encode() + path.read_bytes())
    return cache_dir() / f"ultraface_rfb_320-{HEIGHT}x{WIDTH}-1-{h.hexdigest()[:12]}.{kind}.onnx"


def build_float():
    """The cleaned float model: initializers no longer inputs, opset 13, shapes inferred."""
    import onnx
    from onnx import version_converter

    from .export import _atomic_save

    src = source_model()
    path = _key(src, "float")
    if path.exists():
        return path
    model = onnx.load(str(src))
    inits = {t.name for t in model.graph.initializer}
    for inp in [i for i in model.graph.input if i.name in inits]:
        model.graph.input.remove(inp)
    model = version_converter.convert_version(model, 13)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    _atomic_save(model, path)
    return path


def calibration_images(count=8):
    """Sample photos at 240x320 as float32 NCHW, ``(x - 127) / 128``."""
    from .calibration import photos

    return photos(HEIGHT, WIDTH, count=count, mean=127.0, std=128.0)


def demo_image(path=None):
    """A photo with a face as uint8 240x320x3 RGB: scikit-image's astronaut (public domain),
    its top 4:3 part (the face is near the top), or the image at ``path`` (the largest
    centred 4:3 crop)."""
    import numpy as np

    from .calibration import fit

    if path is None:
        import skimage.data

        img = skimage.data.astronaut()
        return fit(img[: img.shape[1] * HEIGHT // WIDTH], HEIGHT, WIDTH)
    from PIL import Image

    with Image.open(path) as im:
        return fit(np.asarray(im.convert("RGB")), HEIGHT, WIDTH)


def to_input(image):
    """A uint8 HxWx3 RGB image as the detector's input: float32 1x3xHxW, ``(x - 127) / 128``."""
    import numpy as np

    x = (image.astype(np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def build_quantized(format="qdq"):  # noqa: A002
    """UltraFace quantized by onnxruntime (uint8 activations, int8 per-channel weights)."""
    from .quantize import quantize

    src = source_model()
    path = _key(src, format)
    if path.exists():
        return path
    return quantize(build_float(), path, calibration_images(), format)


# Face / non-face on real labelled images: scikit-image's ``lfw_subset`` (100 faces, then
# 100 non-faces cut from the backgrounds of Labeled Faces in the Wild, 25x25 grey), each
# scaled to LFW_SIZE x LFW_SIZE in the middle of a mid-grey 320x240 frame. An image is a
# face when some box scores at least FACE_THRESHOLD.
LFW_SIZE = 120
FACE_THRESHOLD = 0.7


def lfw_inputs(indices=None):
    """Real labelled images as detector inputs.

    Parameters
    ----------
    indices : sequence of int, optional
        Which of the 200 images (0..99 faces, 100..199 non-faces); all by default.

    Returns
    -------
    x : numpy.ndarray
        Float32 (N, 3, 240, 320), normalised as ``(x - 127) / 128``.
    labels : numpy.ndarray
        1 for a face, 0 for a non-face.
    """
    import numpy as np
    import skimage.data
    import skimage.transform

    images = skimage.data.lfw_subset()
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    top, left = (HEIGHT - LFW_SIZE) // 2, (WIDTH - LFW_SIZE) // 2
    x = np.full((len(indices), 3, HEIGHT, WIDTH), 0.5, np.float32)
    for k, i in enumerate(indices):
        big = skimage.transform.resize(
            images[i], (LFW_SIZE, LFW_SIZE), order=1, anti_aliasing=False
        )
        x[k, :, top : top + LFW_SIZE, left : left + LFW_SIZE] = big
    x = (np.rint(x * 255) - 127) / 128
    return x.astype(np.float32), (indices < 100).astype(np.int64)


def is_face(scores):
    """Whether a detector ``scores`` output (1, boxes, 2) holds a face."""
    return bool(scores[0, :, 1].max() >= FACE_THRESHOLD)


def lfw_accuracy(indices=None, config="ultra96", out=None):
    """Face / non-face accuracy on :func:`lfw_inputs`: the float model and the int8
    model on onnxruntime (EXTENDED), and the int8 model compiled for ``config`` on
    ``Session(backend="isa")``, with how many images gave bit-identical outputs.

    Returns
    -------
    dict
        ``images``, ``float``, ``onnxruntime-int8``, ``bamboo-isa`` (accuracies) and
        ``bit_exact`` (images whose every output matched onnxruntime's bit for bit).
    """
    import numpy as np
    from bamboo.arch import preset
    from bamboo.compiler.backend import compile_artifact
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.compiler.reference import reference_session as session
    from bamboo.runtime.session import Session

    x, labels = lfw_inputs(indices)
    qpath = build_quantized()
    fsess, qsess = session(build_float()), session(qpath)
    blob = compile_artifact(compile_model(qpath), preset(config))
    hits = {"float": 0, "onnxruntime-int8": 0, "bamboo-isa": 0}
    exact = 0
    with Session(blob, backend="isa") as sess:
        for k in range(len(x)):
            feed = {"input": x[k : k + 1]}
            want = qsess.run(None, feed)
            got = sess.run(None, feed)
            exact += all(
                np.array_equal(g.view(np.uint32), w.view(np.uint32)) for g, w in zip(got, want)
            )
            for key, outputs in (
                ("float", fsess.run(None, feed)),
                ("onnxruntime-int8", want),
                ("bamboo-isa", got),
            ):
                hits[key] += is_face(outputs[0]) == bool(labels[k])
            if out is not None:
                print(f"\r  {k + 1}/{len(x)}", end="", file=out, flush=True)
    if out is not None:
        print(file=out)
    result = {key: value / len(x) for key, value in hits.items()}
    result.update(images=len(x), bit_exact=exact)
    return result


# Post-processing of the raw head outputs, as the detector's authors decode them (Ref:
# Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB, vision/ssd/config/fd_config.py and
# vision/utils/box_utils.py: generate_priors, convert_locations_to_boxes, hard_nms; MIT).
# The model ends at the softmax of the class logits and the box regressions; the priors,
# the decoding and the non-maximum suppression run on the CPU in numpy.
MIN_BOXES = ((10, 16, 24), (32, 48), (64, 96), (128, 192, 256))
STRIDES = (8, 16, 32, 64)
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2
IOU_THRESHOLD = 0.3


def priors(height=HEIGHT, width=WIDTH):
    """The detector's anchors, ``(4420, 4)`` float32 ``(cx, cy, w, h)`` in 0..1 of the frame,
    in the order of the head outputs: per stride, per feature-map row and column, per size."""
    import math

    import numpy as np

    out = []
    for stride, sizes in zip(STRIDES, MIN_BOXES):
        fh, fw = math.ceil(height / stride), math.ceil(width / stride)
        cy, cx = np.meshgrid((np.arange(fh) + 0.5) / fh, (np.arange(fw) + 0.5) / fw, indexing="ij")
        for_size = [
            np.stack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)], axis=-1)
            for s in sizes
        ]
        out.append(np.stack(for_size, axis=2).reshape(-1, 4))
    return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)


def iou(a, b):
    """Intersection over union of corner-form boxes ``a`` (N, 4) against ``b`` (M, 4): (N, M)."""
    import numpy as np

    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    lt, rb = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)

    def area(x):
        return np.prod(np.clip(x[..., 2:] - x[..., :2], 0, None), axis=-1)

    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def nms(boxes, scores, threshold=IOU_THRESHOLD):
    """Indices of the boxes greedy non-maximum suppression keeps, best score first: a box
    goes when it overlaps a better kept one by more than ``threshold`` IoU."""
    import numpy as np

    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while len(order):
        keep.append(order[0])
        order = order[1:][iou(boxes[order[:1]], boxes[order[1:]])[0] <= threshold]
    return np.asarray(keep, np.int64)


def decode(boxes, anchors=None):
    """Regressions ``(N, 4)`` to corner-form boxes ``(x0, y0, x1, y1)`` in 0..1 of the frame."""
    import numpy as np

    anchors = priors() if anchors is None else anchors
    loc = np.asarray(boxes, np.float64)
    centre = loc[:, :2] * CENTER_VARIANCE * anchors[:, 2:] + anchors[:, :2]
    size = np.exp(loc[:, 2:] * SIZE_VARIANCE) * anchors[:, 2:]
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def detect(outputs, threshold=FACE_THRESHOLD, iou_threshold=IOU_THRESHOLD):
    """Faces in the detector's outputs ``(scores (1, 4420, 2), boxes (1, 4420, 4))``.

    Returns
    -------
    boxes : numpy.ndarray
        ``(K, 4)`` corner-form boxes in pixels of the 320x240 input, best score first,
        after the score threshold and non-maximum suppression.
    scores : numpy.ndarray
        ``(K,)`` their face scores.
    """
    import numpy as np

    scores, regressions = outputs[0][0, :, 1], outputs[1][0]
    hit = np.flatnonzero(scores >= threshold)
    corners = decode(regressions[hit], priors()[hit])
    keep = nms(corners, scores[hit], iou_threshold)
    scale = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float64)
    return corners[keep] * scale, scores[hit][keep].astype(np.float64)
