"""The Bamboo runtime: integer reference kernels and the inference session.

Runs on the board's ARM cores with numpy alone (PYNQ image: Python 3.10,
numpy 1.x): it imports ``bamboo.arch``, numpy and the standard library, and
finds simulator backends lazily.
"""

from .requant import Requant, requantize

__all__ = ["Requant", "requantize"]
