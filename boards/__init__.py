"""Board platforms and the Vivado flow behind ``make bitstream``."""

__all__ = []
