"""Models: backbones, heads and methods. Importing this package fills the MODEL and BACKBONE registries."""

from . import audio_backbones, backbones, colour_stats  # noqa: F401  (registration side effects)
from . import classifier, linear_probe  # noqa: F401
from . import ssl  # noqa: F401  (registers RhoSimCLR, RhoMoCo, RhoBYOL, RhoSwAV)
from .build import build_backbone, build_model, to_channels_last, uses_channels_last
from .classifier import VideoClassifier
from .linear_probe import LinearProbe
from .configurable import configurable

__all__ = ["build_model", "build_backbone", "to_channels_last", "uses_channels_last", "configurable", "LinearProbe", "VideoClassifier"]
