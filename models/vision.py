"""Importing torchvision and timm next to the CPU build of torch.

torchvision 0.28 is published only as a CUDA build (installed with ``--no-deps`` by
``make setup``): its compiled operator library cannot load without the CUDA runtime,
and then ``import torchvision`` fails on ``torch.library.register_fake("torchvision::nms")``
for an operator nobody declared. :func:`torchvision` declares the schemas of the two
operators torchvision registers fakes for unconditionally (``nms``, ``qnms``), only when
its own library did not load, and imports it. The models need none of its compiled ops.
timm imports torchvision, so :func:`timm` goes through the same door.
"""

import functools
import importlib.util
import pathlib

__all__ = ["timm", "torchvision"]

# The schemas torchvision's C++ library defines (torchvision/csrc/ops/nms.cpp).
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_LIBRARIES = []  # torch.library.Library objects must outlive the import


def _declare_ops():
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise ModuleNotFoundError("torchvision is not installed: run `make setup`")
    lib = pathlib.Path(spec.origin).parent / "_C.so"
    try:
        torch.ops.load_library(str(lib))
        return  # the real operators are there
    except (ImportError, OSError):
        pass
    if hasattr(torch.ops.torchvision, "nms"):
        return
    library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        library.define(schema)
    _LIBRARIES.append(library)


@functools.lru_cache(maxsize=None)
def torchvision():
    """``import torchvision``, with its operator schemas declared if its library cannot load."""
    _declare_ops()
    import torchvision as tv

    return tv


@functools.lru_cache(maxsize=None)
def timm():
    """``import timm`` (after :func:`torchvision`)."""
    torchvision()
    import timm as tm

    return tm
