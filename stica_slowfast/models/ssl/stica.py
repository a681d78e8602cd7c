"""STiCA: cross-modal video-audio contrastive learning with Feature Crop and transformer pooling.

Patrick, Asano, Huang, Misra, Metze, Henriques, Vedaldi, "Space-Time Crop & Attend: Improving
Cross-modal Video Representation Learning", ICCV 2021, arXiv 2103.10211. Symbols: B videos per process,
W processes, V views per video (clips, each with its own augmentation and its aligned audio), D_v / D_a
backbone channels, t time steps of a feature map, N_l / N_s large / small crops per view, E joint
embedding size::

    video views V x (B, C, T, H, W) -> video encoder (models/encoder.py: backbone, one call -> fmap
      (V*B, D_v, t, h, w) -> time tokens -> video pool -> video projector)            z_v (V, B, E)
      fmap --FeatureCrop--> crops -> time tokens -> video pool -> crop projector
                                         -> large (N_l, V, B, E), small (N_s, V, B, E)
    audio views V x (B, 1, F, Ta) -> audio encoder (audio backbone -> tokens (V*B, ta, D_a) -> audio
      pool -> audio projector)                                                         z_a (V, B, E)

    loss = alpha       * mean_v  cross_modal_info_nce(z_v[v], z_a[v], T_xm)         video <-> audio
         + (1 - alpha) * (  mean over large crops (i, a), (j, b), a != b: info_nce(l_ia, l_jb, T_c)
                          + mean over small crops (k, a), large crops (i, b), a != b:
                                info_nce(s_ka, stopgrad(l_ib), T_c) ) / 2

Every InfoNCE's negatives are the other videos of the global batch (embeddings gathered from all
processes with gradient, ``dist_on``). With Feature Crop off the loss is the cross-modal term alone.
The crops can also be taken in input space (``crop_space="input"``: each crop of the input clip goes
through the backbone), the expensive multi-crop that Feature Crop replaces; ``tools/benchmark.py crops``
compares the two.
"""

from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from stica_slowfast.layers import MLP, FeatureCrop
from stica_slowfast.losses import crop_info_nce, cross_modal_info_nce
from stica_slowfast.registry import MODEL
from stica_slowfast.utils.distributed import gather_batch

from ..api import ModelBase
from ..build import build_audio_backbone, build_backbone
from ..configurable import configurable
from ..encoder import MultiViewEncoder
from ..temporal import feature_crop_from_config, temporal_pooling_from_config
from .base import mlp_norm

__all__ = ["STiCA"]


@MODEL.register()
class STiCA(ModelBase):
    """Video and audio encoders trained by cross-modal and feature-crop InfoNCE (see module docstring).

    Args:
        backbone: video encoder with ``out_dim`` and ``forward_feature_map(video) -> (B, D_v, t, h, w)``;
            stored as ``self.backbone`` so linear probes and fine-tuning load its ``backbone.*`` keys.
        audio_backbone: audio encoder with ``out_dim`` and ``forward_feature_map(spec) -> (B, D_a, f, ta)``.
        video_pool: temporal pooling ``(B, t, D_v) -> (B, video_pool.out_dim)`` of the video (and crops).
        audio_pool: temporal pooling ``(B, ta, D_a) -> (B, audio_pool.out_dim)``.
        feature_crop: :class:`FeatureCrop`, or None for no crops (cross-modal loss only).
        dim: joint embedding size E.
        mlp_dim: hidden width of the projection MLPs.
        num_mlp_layers: linear layers of each projection MLP.
        bn_mlp: BatchNorm1d after hidden projector layers; ``bn_sync_mlp``: SyncBatchNorm instead.
        alpha: weight of the cross-modal term; ``1 - alpha`` weighs the crop term.
        cross_modal_temperature: T of the video <-> audio InfoNCE.
        crop_temperature: T of the crop InfoNCE.
        crop_space: "feature" (Feature Crop) or "input" (crops of the input clip, each encoded).
        dist_on: negatives from all processes (gathered with gradient).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        audio_backbone: nn.Module,
        video_pool: nn.Module,
        audio_pool: nn.Module,
        feature_crop: Optional[FeatureCrop],
        dim: int,
        mlp_dim: int,
        num_mlp_layers: int,
        bn_mlp: bool,
        bn_sync_mlp: bool,
        alpha: float,
        cross_modal_temperature: float,
        crop_temperature: float,
        crop_space: str,
        dist_on: bool,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        for name, t in (("cross_modal_temperature", cross_modal_temperature),
                        ("crop_temperature", crop_temperature)):
            if t <= 0:
                raise ValueError(f"{name} must be > 0, got {t}")
        if feature_crop is not None and feature_crop.num_crops("spatial_large", "temporal_large") == 0:
            raise ValueError("STiCA's crop loss contrasts large crops: STICA.FEATURE_CROP.NUM_LARGE_SPATIAL + "
                             "NUM_LARGE_TEMPORAL must be > 0 with STICA.FEATURE_CROP.ENABLE")
        norm = mlp_norm(bn_mlp, bn_sync_mlp)

        def projector(in_dim: int) -> MLP:
            return MLP(in_dim=in_dim, hidden_dim=mlp_dim, out_dim=dim, num_layers=num_mlp_layers, norm=norm)

        self.backbone = backbone
        self.video_pool = video_pool
        self.video_projector = projector(video_pool.out_dim)
        self.audio_backbone = audio_backbone
        self.audio_pool = audio_pool
        self.audio_projector = projector(audio_pool.out_dim)
        self.feature_crop = feature_crop
        # Crops get their own head: the crop objective (within the video, T_c) and the joint
        # video-audio space (T_xm) are different geometries.
        self.crop_projector = projector(video_pool.out_dim) if feature_crop is not None else None
        self.video_encoder = MultiViewEncoder(
            backbone=backbone, projector=self.video_projector, pool=video_pool, feature_crop=feature_crop,
            crop_space=crop_space, sequential=False, crop_projector=self.crop_projector)
        self.audio_encoder = MultiViewEncoder(
            backbone=audio_backbone, projector=self.audio_projector, pool=audio_pool, feature_crop=None,
            crop_space=crop_space, sequential=False)
        self.dim = dim
        self.alpha = alpha
        self.cross_modal_temperature = cross_modal_temperature
        self.crop_temperature = crop_temperature
        self.dist_on = dist_on

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH``, ``STICA.AUDIO.ARCH``, ``STICA.POOL.*``, ``STICA.FEATURE_CROP.*``,
        ``STICA.LOSS.*`` and the projection sizes ``CONTRASTIVE.{DIM, MLP_DIM, NUM_MLP_LAYERS, BN_*}``."""
        backbone, audio_backbone = build_backbone(cfg), build_audio_backbone(cfg)
        c, loss = cfg.CONTRASTIVE, cfg.STICA.LOSS
        return {
            "backbone": backbone,
            "audio_backbone": audio_backbone,
            "video_pool": temporal_pooling_from_config(cfg, backbone.out_dim),
            "audio_pool": temporal_pooling_from_config(cfg, audio_backbone.out_dim),
            "feature_crop": feature_crop_from_config(cfg),
            "dim": c.DIM,
            "mlp_dim": c.MLP_DIM,
            "num_mlp_layers": c.NUM_MLP_LAYERS,
            "bn_mlp": c.BN_MLP,
            "bn_sync_mlp": c.BN_SYNC_MLP,
            "alpha": loss.ALPHA,
            "cross_modal_temperature": loss.CROSS_MODAL_T,
            "crop_temperature": loss.CROP_T,
            "crop_space": cfg.STICA.FEATURE_CROP.SPACE,
            "dist_on": c.SIMCLR_DIST_ON,
        }

    # ---------------------------------------------------------------------------------------------- #
    # Encoders
    # ---------------------------------------------------------------------------------------------- #
    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled video backbone features ``(B, D_v)`` (linear probe, kNN, retrieval)."""
        return self.backbone(video)

    def forward_audio_features(self, spec: torch.Tensor) -> torch.Tensor:
        """Pooled audio backbone features ``(B, D_a)`` of spectrograms ``(B, 1, F, Ta)``."""
        return self.audio_backbone(spec)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """Joint-space video embedding ``(B, E)`` (not normalised) of video ``(B, C, T, H, W)``."""
        return self.video_encoder.embed(video)

    def embed_audio(self, spec: torch.Tensor) -> torch.Tensor:
        """Joint-space audio embedding ``(B, E)`` (not normalised) of spectrograms ``(B, 1, F, Ta)``."""
        return self.audio_encoder.embed(spec)

    # ---------------------------------------------------------------------------------------------- #
    # Training step
    # ---------------------------------------------------------------------------------------------- #
    @staticmethod
    def _views(batch: Dict, key: str) -> List[torch.Tensor]:
        views = batch.get(key)
        if views is None:
            raise KeyError(f"STiCA needs batch[{key!r}]" + (
                " (set STICA.AUDIO.ENABLE True)" if key == "audio" else ""))
        return [views] if isinstance(views, torch.Tensor) else list(views)

    def forward_train(self, batch: Dict) -> dict:
        """One step's loss; returns ``{"loss", "loss_cross_modal", "loss_crop"?, "av_acc"}``."""
        videos, audios = self._views(batch, "video"), self._views(batch, "audio")
        if len(videos) != len(audios):
            raise ValueError(f"{len(videos)} video views but {len(audios)} audio views")
        video = self.video_encoder(videos)  # views (V, B, E) [+ crops (n, V, B, E) per scale]
        z_a = self.audio_encoder(audios).views  # (V, B, E)
        g_v = gather_batch(video.views, enabled=self.dist_on)  # (V, W*B, E)
        g_a = gather_batch(z_a, enabled=self.dist_on)
        t = self.cross_modal_temperature
        loss_xm = torch.stack([cross_modal_info_nce(v, a, temperature=t) for v, a in zip(g_v, g_a)]).mean()
        out = {"loss_cross_modal": loss_xm.detach()}
        loss = loss_xm
        if video.crops:
            large = gather_batch(video.crops_of("spatial_large", "temporal_large"), enabled=self.dist_on)
            small = video.crops_of("spatial_small", "temporal_small")  # (N_s, V, B, E), N_s may be 0
            small = gather_batch(small, enabled=self.dist_on) if len(small) else None
            # large <-> large across views, small -> stopped large (losses.crop_info_nce)
            loss_crop = crop_info_nce(large, small, temperature=self.crop_temperature)
            loss = self.alpha * loss_xm + (1.0 - self.alpha) * loss_crop
            out["loss_crop"] = loss_crop.detach()
        with torch.no_grad():
            # video -> audio top-1 among the global batch: how well the modalities are matched
            sims = F.normalize(g_v[0].float(), dim=1) @ F.normalize(g_a[0].float(), dim=1).T
            target = torch.arange(sims.shape[0], device=sims.device)
            out["av_acc"] = (sims.argmax(dim=1) == target).float().mean() * 100.0
        out["loss"] = loss
        return out
