"""RhoBYOL: BYOL over rho clips per video, optionally with STiCA's Feature Crop as extra online views.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", arXiv 2006.07733,
in the rho-clip video form of Feichtenhofer et al., arXiv 2104.14558; crops from Patrick et al.,
"Space-Time Crop & Attend", arXiv 2103.10211. Symbols: B batch, rho clips, D_b backbone channels,
t x h x w feature map, P pooled size, N crops per clip (large and small, spatial and temporal),
D projection size::

    rho x (B, C, T, H, W) -> online backbone -> pool -> projector -> predictor(s) -> p (B, rho, D) (grad)
    rho x (B, C, T, H, W) -> EMA  backbone -> pool -> projector                  -> z (B, rho, D) (no grad)
    loss = mean over ordered pairs (a, b), a != b, of byol_loss(p[:, a], z[:, b]) = 2 - 2 cos
    on_step_end: EMA update of the target (cosine momentum with MOMENTUM_ANNEALING)

With Feature Crop (multi-crop BYOL: crops are extra online views, the target sees only full clips)::

    clip a -> online backbone (once) -> fmap (B, D_b, t, h, w) -> pool -> ... -> p[:, a]     (B, D)
      fmap (feature space) or clip a (input space, each crop then encoded by the backbone)
        --FeatureCrop--> N crops (B, D_b, t', h', w') -> pool -> projector -> predictor(s)
        -> p_crop[:, a]                                                                     (B, N, D)
    loss_global = mean over (a, b), a != b:          byol_loss(p[:, a], z[:, b])
    loss_crop   = mean over (a, b), a != b, crops k: byol_loss(p_crop[:, a, k], z[:, b])
    loss = (loss_global + loss_crop) / 2

The two terms weigh the same whatever N is (so many crops do not drown the full-clip views; one crop
weighs 1 / (2 N) of the full clip), as STiCA's alpha = 0.5 does for its crop term.
"""

from typing import Dict, Sequence

import torch
import torch.nn as nn

from stica_slowfast.layers import MLP
from stica_slowfast.losses import byol_loss
from stica_slowfast.registry import MODEL

from ..configurable import configurable
from .base import RhoSSLBase, mlp_norm, ordered_pairs

__all__ = ["RhoBYOL"]

_CROP_SPACES = ("feature", "input")


@MODEL.register()
class RhoBYOL(RhoSSLBase):
    """rho-clip BYOL. See :class:`~.base.RhoSSLBase` for the shared arguments (incl. ``video_pool``
    and ``feature_crop``).

    With ``sequential`` and Feature Crop, a clip's whole forward (backbone, crops, heads) is one
    checkpointed function; the checkpoint restores the RNG state for its recompute, so the recompute
    draws the same crop boxes.

    Args:
        predictor_depths: linear-layer counts of the predictor MLPs (D -> mlp_dim -> D), applied one
            after another (``[2]`` is BYOL's single 2-layer predictor).
        momentum: base EMA momentum of the target.
        momentum_annealing: cosine schedule of the momentum to 1.
        predictor_lr_mult: LR multiplier of the predictor (``lr_scales``, read by the optimiser).
        crop_space: with ``feature_crop``: "feature" (crop each clip's feature map, one backbone
            pass) or "input" (crop the input clip and encode every crop, the costly multi-crop).
    """

    supports_feature_crop = True

    @configurable
    def __init__(
        self,
        *,
        predictor_depths: Sequence[int] = (2,),
        momentum: float = 0.994,
        momentum_annealing: bool = True,
        predictor_lr_mult: float = 1.0,
        crop_space: str = "feature",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(predictor_depths) < 1:
            raise ValueError("predictor_depths needs at least one depth")
        if crop_space not in _CROP_SPACES:
            raise ValueError(f"crop_space must be one of {_CROP_SPACES}, got {crop_space!r}")
        if self.feature_crop is not None and self.feature_crop.num_crops() == 0:
            raise ValueError("STICA.FEATURE_CROP.ENABLE needs at least one crop (STICA.FEATURE_CROP.NUM_*)")
        norm = mlp_norm(kwargs.get("bn_mlp", True), kwargs.get("bn_sync_mlp", False))
        self.predictor = nn.Sequential(
            *[
                MLP(in_dim=self.dim, hidden_dim=self.mlp_dim, out_dim=self.dim, num_layers=d, norm=norm)
                for d in predictor_depths
            ]
        )
        if predictor_lr_mult <= 0:
            raise ValueError(f"predictor_lr_mult must be > 0, got {predictor_lr_mult}")
        #: ``{submodule: LR multiplier}`` for the optimiser's param groups.
        self.lr_scales = {"predictor": float(predictor_lr_mult)} if predictor_lr_mult != 1.0 else {}
        self.crop_space = crop_space
        # The target copies {backbone, projector[, video_pool]} only: BYOL's target has no predictor.
        self._init_momentum_target(base_momentum=momentum, annealing=momentum_annealing)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH``, ``CONTRASTIVE.*`` (incl. ``PREDICTOR_DEPTHS``, ``MOMENTUM*``),
        ``STICA.BYOL.PREDICTOR_LR_MULT``,
        ``STICA.POOL.*`` and ``STICA.FEATURE_CROP.*`` (incl. ``SPACE``)."""
        c = cfg.CONTRASTIVE
        return {
            **cls.common_kwargs_from_config(cfg),
            "predictor_depths": list(c.PREDICTOR_DEPTHS),
            "momentum": c.MOMENTUM,
            "momentum_annealing": c.MOMENTUM_ANNEALING,
            "predictor_lr_mult": cfg.STICA.BYOL.PREDICTOR_LR_MULT,
            "crop_space": cfg.STICA.FEATURE_CROP.SPACE,
        }

    def _predict(self, video: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.project(video))  # (B, C, T, H, W) -> (B, D)

    def _predict_with_crops(self, video: torch.Tensor) -> torch.Tensor:
        """Predictions ``(B, 1 + N, D)`` of clip ``(B, C, T, H, W)``: the full clip, then its N crops.

        In feature space the backbone runs once: the full clip and the crops are pooled from the same
        feature map. Each crop scale goes through the heads as its own batch (as in STiCA).
        """
        fmap = self.backbone.forward_feature_map(video)  # (B, D_b, t, h, w)
        views = [self.predictor(self.projector(self.pool_feature_map(fmap)))[:, None]]  # (B, 1, D)
        source = fmap if self.crop_space == "feature" else video
        for x in self.feature_crop(source).crops.values():  # scale -> (B, n, C', t', h', w')
            b, n = x.shape[:2]
            if n == 0:
                continue
            x = x.flatten(0, 1)  # (B, n, C', t', h', w') -> (B * n, C', t', h', w'), sample-major
            if self.crop_space == "input":
                x = self.backbone.forward_feature_map(x)  # (B * n, D_b, t', h', w')
            p = self.predictor(self.projector(self.pool_feature_map(x)))  # (B * n, D)
            views.append(p.reshape(b, n, -1))  # (B * n, D) -> (B, n, D)
        return torch.cat(views, dim=1)  # (B, 1 + N, D)

    def forward_train(self, batch: Dict) -> dict:
        """Symmetric BYOL regression over all ordered clip pairs (plus the crop term with Feature
        Crop); returns ``{"loss", "momentum"}`` and ``"loss_crop"`` with Feature Crop."""
        clips = self.clips_of(batch)
        encoder = self._predict if self.feature_crop is None else self._predict_with_crops
        p = self.encode(clips, encoder)  # rho x (B, D), or rho x (B, 1 + N, D) with crops; with graph
        with torch.no_grad():
            z = self.encode(clips, self.project_target)  # rho x (B, D), no graph
        pairs = ordered_pairs(len(clips))
        if self.feature_crop is None:
            loss = sum(byol_loss(p[a], z[b]) for a, b in pairs) / len(pairs)
            return {"loss": loss, "momentum": float(self.momentum)}
        loss_global = sum(byol_loss(p[a][:, 0], z[b]) for a, b in pairs) / len(pairs)
        n = p[0].shape[1] - 1
        # Crops of clip a (B, N, D) -> (B * N, D), sample-major, against clip b's target (B, D)
        # repeated for each of its N crops -> (B * N, D).
        loss_crop = sum(
            byol_loss(p[a][:, 1:].flatten(0, 1), z[b].repeat_interleave(n, dim=0)) for a, b in pairs
        ) / len(pairs)
        loss = (loss_global + loss_crop) / 2
        return {"loss": loss, "loss_crop": loss_crop.item(), "momentum": float(self.momentum)}
