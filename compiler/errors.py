"""Errors the compiler raises on purpose: each names the node and says what to do."""

from bamboo.arch.errors import BambooError

__all__ = [
    "CompilerError",
    "ModelLoadError",
    "NotQuantizedError",
    "UnsupportedOpError",
    "DynamicShapeError",
    "MixedPrecisionError",
    "MissingInitializerError",
    "IRError",
]


class CompilerError(BambooError):
    """Base of the compiler's errors."""


class ModelLoadError(CompilerError):
    """The file is missing, truncated or not a valid ONNX model."""


class NotQuantizedError(CompilerError):
    """The model (or a node of it) computes in float."""


class UnsupportedOpError(CompilerError):
    """An operator, or an attribute of one, that Bamboo cannot lower."""


class DynamicShapeError(CompilerError):
    """A tensor whose shape is not known at compile time."""


class MixedPrecisionError(CompilerError):
    """A tensor quantized to something other than 8-bit codes."""


class MissingInitializerError(CompilerError):
    """A node reads a tensor that nothing produces."""


class IRError(CompilerError):
    """The IR broke an invariant (raised by :func:`bamboo.compiler.ir.verify`)."""
