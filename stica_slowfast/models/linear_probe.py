"""Linear probe: a frozen pretrained backbone and a trained linear classifier.

The evaluation protocol of Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal
Representation Learning" (CVPR 2021, arXiv:2104.14558): the self-supervised backbone is frozen, its
BatchNorm layers stay in inference mode (running statistics used and never updated), and only a linear
classifier on the pooled features is trained.

The backbone comes from an SSL checkpoint through :meth:`LinearProbe.load_pretrained`, which keeps the
checkpoint's ``backbone.*`` tensors and drops everything else (projector, predictor, momentum target,
queue). The training step, the loss and the forward pass are :class:`VideoClassifier`'s.
"""

import logging
from typing import Any, Dict, List, Mapping, Tuple

import torch
import torch.nn as nn

from stica_slowfast.engine.checkpoint import load_model_state, read_checkpoint
from stica_slowfast.registry import MODEL
from stica_slowfast.utils.misc import unwrap

from .classifier import VideoClassifier
from .configurable import configurable

__all__ = ["LinearProbe", "load_backbone_from_ssl_checkpoint"]

logger = logging.getLogger(__name__)

_BACKBONE_PREFIX = "backbone."
_DDP_PREFIX = "module."


@MODEL.register()
class LinearProbe(VideoClassifier):
    """Frozen backbone (eval mode, no gradients) and a dropout/linear head.

    ::

        video (B, C, T, H, W)
          -> backbone   (B, D)     frozen, BN in eval mode, no_grad   forward_features
          -> dropout, linear       ClassifierHead (trained)
          -> logits     (B, K)                                         forward

    B batch, C channels, T frames, H x W frame size, D = ``backbone.out_dim``, K classes.

    ``forward``, ``forward_train`` (cross-entropy over all rho clips, top-1) and ``from_config``
    (``MODEL.ARCH``, ``MODEL.NUM_CLASSES``, ``MODEL.DROPOUT_RATE``, ``MODEL.FC_INIT_STD``,
    ``MODEL.LOSS_FUNC``) are inherited from :class:`VideoClassifier`; only the feature path differs.
    Since the backbone's parameters have ``requires_grad=False``, the optimiser built by
    ``construct_optimizer`` holds the head only.

    Args: those of :class:`VideoClassifier`; the backbone is frozen here.
    """

    @configurable
    def __init__(self, **kwargs) -> None:  # VideoClassifier's keyword arguments
        super().__init__(**kwargs)
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> "LinearProbe":
        """Set the head's mode; the backbone always stays in eval mode (frozen BN statistics)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled frozen-backbone features ``(B, D)`` of video ``(B, C, T, H, W)``, without autograd."""
        with torch.no_grad():
            return self.backbone(video)

    def load_pretrained(self, path: str, strict: bool = True) -> int:
        """Load the backbone of an SSL (or classifier) checkpoint; see
        :func:`load_backbone_from_ssl_checkpoint`. Returns the checkpoint's stored epoch (-1 if none)."""
        return load_backbone_from_ssl_checkpoint(path, self, strict=strict)


def load_backbone_from_ssl_checkpoint(path: str, model: nn.Module, strict: bool = True) -> int:
    """Copy every ``backbone.*`` tensor of a ``.pyth`` checkpoint into ``model.backbone``.

    Keys outside ``backbone.`` (projector, predictor, momentum target ``target_backbone.*``, queue, a
    classifier head) are ignored and their count and top-level names are logged. A ``"module."`` prefix
    (a DDP model saved without unwrapping) is stripped first. A bare state-dict file (no
    ``"model_state"``) is accepted too.

    Args:
        path: Checkpoint path (any iopath path) written by ``save_checkpoint``.
        model: Module with a ``backbone`` attribute (the probe); DDP wrappers are unwrapped.
        strict: Raise when a backbone key is missing from the checkpoint, the checkpoint has a
            ``backbone.*`` key the model lacks, or shapes differ. When False these are logged and the
            matching tensors are loaded.

    Returns:
        The checkpoint's stored 0-based ``"epoch"`` (-1 when it has none).

    Raises:
        CheckpointMismatchError: with ``strict``, listing the missing / unexpected backbone keys and
            shape mismatches.
        FileNotFoundError: the path does not exist.
        ValueError: the checkpoint has no ``backbone.*`` key at all (also without ``strict``).
    """
    _, model_state, epoch = read_checkpoint(path)
    backbone_state, ignored = _split_backbone_state(model_state)
    if not backbone_state:
        raise ValueError(
            f"Checkpoint {path} has no '{_BACKBONE_PREFIX}*' keys to load into the probe's backbone "
            f"(top-level names: {sorted({k.split('.', 1)[0] for k in model_state})})"
        )
    if ignored:
        logger.info(
            "Ignoring %d non-backbone tensors of %s (%s)",
            len(ignored),
            path,
            ", ".join(sorted({k.split(".", 1)[0] for k in ignored})),
        )

    load_model_state(unwrap(model).backbone, backbone_state, source=path, strict=strict, key_prefix=_BACKBONE_PREFIX)
    logger.info("Loaded %d backbone tensors from %s (epoch %d)", len(backbone_state), path, epoch)
    return epoch


def _split_backbone_state(state: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """``({key without "backbone.": value}, [ignored keys])``, after stripping a DDP prefix."""
    if state and all(k.startswith(_DDP_PREFIX) for k in state):
        state = {k[len(_DDP_PREFIX):]: v for k, v in state.items()}
    backbone_state, ignored = {}, []
    for key, value in state.items():
        if key.startswith(_BACKBONE_PREFIX):
            backbone_state[key[len(_BACKBONE_PREFIX):]] = value
        else:
            ignored.append(key)
    return backbone_state, ignored
