"""Machinery shared by the rho-clip SSL methods (written once, used by all four).

Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal Representation Learning",
CVPR 2021, arXiv 2104.14558: rho clips of one video, sampled at different times and augmented on their
own, are positives of each other; the image objectives (SimCLR, MoCo, BYOL, SwAV) are applied to every
ordered pair of clips. Symbols: B batch, rho clips per video, C channels, T frames, H x W frame size,
D_b = ``backbone.out_dim``, t x h x w the backbone's last feature map, P pooled size (D_b, or
``video_pool.out_dim``), D projection size::

    batch["video"]: rho x (B, C, T, H, W)
      -> backbone  (one call on (rho * B, C, T, H, W), or rho calls when sequential)
      -> pooled (B, rho, P): the backbone's global average pool (P = D_b), or with ``video_pool``
         (STiCA's ``STICA.POOL.TYPE transformer``): feature map (D_b, t, h, w) -> time tokens
         (t, D_b) -> video_pool                     forward_features stays the (B, D_b) average pool
      -> projector MLP                                  (B, rho, D)
      -> method objective over the rho (rho - 1) ordered pairs (a, b), a != b
      -> {"loss": scalar, logs}
    momentum target (MoCo, BYOL): EMA copy of {backbone, projector[, video_pool]}, updated in
    on_step_end

Feature Crop (Patrick et al., arXiv 2103.10211; ``STICA.FEATURE_CROP``) is stored here but only
methods with ``supports_feature_crop`` (RhoBYOL: crops as extra online views) use it; the others
refuse it at construction.
"""

import contextlib
import itertools
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from stica_slowfast.layers import MLP, FeatureCrop, cosine_momentum, make_target, momentum_update

from ..build import build_backbone
from ..temporal import feature_crop_from_config, pool_video, temporal_pooling_from_config, video_tokens

__all__ = ["RhoSSLBase", "ordered_pairs", "mlp_norm"]


def ordered_pairs(rho: int) -> List[Tuple[int, int]]:
    """All ``rho * (rho - 1)`` ordered pairs ``(a, b)`` of distinct clip indices."""
    return list(itertools.permutations(range(rho), 2))


def mlp_norm(bn_mlp: bool, bn_sync_mlp: bool) -> Optional[Callable[..., nn.Module]]:
    """The norm callable of the MLP heads: BatchNorm1d, SyncBatchNorm, or None."""
    if not bn_mlp:
        return None
    return nn.SyncBatchNorm if bn_sync_mlp else nn.BatchNorm1d


@contextlib.contextmanager
def _frozen_bn_statistics(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of ``module`` normalise with batch statistics but leave their running
    statistics as they are (a checkpointed clip's recompute must not count its batch twice)."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        # running = (1 - momentum) * running + momentum * batch: momentum 0 keeps it (also for a
        # cumulative-average BN, momentum None); the batch counter forward increments is restored.
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


class RhoSSLBase(nn.Module):
    """Backbone + projector, clip handling, pair enumeration and the optional momentum target.

    Subclasses implement :meth:`forward_train`; they call :meth:`_init_momentum_target` in their
    constructor if they use an EMA target (then :meth:`on_step_end` updates it).

    Args:
        backbone: video encoder with ``out_dim`` and ``forward(video) -> (B, out_dim)``; stored as
            ``self.backbone`` (a linear probe loads the ``backbone.*`` keys of the checkpoint).
        dim: projection output size D.
        mlp_dim: hidden width of the projector.
        num_mlp_layers: linear layers of the projector.
        bn_mlp: BatchNorm1d after hidden projector layers.
        bn_sync_mlp: SyncBatchNorm instead of BatchNorm1d.
        temperature: softmax temperature of the objective.
        sequential: encode the rho clips one at a time (per-clip BatchNorm statistics) instead of one
            concatenated batch, with activation checkpointing so that step memory stays at one
            clip's activations for any rho.
        video_pool: temporal pooling ``(B, t, D_b) -> (B, video_pool.out_dim)`` of the backbone's
            time tokens before the projector (and in the EMA target), or None for the backbone's
            global average pool. Stored as ``self.video_pool``, STiCA's name, so that a
            ``VideoClassifier`` with ``STICA.POOL.TYPE transformer`` loads its ``video_pool.*`` keys.
        feature_crop: :class:`FeatureCrop` for methods with ``supports_feature_crop``, else None (a
            ValueError otherwise). It has no parameters: the state dict is the same either way.
    """

    #: ``forward`` gives features, not class logits: no val accuracy for this model.
    predicts_labels = False
    #: Whether the method's objective uses ``feature_crop`` (a subclass that does sets it True).
    supports_feature_crop = False

    def __init__(
        self,
        *,
        backbone: nn.Module,
        dim: int,
        mlp_dim: int,
        num_mlp_layers: int,
        bn_mlp: bool = True,
        bn_sync_mlp: bool = False,
        temperature: float = 0.1,
        sequential: bool = False,
        video_pool: Optional[nn.Module] = None,
        feature_crop: Optional[FeatureCrop] = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if feature_crop is not None and not self.supports_feature_crop:
            raise ValueError(
                f"STICA.FEATURE_CROP.ENABLE is supported by RhoBYOL and STiCA, not by "
                f"{type(self).__name__}: set STICA.FEATURE_CROP.ENABLE False or use one of those"
            )
        self.backbone = backbone
        # None registers nothing: without a pool the state dict keys are those of the plain model.
        self.video_pool = video_pool
        self.feature_crop = feature_crop
        self.projector = MLP(
            in_dim=backbone.out_dim if video_pool is None else video_pool.out_dim,
            hidden_dim=mlp_dim,
            out_dim=dim,
            num_layers=num_mlp_layers,
            norm=mlp_norm(bn_mlp, bn_sync_mlp),
        )
        self.dim = dim
        self.mlp_dim = mlp_dim
        self.temperature = temperature
        self.sequential = sequential
        self.target: Optional[nn.Module] = None
        self.base_momentum = 1.0
        self.momentum_annealing = False
        self.momentum = 1.0

    @staticmethod
    def common_kwargs_from_config(cfg) -> dict:
        """Constructor kwargs of this base class from ``MODEL.ARCH``, ``CONTRASTIVE.*``,
        ``STICA.POOL.*`` (a pool only when ``STICA.POOL.TYPE`` is not "gap") and ``STICA.FEATURE_CROP.*``."""
        c = cfg.CONTRASTIVE
        backbone = build_backbone(cfg)
        pool = None
        if cfg.STICA.POOL.TYPE != "gap":
            pool = temporal_pooling_from_config(cfg, backbone.out_dim)
        return {
            "backbone": backbone,
            "dim": c.DIM,
            "mlp_dim": c.MLP_DIM,
            "num_mlp_layers": c.NUM_MLP_LAYERS,
            "bn_mlp": c.BN_MLP,
            "bn_sync_mlp": c.BN_SYNC_MLP,
            "temperature": c.T,
            "sequential": c.SEQUENTIAL,
            "video_pool": pool,
            "feature_crop": feature_crop_from_config(cfg),
        }

    # ----------------------------------------------------------------------------------------------
    # Online / target encoders
    # ----------------------------------------------------------------------------------------------
    def online_encoder(self) -> nn.ModuleDict:
        """``{backbone, projector}``, plus ``video_pool`` when there is one, as one module (a view:
        not registered a second time). Without a pool the keys are unchanged, so the ``target.*``
        keys of older checkpoints still load."""
        modules = {"backbone": self.backbone, "projector": self.projector}
        if self.video_pool is not None:
            modules["video_pool"] = self.video_pool
        return nn.ModuleDict(modules)

    def _init_momentum_target(self, *, base_momentum: float, annealing: bool) -> None:
        """Create the EMA target: a frozen deep copy of :meth:`online_encoder`."""
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {base_momentum}")
        self.target = make_target(self.online_encoder())
        self.base_momentum = base_momentum
        self.momentum_annealing = annealing
        self.momentum = base_momentum

    @torch.no_grad()
    def on_step_end(self, cur_step: int, max_steps: int) -> None:
        """EMA update of the target after the optimiser step (no-op without a target).

        The momentum is ``cosine_momentum(base, cur_step, max_steps)`` with MOMENTUM_ANNEALING, else
        the base momentum.
        """
        if self.target is None:
            return
        if self.momentum_annealing:
            self.momentum = cosine_momentum(self.base_momentum, cur_step, max_steps)
        else:
            self.momentum = self.base_momentum
        momentum_update(self.online_encoder(), self.target, self.momentum)

    # ----------------------------------------------------------------------------------------------
    # Clips and encoding
    # ----------------------------------------------------------------------------------------------
    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, D_b)`` of video ``(B, C, T, H, W)`` (linear probe, kNN)."""
        return self.backbone(video)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features` (SSL models predict no labels)."""
        return self.forward_features(video)

    @staticmethod
    def clips_of(batch: Dict) -> List[torch.Tensor]:
        """The rho >= 2 clips ``(B, C, T, H, W)`` of ``batch["video"]``, checked."""
        clips = batch["video"]
        if isinstance(clips, torch.Tensor):
            clips = [clips]
        clips = list(clips)
        if len(clips) < 2:
            raise ValueError(
                f"rho-clip SSL needs >= 2 views per video (DATA.TRAIN_CROP_NUM_TEMPORAL x "
                f"DATA.TRAIN_CROP_NUM_SPATIAL; rho = 1 is 1 x 2), got {len(clips)}"
            )
        shape = clips[0].shape
        if any(c.shape != shape for c in clips):
            raise ValueError(f"all clips must have one shape, got {[tuple(c.shape) for c in clips]}")
        return clips

    def encode(self, clips: List[torch.Tensor], encoder: Callable[[torch.Tensor], torch.Tensor]) -> List[torch.Tensor]:
        """``encoder`` applied to every clip: rho x (B, C, T, H, W) -> rho x (B, ...) (the encoder's
        output must keep the batch as its first dim, e.g. (B, D), or (B, 1 + N, D) for a clip and its
        crops).

        One call on the concatenated clips, or, when ``sequential``, one call per clip whose
        activations are not kept: each clip's forward is recomputed in the backward pass
        (activation checkpointing), so only one clip's activations are alive at a time and the
        memory of a step does not grow with rho (the paper's "sequential" mode; it costs one more
        forward per clip). Without autograd (the momentum target) the calls are plain.
        """
        if self.sequential:
            if not torch.is_grad_enabled():
                return [encoder(c) for c in clips]
            return [
                checkpoint(encoder, c, use_reentrant=False, context_fn=self._recompute_contexts)
                for c in clips
            ]
        rho, b = len(clips), clips[0].shape[0]
        out = encoder(torch.cat(clips, dim=0))  # (rho * B, C, T, H, W) -> (rho * B, ...), clip-major
        return list(out.split(b, dim=0)) if rho > 1 else [out]

    def _recompute_contexts(self):
        """Checkpoint contexts: nothing for the forward; BN statistics frozen for the recompute."""
        return contextlib.nullcontext(), _frozen_bn_statistics(self)

    def pool_feature_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, P)`` of a feature map ``(B, D_b, t, h, w)`` (a clip's or a crop's):
        ``video_pool`` over its time tokens, or the mean over (t, h, w) without a pool."""
        if self.video_pool is None:
            return fmap.mean(dim=(2, 3, 4))  # (B, D_b, t, h, w) -> (B, D_b)
        return self.video_pool(video_tokens(fmap))  # (B, D_b, t, h, w) -> (B, t, D_b) -> (B, P)

    def project(self, video: torch.Tensor) -> torch.Tensor:
        """Online projection ``(B, D)`` of video ``(B, C, T, H, W)``."""
        return self.projector(pool_video(self.backbone, self.video_pool, video))

    @torch.no_grad()
    def project_target(self, video: torch.Tensor) -> torch.Tensor:
        """Target (EMA) projection ``(B, D)``, no graph."""
        pool = self.target["video_pool"] if "video_pool" in self.target else None
        return self.target["projector"](pool_video(self.target["backbone"], pool, video))
