"""Supervised video classifier: backbone + dropout/linear head trained with cross-entropy.

The baseline that proves the training path (data -> ``forward_train`` -> loss -> optimizer), and the
model used for fine-tuning a pretrained backbone on UCF-101 / HMDB-51.
"""

from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from stica_slowfast.checkpoint import load_backbone_from_ssl_checkpoint, load_pool_if_present
from stica_slowfast.checkpoint.layouts import AUTO
from stica_slowfast.registry import MODEL

from .api import HEAD_ACTS, ModelBase, called_by_pyslowfast, head_activation
from .build import build_backbone
from .configurable import configurable
from .encoder import feature_map_tokens
from .heads import ClassifierHead
from .temporal import temporal_pooling_from_config

__all__ = ["VideoClassifier"]

_LOSS_FUNCS = ("cross_entropy",)


def _check_loss_func(loss_func: str, key: str) -> None:
    if loss_func not in _LOSS_FUNCS:
        raise ValueError(f"{key} must be one of {list(_LOSS_FUNCS)}, got {loss_func!r}")


@MODEL.register()
class VideoClassifier(ModelBase):
    """Backbone, global average pool (or a temporal pooling), dropout and a linear classifier.

    ::

        video (B, C, T, H, W)
          -> backbone   (B, D)     global average pool                  forward_features
             or backbone feature map -> time tokens (B, t, D) -> video_pool (B, P)
          -> dropout, linear       ClassifierHead
          -> logits     (B, K)     forward

    B batch, C channels, T frames, H x W frame size, D = ``backbone.out_dim``, P =
    ``video_pool.out_dim``, K classes.

    Built as ``VideoClassifier(cfg)`` (registry; see :meth:`from_config`) or with explicit keyword
    arguments.

    Args:
        backbone: video encoder with ``out_dim`` and ``forward(video) -> (B, out_dim)``.
        num_classes: K.
        dropout_rate: dropout probability before the linear layer.
        fc_init_std: std of the normal init of the linear weights.
        loss_func: training loss; only ``"cross_entropy"``.
        video_pool: temporal pooling of the backbone's time tokens (``STICA.POOL.TYPE transformer``,
            e.g. STiCA's pretrained one); None for the backbone's global average pool.
        head_act: ``MODEL.HEAD_ACT``: what :meth:`forward` returns in eval mode when called as
            PySlowFast's loops call a model (a list of pathways): "softmax" (PySlowFast's default:
            its test meter sums the views' scores, the same ensemble as our engine's mean of softmax),
            "sigmoid" or "none" (logits). Our engine always gets logits.
        encoder_lr_scale: LR multiplier of the backbone and ``video_pool`` relative to the head
            (``lr_scales``, read by the optimiser; ``STICA.SOLVER.ENCODER_LR_SCALE``).
    """

    #: ``forward(video)`` returns class logits, so the engine measures val/test accuracy with it.
    predicts_labels = True

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        num_classes: int,
        dropout_rate: float,
        fc_init_std: float,
        loss_func: str,
        video_pool: Optional[nn.Module],
        head_act: str,
        encoder_lr_scale: float,
    ) -> None:
        super().__init__()
        _check_loss_func(loss_func, "loss_func")
        if head_act not in HEAD_ACTS:
            raise ValueError(f"head_act must be one of {list(HEAD_ACTS)}, got {head_act!r}")
        self.head_act = head_act
        self.backbone = backbone
        # Named as in STiCA, so that its pretrained pooling loads under the same keys.
        self.video_pool = video_pool
        self.head = ClassifierHead(
            in_dim=backbone.out_dim if video_pool is None else video_pool.out_dim,
            num_classes=num_classes,
            dropout_rate=dropout_rate,
            init_std=fc_init_std,
        )
        self.num_classes = num_classes
        self.loss_func = loss_func
        if encoder_lr_scale <= 0:
            raise ValueError(f"encoder_lr_scale must be positive, got {encoder_lr_scale}")
        if encoder_lr_scale != 1:
            self.lr_scales = {name: float(encoder_lr_scale) for name in ("backbone", "video_pool")
                              if getattr(self, name) is not None}

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor kwargs from ``MODEL.ARCH`` (backbone), ``MODEL.NUM_CLASSES``,
        ``MODEL.DROPOUT_RATE``, ``MODEL.FC_INIT_STD``, ``MODEL.LOSS_FUNC``, ``MODEL.HEAD_ACT``, ``STICA.POOL.*``
        (a transformer pooling when ``STICA.POOL.TYPE`` is "transformer") and
        ``STICA.SOLVER.ENCODER_LR_SCALE``."""
        _check_loss_func(cfg.MODEL.LOSS_FUNC, "MODEL.LOSS_FUNC")
        backbone = cls.backbone_from_config(cfg)
        pool = None
        if cfg.STICA.POOL.TYPE != "gap":
            pool = temporal_pooling_from_config(cfg, backbone.out_dim)
        return {
            "backbone": backbone,
            "num_classes": cfg.MODEL.NUM_CLASSES,
            "dropout_rate": cfg.MODEL.DROPOUT_RATE,
            "fc_init_std": cfg.MODEL.FC_INIT_STD,
            "loss_func": cfg.MODEL.LOSS_FUNC,
            "video_pool": pool,
            "head_act": cfg.MODEL.HEAD_ACT,
            "encoder_lr_scale": cfg.STICA.SOLVER.ENCODER_LR_SCALE,
        }

    @staticmethod
    def backbone_from_config(cfg) -> nn.Module:
        """The encoder of ``MODEL.ARCH`` (subclasses for other inputs override this)."""
        return build_backbone(cfg)

    def load_pretrained(self, path: str, strict: bool = True, *, layout: str = AUTO, encoder: str = "online") -> int:
        """Initialise from another run (``TRAIN.CHECKPOINT_FILE_PATH``): fine-tuning.

        The backbone comes from the checkpoint's ``backbone.*`` (an SSL method's or a classifier's;
        strict); the head too when the checkpoint has one of the same shape, else it stays freshly
        initialised (an SSL checkpoint, or another class count); a temporal pooling from its
        ``video_pool.*`` when it has one (STiCA). Another code base's checkpoint is read in our names
        (``layout``); ``encoder`` picks a BYOL / MoCo checkpoint's online or momentum encoder. Returns
        the stored epoch.
        """
        epoch = load_backbone_from_ssl_checkpoint(path, self, strict=strict, with_head=True, layout=layout,
                                                  encoder=encoder)
        if self.video_pool is not None:
            load_pool_if_present(path, self.video_pool, "video_pool.", encoder=encoder)
        return epoch

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, D)`` (or ``(B, P)``) of video ``(B, C, T, H, W)``."""
        if self.video_pool is None:
            return self.backbone(video)  # the backbone's global average pool
        return self.video_pool(feature_map_tokens(self.backbone.forward_feature_map(video)))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)`` of video ``(B, C, T, H, W)``; from a one-pathway list (PySlowFast's
        loops) in eval mode, their ``head_act`` (see the class docstring)."""
        return self.scores(self.head(self.forward_features(video)), video)

    def scores(self, logits: torch.Tensor, inputs) -> torch.Tensor:
        """What :meth:`forward` returns for ``logits`` of ``inputs``: logits, or ``head_act`` of them
        in eval mode for PySlowFast's callers (its heads do the same)."""
        if called_by_pyslowfast(inputs) and not self.training:
            return head_activation(logits, self.head_act)
        return logits

    def forward_train(self, batch: Dict[str, Union[torch.Tensor, List[torch.Tensor]]]) -> dict:
        """One supervised training step's loss; every clip is a sample with its video's label.

        Args:
            batch: ``"video"``: list of rho >= 1 clips, each ``(B, C, T, H, W)`` (a single tensor is
                taken as rho = 1); ``"label"``: ``(B,)`` int64 class indices.

        Returns:
            ``{"loss": scalar cross-entropy tensor, "top1_acc": percent (0-dim tensor)}``, both averaged
            over the rho * B clips.
        """
        clips = batch[self.input_key]
        if isinstance(clips, torch.Tensor):
            clips = [clips]
        labels = batch["label"]
        if labels.dim() != 1 or any(clip.shape[0] != labels.shape[0] for clip in clips):
            raise ValueError(
                f"batch['label'] must be (B,) with B the batch size of every clip, got label shape "
                f"{tuple(labels.shape)} and clip shapes {[tuple(c.shape) for c in clips]}"
            )
        rho = len(clips)
        # rho x (B, C, T, H, W) -> (rho * B, C, T, H, W), clip-major; labels tiled to match
        video = torch.cat(list(clips), dim=0)
        targets = labels.repeat(rho)
        logits = self(video)  # (rho * B, K)
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():
            top1 = (logits.argmax(dim=1) == targets).float().mean() * 100.0
        return {"loss": loss, "top1_acc": top1}
