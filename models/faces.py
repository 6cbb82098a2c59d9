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

__all__ = ["FACE_THRESHOLD", "HEIGHT", "LFW_SIZE", "WIDTH", "build_float", "build_quantized",
           "is_face", "lfw_accuracy", "lfw_inputs", "source_model"]

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
        big = skimage.transform.resize(images[i], (LFW_SIZE, LFW_SIZE), order=1,
                                       anti_aliasing=False)
        x[k, :, top:top + LFW_SIZE, left:left + LFW_SIZE] = big
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
    import onnxruntime as ort
    from bamboo.arch import preset
    from bamboo.compiler.backend import compile_artifact
    from bamboo.compiler.cli_inspect import compile_model
    from bamboo.runtime.session import Session

    def session(path):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    x, labels = lfw_inputs(indices)
    qpath = build_quantized()
    fsess, qsess = session(build_float()), session(qpath)
    blob = compile_artifact(compile_model(qpath), preset(config))
    hits = {"float": 0, "onnxruntime-int8": 0, "bamboo-isa": 0}
    exact = 0
    with Session(blob, backend="isa") as sess:
        for k in range(len(x)):
            feed = {"input": x[k:k + 1]}
            want = qsess.run(None, feed)
            got = sess.run(None, feed)
            exact += all(np.array_equal(g.view(np.uint32), w.view(np.uint32))
                         for g, w in zip(got, want))
            for key, outputs in (("float", fsess.run(None, feed)), ("onnxruntime-int8", want),
                                 ("bamboo-isa", got)):
                hits[key] += is_face(outputs[0]) == bool(labels[k])
            if out is not None:
                print(f"\r  {k + 1}/{len(x)}", end="", file=out, flush=True)
    if out is not None:
        print(file=out)
    result = {key: value / len(x) for key, value in hits.items()}
    result.update(images=len(x), bit_exact=exact)
    return result
