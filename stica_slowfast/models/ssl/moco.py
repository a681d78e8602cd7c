"""RhoMoCo: MoCo (v2-style, momentum encoder + key queue) over rho clips per video.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", arXiv 1911.05722
(MoCo v2 head: Chen et al., arXiv 2003.04297), in the rho-clip video form of Feichtenhofer et al.,
arXiv 2104.14558. Symbols: B batch (per process), W processes, rho clips, N crops per clip, D projection
size, L queue length::

    rho x (B, C, T, H, W) -> online encoder  -> q (rho, B, D) [, crops (N, rho, B, D)]   (grad)
    rho x (B, C, T, H, W) -> EMA encoder     -> k (rho, B, D)                           (no grad)
    loss_global: mean over ordered pairs (a, b), a != b, of info_nce(q[a], k[b], negatives = queue)
    loss_crop:   the same with crop k of clip a as the query of k[b]
    queue <- all_gather(k) (W * rho * B, D): every clip's key enqueued once per step
    on_step_end: EMA update of the target (cosine momentum with MOMENTUM_ANNEALING)
"""

from typing import Dict

import torch

from stica_slowfast.layers import FeatureQueue
from stica_slowfast.losses import info_nce
from stica_slowfast.registry import MODEL
from stica_slowfast.utils.distributed import gather_batch

from ..configurable import configurable
from .base import RhoSSLBase, pair_mean, with_crop_term

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
    def __init__(self, *, queue_len: int, momentum: float, momentum_annealing: bool, **kwargs) -> None:
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
        """Symmetric InfoNCE over all ordered clip pairs (and the crop term); enqueues this step's keys
        afterwards. Returns ``{"loss", "momentum"[, "loss_crop"]}``."""
        clips = self.clips_of(batch)
        out = self.encoder(clips)  # q: (rho, B, D), with graph
        with torch.no_grad():
            k = self.target_encoder(clips).views  # (rho, B, D), no graph
        # The queue storage is never saved by autograd (info_nce normalises a copy of it, and it needs
        # no grad), so enqueueing in place below does not disturb the backward pass.
        negatives = self.queue.features.detach()

        def pair_loss(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
            return info_nce(query, key, temperature=self.temperature, negatives=negatives)

        loss, logs = with_crop_term(pair_mean(out.views, k, pair_loss), out.crops_of(), k, pair_loss)
        with torch.no_grad():
            # (rho, B, D) -> (rho * B, D), gathered: the same queue on every process
            self.queue.enqueue(gather_batch(k.flatten(0, 1), enabled=True))
        return {"loss": loss, "momentum": float(self.momentum), **logs}
