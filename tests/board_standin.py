"""The accelerator top the board-flow tests build: ``hw.top.Accelerator``.

(A stand-in with the same ports served while hw/top.py did not exist; a broken
``hw.top`` now fails these tests instead of being replaced silently.)
"""

from bamboo.hw.top import Accelerator


def accelerator_factory():
    """The accelerator class the board flow elaborates."""
    return Accelerator
