"""Convert checkpoint files between our layout and other code bases' (``tools/convert_checkpoint.py``).

Into ours from every layout :mod:`stica_slowfast.checkpoint.layouts` reads (PySlowFast's native ResNet,
PTVResNet and ContrastiveModel zoo, PyTorchVideo's Net, GDT); out of ours into PySlowFast's two Slow
ResNet classes, for its own loops (``MODEL_NAME ResNet`` or ``PTVResNet`` with ``MODEL.ARCH slow``), and
PyTorchVideo's Net. The tensors are the same, only their names change (see
:mod:`~stica_slowfast.checkpoint.layouts` for each mapping).

The head mapping is exact in function too: our head averages the last feature map over ``(t, h, w)``
then applies the linear layer; PySlowFast's heads average-pool the same map with a kernel of its full
size (at the training crop) and apply the same linear layer (``projection`` / ``proj``). A head that
sits behind a feature transform PySlowFast's heads lack (a transformer ``video_pool``, the linear
probe's ``feature_norm``) is refused unless the head is left out (``with_head=False``).

Before writing, the converted tensors are loaded strictly into the networks we would build for them
(:func:`check_our_state`), so a file that only looks like a layout (a C2D ResNet, another depth) is an
error here rather than at training time.
"""

import os
import re
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from stica_slowfast.checkpoint import CheckpointFileError, read_model_state
from stica_slowfast.checkpoint.layouts import (
    AUTO,
    LAYOUTS,
    OURS_AUDIO,
    OURS_BACKBONE,
    OURS_HEAD,
    Converted,
    from_our_layout,
    split_state,
    to_our_layout,
)
from stica_slowfast.models.audio_backbones import build_audio_resnet
from stica_slowfast.models.backbones import build_r2plus1d_18, build_slow_resnet
from stica_slowfast.utils.io import PathManager, atomic_open

__all__ = ["TARGETS", "check_our_state", "check_slow_resnet", "convert_checkpoint", "slow_resnet_size"]

#: Layouts :func:`convert_checkpoint` writes: ours, PySlowFast's two Slow ResNet classes, PyTorchVideo's Net.
TARGETS = ("stica",) + tuple(k for k, v in LAYOUTS.items() if v.from_ours is not None)
# Residual blocks per stage (res2..res5) of pytorchvideo's ResNet depths.
_STAGE_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


def slow_resnet_size(backbone_state: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    """``build_slow_resnet`` keyword arguments matching a backbone state dict (keys ``blocks.*``).

    Args:
        backbone_state: keys without the ``backbone.`` prefix.

    Returns:
        ``{"in_channels", "stem_dim_out", "model_depth"}``.

    Raises:
        ValueError: no stem conv, or a block count per stage of no pytorchvideo depth.
    """
    stem = backbone_state.get("blocks.0.conv.weight")
    if stem is None or stem.dim() != 5:
        raise ValueError("no 5-D blocks.0.conv.weight: not a pytorchvideo ResNet state")
    blocks = [set() for _ in range(4)]
    for key in backbone_state:
        match = re.match(r"^blocks\.([1-4])\.res_blocks\.(\d+)\.", key)
        if match:
            blocks[int(match.group(1)) - 1].add(int(match.group(2)))
    counts = tuple(len(b) for b in blocks)
    if counts not in _STAGE_DEPTHS:
        raise ValueError(f"residual blocks per stage {counts} match no ResNet depth "
                         f"({', '.join(f'{d}: {c}' for c, d in _STAGE_DEPTHS.items())})")
    # stem conv weight: (stem_dim_out, in_channels, 1, 7, 7)
    return {"in_channels": int(stem.shape[1]), "stem_dim_out": int(stem.shape[0]),
            "model_depth": _STAGE_DEPTHS[counts]}


def _load_strictly(net: nn.Module, state: Mapping[str, Any], what: str) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"not {what}: {' '.join(str(err).split())}") from None


def check_slow_resnet(state: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    """Check that the ``backbone.*`` and ``head.fc.*`` tensors of ``state`` (our layout) are exactly a
    Slow ResNet of :func:`~stica_slowfast.models.backbones.build_slow_resnet` and a linear head: every
    key present, none extra, every shape equal.

    Builds that network (for Slow-R50, 32 M parameters on the CPU) and loads the tensors strictly.

    Returns:
        The network's size (:func:`slow_resnet_size`) plus ``num_classes`` (0 without a head).

    Raises:
        ValueError: a missing, unexpected or mis-shaped tensor (e.g. a C2D or I3D ResNet, whose
            temporal kernels differ from Slow's).
    """
    size = slow_resnet_size(split_state(state, OURS_BACKBONE)[0])
    net = build_slow_resnet(**size)
    _load_strictly(net, split_state(state, OURS_BACKBONE)[0],
                   f"a Slow ResNet-{size['model_depth']} of stem width {size['stem_dim_out']}")
    weight, bias = state.get(OURS_HEAD + "weight"), state.get(OURS_HEAD + "bias")
    num_classes = 0
    if weight is not None or bias is not None:
        # nn.Linear(out_dim, K): weight (K, out_dim), bias (K,)
        if (weight is None or bias is None or weight.dim() != 2 or weight.shape[1] != net.out_dim
                or tuple(bias.shape) != (weight.shape[0],)):
            raise ValueError(f"head.fc must be a linear layer from {net.out_dim} features, got weight "
                             f"{None if weight is None else tuple(weight.shape)} and bias "
                             f"{None if bias is None else tuple(bias.shape)}")
        num_classes = int(weight.shape[0])
    return {**size, "num_classes": num_classes}


def check_our_state(state: Mapping[str, torch.Tensor]) -> Dict[str, str]:
    """Check that the encoders of a state in our names are networks we build, tensor for tensor:
    ``backbone.*`` a Slow ResNet (:func:`check_slow_resnet`, with its head) or an R(2+1)D-18,
    ``audio_backbone.*`` an audio ResNet-9 of its widths.

    Returns:
        ``{"backbone": "slow_r50" | "slow_resnet" | "r2plus1d_18", "audio_backbone": "resnet9_audio"}``
        for the encoders present.

    Raises:
        ValueError: an encoder of no architecture here, or a missing, extra or mis-shaped tensor.
    """
    checked: Dict[str, str] = {}
    video = split_state(state, OURS_BACKBONE)[0]
    if "blocks.0.conv.weight" in video:
        size = check_slow_resnet(state)
        slow_r50 = size["model_depth"] == 50 and size["stem_dim_out"] == 64
        checked["backbone"] = "slow_r50" if slow_r50 else "slow_resnet"
    elif "stem.0.weight" in video:
        in_channels = int(video["stem.0.weight"].shape[1])
        _load_strictly(build_r2plus1d_18(in_channels=in_channels), video, "an R(2+1)D-18")
        checked["backbone"] = "r2plus1d_18"
    elif video:
        raise ValueError(f"backbone.{next(iter(video))}: a backbone of no architecture here "
                         "(Slow ResNet: blocks.*, R(2+1)D-18: stem.*)")
    audio = split_state(state, OURS_AUDIO)[0]
    if audio:
        conv1 = audio.get("conv1.weight")
        widths = [audio.get(f"layer{i}.0.conv1.weight") for i in range(1, 5)]
        if conv1 is None or any(w is None for w in widths):
            raise ValueError("audio_backbone: no conv1 / layer1-4 weights: not an audio ResNet-9")
        net = build_audio_resnet(in_channels=int(conv1.shape[1]), stem_dim=int(conv1.shape[0]),
                                 stage_dims=[int(w.shape[0]) for w in widths])
        _load_strictly(net, audio, "an audio ResNet-9")
        checked["audio_backbone"] = "resnet9_audio"
    if not checked:
        raise ValueError("no backbone.* or audio_backbone.* tensor: no encoder to convert")
    return checked


def convert_checkpoint(
    src: str,
    dst: str,
    *,
    to: str,
    with_head: bool = True,
    check: bool = True,
    epoch: Optional[int] = None,
    layout: str = AUTO,
    encoder: str = "online",
) -> Converted:
    """Convert a checkpoint file and write ``{"epoch", "model_state"}`` to ``dst``.

    The output has the shape of a PySlowFast (and of our) checkpoint, without ``optimizer_state``: it
    initialises a model, it does not resume a run. PySlowFast's ``load_checkpoint`` loads it; to
    start training from it there, set ``TRAIN.CHECKPOINT_EPOCH_RESET True`` (as PySlowFast's own
    fine-tuning configs do), otherwise PySlowFast looks for the optimiser state of the stored epoch.

    Args:
        src: checkpoint to read (any iopath path): ``{"model_state"}``, GDT's ``{"model"}`` /
            ``{"state_dict"}``, or a bare state dict.
        dst: file to write (atomically; its directory is created).
        to: ``"stica"`` (from any layout read here), or ``"pyslowfast_resnet"``, ``"pyslowfast_ptvresnet"``,
            ``"pytorchvideo"`` (from ours).
        with_head: convert the linear classifier too (from ours; see :func:`.layouts.from_our_layout`).
        check: load the tensors into the networks we build for them (:func:`check_our_state`) first.
        epoch: 0-based epoch to store; None keeps the source's (-1 when it has none).
        layout: the source's layout: ``"pytorch"`` recognises it.
        encoder: ``"momentum"`` takes a BYOL / MoCo source's momentum encoder.

    Returns:
        The conversion (source layout, converted state, dropped source keys).

    Raises:
        ValueError: an unknown ``to``; the source is not readable as asked
            (:class:`~stica_slowfast.checkpoint.CheckpointFileError`, naming its layout and what reads
            it); the tensors fail the check.
        FileNotFoundError: ``src`` does not exist.
    """
    if to not in TARGETS:
        raise ValueError(f"to must be one of {', '.join(TARGETS)}, got {to!r}")
    _, ours, stored_epoch = read_model_state(src, layout, encoder)
    if ours.layout not in LAYOUTS:
        raise CheckpointFileError(src, f"is an unknown layout (read here: {', '.join(LAYOUTS)})")
    if to == "stica":
        result = ours
        if not with_head:
            heads = tuple(k for k in ours.state if k.startswith("head."))
            result = Converted(ours.layout, OrderedDict((k, v) for k, v in ours.state.items() if k not in heads),
                               ours.dropped + heads)
    else:
        if ours.layout != "stica":
            raise CheckpointFileError(src, f"is {LAYOUTS[ours.layout].description}: --to {to} writes "
                                           "PySlowFast's layout from ours; --to stica reads this one")
        try:
            result = from_our_layout(ours.state, to, with_head=with_head)
        except ValueError as err:
            raise CheckpointFileError(src, str(err)) from None
    if check:
        check_our_state(result.state if to == "stica" else to_our_layout(result.state, layout=to).state)
    if os.path.dirname(dst):
        PathManager.mkdirs(os.path.dirname(dst))
    with atomic_open(dst, "wb") as f:
        torch.save({"epoch": int(stored_epoch if epoch is None else epoch), "model_state": result.state}, f)
    return result
