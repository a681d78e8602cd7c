"""Checkpoints of other code bases, recognised by their key names and renamed into ours.

Our Slow-R50 is pytorchvideo's ``create_resnet`` under ``backbone.`` with the classifier at
``head.fc.``. PySlowFast's native ``ResNet`` (``MODEL_NAME ResNet``, ``MODEL.ARCH slow``) holds the same
tensors, in the same order and shapes, under other names; its ρ-SSL model zoo
(``projects/contrastive_ssl``: ``ContrastiveModel``) holds that network under ``backbone.`` (the
momentum copy under ``backbone_hist.``) with its projection MLP and predictors at
``backbone.head.*``::

    PySlowFast ResNet                           ours
    s1.pathway0_stem.conv / .bn             ->  backbone.blocks.0.conv / .norm
    s{k}.pathway0_res{j}.branch1 / _bn      ->  backbone.blocks.{k-1}.res_blocks.{j}.branch1_conv / _norm
    s{k}.pathway0_res{j}.branch2.{a,b,c}    ->  ...branch2.conv_{a,b,c}
    s{k}.pathway0_res{j}.branch2.{a,b,c}_bn ->  ...branch2.norm_{a,b,c}
    head.projection                         ->  head.fc

    ContrastiveModel: backbone.<ResNet trunk> (or backbone_hist.) -> backbone.<ours>; its
    backbone.head.* (projector, predictors), ptr, queue_x, iter and knn_mem.* are not ours: dropped.

:func:`to_our_layout` recognises a state dict's layout and returns it in ours; a layout it does not
recognise is returned as it is (the caller's key checks then name what is missing).
"""

import re
from typing import Any, Dict, List, Mapping, Tuple

__all__ = ["LAYOUT_NAMES", "detect_layout", "to_our_layout"]

#: What :func:`detect_layout` returns, and what each is.
LAYOUT_NAMES = {
    "stica": "this package's layout",
    "pyslowfast_resnet": "PySlowFast's native ResNet (MODEL_NAME ResNet, MODEL.ARCH slow)",
    "pyslowfast_contrastive": "PySlowFast's ContrastiveModel (the rho-SSL model zoo, projects/contrastive_ssl)",
    "pyslowfast_ptvresnet": "PySlowFast's PTVResNet (MODEL_NAME PTVResNet)",
    "unknown": "an unknown layout",
}

_STEM = re.compile(r"^s1\.pathway0_stem\.(conv|bn)\.(.+)$")
_RES = re.compile(r"^s([2-5])\.pathway0_res(\d+)\.(branch1|branch1_bn|branch2\.[abc]|branch2\.[abc]_bn)\.(.+)$")
_RES_NAMES = {"branch1": "branch1_conv", "branch1_bn": "branch1_norm"}
_NATIVE_HEAD = "head.projection."


def detect_layout(state: Mapping[str, Any]) -> str:
    """The layout of a model state dict (a key of :data:`LAYOUT_NAMES`)."""
    keys = list(state)
    if any(k.startswith("backbone.s1.pathway0_stem.") for k in keys):
        return "pyslowfast_contrastive"
    if any(k.startswith("s1.pathway0_stem.") for k in keys):
        return "pyslowfast_resnet"
    if any(k.startswith("model.blocks.") for k in keys):
        return "pyslowfast_ptvresnet"
    if any(k.startswith(("backbone.", "audio_backbone.", "head.", "target.")) for k in keys):
        return "stica"
    return "unknown"


def _native_name(key: str) -> str:
    """Our name (under ``backbone.``) of a PySlowFast ResNet trunk key, or "" when it is none."""
    stem = _STEM.match(key)
    if stem:
        return f"backbone.blocks.0.{'conv' if stem.group(1) == 'conv' else 'norm'}.{stem.group(2)}"
    res = _RES.match(key)
    if res:
        stage, block, part, rest = int(res.group(1)) - 1, res.group(2), res.group(3), res.group(4)
        if part in _RES_NAMES:
            part = _RES_NAMES[part]
        else:  # branch2.a / branch2.a_bn
            letter = part[len("branch2.")]
            part = f"branch2.{'norm' if part.endswith('_bn') else 'conv'}_{letter}"
        return f"backbone.blocks.{stage}.res_blocks.{block}.{part}.{rest}"
    return ""


def _from_native(state: Mapping[str, Any], prefix: str) -> Tuple[Dict[str, Any], List[str]]:
    """``prefix`` + PySlowFast ResNet keys -> ours (trunk, and ``head.projection`` -> ``head.fc``);
    the keys that are neither."""
    ours: Dict[str, Any] = {}
    other: List[str] = []
    for key, value in state.items():
        name = _native_name(key[len(prefix):]) if key.startswith(prefix) else ""
        if not name and prefix == "" and key.startswith(_NATIVE_HEAD):
            name = "head.fc." + key[len(_NATIVE_HEAD):]
        if name:
            ours[name] = value
        else:
            other.append(key)
    return ours, other


def to_our_layout(state: Mapping[str, Any], *, momentum: bool = False) -> Tuple[str, Dict[str, Any], List[str]]:
    """A model state dict in our key names.

    Args:
        state: a checkpoint's model state (a DDP ``module.`` prefix already stripped).
        momentum: for a ContrastiveModel, take the momentum encoder (``backbone_hist.``) instead of the
            online one (``backbone.``).

    Returns:
        ``(layout, state in our names, keys dropped)``: for our own layout, an unknown one or
        PTVResNet (:mod:`stica_slowfast.interop.convert` maps that one) the state as it is and no
        dropped key.
    """
    layout = detect_layout(state)
    if layout == "pyslowfast_resnet":
        ours, dropped = _from_native(state, "")
        return layout, ours, dropped
    if layout == "pyslowfast_contrastive":
        ours, dropped = _from_native(state, "backbone_hist." if momentum else "backbone.")
        return layout, ours, dropped
    return layout, dict(state), []
