"""Video backbones: R(2+1)D (torchvision) and Slow-R50 (pytorchvideo), full size and tiny.

Each backbone is a :class:`VideoBackbone`: named stages run in order, then a global average pool.
The stage names are those of the source library, so its state dicts load without renaming
(``stem``/``layer1``..``layer4`` for torchvision's R(2+1)D, ``blocks.0``..``blocks.4`` for
pytorchvideo's ResNet).

Registered in ``BACKBONE`` (``fn(cfg)``, selected by ``MODEL.ARCH``)::

    name           architecture                                      out_dim  params   GMACs
    r2plus1d_18    torchvision r2plus1d_18 minus avgpool/fc          512      31.30 M  13.3
    r2plus1d_tiny  same family, widths 16/32/64/128, 1 block/stage   128      0.78 M   0.43
    slow_r50       Slow-R50 8x8 (PySlowFast / pytorchvideo)          2048     31.63 M  6.89
    slow_tiny      Slow-R50 layout with stem_dim_out 8               256      0.50 M   0.13

GMACs: fvcore multiply-adds for a (2, 3, 8, 64, 64) batch.

The registered functions only read the config (``DATA.INPUT_CHANNEL_NUM[0]``) and call the cfg-free
``build_*`` functions, which take keyword-only arguments. Batch norm is plain ``nn.BatchNorm3d``;
``BN.NORM_TYPE == "sync_batchnorm"`` is applied by the engine with
``nn.SyncBatchNorm.convert_sync_batchnorm`` on the whole model.
"""

import warnings
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn as nn
from torchvision.models.video import r2plus1d_18 as tv_r2plus1d_18
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D

from stica_slowfast.registry import BACKBONE

__all__ = [
    "StagedBackbone",
    "VideoBackbone",
    "init_like_torchvision",
    "build_r2plus1d_18",
    "build_r2plus1d",
    "build_slow_resnet",
    "r2plus1d_18",
    "r2plus1d_tiny",
    "slow_r50",
    "slow_tiny",
]


class StagedBackbone(nn.Module):
    """Named stages run in order; the shared mechanism of :class:`VideoBackbone` and the audio
    backbone. Subclasses check their input's shape and pool the last feature map.

    Args:
        stages: stage name -> module, in execution order. The names become the attribute names
            (and state-dict prefixes), so pass the source library's names to keep its checkpoints.
        in_channels: input channels expected (checked by the subclass).
        out_dim: channels of the last stage's output.
    """

    def __init__(self, *, stages: Mapping[str, nn.Module], in_channels: int, out_dim: int) -> None:
        super().__init__()
        if not stages:
            raise ValueError(f"{type(self).__name__} needs at least one stage")
        for name, stage in stages.items():
            self.add_module(name, stage)
        self.stage_names: tuple = tuple(stages)
        self.in_channels = in_channels
        self.out_dim = out_dim

    def run_stages(self, x: torch.Tensor) -> torch.Tensor:
        """Every stage in order: the last feature map."""
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x


class VideoBackbone(StagedBackbone):
    """Named stages applied in order, then a global space-time average pool.

    ::

        video (B, C, T, H, W)
          -> stage_1 -> ... -> stage_n    forward_feature_map: (B, D, t, h, w)
          -> mean over (t, h, w)          forward:             (B, D)

    B batch, C input channels, T frames, H x W frame size, D = ``out_dim``; t, h, w are the
    downsampled sizes of the last stage.

    Args:
        stages: stage name -> module, in execution order. The names become the attribute names
            (and state-dict prefixes), so pass the source library's names to keep its checkpoints.
        in_channels: C expected on input (checked in forward).
        out_dim: D, channels of the last stage's output.
    """

    def forward_feature_map(self, video: torch.Tensor) -> torch.Tensor:
        """Map video ``(B, C, T, H, W)`` to the last feature map ``(B, out_dim, t, h, w)``.

        A one-element list (PySlowFast's list of pathways) is accepted for the single pathway.
        """
        if isinstance(video, (list, tuple)):
            if len(video) != 1:
                raise ValueError(f"expected one pathway, got a list of {len(video)} tensors")
            video = video[0]
        if video.dim() != 5 or video.shape[1] != self.in_channels:
            raise ValueError(
                f"expected video of shape (B, {self.in_channels}, T, H, W), got {tuple(video.shape)}"
            )
        return self.run_stages(video)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Map video ``(B, C, T, H, W)`` to pooled features ``(B, out_dim)``."""
        fmap = self.forward_feature_map(video)
        # (B, D, t, h, w) -> (B, D)
        return fmap.mean(dim=(2, 3, 4))


def init_like_torchvision(module: nn.Module) -> None:
    """torchvision's (Video)ResNet init: Kaiming-normal (fan_out) 2-D and 3-D convs, unit/zero batch
    norms."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------- #
# R(2+1)D (Tran et al. 2018, arXiv:1711.11248)
# ---------------------------------------------------------------------------------------------------- #
def build_r2plus1d_18(*, in_channels: int = 3) -> VideoBackbone:
    """torchvision's ``r2plus1d_18(weights=None)`` without ``avgpool``/``fc``.

    State-dict keys equal torchvision's minus ``fc.*``. With 8x112x112 input the feature map is
    ``(B, 512, 1, 7, 7)`` (the stem keeps T; each of layer2..layer4 halves T, H and W).

    Args:
        in_channels: input channels; other than 3, the stem's first conv is rebuilt for it.
    """
    net = tv_r2plus1d_18(weights=None)
    if in_channels != 3:
        old = net.stem[0]
        net.stem[0] = nn.Conv3d(
            in_channels,
            old.out_channels,
            kernel_size=old.kernel_size,
            stride=old.stride,
            padding=old.padding,
            bias=False,
        )
        init_like_torchvision(net.stem[0])
    stages = OrderedDict(
        (name, getattr(net, name)) for name in ("stem", "layer1", "layer2", "layer3", "layer4")
    )
    return VideoBackbone(stages=stages, in_channels=in_channels, out_dim=net.fc.in_features)


def _r2plus1d_stem(*, in_channels: int, mid_dim: int, out_dim: int) -> nn.Sequential:
    """(2+1)D stem as torchvision's ``R2Plus1dStem`` with free widths: 1x7x7 conv (stride 1,2,2)
    then 3x1x1 conv, each followed by batch norm and ReLU. Keeps T; halves H and W."""
    return nn.Sequential(
        nn.Conv3d(
            in_channels, mid_dim, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
        ),
        nn.BatchNorm3d(mid_dim),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid_dim, out_dim, kernel_size=(3, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(out_dim),
        nn.ReLU(inplace=True),
    )


def _r2plus1d_stage(*, in_dim: int, out_dim: int, num_blocks: int, stride: int) -> nn.Sequential:
    """``num_blocks`` torchvision ``BasicBlock``s with ``Conv2Plus1D`` convs; the first one strides
    (T, H and W by ``stride``) and gets a 1x1x1 projection shortcut when the shape changes."""
    downsample = None
    if stride != 1 or in_dim != out_dim:
        downsample = nn.Sequential(
            nn.Conv3d(
                in_dim,
                out_dim,
                kernel_size=1,
                stride=Conv2Plus1D.get_downsample_stride(stride),
                bias=False,
            ),
            nn.BatchNorm3d(out_dim),
        )
    blocks = [BasicBlock(in_dim, out_dim, Conv2Plus1D, stride, downsample)]
    blocks += [BasicBlock(out_dim, out_dim, Conv2Plus1D) for _ in range(1, num_blocks)]
    return nn.Sequential(*blocks)


def build_r2plus1d(
    *,
    in_channels: int = 3,
    stem_mid_dim: int = 8,
    stage_dims: Sequence[int] = (16, 32, 64, 128),
    blocks_per_stage: Sequence[int] = (1, 1, 1, 1),
) -> VideoBackbone:
    """An R(2+1)D ResNet of any width/depth from torchvision's own blocks.

    ::

        video (B, C, T, H, W)
          -> stem    1x7x7 + 3x1x1 convs          (B, d0, T, H/2, W/2)
          -> layer1  blocks, stride 1             (B, d0, T, H/2, W/2)
          -> layer2  blocks, stride 2 in T, H, W  (B, d1, T/2, H/4, W/4)
          -> layer3  ...                          (B, d2, T/4, H/8, W/8)
          -> layer4  ...                          (B, d3, T/8, H/16, W/16)

    The stem's output width is ``stage_dims[0]``, as in torchvision (64 -> layer1 at 64).
    ``build_r2plus1d(stem_mid_dim=45, stage_dims=(64, 128, 256, 512), blocks_per_stage=(2, 2, 2, 2))``
    has exactly the parameter shapes and names of torchvision's ``r2plus1d_18`` trunk.

    Args:
        in_channels: input channels C.
        stem_mid_dim: channels between the stem's spatial and temporal convs.
        stage_dims: output channels of layer1..layer4; ``out_dim`` is the last one.
        blocks_per_stage: ``BasicBlock``s in each of layer1..layer4.
    """
    if len(stage_dims) != 4 or len(blocks_per_stage) != 4:
        raise ValueError(
            f"stage_dims and blocks_per_stage need 4 entries, got {stage_dims}, {blocks_per_stage}"
        )
    stages = OrderedDict(
        stem=_r2plus1d_stem(in_channels=in_channels, mid_dim=stem_mid_dim, out_dim=stage_dims[0])
    )
    in_dim = stage_dims[0]
    for idx, (out_dim, num_blocks) in enumerate(zip(stage_dims, blocks_per_stage)):
        stages[f"layer{idx + 1}"] = _r2plus1d_stage(
            in_dim=in_dim, out_dim=out_dim, num_blocks=num_blocks, stride=1 if idx == 0 else 2
        )
        in_dim = out_dim
    backbone = VideoBackbone(stages=stages, in_channels=in_channels, out_dim=stage_dims[-1])
    init_like_torchvision(backbone)
    return backbone


# ---------------------------------------------------------------------------------------------------- #
# Slow pathway ResNet-50 (Feichtenhofer et al. 2019, arXiv:1812.03982)
# ---------------------------------------------------------------------------------------------------- #
def build_slow_resnet(
    *, in_channels: int = 3, stem_dim_out: int = 64, model_depth: int = 50
) -> VideoBackbone:
    """Slow-only ResNet ("Slow 8x8") from pytorchvideo's ``create_resnet`` with ``head=None``.

    The Slow-R50 recipe of PySlowFast / pytorchvideo hub ``slow_r50``: a 1x7x7 stem conv (no
    temporal kernel), 1x3x3 max pool, and conv_a temporal kernel 3 only in res4/res5; no temporal
    striding anywhere, so the feature map keeps all T frames::

        video (B, C, T, H, W)
          -> blocks.0  stem: 1x7x7 conv, 1x3x3 max pool    (B, s, T, H/4, W/4)
          -> blocks.1  res2: conv_a 1x1x1                  (B, 4s, T, H/4, W/4)
          -> blocks.2  res3: conv_a 1x1x1, stride (1,2,2)  (B, 8s, T, H/8, W/8)
          -> blocks.3  res4: conv_a 3x1x1, stride (1,2,2)  (B, 16s, T, H/16, W/16)
          -> blocks.4  res5: conv_a 3x1x1, stride (1,2,2)  (B, 32s, T, H/32, W/32)

    s = ``stem_dim_out``; ``out_dim`` = 32 s (2048 for Slow-R50). State-dict keys are
    pytorchvideo's ``Net`` keys (``blocks.{0..4}.*``) minus its head (``blocks.5``).

    Args:
        in_channels: input channels C.
        stem_dim_out: stem width s (64 for Slow-R50); every stage width scales with it.
        model_depth: 50, 101 or 152 (pytorchvideo's stage depths).
    """
    with warnings.catch_warnings():
        # pytorchvideo's import calls torch.jit.script, deprecated in recent torch (FutureWarning).
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models.resnet import create_resnet

    net = create_resnet(
        input_channel=in_channels,
        model_depth=model_depth,
        norm=nn.BatchNorm3d,
        activation=nn.ReLU,
        stem_dim_out=stem_dim_out,
        stem_conv_kernel_size=(1, 7, 7),
        stem_conv_stride=(1, 2, 2),
        stem_pool=nn.MaxPool3d,
        stem_pool_kernel_size=(1, 3, 3),
        stem_pool_stride=(1, 2, 2),
        stage_conv_a_kernel_size=((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1)),
        stage_conv_b_kernel_size=((1, 3, 3),) * 4,
        stage_spatial_h_stride=(1, 2, 2, 2),
        stage_spatial_w_stride=(1, 2, 2, 2),
        stage_temporal_stride=(1, 1, 1, 1),
        head=None,
    )
    # pytorchvideo's Net keeps its stages in a ModuleList ``blocks``; a Sequential under the same
    # name keeps the ``blocks.<i>.*`` state-dict keys and is callable.
    stages = OrderedDict(blocks=nn.Sequential(*net.blocks))
    return VideoBackbone(stages=stages, in_channels=in_channels, out_dim=stem_dim_out * 32)


# ---------------------------------------------------------------------------------------------------- #
# Registered, cfg-reading entry points (BACKBONE registry; selected by MODEL.ARCH)
# ---------------------------------------------------------------------------------------------------- #
def _in_channels(cfg) -> int:
    return int(cfg.DATA.INPUT_CHANNEL_NUM[0])


@BACKBONE.register()
def r2plus1d_18(cfg) -> VideoBackbone:
    """R(2+1)D-18 (torchvision), 31.3 M parameters, ``out_dim`` 512."""
    return build_r2plus1d_18(in_channels=_in_channels(cfg))


@BACKBONE.register()
def r2plus1d_tiny(cfg) -> VideoBackbone:
    """R(2+1)D with widths 16/32/64/128 and one block per stage: 0.78 M parameters, ``out_dim`` 128.
    For CPU smoke tests and demos."""
    return build_r2plus1d(
        in_channels=_in_channels(cfg),
        stem_mid_dim=8,
        stage_dims=(16, 32, 64, 128),
        blocks_per_stage=(1, 1, 1, 1),
    )


@BACKBONE.register()
def slow_r50(cfg) -> VideoBackbone:
    """Slow-R50 8x8 (PySlowFast ``SLOW_8x8_R50`` / pytorchvideo ``slow_r50``), ``out_dim`` 2048."""
    return build_slow_resnet(in_channels=_in_channels(cfg), stem_dim_out=64, model_depth=50)


@BACKBONE.register()
def slow_tiny(cfg) -> VideoBackbone:
    """Slow-R50 layout with stem width 8: 0.50 M parameters, ``out_dim`` 256. For CPU tests."""
    return build_slow_resnet(in_channels=_in_channels(cfg), stem_dim_out=8, model_depth=50)
