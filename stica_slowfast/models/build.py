"""Build models and backbones by their registered names, with did-you-mean errors."""

import torch
import torch.nn as nn
from fvcore.common.registry import Registry

from stica_slowfast.registry import BACKBONE, MODEL
from stica_slowfast.utils.suggest import closest, did_you_mean

__all__ = ["build_model", "build_backbone", "build_audio_backbone", "uses_channels_last", "to_channels_last"]


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


def build_backbone(cfg) -> nn.Module:
    """The video backbone named by ``cfg.MODEL.ARCH`` in the ``BACKBONE`` registry, ``fn(cfg)``.

    Raises:
        KeyError: if the name is not registered (the message names the key and the closest name).
    """
    return _get(BACKBONE, "BACKBONE", "MODEL.ARCH", cfg.MODEL.ARCH)(cfg)


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
