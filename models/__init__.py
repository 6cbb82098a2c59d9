"""The model zoo: builders of lightweight CNNs, exported to ONNX and quantized with
onnxruntime. Needs torch (optional extra); nothing in hw/compiler/runtime imports it."""

__all__ = []
