"""RhoBYOL: BYOL over rho clips per video.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", arXiv 2006.07733,
in the rho-clip video form of Feichtenhofer et al., arXiv 2104.14558. Symbols: B batch, rho clips,
D projection size::

    rho x (B, C, T, H, W) -> online backbone -> projector -> predictor(s) -> p (B, rho, D)   (grad)
    rho x (B, C, T, H, W) -> EMA  backbone -> projector                  -> z (B, rho, D)   (no grad)
    loss = mean over ordered pairs (a, b), a != b, of byol_loss(p[:, a], z[:, b]) = 2 - 2 cos
    on_step_end: EMA update of the target (cosine momentum with MOMENTUM_ANNEALING)
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


@MODEL.register()
class RhoBYOL(RhoSSLBase):
    """rho-clip BYOL. See :class:`~.base.RhoSSLBase` for the shared arguments.

    Args:
        predictor_depths: linear-layer counts of the predictor MLPs (D -> mlp_dim -> D), applied one
            after another (``[2]`` is BYOL's single 2-layer predictor).
        momentum: base EMA momentum of the target.
        momentum_annealing: cosine schedule of the momentum to 1.
    """

    @configurable
    def __init__(
        self,
        *,
        predictor_depths: Sequence[int] = (2,),
        momentum: float = 0.994,
        momentum_annealing: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(predictor_depths) < 1:
            raise ValueError("predictor_depths needs at least one depth")
        norm = mlp_norm(kwargs.get("bn_mlp", True), kwargs.get("bn_sync_mlp", False))
        self.predictor = nn.Sequential(
            *[
                MLP(in_dim=self.dim, hidden_dim=self.mlp_dim, out_dim=self.dim, num_layers=d, norm=norm)
                for d in predictor_depths
            ]
        )
        # The target copies {backbone, projector} only: BYOL's target has no predictor.
        self._init_momentum_target(base_momentum=momentum, annealing=momentum_annealing)

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH`` and ``CONTRASTIVE.*`` (incl. ``PREDICTOR_DEPTHS``, ``MOMENTUM*``)."""
        c = cfg.CONTRASTIVE
        return {
            **cls.common_kwargs_from_config(cfg),
            "predictor_depths": list(c.PREDICTOR_DEPTHS),
            "momentum": c.MOMENTUM,
            "momentum_annealing": c.MOMENTUM_ANNEALING,
        }

    def _predict(self, video: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.project(video))  # (B, C, T, H, W) -> (B, D)

    def forward_train(self, batch: Dict) -> dict:
        """Symmetric BYOL regression over all ordered clip pairs; returns ``{"loss", "momentum"}``."""
        clips = self.clips_of(batch)
        p = self.encode(clips, self._predict)  # rho x (B, D), with graph
        with torch.no_grad():
            z = self.encode(clips, self.project_target)  # rho x (B, D), no graph
        pairs = ordered_pairs(len(clips))
        loss = sum(byol_loss(p[a], z[b]) for a, b in pairs) / len(pairs)
        return {"loss": loss, "momentum": float(self.momentum)}
