"""Lowers quantized ONNX graphs into Bamboo programs. Imports ``bamboo.arch`` and
``bamboo.runtime``; only the front end imports ``onnx``."""

__all__ = []
