"""RhoBYOL: BYOL over rho clips per video.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", arXiv 2006.07733,
in the rho-clip video form of Feichtenhofer et al., arXiv 2104.14558. Symbols: B batch, rho clips,
N crops per clip, D projection size::

    rho x (B, C, T, H, W) -> online encoder -> predictor(s) -> p (rho, B, D) [, crops (N, rho, B, D)] (grad)
    rho x (B, C, T, H, W) -> EMA encoder                    -> z (rho, B, D)                          (no grad)
    loss_global = mean over ordered pairs (a, b), a != b, of byol_loss(p[a], z[b]) = 2 - 2 cos
    loss_crop   = the same with crop k of clip a regressing z[b] (multi-crop BYOL)
    on_step_end: EMA update of the target (cosine momentum with MOMENTUM_ANNEALING)
"""

from typing import Dict, Sequence

import torch
import torch.nn as nn

from stica_slowfast.layers import MLP
from stica_slowfast.losses import byol_loss
from stica_slowfast.registry import MODEL

from ..configurable import configurable
from .base import RhoSSLBase, pair_mean, with_crop_term

__all__ = ["RhoBYOL"]


@MODEL.register()
class RhoBYOL(RhoSSLBase):
    """rho-clip BYOL. See :class:`~.base.RhoSSLBase` for the shared arguments.

    Args:
        predictor_depths: linear-layer counts of the predictor MLPs (D -> mlp_dim -> D), applied one
            after another (``[2]`` is BYOL's single 2-layer predictor).
        momentum: base EMA momentum of the target.
        momentum_annealing: cosine schedule of the momentum to 1.
        predictor_lr_mult: LR multiplier of the predictor (``lr_scales``, read by the optimiser).
    """

    @configurable
    def __init__(
        self,
        *,
        predictor_depths: Sequence[int],
        momentum: float,
        momentum_annealing: bool,
        predictor_lr_mult: float,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(predictor_depths) < 1:
            raise ValueError("predictor_depths needs at least one depth")
        if predictor_lr_mult <= 0:
            raise ValueError(f"predictor_lr_mult must be > 0, got {predictor_lr_mult}")
        self.predictor = nn.Sequential(*[
            MLP(in_dim=self.dim, hidden_dim=self.mlp_dim, out_dim=self.dim, num_layers=d, norm=self.head_norm)
            for d in predictor_depths
        ])
        if predictor_lr_mult != 1.0:
            self.lr_scales = {"predictor": float(predictor_lr_mult)}
        # The target copies {backbone, projector[, video_pool]} only: BYOL's target has no predictor.
        self._init_momentum_target(base_momentum=momentum, annealing=momentum_annealing)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH``, ``CONTRASTIVE.*`` (incl. ``PREDICTOR_DEPTHS``, ``MOMENTUM*``),
        ``STICA.BYOL.PREDICTOR_LR_MULT``, ``STICA.POOL.*`` and ``STICA.FEATURE_CROP.*``."""
        c = cfg.CONTRASTIVE
        return {
            **cls.common_kwargs_from_config(cfg),
            "predictor_depths": list(c.PREDICTOR_DEPTHS),
            "momentum": c.MOMENTUM,
            "momentum_annealing": c.MOMENTUM_ANNEALING,
            "predictor_lr_mult": cfg.STICA.BYOL.PREDICTOR_LR_MULT,
        }

    def forward_train(self, batch: Dict) -> dict:
        """Symmetric BYOL regression over all ordered clip pairs (and the crop term); returns
        ``{"loss", "momentum"[, "loss_crop"]}``."""
        clips = self.clips_of(batch)
        out = self.encoder(clips, head=self.predictor)  # p: (rho, B, D) [+ crops], with graph
        with torch.no_grad():
            z = self.target_encoder(clips).views  # (rho, B, D), no graph
        loss, logs = with_crop_term(pair_mean(out.views, z, byol_loss), out.crops_of(), z, byol_loss)
        return {"loss": loss, "momentum": float(self.momentum), **logs}
