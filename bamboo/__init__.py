"""Bamboo: an open INT8 CNN inference accelerator for Zynq UltraScale+.

The distribution maps its folders onto this namespace: ``bamboo.arch`` (the
hardware/software contract), ``bamboo.hw`` (Amaranth generator),
``bamboo.compiler``, ``bamboo.runtime``, ``bamboo.sim`` and ``bamboo.boards``.
This top-level package holds the version, the command-line entry point and the
tools that join the packages: ``bamboo.demo``, ``bamboo.bench`` and ``bamboo.report``.
"""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

# The whole toolflow (bamboo-npu), or the board runtime wheel (bamboo-runtime,
# packaging/runtime) that ships this file with bamboo.arch, bamboo.runtime and the ISA simulator.
for _dist in ("bamboo-npu", "bamboo-runtime"):
    try:
        __version__ = version(_dist)
        break
    except PackageNotFoundError:
        continue
else:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
