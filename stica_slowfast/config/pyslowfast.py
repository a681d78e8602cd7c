"""PySlowFast's config keys in ours: a PySlowFast YAML loads into our config when PySlowFast is importable."""

from typing import Any, List, Optional

from fvcore.common.config import CfgNode

from stica_slowfast.utils import optional

__all__ = ["pyslowfast_default_cfg", "add_pyslowfast_keys"]


def pyslowfast_default_cfg() -> Optional[CfgNode]:
    """PySlowFast's ``slowfast.config.defaults.get_cfg()``, or None when it is not importable.

    Needs only ``slowfast.config`` (not detectron2 or pytorchvideo).
    """
    defaults = optional.import_optional("slowfast.config.defaults")
    return None if defaults is None else defaults.get_cfg()


def _add_missing(dst: CfgNode, src: CfgNode, prefix: str, added: List[str]) -> None:
    for name, value in src.items():
        if name not in dst:
            dst[name] = value
            added.extend(_leaves(value, prefix + name))
        elif isinstance(value, CfgNode) and isinstance(dst[name], CfgNode):
            _add_missing(dst[name], value, prefix + name + ".", added)


def _leaves(value: Any, key: str) -> List[str]:
    if not isinstance(value, CfgNode):
        return [key]
    return [leaf for name, child in value.items() for leaf in _leaves(child, f"{key}.{name}")]


def add_pyslowfast_keys(cfg: CfgNode) -> List[str]:
    """Add every key of PySlowFast's default config that ``cfg`` lacks, with PySlowFast's default, in
    place. Keys ``cfg`` has keep their values (so our defaults stay ours).

    Returns:
        The dotted leaf keys added; empty when PySlowFast's config is not importable.
    """
    reference = pyslowfast_default_cfg()
    added: List[str] = []
    if reference is not None:
        _add_missing(cfg, reference, "", added)
    return added
