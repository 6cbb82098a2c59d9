"""Amaranth HDL generator of the Bamboo accelerator. Imports ``bamboo.arch`` only."""

__all__ = []
