"""Strict config loading: YAML files with ``_BASE_`` inheritance and ``KEY VALUE`` overrides.

fvcore's own merge accepts duplicate YAML keys (the last silently wins) and reports an unknown key as a
bare ``KeyError``. Here every problem is a :class:`ConfigError` whose one-line message names the key,
where it came from, and the closest valid key.
"""

import logging
import os
from ast import literal_eval
from typing import Any, Dict, Iterable, List, Optional, Sequence

import yaml
from fvcore.common.config import CfgNode

from stica_slowfast.utils.io import PathManager
from stica_slowfast.utils.suggest import closest, did_you_mean

from .defaults import get_cfg
from .errors import ConfigError
from .pyslowfast import add_pyslowfast_keys
from .validation import assert_and_infer_cfg

BASE_KEY = "_BASE_"

logger = logging.getLogger(__name__)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"{self.name}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first at line {seen[key] + 1}); remove one of them"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml_with_base(path: str) -> Dict[str, Any]:
    """Read a YAML config, resolving ``_BASE_`` (a path relative to the file, or a list of them).

    Keys of the file override those of its bases, recursively.
    """
    with PathManager.open(path, "r") as f:
        loader = _UniqueKeyLoader(f.read())
    loader.name = path
    try:
        data = loader.get_single_data() or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    merged: Dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        if not (base.startswith("/") or "://" in base):
            base = os.path.join(os.path.dirname(path), base)
        _update_recursive(merged, load_yaml_with_base(base))
    _update_recursive(merged, data)
    return merged


def _update_recursive(dst: Dict[str, Any], src: Dict[str, Any]) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _update_recursive(dst[key], value)
        else:
            dst[key] = value


def all_keys(cfg: CfgNode, prefix: str = "") -> List[str]:
    """Every leaf key of ``cfg`` as a dotted name (``SOLVER.BASE_LR``)."""
    keys = []
    for name, value in cfg.items():
        full = prefix + name
        keys.extend(all_keys(value, full + ".") if isinstance(value, CfgNode) else [full])
    return keys


def closest_key(key: str, cfg: CfgNode) -> Optional[str]:
    """The valid dotted key most similar to ``key`` (None when nothing is close)."""
    candidates = all_keys(cfg)
    match = closest(key, candidates, cutoff=0.6)
    if match is None:  # compare the last component only: "TRAIN.BATCHSIZE" vs "TEST.BATCH_SIZE"
        leaves = {c.rsplit(".", 1)[-1]: c for c in candidates}
        leaf = closest(key.rsplit(".", 1)[-1], leaves, cutoff=0.75)
        match = leaves[leaf] if leaf is not None else None
    return match


def _unknown_key(key: str, root: CfgNode, source: str) -> ConfigError:
    hint = did_you_mean(closest_key(key, root), quote=False)
    return ConfigError(f"unknown config key {key} ({source}){hint}")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    """Return ``value`` converted to the type of ``default`` or raise a ConfigError."""
    if isinstance(value, str) and not isinstance(default, str):
        # PyYAML reads `1e-4` (no dot) or `("backbone.",)` as strings; yacs, and so PySlowFast, passes
        # every string through literal_eval, so its YAMLs rely on it.
        value = _parse_value(value)
    if default is None or value is None:  # None-valued keys take any type; any key may be unset
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, int):
        return float(value)
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    elif isinstance(value, type(default)):
        return value
    raise ConfigError(
        f"config key {key} expects {_type_name(default)} (default {default!r}), "
        f"got {_type_name(value)} {value!r} ({source})"
    )


def merge_dict(cfg: CfgNode, data: Dict[str, Any], source: str) -> None:
    """Merge a nested dict into ``cfg``, refusing unknown keys and wrong types."""
    _merge(cfg, data, cfg, "", source)


def _merge(node: CfgNode, data: Dict[str, Any], root: CfgNode, prefix: str, source: str) -> None:
    for name, value in data.items():
        key = prefix + str(name)
        if name not in node:
            raise _unknown_key(key, root, source)
        current = node[name]
        if isinstance(current, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key} is a group of keys, got {value!r} ({source})")
            _merge(current, value, root, key + ".", source)
        else:
            node[name] = _coerce(value, current, key, source)


def merge_from_file(cfg: CfgNode, path: str) -> None:
    """Merge a YAML file (with its ``_BASE_`` chain) into ``cfg``."""
    merge_dict(cfg, load_yaml_with_base(path), source=path)


def _parse_value(text: Any) -> Any:
    """Command-line values are Python literals when they parse as one (as in fvcore), else strings."""
    if not isinstance(text, str):
        return text
    try:
        return literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def merge_from_list(cfg: CfgNode, opts: Sequence[str], source: str = "command line") -> None:
    """Merge ``KEY VALUE KEY VALUE ...`` overrides (``SOLVER.BASE_LR 0.1``) into ``cfg``."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(
            f"overrides must be KEY VALUE pairs, got an odd number of items: {' '.join(opts)}"
        )
    for key, text in zip(opts[0::2], opts[1::2]):
        *parents, name = key.split(".")
        nested: Dict[str, Any] = {}
        leaf = nested
        for part in parents:
            leaf = leaf.setdefault(part, {})
        leaf[name] = _parse_value(text)
        merge_dict(cfg, nested, source=source)


def load_config(
    cfg_files: Iterable[str] = (),
    opts: Sequence[str] = (),
    base: Optional[CfgNode] = None,
) -> CfgNode:
    """Build a validated, frozen config: defaults <- YAML files (in order) <- overrides.

    Without ``base``, the defaults are :func:`stica_slowfast.config.get_cfg` plus, when PySlowFast's
    config is importable, the keys of PySlowFast's ``get_cfg()`` that ours lacks (with PySlowFast's
    defaults; :func:`.pyslowfast.add_pyslowfast_keys`). So a PySlowFast YAML loads
    there; its PySlowFast-only keys (``RESNET.*``, ``BN.USE_PRECISE_STATS``...) have no effect on this
    package and those set to a non-default value are named in a warning. Without PySlowFast they are
    unknown keys, as any other.

    Args:
        cfg_files: YAML files, merged in order.
        opts: ``KEY VALUE`` override pairs.
        base: config to start from (taken as it is, without PySlowFast's keys).
    Returns:
        The frozen config after :func:`assert_and_infer_cfg`.
    """
    foreign: List[str] = []
    if base is not None:
        cfg = base.clone()
    else:
        cfg = get_cfg()
        foreign = add_pyslowfast_keys(cfg)
    reference = cfg.clone() if foreign else None
    for path in cfg_files:
        merge_from_file(cfg, path)
    merge_from_list(cfg, opts)
    if reference is not None:
        changed = [key for key in foreign if _get_key(cfg, key) != _get_key(reference, key)]
        if changed:
            logger.warning("PySlowFast-only config keys have no effect in stica_slowfast: %s",
                           ", ".join(changed))
    assert_and_infer_cfg(cfg)
    cfg.freeze()
    return cfg


def _get_key(cfg: CfgNode, key: str) -> Any:
    for part in key.split("."):
        cfg = cfg[part]
    return cfg
