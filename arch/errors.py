"""The exception base every Bamboo package derives its errors from."""

__all__ = ["BambooError", "ConfigError"]


class BambooError(Exception):
    """Base of every error Bamboo raises on purpose."""


class ConfigError(BambooError, ValueError):
    """An accelerator configuration that cannot be built."""
