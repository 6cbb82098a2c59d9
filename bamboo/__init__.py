"""Bamboo: an open INT8 CNN inference accelerator for Zynq UltraScale+.

The distribution maps its folders onto this namespace: ``bamboo.arch`` (the
hardware/software contract), ``bamboo.hw`` (Amaranth generator),
``bamboo.compiler``, ``bamboo.runtime``, ``bamboo.sim`` and ``bamboo.boards``.
This top-level package holds only the version and the command-line entry point.
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("bamboo-npu")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
