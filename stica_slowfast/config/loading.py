"""Strict config loading: YAML files with ``_BASE_`` inheritance and ``KEY VALUE`` overrides.

fvcore's own merge accepts duplicate YAML keys (the last silently wins) and reports an unknown key as a
bare ``KeyError``. Here every problem is a :class:`ConfigError` whose one-line message names the key,
where it came from, and the closest valid key.
"""

import logging
import os
from ast import literal_eval
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml
from fvcore.common.config import CfgNode

from stica_slowfast.utils.io import PathManager
from stica_slowfast.utils.suggest import closest, did_you_mean
from stica_slowfast.utils.text import decode_text, looks_binary, split_lines, undecodable

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

    Keys of the file override those of its bases, recursively. Every problem (a missing or non-text
    file, a ``_BASE_`` that is not a file name, a loop of ``_BASE_``) is a one-line ConfigError
    naming the file.
    """
    return _load(path, (), None)[0]


def _identity(path: str) -> str:
    """What tells two spellings of one config file apart from two files (a loop from a diamond)."""
    return path if "://" in path else os.path.realpath(path)


def _show_chain(paths: Sequence[str]) -> str:
    """``a.yaml -> b.yaml -> a.yaml``: local paths relative to the first file's directory."""
    if any("://" in p for p in paths):
        return " -> ".join(paths)
    start = os.path.dirname(os.path.abspath(paths[0]))
    return " -> ".join(os.path.relpath(os.path.abspath(p), start) for p in paths)


def _read_text(path: str, included_from: Optional[str]) -> str:
    """The text of a config file, which must exist and be UTF-8 (or UTF-16/32 with a BOM)."""
    try:
        with PathManager.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if included_from is not None:
            raise ConfigError(f"{included_from}: {BASE_KEY} file not found: {path}") from None
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:  # a directory, no permission, ...
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror or err}") from None
    what = looks_binary(data)
    if what is not None:
        raise ConfigError(f"{path}: not a YAML text file: it looks like {what}")
    text, encoding = decode_text(data)
    if undecodable(text, encoding) is not None:
        for n, line in enumerate(split_lines(text), start=1):
            bad = undecodable(line, encoding)
            if bad is not None:
                raise ConfigError(f"{path}:{n}: {bad}; a config file is UTF-8 text")
    return text


def _base_paths(bases: Any, path: str) -> List[str]:
    """The files a ``_BASE_`` value names, relative ones joined to the directory of ``path``."""
    entries = [bases] if isinstance(bases, str) else bases
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names, got "
                          f"{_type_name(bases)} {bases!r}")
    paths = []
    for i, base in enumerate(entries, start=1):
        if not isinstance(base, str) or not base.strip():
            which = f" entry {i} of {len(entries)}" if not isinstance(bases, str) else ""
            raise ConfigError(f"{path}: {BASE_KEY}{which} must be a file name, got {_type_name(base)} "
                              f"{base!r}")
        base = os.path.expanduser(base)  # as fvcore's _BASE_
        if not (os.path.isabs(base) or "://" in base):
            base = os.path.normpath(os.path.join(os.path.dirname(path), base))
        paths.append(base)
    return paths


def _leaf_origins(data: Dict[str, Any], path: str, prefix: str = "") -> Dict[str, str]:
    """``{dotted key: path}`` for every leaf of ``data``."""
    origins = {}
    for name, value in data.items():
        key = prefix + str(name)
        if isinstance(value, dict) and value:
            origins.update(_leaf_origins(value, path, key + "."))
        else:
            origins[key] = path
    return origins


def _load(path: str, chain: Tuple[str, ...], included_from: Optional[str]
          ) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """:func:`load_yaml_with_base` of ``path``, reached through the files of ``chain``, and the file
    each leaf key comes from (so that errors name the file to edit, not the leaf config)."""
    loader = None
    try:
        loader = _UniqueKeyLoader(_read_text(path, included_from))
        loader.name = path
        data = loader.get_single_data() or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}")
    bases = data.pop(BASE_KEY, None)
    origins = _leaf_origins(data, path)
    if bases is None:
        return data, origins
    chain = chain + (path,)
    seen = [_identity(p) for p in chain]
    merged: Dict[str, Any] = {}
    merged_origins: Dict[str, str] = {}
    for base in _base_paths(bases, path):
        if _identity(base) in seen:
            loop = chain[seen.index(_identity(base)):] + (base,)
            raise ConfigError(f"{path}: {BASE_KEY} loop: {_show_chain(loop)}")
        base_data, base_origins = _load(base, chain, path)
        _update_recursive(merged, base_data)
        merged_origins.update(base_origins)
    _update_recursive(merged, data)
    merged_origins.update(origins)
    return merged, merged_origins


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


def merge_dict(cfg: CfgNode, data: Dict[str, Any], source: str,
               origins: Optional[Dict[str, str]] = None) -> None:
    """Merge a nested dict into ``cfg``, refusing unknown keys and wrong types.

    Errors name ``source``, or for a dotted key in ``origins`` the file it came from.
    """
    _merge(cfg, data, cfg, "", source, origins or {})


def _origin(key: str, source: str, origins: Dict[str, str]) -> str:
    """The file that set ``key`` (or the first key under it), else ``source``."""
    if key in origins:
        return origins[key]
    return next((f for k, f in origins.items() if k.startswith(key + ".")), source)


def _merge(node: CfgNode, data: Dict[str, Any], root: CfgNode, prefix: str, source: str,
           origins: Dict[str, str]) -> None:
    for name, value in data.items():
        key = prefix + str(name)
        if name not in node:
            raise _unknown_key(key, root, _origin(key, source, origins))
        current = node[name]
        if isinstance(current, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key} is a group of keys, got {value!r} "
                                  f"({_origin(key, source, origins)})")
            _merge(current, value, root, key + ".", source, origins)
        else:
            node[name] = _coerce(value, current, key, _origin(key, source, origins))


def merge_from_file(cfg: CfgNode, path: str) -> None:
    """Merge a YAML file (with its ``_BASE_`` chain) into ``cfg``; errors name the file of the key."""
    data, origins = _load(path, (), None)
    merge_dict(cfg, data, source=path, origins=origins)


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
