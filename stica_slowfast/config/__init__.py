"""Configuration: PySlowFast-named defaults, the STICA.* extension, strict loading and validation."""

from .defaults import _C
from .stica import add_stica_config


def get_cfg():
    """A fresh copy of the full default config (PySlowFast keys + ``STICA.*``)."""
    cfg = _C.clone()
    add_stica_config(cfg)
    return cfg
