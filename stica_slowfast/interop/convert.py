"""Convert Slow-ResNet checkpoints between this package's layout and PySlowFast's ``PTVResNet``.

Both sides build the network with pytorchvideo's ``create_resnet``, so the tensors are identical and
only the key prefixes differ::

    stica_slowfast (VideoClassifier / SSL method)     PySlowFast PTVResNet (MODEL.ARCH slow)
    backbone.blocks.0.*   stem                   <->  model.blocks.0.*
    backbone.blocks.1-4.* res2 .. res5           <->  model.blocks.1-4.*
    head.fc.{weight,bias} linear classifier      <->  model.blocks.5.proj.{weight,bias}

Everything else in one of our checkpoints (projector, predictor, momentum target
``target.*``, queues, prototypes, an audio encoder) has no PySlowFast counterpart and is
dropped, and so is PySlowFast's AVA ``detection_head.*``; the dropped keys are returned so a caller
can report them. A key under one of the mapped prefixes that does not fit the layout is an error,
never silently dropped.

The head mapping is exact in function too: our head averages the last feature map over
``(t, h, w)`` then applies the linear layer; PySlowFast's ``create_res_basic_head`` average-pools
the same map with a kernel of its full size (at the training crop) and applies the same linear layer
(``proj``) per position. A head that sits behind a feature transform PySlowFast's head lacks (a
transformer ``video_pool``, the linear probe's ``feature_norm``) is refused unless the head is left
out (``with_head=False``).
"""

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch

from stica_slowfast.checkpoint import read_checkpoint
from stica_slowfast.models.backbones import build_slow_resnet
from stica_slowfast.utils.io import PathManager, atomic_open
from stica_slowfast.utils.misc import strip_ddp_prefix

__all__ = [
    "ConvertedState",
    "convert_checkpoint",
    "stica_to_pyslowfast",
    "pyslowfast_to_stica",
    "slow_resnet_size",
    "check_slow_resnet",
]

#: Target layouts of :func:`convert_checkpoint`.
TO_PYSLOWFAST, TO_STICA = "pyslowfast", "stica"
OURS_BACKBONE = "backbone."
OURS_HEAD = "head.fc."
PYSLOWFAST_TRUNK = "model."
PYSLOWFAST_HEAD = "model.blocks.5.proj."
# The stem and the four residual stages of pytorchvideo's Net: blocks.0 .. blocks.4.
_TRUNK_KEY = re.compile(r"^blocks\.[0-4]\.")
_HEAD_PARAMS = ("weight", "bias")
# Modules of ours between the backbone and the head that PySlowFast's head has no equivalent of.
_FEATURE_TRANSFORMS = ("video_pool.", "feature_norm.")
# Prefixes of PySlowFast's PTVResNet that are not part of the classification network.
_PYSLOWFAST_EXTRAS = ("detection_head.",)
# Residual blocks per stage (res2..res5) of pytorchvideo's ResNet depths.
_STAGE_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


@dataclass(frozen=True)
class ConvertedState:
    """The result of a conversion.

    Attributes:
        state: the converted state dict; its tensors are the source's own objects, unchanged.
        dropped: source keys with no counterpart in the other layout, in source order.
    """

    state: "OrderedDict[str, torch.Tensor]"
    dropped: Tuple[str, ...]


def stica_to_pyslowfast(state: Mapping[str, torch.Tensor], *, with_head: bool = True) -> ConvertedState:
    """Our checkpoint's ``model_state`` -> PySlowFast ``PTVResNet`` keys.

    Args:
        state: ``model_state`` of a VideoClassifier, LinearProbe or SSL method whose ``backbone`` is a
            Slow ResNet (``slow_r50``, ``slow_tiny`` or another ``build_slow_resnet``).
        with_head: also convert the classifier ``head.fc.*`` (when present) to
            ``model.blocks.5.proj.*``; False drops it.

    Returns:
        The converted state and the dropped keys.

    Raises:
        ValueError: there is no ``backbone.blocks.*`` key, a ``backbone.*`` key outside
            ``blocks.0``..``blocks.4`` (not a pytorchvideo ResNet), a ``head.*`` key other than
            ``head.fc.weight/bias``, or, with ``with_head``, a head behind a ``video_pool`` /
            ``feature_norm``.
    """
    state = strip_ddp_prefix(state)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    dropped = []
    has_head = any(k.startswith(OURS_HEAD) for k in state)
    if with_head and has_head:
        transforms = sorted({k.split(".", 1)[0] for k in state if k.startswith(_FEATURE_TRANSFORMS)})
        if transforms:
            raise ValueError(
                f"the classifier head follows {', '.join(transforms)}, which PySlowFast's head does not "
                "have: its weights would not mean the same there; convert without the head")
    for key, value in state.items():
        if key.startswith(OURS_BACKBONE):
            name = key[len(OURS_BACKBONE):]
            if not _TRUNK_KEY.match(name):
                raise ValueError(f"{key}: not a key of a pytorchvideo Slow ResNet backbone "
                                 "(expected backbone.blocks.0 .. backbone.blocks.4)")
            out[PYSLOWFAST_TRUNK + name] = value
        elif key.startswith("head."):
            param = key[len(OURS_HEAD):] if key.startswith(OURS_HEAD) else None
            if param not in _HEAD_PARAMS:
                raise ValueError(f"{key}: unknown head key (expected head.fc.weight / head.fc.bias)")
            if with_head:
                out[PYSLOWFAST_HEAD + param] = value
            else:
                dropped.append(key)
        else:
            dropped.append(key)
    if not out:
        raise ValueError("no backbone.blocks.* keys: not a Slow ResNet checkpoint of stica_slowfast")
    return ConvertedState(out, tuple(dropped))


def pyslowfast_to_stica(state: Mapping[str, torch.Tensor], *, with_head: bool = True) -> ConvertedState:
    """PySlowFast ``PTVResNet`` keys -> our layout (``backbone.*``, ``head.fc.*``).

    The result loads into a ``VideoClassifier`` with ``MODEL.ARCH slow_r50`` (with the head) and, via
    ``backbone.*``, into any of our models or ``TRAIN.CHECKPOINT_FILE_PATH`` initialisation.

    Args:
        state: ``model_state`` of a PySlowFast ``PTVResNet`` checkpoint (``MODEL.ARCH slow``).
        with_head: also convert ``model.blocks.5.proj.*`` to ``head.fc.*``; False drops it.

    Returns:
        The converted state and the dropped keys.

    Raises:
        ValueError: there is no ``model.blocks.*`` key, or a ``model.*`` key that is neither the trunk
            (``blocks.0`` .. ``blocks.4``) nor the head's ``proj``.
    """
    state = strip_ddp_prefix(state)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    dropped = []
    for key, value in state.items():
        if key.startswith(PYSLOWFAST_HEAD) and key[len(PYSLOWFAST_HEAD):] in _HEAD_PARAMS:
            if with_head:
                out[OURS_HEAD + key[len(PYSLOWFAST_HEAD):]] = value
            else:
                dropped.append(key)
        elif key.startswith(PYSLOWFAST_TRUNK):
            name = key[len(PYSLOWFAST_TRUNK):]
            if not _TRUNK_KEY.match(name):
                raise ValueError(f"{key}: not a key of PySlowFast's PTVResNet (expected model.blocks.0 .. "
                                 "model.blocks.4 and model.blocks.5.proj)")
            out[OURS_BACKBONE + name] = value
        elif key.startswith(_PYSLOWFAST_EXTRAS):
            dropped.append(key)
        else:
            raise ValueError(f"{key}: not a key of PySlowFast's PTVResNet "
                             "(expected model.* or detection_head.*)")
    if not any(k.startswith(OURS_BACKBONE) for k in out):
        raise ValueError("no model.blocks.* keys: not a PySlowFast PTVResNet checkpoint")
    return ConvertedState(out, tuple(dropped))


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

    backbone = OrderedDict(
        (k[len(OURS_BACKBONE):], v) for k, v in state.items() if k.startswith(OURS_BACKBONE))
    size = slow_resnet_size(backbone)
    net = build_slow_resnet(**size)
    try:
        net.load_state_dict(backbone, strict=True)
    except RuntimeError as err:
        raise ValueError(f"not a Slow ResNet-{size['model_depth']} of stem width {size['stem_dim_out']}: "
                         f"{' '.join(str(err).split())}") from None
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


def convert_checkpoint(
    src: str, dst: str, *, to: str, with_head: bool = True, check: bool = True, epoch: Optional[int] = None
) -> ConvertedState:
    """Convert a ``.pyth`` checkpoint file and write ``{"epoch", "model_state"}`` to ``dst``.

    The output has the shape of a PySlowFast (and of our) checkpoint, without ``optimizer_state``: it
    initialises a model, it does not resume a run. PySlowFast's ``load_checkpoint`` loads it; to
    start training from it there, set ``TRAIN.CHECKPOINT_EPOCH_RESET True`` (as PySlowFast's own
    fine-tuning configs do), otherwise PySlowFast looks for the optimiser state of the stored epoch.

    Args:
        src: checkpoint to read (any iopath path); a bare state dict is accepted too.
        dst: file to write (atomically; its directory is created).
        to: ``"pyslowfast"`` (our layout -> PTVResNet) or ``"stica"`` (PTVResNet -> ours).
        with_head: convert the linear classifier too (see :func:`stica_to_pyslowfast`).
        check: verify the tensors form a Slow ResNet (:func:`check_slow_resnet`) before writing.
        epoch: 0-based epoch to store; None keeps the source's (-1 when it has none).

    Returns:
        The conversion (converted state and dropped source keys).
    """
    if to not in (TO_PYSLOWFAST, TO_STICA):
        raise ValueError(f"to must be {TO_PYSLOWFAST!r} or {TO_STICA!r}, got {to!r}")
    _, model_state, stored_epoch = read_checkpoint(src)
    if to == TO_PYSLOWFAST:
        result = stica_to_pyslowfast(model_state, with_head=with_head)
        ours = pyslowfast_to_stica(result.state).state if check else None
    else:
        result = pyslowfast_to_stica(model_state, with_head=with_head)
        ours = result.state
    if check:
        check_slow_resnet(ours)
    if os.path.dirname(dst):
        PathManager.mkdirs(os.path.dirname(dst))
    with atomic_open(dst, "wb") as f:
        torch.save({"epoch": int(stored_epoch if epoch is None else epoch), "model_state": result.state}, f)
    return result
