"""Configuration: PySlowFast-named defaults, the STICA.* extension, strict loading and validation, the
command line."""

from .args import load_config_from_args, parse_args
from .defaults import get_cfg
from .errors import ConfigError
from .loading import closest_key, load_config, load_yaml_with_base, merge_from_file, merge_from_list
from .stica import add_stica_config
from .validation import assert_and_infer_cfg, world_size_from_cfg

__all__ = [
    "ConfigError",
    "add_stica_config",
    "assert_and_infer_cfg",
    "closest_key",
    "get_cfg",
    "load_config",
    "load_config_from_args",
    "load_yaml_with_base",
    "merge_from_file",
    "merge_from_list",
    "parse_args",
    "world_size_from_cfg",
]
