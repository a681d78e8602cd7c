"""Configuration: PySlowFast-named defaults, the STICA.* extension, strict loading and validation."""

from fvcore.common.config import CfgNode

from .defaults import _C
from .loading import (
    ConfigError,
    closest_key,
    load_config,
    load_yaml_with_base,
    merge_from_file,
    merge_from_list,
)
from .stica import add_stica_config
from .validation import assert_and_infer_cfg, world_size_from_cfg


def get_cfg() -> CfgNode:
    """A fresh copy of the full default config (PySlowFast keys + ``STICA.*``)."""
    cfg = _C.clone()
    add_stica_config(cfg)
    return cfg


__all__ = [
    "ConfigError",
    "add_stica_config",
    "assert_and_infer_cfg",
    "closest_key",
    "get_cfg",
    "load_config",
    "load_yaml_with_base",
    "merge_from_file",
    "merge_from_list",
    "world_size_from_cfg",
]
