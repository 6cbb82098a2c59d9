"""Errors raised by the runtime."""

from bamboo.arch.errors import BambooError

__all__ = ["RuntimeBambooError", "QuantizationError"]


class RuntimeBambooError(BambooError):
    """Base of the runtime's errors."""


class QuantizationError(RuntimeBambooError, ValueError):
    """Quantization parameters that a kernel cannot use."""
