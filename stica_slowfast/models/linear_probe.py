"""Linear probe: a frozen pretrained backbone and a trained linear classifier.

The evaluation protocol of Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal
Representation Learning" (CVPR 2021, arXiv:2104.14558): the self-supervised backbone is frozen, its
BatchNorm layers stay in inference mode (running statistics used and never updated), and only a linear
classifier on the pooled features is trained.

The backbone comes from an SSL checkpoint through :meth:`LinearProbe.load_pretrained`, which keeps the
checkpoint's ``backbone.*`` tensors and drops everything else (projector, predictor, momentum target,
queue). The training step, the loss and the forward pass are :class:`VideoClassifier`'s.
"""


import torch
import torch.nn as nn

from stica_slowfast.registry import MODEL

from .classifier import VideoClassifier
from .configurable import configurable
from .pretrained import load_backbone_from_ssl_checkpoint

__all__ = ["LinearProbe", "load_backbone_from_ssl_checkpoint"]


@MODEL.register()
class LinearProbe(VideoClassifier):
    """Frozen backbone (eval mode, no gradients) and a dropout/linear head.

    ::

        video (B, C, T, H, W)
          -> backbone   (B, D)     frozen, BN in eval mode, no_grad   forward_features
          -> BatchNorm1d (B, D)    no affine parameters (optional)
          -> dropout, linear       ClassifierHead (trained)
          -> logits     (B, K)                                         forward

    B batch, C channels, T frames, H x W frame size, D = ``backbone.out_dim``, K classes.

    ``forward``, ``forward_train`` (cross-entropy over all rho clips, top-1) and ``from_config``
    (``MODEL.ARCH``, ``MODEL.NUM_CLASSES``, ``MODEL.DROPOUT_RATE``, ``MODEL.FC_INIT_STD``,
    ``MODEL.LOSS_FUNC``) are inherited from :class:`VideoClassifier`; only the feature path differs.
    Since the backbone's parameters have ``requires_grad=False``, the optimiser built by
    ``construct_optimizer`` holds the head only.

    Args:
        feature_norm: standardise the features with a BatchNorm without affine parameters before
            the head (``STICA.PROBE.FEATURE_NORM``).
        **kwargs: those of :class:`VideoClassifier`; the backbone is frozen here.
    """

    @configurable
    def __init__(self, *, feature_norm: bool = True, **kwargs) -> None:  # + VideoClassifier's kwargs
        super().__init__(**kwargs)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        # Per-feature standardisation with batch statistics in training and running ones at inference,
        # where it is a fixed affine map: the classifier stays linear, and does not depend on the scale
        # of the frozen features (random-init and pretrained backbones are probed alike).
        self.feature_norm = (
            nn.BatchNorm1d(self.backbone.out_dim, affine=False) if feature_norm else nn.Identity())

    @classmethod
    def from_config(cls, cfg) -> dict:
        """VideoClassifier's kwargs plus ``feature_norm`` from ``STICA.PROBE.FEATURE_NORM``."""
        return {**super().from_config(cfg), "feature_norm": cfg.STICA.PROBE.FEATURE_NORM}

    def train(self, mode: bool = True) -> "LinearProbe":
        """Set the head's mode; the backbone always stays in eval mode (frozen BN statistics)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled frozen-backbone features ``(B, D)`` of video ``(B, C, T, H, W)``, without autograd."""
        with torch.no_grad():
            return self.backbone(video)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)``: frozen features, then the optional BatchNorm, then the head."""
        return self.head(self.feature_norm(self.forward_features(video)))

    def load_pretrained(self, path: str, strict: bool = True) -> int:
        """Load the backbone of an SSL (or classifier) checkpoint; see
        :func:`load_backbone_from_ssl_checkpoint`. Returns the checkpoint's stored epoch (-1 if none)."""
        return load_backbone_from_ssl_checkpoint(path, self, strict=strict)
