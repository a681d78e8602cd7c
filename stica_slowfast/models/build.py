"""Build models and backbones by their registered names, with did-you-mean errors."""

import torch
import torch.nn as nn
from fvcore.common.registry import Registry

from stica_slowfast.registry import BACKBONE, MODEL
from stica_slowfast.utils.suggest import closest, did_you_mean

__all__ = ["build_model", "build_backbone", "backbone_name", "PYSLOWFAST_ARCHS", "build_audio_backbone", "uses_channels_last", "to_channels_last"]


def _get(registry: Registry, registry_name: str, key: str, name: str):
    """``registry.get(name)``, or a KeyError naming the config key, the value, the closest
    registered name and all registered names."""
    names = sorted(n for n, _ in registry)
    if name in names:
        return registry.get(name)
    hint = did_you_mean(closest(name, names, cutoff=0.0))
    raise KeyError(f"{key} {name!r} is not in the {registry_name} registry{hint} Registered: {names}")


def build_model(cfg) -> nn.Module:
    """The model named by ``cfg.MODEL.MODEL_NAME`` in the ``MODEL`` registry, built as ``cls(cfg)``.

    The model stays on the CPU; the engine places it on its device.

    Raises:
        KeyError: if the name is not registered (the message names the key and the closest name).
    """
    return _get(MODEL, "MODEL", "MODEL.MODEL_NAME", cfg.MODEL.MODEL_NAME)(cfg)


#: PySlowFast's ``MODEL.ARCH`` names (its ``SINGLE_PATHWAY_ARCH`` and ``MULTI_PATHWAY_ARCH``).
PYSLOWFAST_ARCHS = ("2d", "c2d", "i3d", "slow", "x3d", "mvit", "maskmvit", "slowfast")


def backbone_name(cfg) -> str:
    """Our ``BACKBONE`` name for ``cfg.MODEL.ARCH``: itself, or for PySlowFast's ``slow`` with
    ``RESNET.DEPTH`` 50 (PySlowFast's Slow-R50; depth 50 when the config has no ``RESNET``) the same
    network here, ``slow_r50``.

    Raises:
        KeyError: another of PySlowFast's networks, which this package does not build (one line
            naming our choices).
    """
    arch = cfg.MODEL.ARCH
    depth = cfg.RESNET.DEPTH if "RESNET" in cfg and "DEPTH" in cfg.RESNET else 50
    if arch == "slow" and depth == 50:
        return "slow_r50"
    if arch in PYSLOWFAST_ARCHS and arch not in {n for n, _ in BACKBONE}:
        what = f"{arch!r} with RESNET.DEPTH {depth}" if arch == "slow" else repr(arch)
        raise KeyError(f"MODEL.ARCH {what} is PySlowFast's own network, which stica_slowfast does not build; "
                       f"its backbones are {sorted(n for n, _ in BACKBONE)} ('slow' with RESNET.DEPTH 50 is "
                       f"slow_r50)")
    return arch


def build_backbone(cfg) -> nn.Module:
    """The video backbone named by ``cfg.MODEL.ARCH`` in the ``BACKBONE`` registry, ``fn(cfg)``
    (PySlowFast's names: :func:`backbone_name`).

    Raises:
        KeyError: if the name is not registered (the message names the key and the closest name).
    """
    return _get(BACKBONE, "BACKBONE", "MODEL.ARCH", backbone_name(cfg))(cfg)


def build_audio_backbone(cfg) -> nn.Module:
    """The audio encoder named by ``cfg.STICA.AUDIO.ARCH`` in the ``BACKBONE`` registry, ``fn(cfg)``.

    Raises:
        KeyError: if the name is not registered (the message names the key and the closest name).
    """
    return _get(BACKBONE, "BACKBONE", "STICA.AUDIO.ARCH", cfg.STICA.AUDIO.ARCH)(cfg)


def uses_channels_last(cfg, device: torch.device) -> bool:
    """Whether ``STICA.MEMORY_FORMAT`` puts the model's convolutions in channels-last layout on
    ``device`` ("auto": on the CPU, and on CUDA with ``TRAIN.MIXED_PRECISION``)."""
    choice = cfg.STICA.MEMORY_FORMAT
    if choice == "auto":
        return device.type == "cpu" or (device.type == "cuda" and bool(cfg.TRAIN.MIXED_PRECISION))
    return choice == "channels_last"


def to_channels_last(model: nn.Module) -> nn.Module:
    """Every ``Conv3d`` weight of ``model`` in ``channels_last_3d`` layout and every ``Conv2d`` weight in
    ``channels_last``, in place; returns ``model``.

    Only the strides change, not the values or the state dict. A convolution with a channels-last
    weight gives a channels-last output, which the BatchNorm, activation and pooling layers after it
    keep, so the whole encoder runs in that layout without its input being converted.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            module.to(memory_format=torch.channels_last_3d)
        elif isinstance(module, nn.Conv2d):
            module.to(memory_format=torch.channels_last)
    return model
