"""The model zoo: named builders, cached float and quantized ONNX files, and their sizes.

``build_float`` exports a randomly initialised network (with realistic BatchNorm
statistics, see :func:`bamboo.models.export.calibrate_batchnorm`); ``build_quantized``
quantizes it with onnxruntime calibrated on scikit-image's sample photos. Files are
cached under ``build/models/<name>-<res>-<width>-<hash>.<kind>.onnx`` where the hash
covers the zoo's source, the parameters and the pinned tool versions, so a change to
any of them rebuilds (``BAMBOO_MODEL_CACHE`` overrides the folder).
"""

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib

from .blocks import BLOCKS

__all__ = [
    "EXTRA",
    "ZOO",
    "ZooModel",
    "build_float",
    "build_quantized",
    "cache_dir",
    "graph_stats",
    "source_hash",
]

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Modules whose source decides the bytes of a built model.
_SOURCES = (
    "layers",
    "mobilenet",
    "nets",
    "efficientnet",
    "export",
    "quantize",
    "calibration",
    "zoo",
    "dense",
    "vision",
    "blocks",
)
_VERSIONED = ("torch", "torchvision", "onnx", "onnxruntime", "numpy", "scikit-image")
CALIBRATION_IMAGES = 8


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A zoo entry.

    Attributes
    ----------
    make : callable
        ``make(width) -> torch.nn.Module``.
    resolution : int
        Nominal input size (square).
    outputs : tuple of str
        Output names.
    multiple : int
        The input size must be a multiple of this (the network's total stride).
    test_resolution, test_width : int, float
        A reduced size for fast tests.
    """

    make: object
    resolution: int
    outputs: tuple = ("output",)
    multiple: int = 1
    test_resolution: int = 32
    test_width: float = 0.25


def _mobilenet(cls_name, **kw):
    def make(width):
        from . import mobilenet

        return getattr(mobilenet, cls_name)(width=width, **kw)

    return make


def _nets(cls_name, **kw):
    def make(width):
        from . import nets

        return getattr(nets, cls_name)(width=width, **kw)

    return make


def _dense(cls_name):
    def make(width):
        from . import dense

        return getattr(dense, cls_name)(width=width)

    return make


def _block(name):
    def make(width):
        from .blocks import make_block

        return make_block(name, width)

    return make


def _efficientnet(variant):
    def make(width):
        from .efficientnet import EfficientNet

        return EfficientNet(variant, width=width)

    return make


ZOO = {
    "mobilenet_v1": ZooModel(_mobilenet("MobileNetV1"), 224),
    "mobilenet_v2": ZooModel(_mobilenet("MobileNetV2"), 224),
    "mobilenet_v3_small": ZooModel(_mobilenet("MobileNetV3", variant="small"), 224),
    "mobilenet_v3_large": ZooModel(_mobilenet("MobileNetV3", variant="large"), 224),
    "shufflenet_v1": ZooModel(_nets("ShuffleNetV1"), 224),
    "shufflenet_v2": ZooModel(_nets("ShuffleNetV2"), 224),
    "squeezenet1_1": ZooModel(_nets("SqueezeNet"), 224),
    "ghostnet": ZooModel(_nets("GhostNet"), 224),
    "efficientnet_b0": ZooModel(_efficientnet("b0"), 224),
    "mcunet": ZooModel(_mobilenet("MCUNet"), 160),
    "tiny_yolov3": ZooModel(_nets("TinyYOLOv3"), 416, ("boxes32", "boxes16"), 32, 64),
    # Nominal B4 input is 380; the zoo's size is the benchmark's 256.
    "efficientnet_b4": ZooModel(_efficientnet("b4"), 256, test_width=0.125),
    # torchvision's dense prediction models (models/dense.py): full width, small tests.
    "lraspp_mobilenet_v3": ZooModel(_dense("LRASPP"), 512, ("out",), 32, 64, 1.0),
    "ssdlite_mobilenet_v3": ZooModel(_dense("SSDLite"), 320, ("boxes", "logits"), 32, 64, 1.0),
}
#: Zoo models the benchmark leaves out (``bench --all``), built the same way.
EXTRA = {
    "deeplabv3_mobilenet_v3": ZooModel(_dense("DeepLabV3"), 512, ("out",), 32, 64, 1.0),
    "tiny_yolov3_darknet": ZooModel(
        _dense("TinyYOLOv3Darknet"), 416, ("boxes32", "boxes16"), 32, 64
    ),
    # One block behind a stem (models/blocks.py), for the RTL: 32x32 in, the block at 16x16.
    **{name: ZooModel(_block(name), 32, test_resolution=32, test_width=1.0) for name in BLOCKS},
}


def cache_dir():
    """Folder of the cached models (``BAMBOO_MODEL_CACHE`` or ``<repo>/build/models``)."""
    return pathlib.Path(os.environ.get("BAMBOO_MODEL_CACHE", ROOT / "build" / "models"))


@functools.lru_cache(maxsize=None)
def _versions():
    return {p: importlib.metadata.version(p) for p in _VERSIONED}


@functools.lru_cache(maxsize=None)
def source_hash(*modules):
    """SHA-256 over the source of ``modules`` (names in this package) and tool versions."""
    h = hashlib.sha256()
    here = pathlib.Path(__file__).resolve().parent
    for m in modules:
        h.update(m.encode() + b"\0" + (here / f"{m}.py").read_bytes())
    h.update(json.dumps(_versions(), sort_keys=True).encode())
    return h.hexdigest()


def _entry(name):
    if name not in ZOO and name not in EXTRA:
        raise ValueError(f"model must be one of {sorted(ZOO | EXTRA)}, not {name!r}")
    return ZOO.get(name) or EXTRA[name]


def _path(name, resolution, width, seed, kind):
    params = json.dumps([name, resolution, width, seed], sort_keys=True)
    h = hashlib.sha256((source_hash(*_SOURCES) + params).encode()).hexdigest()[:12]
    return cache_dir() / f"{name}-{resolution}-{width:g}-{h}.{kind}.onnx"


def _resolve(name, resolution, width):
    entry = _entry(name)
    resolution = entry.resolution if resolution is None else int(resolution)
    if resolution < entry.multiple or resolution % entry.multiple:
        raise ValueError(
            f"{name} resolution must be a positive multiple of {entry.multiple}, not {resolution!r}"
        )
    if not width > 0:
        raise ValueError(f"width must be positive, not {width!r}")
    return entry, resolution, float(width)


def build_float(name, resolution=None, width=1.0, seed=0):
    """The float ONNX model ``name`` at ``resolution`` x ``resolution``, built once.

    Parameters
    ----------
    name : str
        A key of :data:`ZOO`.
    resolution : int, optional
        Square input size; the entry's nominal size by default.
    width : float
        Width multiplier.
    seed : int
        Seed of the random weights.

    Returns
    -------
    pathlib.Path
    """
    entry, resolution, width = _resolve(name, resolution, width)
    path = _path(name, resolution, width, seed, "float")
    if path.exists():
        return path
    import torch

    from .calibration import photos
    from .export import calibrate_batchnorm, export_onnx

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tests build in parallel workers on few cores
    try:
        torch.manual_seed(seed)
        module = entry.make(width)
        calibrate_batchnorm(module, photos(resolution, count=CALIBRATION_IMAGES), seed)
        export_onnx(module, path, (1, 3, resolution, resolution), entry.outputs)
    finally:
        torch.set_num_threads(threads)
    return path


def build_quantized(name, resolution=None, width=1.0, format="qdq", seed=0):  # noqa: A002
    """The quantized model ``name`` (see :func:`build_float`), ``format`` "qdq" or "qoperator".

    Returns
    -------
    pathlib.Path
    """
    from .quantize import FORMATS, quantize

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    entry, resolution, width = _resolve(name, resolution, width)
    path = _path(name, resolution, width, seed, format)
    if path.exists():
        return path
    from .calibration import photos

    float_path = build_float(name, resolution, width, seed)
    return quantize(float_path, path, photos(resolution, count=CALIBRATION_IMAGES), format)


def graph_stats(model):
    """Parameters and multiply-accumulates of a float ONNX model, from its graph.

    MACs count Conv (``out_elements * cin/group * kh * kw``) and Gemm/MatMul
    (``M * N * K``); parameters are the elements of float initializers.

    Parameters
    ----------
    model : onnx.ModelProto or str or pathlib.Path

    Returns
    -------
    dict
        ``{"params": int, "macs": int}``
    """
    import numpy as np
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in list(g.value_info) + list(g.input) + list(g.output)
    }
    shapes.update({t.name: list(t.dims) for t in g.initializer})
    params = sum(
        int(np.prod(t.dims)) for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT
    )
    macs = 0
    for n in g.node:
        if n.op_type == "Conv":
            cout_elems = int(np.prod(shapes[n.output[0]]))
            _, cin_g, kh, kw = shapes[n.input[1]]
            macs += cout_elems * cin_g * kh * kw
        elif n.op_type in ("Gemm", "MatMul"):
            k = shapes[n.input[0]][-1]
            macs += int(np.prod(shapes[n.output[0]])) * k
    return {"params": params, "macs": macs}
