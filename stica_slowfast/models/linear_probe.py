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

from stica_slowfast.checkpoint import load_backbone_from_ssl_checkpoint, load_pool_if_present
from stica_slowfast.checkpoint.layouts import AUTO
from stica_slowfast.registry import MODEL

from .build import build_audio_backbone
from .classifier import VideoClassifier
from .configurable import configurable

__all__ = ["LinearProbe", "AudioLinearProbe", "load_backbone_from_ssl_checkpoint"]


@MODEL.register()
class LinearProbe(VideoClassifier):
    """Frozen backbone (no gradients; BN statistics frozen or adapting) and a dropout/linear head.

    ::

        video (B, C, T, H, W)
          -> backbone   (B, D)     frozen, no_grad; BN in eval mode    forward_features
                                   (or, adapt_bn, in the probe's mode)
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
        adapt_bn: the frozen encoder's BatchNorm layers follow the probe's mode: in training they
            normalise with batch statistics and re-estimate their running ones on this data
            (``STICA.PROBE.BN_STATS adapt``: PySlowFast's released linear protocol); False keeps them in
            eval mode, with the checkpoint's statistics. No weight of the encoder changes either way.
        **kwargs: those of :class:`VideoClassifier`; the backbone is frozen here.
    """

    #: The checkpoint's key prefix of the encoder probed.
    checkpoint_prefix = "backbone."

    @configurable
    def __init__(self, *, feature_norm: bool, adapt_bn: bool, **kwargs) -> None:  # + VideoClassifier's kwargs
        super().__init__(**kwargs)
        self.adapt_bn = adapt_bn
        self.encoder().requires_grad_(False)
        self._set_encoder_mode(self.training)
        # Per-feature standardisation with batch statistics in training and running ones at inference,
        # where it is a fixed affine map: the classifier stays linear, and does not depend on the scale
        # of the frozen features (random-init and pretrained backbones are probed alike).
        self.feature_norm = (
            nn.BatchNorm1d(self.head.fc.in_features, affine=False) if feature_norm else nn.Identity())

    def encoder(self) -> nn.Module:
        """The frozen part: the backbone, and the temporal pooling when there is one."""
        return nn.ModuleList([self.backbone] + ([self.video_pool] if self.video_pool is not None else []))

    @classmethod
    def from_config(cls, cfg) -> dict:
        """VideoClassifier's kwargs plus ``feature_norm`` and ``adapt_bn`` (``STICA.PROBE``)."""
        return {**super().from_config(cfg), "feature_norm": cfg.STICA.PROBE.FEATURE_NORM,
                "adapt_bn": cfg.STICA.PROBE.BN_STATS == "adapt"}

    def train(self, mode: bool = True) -> "LinearProbe":
        """Set the head's mode; the backbone stays in eval mode (frozen BN statistics) except, with
        ``adapt_bn``, its BatchNorms (dropout in a frozen pooling stays off either way)."""
        super().train(mode)
        self._set_encoder_mode(mode)
        return self

    def _set_encoder_mode(self, mode: bool) -> None:
        self.encoder().eval()
        if mode and self.adapt_bn:
            for m in self.encoder().modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled frozen-backbone features ``(B, D)`` of video ``(B, C, T, H, W)``, without autograd."""
        with torch.no_grad():
            return super().forward_features(video)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)``: frozen features, then the optional BatchNorm, then the head (for
        PySlowFast's callers, in eval mode, ``head_act`` of them: :meth:`VideoClassifier.scores`)."""
        return self.scores(self.head(self.feature_norm(self.forward_features(video))), video)

    def load_pretrained(self, path: str, strict: bool = True, *, layout: str = AUTO, encoder: str = "online") -> int:
        """Load the backbone of an SSL (or classifier) checkpoint, ours or another code base's (``layout``),
        its online or momentum (``encoder``) one; see :func:`load_backbone_from_ssl_checkpoint` (and a
        pretrained temporal pooling when this probe has one). Returns the checkpoint's stored epoch
        (-1 if none)."""
        epoch = load_backbone_from_ssl_checkpoint(path, self, strict=strict, prefix=self.checkpoint_prefix,
                                                  layout=layout, encoder=encoder)
        if self.video_pool is not None and not load_pool_if_present(path, self.video_pool, "video_pool.",
                                                                    encoder=encoder):
            raise ValueError(f"STICA.POOL.TYPE {self.video_pool!r} probes a pretrained pooling, but {path} "
                             f"has no 'video_pool.*' tensors; probe with STICA.POOL.TYPE gap")
        return epoch


@MODEL.register()
class AudioLinearProbe(LinearProbe):
    """:class:`LinearProbe` of an audio encoder: frozen ``STICA.AUDIO.ARCH`` over ``batch["audio"]``
    spectrograms ``(B, 1, F, Ta)``, loaded from an audio-visual checkpoint's ``audio_backbone.*``
    (STiCA); the audio encoder's global average pool feeds the linear head."""

    input_key = "audio"
    checkpoint_prefix = "audio_backbone."

    @classmethod
    def from_config(cls, cfg) -> dict:
        """LinearProbe's kwargs with the audio encoder and no temporal pooling."""
        return {**super().from_config(cfg), "video_pool": None}

    @staticmethod
    def backbone_from_config(cfg) -> nn.Module:
        return build_audio_backbone(cfg)

    def forward_features(self, audio: torch.Tensor) -> torch.Tensor:
        """Pooled frozen features ``(B, D)`` of spectrograms ``(B, 1, F, Ta)`` (or a one-element list,
        as PySlowFast's loops pass their inputs)."""
        if isinstance(audio, (list, tuple)):
            if len(audio) != 1:
                raise ValueError(f"expected one audio input, got a list of {len(audio)} tensors")
            audio = audio[0]
        return super().forward_features(audio)
