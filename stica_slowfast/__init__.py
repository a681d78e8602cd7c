"""stica_slowfast: self-supervised video representation learning as a PySlowFast plugin."""

__version__ = "0.1.0"
