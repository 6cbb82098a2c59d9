"""Simulation: the instruction-level simulator and the cocotb RTL harness."""

__all__ = []
