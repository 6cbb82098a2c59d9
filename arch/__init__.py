"""The hardware/software contract of Bamboo: configuration, ISA, registers, artifacts.

Standard library only; every other Bamboo package imports this one and it
imports nothing of theirs.
"""

from .config import PRESETS, AcceleratorConfig, preset
from .errors import BambooError, ConfigError

__all__ = ["AcceleratorConfig", "BambooError", "ConfigError", "PRESETS", "preset"]
