"""RhoSimCLR: SimCLR's NT-Xent over rho clips per video.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", arXiv 2002.05709,
in the rho-clip video form of Feichtenhofer et al., arXiv 2104.14558. Symbols: B batch (per process),
W processes, rho clips, N crops per clip, D projection size::

    rho x (B, C, T, H, W) -> encoder -> z (rho, B, D) [, crops (N, rho, B, D)]
      -> gathered over processes with gradient (SIMCLR_DIST_ON)   (rho, W * B, D)
      -> nt_xent: every clip an anchor, its rho - 1 sibling clips positives,
         all other W * rho * B - rho clips negatives                              -> loss_global
    with Feature Crop: crop k of clip a queries clip b (b != a) of its video by InfoNCE, the clip b of
    the other W * B - 1 videos being its negatives                                -> loss_crop
"""

from typing import Dict

import torch
import torch.nn.functional as F

from stica_slowfast.losses import info_nce, nt_xent
from stica_slowfast.registry import MODEL
from stica_slowfast.utils.distributed import gather_batch

from ..configurable import configurable
from .base import RhoSSLBase, ordered_pairs, with_crop_term

__all__ = ["RhoSimCLR"]


@MODEL.register()
class RhoSimCLR(RhoSSLBase):
    """rho-clip SimCLR. See :class:`~.base.RhoSSLBase` for the shared arguments.

    Args:
        dist_on: gather embeddings from all processes (with gradients) as negatives. Each process then
            computes the same global loss; the gather's backward sums the gradients and DDP averages
            them, giving the gradient of the global loss.
    """

    @configurable
    def __init__(self, *, dist_on: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dist_on = dist_on

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH`` and ``CONTRASTIVE.*`` (incl. ``SIMCLR_DIST_ON``)."""
        return {**cls.common_kwargs_from_config(cfg), "dist_on": cfg.CONTRASTIVE.SIMCLR_DIST_ON}

    def forward_train(self, batch: Dict) -> dict:
        """NT-Xent over the rho clips (and the crop term); returns ``{"loss", "pos_cos"[, "loss_crop"]}``."""
        out = self.encoder(self.clips_of(batch))
        z = gather_batch(out.views, enabled=self.dist_on)  # (rho, W * B, D)
        crops = out.crops_of()  # (N, rho, B, D), N = 0 without Feature Crop
        if len(crops):
            crops = gather_batch(crops, enabled=self.dist_on)  # (N, rho, W * B, D)

        def pair_loss(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
            return info_nce(query, key, temperature=self.temperature)

        loss, logs = with_crop_term(nt_xent(list(z), self.temperature), crops, z, pair_loss)
        with torch.no_grad():
            zn = F.normalize(z.float(), dim=-1)
            # mean cosine similarity of the positive (same-video) clip pairs, for monitoring collapse
            pos_cos = torch.stack([(zn[a] * zn[b]).sum(1).mean() for a, b in ordered_pairs(len(zn))]).mean()
        return {"loss": loss, "pos_cos": pos_cos, **logs}
