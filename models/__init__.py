"""The model zoo: builders of lightweight CNNs, exported to ONNX and quantized with
onnxruntime. Needs torch (optional extra); nothing in hw/compiler/runtime imports it.

- :mod:`bamboo.models.zoo`: ``ZOO``, ``build_float``, ``build_quantized`` (cached
  under ``build/models``), ``graph_stats`` (parameters, MACs).
- :mod:`bamboo.models.digits`: a trained MobileNetV2-style digits classifier;
  ``python -m bamboo.models.digits`` reports its held-out accuracy.
- :mod:`bamboo.models.faces`: the vendored pretrained UltraFace detector, quantized.
- ``python -m bamboo.models NAME``: build a model and print its path.

This package imports nothing heavy: torch is loaded only by the modules that need it.
"""

__all__ = []
