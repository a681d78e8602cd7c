"""The one error type of configuration problems."""

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config file or override that does not fit the schema (message is a single line)."""
