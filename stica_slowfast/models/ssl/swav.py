"""RhoSwAV: SwAV's swapped prediction of Sinkhorn-Knopp codes over rho clips per video.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
arXiv 2006.09882, in the rho-clip video form of Feichtenhofer et al., arXiv 2104.14558. Symbols:
B batch, rho clips, N crops per clip, D projection size, K prototypes, Q queue length::

    rho x (B, C, T, H, W) -> encoder -> L2-normalise -> z (rho, B, D) [, crops (N, rho, B, D)]
    prototypes: Linear(D, K, bias=False), rows L2-normalised before every step
    scores s = z @ prototypes^T                                     (rho, B, K)
    codes  c[b] = sinkhorn_knopp([queue scores (Q, K); s[b]])[-B:]  (no grad; all processes)
    loss_global = mean over ordered pairs (a, b), a != b, of swav_loss(s[a], c[b], T)
    loss_crop   = the same with crop k of clip a predicting c[b] (SwAV's multi-crop: crops get no codes)
    the prototypes' gradient is zeroed during the first freeze_prototypes_iters steps
"""

from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from stica_slowfast.layers import FeatureQueue
from stica_slowfast.losses import sinkhorn_knopp, swav_loss
from stica_slowfast.registry import MODEL

from ..configurable import configurable
from .base import RhoSSLBase, pair_mean, with_crop_term

__all__ = ["RhoSwAV"]


@MODEL.register()
class RhoSwAV(RhoSSLBase):
    """rho-clip SwAV. See :class:`~.base.RhoSSLBase` for the shared arguments.

    Args:
        num_prototypes: K.
        epsilon: Sinkhorn-Knopp entropic regularisation.
        sinkhorn_iters: Sinkhorn-Knopp iterations.
        freeze_prototypes_iters: steps during which the prototypes get zero gradient. With the
            per-step re-normalisation, weight decay (which only rescales a row) cannot move them either.
        queue_len: past projections added to the Sinkhorn batch (0 = none).
    """

    @configurable
    def __init__(
        self,
        *,
        num_prototypes: int,
        epsilon: float,
        sinkhorn_iters: int,
        freeze_prototypes_iters: int,
        queue_len: int,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.prototypes = nn.Linear(self.dim, num_prototypes, bias=False)
        self.epsilon = epsilon
        self.sinkhorn_iters = sinkhorn_iters
        self.freeze_prototypes_iters = freeze_prototypes_iters
        # Steps done so far (set by on_step_end); a buffer so that a resumed run keeps freezing right.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.queue = FeatureQueue(length=queue_len, dim=self.dim, init="empty") if queue_len > 0 else None
        self.normalize_prototypes()

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Kwargs from ``MODEL.ARCH``, ``CONTRASTIVE.*`` and ``STICA.SWAV.*``."""
        s = cfg.STICA.SWAV
        return {
            **cls.common_kwargs_from_config(cfg),
            "num_prototypes": s.NUM_PROTOTYPES,
            "epsilon": s.EPSILON,
            "sinkhorn_iters": s.SINKHORN_ITERS,
            "freeze_prototypes_iters": s.FREEZE_PROTOTYPES_ITERS,
            "queue_len": cfg.CONTRASTIVE.SWAV_QEUE_LEN,
        }

    @property
    def prototypes_frozen(self) -> bool:
        """Whether this step's prototype gradient is zeroed."""
        return int(self.step) < self.freeze_prototypes_iters

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """L2-normalise every prototype (row of the weight) in place."""
        w = self.prototypes.weight
        w.copy_(F.normalize(w, dim=1))

    def on_step_end(self, cur_step: int, max_steps: int) -> None:
        """Count steps (for the prototype freeze)."""
        self.step.fill_(cur_step)

    def forward_train(self, batch: Dict) -> dict:
        """Swapped prediction over all ordered clip pairs (crops predict the full clips' codes);
        returns ``{"loss", "prototypes_frozen"[, "loss_crop"]}``."""
        self.normalize_prototypes()
        clips = self.clips_of(batch)
        out = self.encoder(clips, head=_L2Normalize())  # z: (rho, B, D) [+ crops (N, rho, B, D)]
        weight = self.prototypes.weight  # (K, D)
        if self.prototypes_frozen:
            # A zero gradient rather than none: DDP expects a gradient for every parameter each step.
            # (Done in the graph, not with a tensor hook, which a deep copy of the model would lose.)
            weight = weight.detach() + 0.0 * weight
        z = out.views
        scores = z @ weight.T  # (rho, B, D) @ (D, K) -> (rho, B, K)
        b = z.shape[1]
        with torch.no_grad():
            codes = []
            for s in scores.detach():
                if self.queue is not None and len(self.queue) > 0:
                    # (Q, D) @ (D, K) -> (Q, K), stacked above this batch; keep the batch's rows
                    s = torch.cat([self.prototypes(self.queue.features.to(s.dtype)), s], dim=0)
                codes.append(sinkhorn_knopp(s, epsilon=self.epsilon, iterations=self.sinkhorn_iters)[-b:])
            codes = torch.stack(codes)  # (rho, B, K)
            if self.queue is not None:
                self.queue.enqueue(z.flatten(0, 1))  # (rho * B, D)

        def pair_loss(s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return swav_loss(s, c, temperature=self.temperature)

        crops = out.crops_of()  # (N, rho, B, D), N = 0 without Feature Crop
        crop_scores = crops @ weight.T if len(crops) else crops  # (N, rho, B, D) @ (D, K) -> (N, rho, B, K)
        loss, logs = with_crop_term(pair_mean(scores, codes, pair_loss), crop_scores, codes, pair_loss)
        return {"loss": loss, "prototypes_frozen": float(self.prototypes_frozen), **logs}


class _L2Normalize(nn.Module):
    """Rows scaled to unit L2 norm (SwAV scores normalised embeddings)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1)
