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

__all__ = ["HEIGHT", "WIDTH", "build_float", "build_quantized", "source_model"]

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
