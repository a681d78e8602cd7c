"""Audio backbone: a 2-D ResNet-9 over the log spectrogram, full size and tiny.

The audio encoder of STiCA (Patrick et al., "Space-Time Crop & Attend: Improving Cross-modal Video
Representation Learning", arXiv 2103.10211), taken from GDT (Patrick et al., arXiv 2003.04298) and
XDC (Alwassel et al., arXiv 1911.12667): torchvision's ResNet layout with one ``BasicBlock`` per stage
and a one-channel stem, i.e. 1 stem conv + 4 x 2 block convs = 9 conv layers.

Registered in ``BACKBONE`` (``fn(cfg)``; they read nothing from cfg, the input is one channel)::

    name                 widths              out_dim  params   GMACs
    resnet9_audio        64/128/256/512      512      4.90 M   1.81
    resnet9_audio_tiny   16/32/64/128        128      0.31 M   0.13

GMACs: fvcore multiply-adds for a (2, 1, 257, 200) batch (two 257-bin x 200-frame spectrograms).

Time is the **last** axis everywhere: input ``(B, 1, F, Ta)``, feature map ``(B, D, f, t)``, tokens
``(B, t, D)``. The state-dict keys are torchvision's ``ResNet`` keys (``conv1``, ``bn1``,
``layer1``..``layer4``) minus ``fc``, as in GDT's ``resnet9`` audio network, so such checkpoints load
without renaming.
"""

import math
from collections import OrderedDict
from typing import Optional, Sequence

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock

from stica_slowfast.registry import BACKBONE

from .backbones import StagedBackbone, init_like_torchvision

__all__ = [
    "AudioBackbone",
    "build_audio_resnet",
    "feature_map_size",
    "resnet9_audio",
    "resnet9_audio_tiny",
]


class AudioBackbone(StagedBackbone):
    """Named stages applied in order to a spectrogram, then pooled over frequency and/or time.

    ::

        spec (B, C, F, Ta)
          -> stage_1 -> ... -> stage_n    forward_feature_map: (B, D, f, t)
          -> mean over (f, t)             forward:             (B, D)
          -> mean over f, time-major      forward_tokens:      (B, t, D)

    B batch, C input channels (1 for a log spectrogram), F frequency bins, Ta time frames,
    D = ``out_dim``; f and t are the downsampled frequency and time sizes of the last stage.
    Time is the last axis of the input and of the feature map; token ``i`` of ``forward_tokens``
    is time step ``i`` of the feature map, earliest first.

    Args:
        stages: stage name -> module, in execution order. The names become the attribute names
            (and state-dict prefixes).
        in_channels: C expected on input (checked in forward).
        out_dim: D, channels of the last stage's output.
    """

    def forward_feature_map(self, spec: torch.Tensor) -> torch.Tensor:
        """Map a spectrogram ``(B, C, F, Ta)`` to the last feature map ``(B, out_dim, f, t)``."""
        if spec.dim() != 4 or spec.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a spectrogram of shape (B, {self.in_channels}, F, Ta) (frequency, then time), "
                f"got {tuple(spec.shape)}"
            )
        return self.run_stages(spec)

    def forward_tokens(self, spec: torch.Tensor) -> torch.Tensor:
        """Map a spectrogram ``(B, C, F, Ta)`` to one token per time step, ``(B, t, out_dim)``.

        The feature map is averaged over frequency; the tokens are in time order, ready for
        temporal pooling by a transformer. Their mean over ``t`` equals :meth:`forward`.
        """
        fmap = self.forward_feature_map(spec)
        # (B, D, f, t) -> (B, D, t) -> (B, t, D)
        return fmap.mean(dim=2).transpose(1, 2)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Map a spectrogram ``(B, C, F, Ta)`` to pooled features ``(B, out_dim)``."""
        fmap = self.forward_feature_map(spec)
        # (B, D, f, t) -> (B, D)
        return fmap.mean(dim=(2, 3))


def _resnet_stage(*, in_dim: int, out_dim: int, stride: int) -> nn.Sequential:
    """One torchvision ``BasicBlock`` (two 3x3 convs), with torchvision's 1x1 projection shortcut
    when the stride or width changes. A Sequential, so keys read ``layerK.0.*`` as in torchvision."""
    downsample = None
    if stride != 1 or in_dim != out_dim:
        downsample = nn.Sequential(
            nn.Conv2d(in_dim, out_dim, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_dim),
        )
    return nn.Sequential(BasicBlock(in_dim, out_dim, stride, downsample))


def build_audio_resnet(
    *,
    in_channels: int = 1,
    stem_dim: Optional[int] = None,
    stage_dims: Sequence[int] = (64, 128, 256, 512),
) -> AudioBackbone:
    """ResNet-9 over a spectrogram: torchvision's ResNet stem and one ``BasicBlock`` per stage.

    ::

        spec (B, C, F, Ta)
          -> conv1, bn1, relu  7x7 conv, stride 2   (B, s, F/2, Ta/2)
          -> maxpool           3x3, stride 2        (B, s, F/4, Ta/4)
          -> layer1            BasicBlock, stride 1 (B, d0, F/4, Ta/4)
          -> layer2            BasicBlock, stride 2 (B, d1, F/8, Ta/8)
          -> layer3            BasicBlock, stride 2 (B, d2, F/16, Ta/16)
          -> layer4            BasicBlock, stride 2 (B, d3, F/32, Ta/32)

    Frequency and time are strided alike; every division rounds up, so the feature map is
    ``(B, d3, ceil(F / 32), ceil(Ta / 32))`` for any ``F, Ta >= 1`` (e.g. 257 x 200 -> 9 x 7).
    Each last-stage time step sees at most 195 input frames (its receptive field), centred on
    input frame ``32 * i``. s = ``stem_dim``; ``out_dim`` = d3.

    The full-size stem is GDT's (7x7 stride-2 conv + 3x3 stride-2 max pool, as torchvision's
    ResNet-18 but with one input channel). With ``stem_dim == stage_dims[0]`` (the default) the
    parameter names and shapes are exactly those of torchvision's ``ResNet(BasicBlock, [1, 1, 1, 1])``
    with a ``C``-channel ``conv1``, minus ``fc``.

    Args:
        in_channels: input channels C (1 for a log spectrogram).
        stem_dim: stem width s; ``None`` means ``stage_dims[0]``. Otherwise layer1 gets a 1x1
            projection shortcut.
        stage_dims: output channels d0..d3 of layer1..layer4; ``out_dim`` is the last one.
    """
    if len(stage_dims) != 4:
        raise ValueError(f"stage_dims needs 4 entries (layer1..layer4), got {tuple(stage_dims)}")
    stem_dim = stage_dims[0] if stem_dim is None else stem_dim
    stages = OrderedDict(
        conv1=nn.Conv2d(in_channels, stem_dim, kernel_size=7, stride=2, padding=3, bias=False),
        bn1=nn.BatchNorm2d(stem_dim),
        relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    in_dim = stem_dim
    for idx, out_dim in enumerate(stage_dims):
        stages[f"layer{idx + 1}"] = _resnet_stage(in_dim=in_dim, out_dim=out_dim, stride=1 if idx == 0 else 2)
        in_dim = out_dim
    backbone = AudioBackbone(stages=stages, in_channels=in_channels, out_dim=stage_dims[-1])
    init_like_torchvision(backbone)
    return backbone


def feature_map_size(size: int) -> int:
    """Frequency or time size of :func:`build_audio_resnet`'s feature map for an input side ``size``."""
    return math.ceil(size / 32)


# ---------------------------------------------------------------------------------------------------- #
# Registered, cfg-reading entry points (BACKBONE registry)
# ---------------------------------------------------------------------------------------------------- #
@BACKBONE.register()
def resnet9_audio(cfg) -> AudioBackbone:
    """Audio ResNet-9 of GDT / STiCA, widths 64/128/256/512: 4.90 M parameters, ``out_dim`` 512.

    ``cfg`` is not read (the spectrogram has one channel); it is taken for the registry's ``fn(cfg)``.
    """
    return build_audio_resnet(in_channels=1, stage_dims=(64, 128, 256, 512))


@BACKBONE.register()
def resnet9_audio_tiny(cfg) -> AudioBackbone:
    """Audio ResNet-9 with widths 16/32/64/128: 0.31 M parameters, ``out_dim`` 128. For CPU demos.

    ``cfg`` is not read.
    """
    return build_audio_resnet(in_channels=1, stage_dims=(16, 32, 64, 128))
