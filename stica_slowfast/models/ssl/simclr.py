"""RhoSimCLR: SimCLR's NT-Xent over rho clips per video.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", arXiv 2002.05709,
in the rho-clip video form of Feichtenhofer et al., arXiv 2104.14558. Symbols: B batch (per process),
W processes, rho clips, D projection size::

    rho x (B, C, T, H, W) -> backbone -> projector -> z (B, rho, D)
      -> all_gather_with_grad over processes (SIMCLR_DIST_ON)  (W * B, rho, D)
      -> nt_xent: every clip an anchor, its rho - 1 sibling clips positives,
         all other W * rho * B - rho clips negatives                        -> loss
"""

from typing import Dict

import torch
import torch.nn as nn

from stica_slowfast.losses import nt_xent
from stica_slowfast.registry import MODEL
from stica_slowfast.utils.distributed import all_gather_with_grad, get_world_size

from ..configurable import configurable
from .base import RhoSSLBase, ordered_pairs

__all__ = ["RhoSimCLR"]


@MODEL.register()
class RhoSimCLR(RhoSSLBase):
    """rho-clip SimCLR. See :class:`~.base.RhoSSLBase` for the shared arguments.

    Args:
        dist_on: gather embeddings from all processes (with gradients) as negatives.
    """

    @configurable
    def __init__(self, *, dist_on: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dist_on = dist_on

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH`` and ``CONTRASTIVE.*`` (incl. ``SIMCLR_DIST_ON``)."""
        return {**cls.common_kwargs_from_config(cfg), "dist_on": cfg.CONTRASTIVE.SIMCLR_DIST_ON}

    def forward_train(self, batch: Dict) -> dict:
        """NT-Xent over the rho clips of ``batch["video"]``; returns ``{"loss", "pos_cos"}``."""
        clips = self.clips_of(batch)
        z = self.encode(clips, self.project)  # rho x (B, D)
        if self.dist_on and get_world_size() > 1:
            # Each process then computes the same global loss; the gather's backward sums the
            # gradients and DDP averages them, giving the gradient of the global loss.
            z = [all_gather_with_grad(zi) for zi in z]  # rho x (W * B, D)
        loss = nt_xent(z, self.temperature)
        with torch.no_grad():
            zn = [nn.functional.normalize(zi.float(), dim=1) for zi in z]
            # mean cosine similarity of the positive (same-video) clip pairs, for monitoring collapse
            pos_cos = torch.stack([(zn[a] * zn[b]).sum(1).mean() for a, b in ordered_pairs(len(zn))]).mean()
        return {"loss": loss, "pos_cos": pos_cos.item()}
