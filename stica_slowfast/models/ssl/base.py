"""What the rho-clip SSL methods share: the encoder, the optional EMA target, clip pairs and the crop term.

Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal Representation Learning",
CVPR 2021, arXiv 2104.14558: rho clips of one video, sampled at different times and augmented on their
own, are positives of each other; the image objectives (SimCLR, MoCo, BYOL, SwAV) are applied to every
ordered pair of clips. Symbols: B batch, rho clips per video, N crops per clip, D projection size::

    batch["video"]: rho x (B, C, T, H, W)
      -> MultiViewEncoder (backbone -> pool -> projector; models/encoder.py)   views (rho, B, D)
                                                        with Feature Crop:      crops (N, rho, B, D)
      -> the method's objective over the rho (rho - 1) ordered pairs (a, b), a != b
    momentum target (MoCo, BYOL): EMA copy of {backbone, projector[, video_pool]} encoding the full
    clips only, updated in on_step_end

Feature Crop (Patrick et al., arXiv 2103.10211; ``STICA.FEATURE_CROP``) works with every method: crop k
of clip a is one more query whose target is what clip b (b != a) is the target of in the method's
objective (its embedding, key, EMA projection or codes); the targets themselves are never crops. With
crops the loss is ``(loss_global + loss_crop) / 2`` (:func:`with_crop_term`): the two terms weigh the same
whatever N is, so many crops do not drown the full clips, as STiCA's alpha = 0.5 does for its crop term.
"""

import itertools
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from stica_slowfast.layers import MLP, FeatureCrop, cosine_momentum, make_target, momentum_update

from ..api import ModelBase
from ..build import build_backbone
from ..encoder import MultiViewEncoder
from ..temporal import feature_crop_from_config, temporal_pooling_from_config

__all__ = ["RhoSSLBase", "ordered_pairs", "mlp_norm", "pair_mean", "crop_term", "with_crop_term"]

#: A method's objective for one (query, target) pair of clips: ``(B, D) x (B, D') -> scalar``.
PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ordered_pairs(rho: int) -> List[Tuple[int, int]]:
    """All ``rho * (rho - 1)`` ordered pairs ``(a, b)`` of distinct clip indices."""
    return list(itertools.permutations(range(rho), 2))


def mlp_norm(bn_mlp: bool, bn_sync_mlp: bool) -> Optional[Callable[..., nn.Module]]:
    """The norm callable of the MLP heads: BatchNorm1d, SyncBatchNorm, or None."""
    if not bn_mlp:
        return None
    return nn.SyncBatchNorm if bn_sync_mlp else nn.BatchNorm1d


def pair_mean(queries: torch.Tensor, targets: torch.Tensor, loss: PairLoss) -> torch.Tensor:
    """Mean over ordered pairs (a, b), a != b, of ``loss(queries[a], targets[b])``; queries
    ``(rho, B, D)``, targets ``(rho, B, D')`` (what each clip is the target of: embeddings, keys, codes)."""
    queries, targets = queries.unbind(0), targets.unbind(0)  # (rho, B, D) -> rho x (B, D)
    pairs = ordered_pairs(len(targets))
    return sum(loss(queries[a], targets[b]) for a, b in pairs) / len(pairs)


def crop_term(crops: torch.Tensor, targets: torch.Tensor, loss: PairLoss) -> torch.Tensor:
    """:func:`pair_mean` of every crop: mean over crops k of ``pair_mean(crops[k], targets, loss)``;
    crops ``(N, rho, B, D)``."""
    return sum(pair_mean(c, targets, loss) for c in crops) / len(crops)


def with_crop_term(
    loss_global: torch.Tensor, crops: torch.Tensor, targets: torch.Tensor, loss: PairLoss
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """``((loss_global + crop_term) / 2, {"loss_crop": crop_term})`` with crops (N > 0), else
    ``(loss_global, {})``."""
    if len(crops) == 0:
        return loss_global, {}
    loss_crop = crop_term(crops, targets, loss)
    return (loss_global + loss_crop) / 2, {"loss_crop": loss_crop.detach()}


class RhoSSLBase(ModelBase):
    """The shared part of the rho-clip methods; a method adds its heads and ``forward_train``.

    Subclasses call :meth:`_init_momentum_target` in their constructor if they use an EMA target (then
    :meth:`on_step_end` updates it).

    Args:
        backbone: video encoder with ``out_dim``, ``forward(video) -> (B, out_dim)`` and
            ``forward_feature_map``; stored as ``self.backbone`` (a linear probe loads the checkpoint's
            ``backbone.*`` keys).
        dim: projection output size D.
        mlp_dim: hidden width of the projector.
        num_mlp_layers: linear layers of the projector.
        bn_mlp: BatchNorm1d after hidden projector layers.
        bn_sync_mlp: SyncBatchNorm instead of BatchNorm1d.
        temperature: softmax temperature of the objective.
        sequential: encode the rho clips one at a time (see :class:`~..encoder.MultiViewEncoder`).
        video_pool: temporal pooling ``(B, t, D_b) -> (B, P)`` of the backbone's time tokens before the
            projector (and in the EMA target), or None for the backbone's global average pool. Stored
            as ``self.video_pool``, STiCA's name, so that a ``VideoClassifier`` with ``STICA.POOL.TYPE
            transformer`` loads its ``video_pool.*`` keys.
        feature_crop: :class:`FeatureCrop` (crops as extra queries, see the module docstring) or None.
            It has no parameters: the state dict is the same either way.
        crop_space: "feature" (crops of each clip's feature map) or "input" (crops of the clip, each
            encoded by the backbone).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        dim: int,
        mlp_dim: int,
        num_mlp_layers: int,
        bn_mlp: bool,
        bn_sync_mlp: bool,
        temperature: float,
        sequential: bool,
        video_pool: Optional[nn.Module],
        feature_crop: Optional[FeatureCrop],
        crop_space: str,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.backbone = backbone
        # None registers nothing: without a pool the state dict keys are those of the plain model.
        self.video_pool = video_pool
        self.feature_crop = feature_crop
        #: The heads' norm layer (a class or None), for subclasses' heads.
        self.head_norm = mlp_norm(bn_mlp, bn_sync_mlp)
        self.projector = MLP(
            in_dim=backbone.out_dim if video_pool is None else video_pool.out_dim,
            hidden_dim=mlp_dim,
            out_dim=dim,
            num_layers=num_mlp_layers,
            norm=self.head_norm,
        )
        self.encoder = MultiViewEncoder(backbone=backbone, projector=self.projector, pool=video_pool,
                                        feature_crop=feature_crop, crop_space=crop_space, sequential=sequential)
        self.dim = dim
        self.mlp_dim = mlp_dim
        self.temperature = temperature
        self.target: Optional[nn.ModuleDict] = None
        self.target_encoder: Optional[MultiViewEncoder] = None
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
            "crop_space": cfg.STICA.FEATURE_CROP.SPACE,
        }

    # ----------------------------------------------------------------------------------------------
    # Momentum target
    # ----------------------------------------------------------------------------------------------
    def _init_momentum_target(self, *, base_momentum: float, annealing: bool) -> None:
        """Create the EMA target: a frozen deep copy of ``{backbone, projector[, video_pool]}`` (keys
        ``target.*``), and :attr:`target_encoder`, the encoder's pipeline over it (full clips only)."""
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {base_momentum}")
        self.target = make_target(self._online_modules())
        self.target_encoder = self.encoder.without_crops(
            backbone=self.target["backbone"], projector=self.target["projector"],
            pool=self.target["video_pool"] if "video_pool" in self.target else None)
        self.base_momentum = base_momentum
        self.momentum_annealing = annealing
        self.momentum = base_momentum

    def _online_modules(self) -> nn.ModuleDict:
        """``{backbone, projector}``, plus ``video_pool`` when there is one (a view, not registered
        again); without a pool the keys of older checkpoints' ``target.*`` still load."""
        modules = {"backbone": self.backbone, "projector": self.projector}
        if self.video_pool is not None:
            modules["video_pool"] = self.video_pool
        return nn.ModuleDict(modules)

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
        momentum_update(self._online_modules(), self.target, self.momentum)

    # ----------------------------------------------------------------------------------------------
    # Clips
    # ----------------------------------------------------------------------------------------------
    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, D_b)`` of video ``(B, C, T, H, W)`` (linear probe, kNN)."""
        return self.backbone(video)

    @staticmethod
    def clips_of(batch: Dict) -> List[torch.Tensor]:
        """The rho >= 2 clips ``(B, C, T, H, W)`` of ``batch["video"]``, checked."""
        clips = batch["video"]
        clips = [clips] if isinstance(clips, torch.Tensor) else list(clips)
        if len(clips) < 2:
            raise ValueError(
                f"rho-clip SSL needs >= 2 views per video (DATA.TRAIN_CROP_NUM_TEMPORAL x "
                f"DATA.TRAIN_CROP_NUM_SPATIAL; rho = 1 is 1 x 2), got {len(clips)}"
            )
        shape = clips[0].shape
        if any(c.shape != shape for c in clips):
            raise ValueError(f"all clips must have one shape, got {[tuple(c.shape) for c in clips]}")
        return clips
