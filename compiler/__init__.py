"""Lowers quantized ONNX graphs into Bamboo programs. Imports ``bamboo.arch`` and
``bamboo.runtime``; only the front end imports ``onnx``.

The public API (docs/api.md): :func:`compile` (a model to ``.bmb`` bytes) and
:func:`inspect` (a model to its partitioned IR graph; the module of that name also holds
``render``, ``summary`` and ``macs``).
"""

from . import inspect
from .api import compile

__all__ = ["compile", "inspect"]
