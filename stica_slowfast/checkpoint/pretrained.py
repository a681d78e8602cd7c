"""Initialising a model's backbone (and optionally its head) from another run's checkpoint.

An SSL checkpoint holds ``backbone.*`` next to the method's projector, predictor, momentum target and
queue; a classifier checkpoint holds ``backbone.*`` and ``head.*``. Evaluation models take what they
need from either: the linear probe the backbone, a fine-tuned classifier the backbone and, when the
shapes match, the head.

Files are read with :func:`.io.read_model_state`, in our key names whatever code base wrote them
(:mod:`.layouts`): one that is not a usable checkpoint raises
:class:`.io.CheckpointFileError` naming it (callers name the config key with
:func:`.io.naming_config_key`).
"""

import logging
from typing import Any, Mapping

from torch import nn

from stica_slowfast.utils.misc import unwrap

from .io import CheckpointFileError, load_model_state, read_model_state
from .layouts import AUTO, describe, split_state

__all__ = ["load_backbone_from_ssl_checkpoint", "load_pool_if_present"]

logger = logging.getLogger(__name__)

_BACKBONE_PREFIX = "backbone."
_HEAD_PREFIX = "head."


def load_backbone_from_ssl_checkpoint(
    path: str,
    model: nn.Module,
    strict: bool = True,
    with_head: bool = False,
    prefix: str = _BACKBONE_PREFIX,
    *,
    layout: str = AUTO,
    encoder: str = "online",
) -> int:
    """Copy every ``backbone.*`` (or ``prefix*``) tensor of a ``.pyth`` checkpoint into ``model.backbone``.

    The checkpoint may be ours or another code base's (PySlowFast's native ResNet, PTVResNet or
    ContrastiveModel zoo, GDT: :mod:`.layouts`), read in our names first. Keys outside ``backbone.``
    (projector, predictor, momentum target ``target.*``, queue, a classifier head) are ignored and their
    count and top-level names are logged. A ``"module."`` prefix (a DDP model saved without unwrapping)
    is stripped first. A bare state-dict file (no ``"model_state"``) is accepted too.

    Args:
        path: Checkpoint path (any iopath path).
        model: Module with a ``backbone`` attribute (the probe); DDP wrappers are unwrapped.
        strict: Raise when a backbone key is missing from the checkpoint, the checkpoint has a
            ``backbone.*`` key the model lacks, or shapes differ. When False these are logged and the
            matching tensors are loaded.
        with_head: Also load ``head.*`` into ``model.head`` when the checkpoint has a head of exactly
            the model's keys and shapes (another classifier of the same classes); otherwise the head
            keeps its initialisation and the reason is logged.
        prefix: the checkpoint's key prefix (in our names) of the encoder to load, e.g.
            ``"audio_backbone."`` for STiCA's (or GDT's) audio encoder.
        layout: ``"pytorch"`` recognises the checkpoint's layout; a layout name insists on it
            (``TRAIN.CHECKPOINT_TYPE``).
        encoder: ``"online"``, or ``"momentum"`` for a BYOL / MoCo checkpoint's momentum encoder
            (``TRAIN.CHECKPOINT_ENCODER``).

    Returns:
        The checkpoint's stored 0-based ``"epoch"`` (-1 when it has none).

    Raises:
        CheckpointMismatchError: with ``strict``, listing the missing / unexpected backbone keys and
            shape mismatches (and, for another code base's file, its layout and what reads it).
        CheckpointFileError: the file is not a usable checkpoint (see ``read_checkpoint``), cannot be
            read in ``layout`` / has no ``encoder``, or has no ``backbone.*`` (``prefix*``) key at all
            (also without ``strict``); a ValueError.
        FileNotFoundError: the path does not exist.
    """
    _, converted, epoch = read_model_state(path, layout, encoder)
    model_state = converted.state
    backbone_state, ignored = split_state(model_state, prefix)
    if not backbone_state:
        names = sorted({str(k).split(".", 1)[0] for k in model_state})
        raise CheckpointFileError(
            path, f"has no '{prefix}*' tensors to load into the model's backbone (top-level names, in our "
                  f"names: {names}); it is {describe(converted.layout)}")
    if ignored:
        logger.info(
            "Ignoring %d non-backbone tensors of %s (%s)",
            len(ignored),
            path,
            ", ".join(sorted({k.split(".", 1)[0] for k in ignored})),
        )
    source = path if converted.layout == "stica" else f"{path} ({describe(converted.layout)})"
    load_model_state(unwrap(model).backbone, backbone_state, source=source, strict=strict, key_prefix=prefix)
    logger.info("Loaded %d backbone tensors from %s (epoch %d)", len(backbone_state), path, epoch)
    if with_head:
        _load_head_if_it_fits(unwrap(model).head, split_state(model_state, _HEAD_PREFIX)[0], path)
    return epoch


def load_pool_if_present(path: str, pool: nn.Module, prefix: str, *, encoder: str = "online") -> bool:
    """Load the ``prefix*`` tensors of a checkpoint (a pretrained temporal pooling; of its momentum
    encoder with ``encoder="momentum"``) into ``pool`` when the checkpoint has them, strictly; otherwise
    ``pool`` keeps its initialisation (logged). Returns whether it was loaded."""
    _, converted, _ = read_model_state(path, AUTO, encoder)
    state, _ = split_state(converted.state, prefix)
    if not state:
        logger.info("%s has no '%s*' tensors: the temporal pooling is trained from scratch", path, prefix)
        return False
    load_model_state(pool, state, source=path, strict=True, key_prefix=prefix)
    logger.info("Loaded %d '%s*' tensors from %s", len(state), prefix, path)
    return True


def _load_head_if_it_fits(head: nn.Module, state: Mapping[str, Any], path: str) -> None:
    expected = head.state_dict()
    fits = state.keys() == expected.keys() and all(
        tuple(state[k].shape) == tuple(expected[k].shape) for k in expected)
    if fits:
        head.load_state_dict(state)
        logger.info("Loaded the classifier head of %s", path)
    elif state:
        logger.info("Not loading the head of %s (keys or shapes differ from this model's: a new head "
                    "is trained)", path)

