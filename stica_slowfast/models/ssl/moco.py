"""RhoMoCo: MoCo (v2-style, momentum encoder + key queue) over rho clips per video.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", arXiv 1911.05722
(MoCo v2 head: Chen et al., arXiv 2003.04297), in the rho-clip video form of Feichtenhofer et al.,
arXiv 2104.14558. Symbols: B batch (per process), W processes, rho clips, D projection size, L queue
length::

    rho x (B, C, T, H, W) -> online backbone -> projector   -> q (B, rho, D)   (grad)
    rho x (B, C, T, H, W) -> EMA  backbone -> projector     -> k (B, rho, D)   (no grad)
    for each ordered pair (a, b), a != b:
        info_nce(q[:, a], k[:, b], negatives = queue (L, D))   -> mean over the rho (rho - 1) pairs
    queue <- all_gather(k) (W * rho * B, D): every clip's key enqueued once per step
    on_step_end: EMA update of the target (cosine momentum with MOMENTUM_ANNEALING)
"""

from typing import Dict

import torch

from stica_slowfast.layers import FeatureQueue
from stica_slowfast.losses import info_nce
from stica_slowfast.registry import MODEL
from stica_slowfast.utils.distributed import all_gather_with_grad, get_world_size

from ..configurable import configurable
from .base import RhoSSLBase, ordered_pairs

__all__ = ["RhoMoCo"]


@MODEL.register()
class RhoMoCo(RhoSSLBase):
    """rho-clip MoCo. See :class:`~.base.RhoSSLBase` for the shared arguments.

    Args:
        queue_len: number of negative keys L.
        momentum: base EMA momentum of the key encoder.
        momentum_annealing: cosine schedule of the momentum to 1.
    """

    @configurable
    def __init__(
        self, *, queue_len: int = 65536, momentum: float = 0.994, momentum_annealing: bool = True, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self._init_momentum_target(base_momentum=momentum, annealing=momentum_annealing)
        self.queue = FeatureQueue(length=queue_len, dim=self.dim, init="random")

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH`` and ``CONTRASTIVE.*`` (incl. ``QUEUE_LEN``, ``MOMENTUM*``)."""
        c = cfg.CONTRASTIVE
        return {
            **cls.common_kwargs_from_config(cfg),
            "queue_len": c.QUEUE_LEN,
            "momentum": c.MOMENTUM,
            "momentum_annealing": c.MOMENTUM_ANNEALING,
        }

    def forward_train(self, batch: Dict) -> dict:
        """Symmetric InfoNCE over all ordered clip pairs; enqueues this step's keys afterwards.

        Returns:
            ``{"loss", "momentum"}``.
        """
        clips = self.clips_of(batch)
        q = self.encode(clips, self.project)  # rho x (B, D), with graph
        with torch.no_grad():
            k = self.encode(clips, self.project_target)  # rho x (B, D), no graph
        # The queue storage is never saved by autograd (info_nce normalises a copy of it, and it needs
        # no grad), so enqueueing in place below does not disturb the backward pass.
        negatives = self.queue.features.detach()
        pairs = ordered_pairs(len(clips))
        loss = sum(info_nce(q[a], k[b], temperature=self.temperature, negatives=negatives) for a, b in pairs)
        loss = loss / len(pairs)
        with torch.no_grad():
            keys = torch.cat(k, dim=0)  # (rho * B, D)
            if get_world_size() > 1:
                keys = all_gather_with_grad(keys)  # (W * rho * B, D), same queue on every process
            self.queue.enqueue(keys)
        return {"loss": loss, "momentum": float(self.momentum)}
