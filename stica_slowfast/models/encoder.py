"""The one multi-view encoder every SSL method shares: backbone -> feature map -> optional Feature Crop ->
temporal pooling -> projector (-> the method's head), for V views of B videos at once.

Symbols: V views (rho clips, or STiCA's views), B videos, C channels, T frames, H x W frame size, D_b
backbone channels, t x h x w (video) or f x t (audio) the last feature map, P pooled size, n crops of a
scale, D output size::

    views V x (B, C, T, H, W)
      -> (V*B, C, T, H, W), view-major          (or one view at a time when ``sequential``)
      -> backbone.forward_feature_map           (V*B, D_b, t, h, w)
      -> pool: mean over t, h, w (no ``pool``),
               or ``pool`` over time tokens      (V*B, t, D_b) -> (V*B, P)
      -> projector [-> head]                    Encoded.views (V, B, D)
    with crops, from the same feature map (``crop_space="feature"``, STiCA's Feature Crop) or from the
    input views (``"input"``: each crop encoded by the backbone, the costly multi-crop):
      -> FeatureCrop, per scale                 (V*B, n, D_b, t', h', w') -> (n*V*B, ...), crop-major
      -> pool -> crop projector [-> head]       Encoded.crops[scale] (n, V, B, D)

Each crop scale passes the projector and head as its own batch (BatchNorm statistics per scale, as in
STiCA). The encoder holds references to modules its owner registers, and no state of its own, so a
method's checkpoint keeps the layout every evaluation reads (``backbone.*``, ``video_pool.*``, ...).
"""

import contextlib
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from stica_slowfast.layers import CROP_SCALES, FeatureCrop

__all__ = ["Encoded", "MultiViewEncoder", "feature_map_tokens", "CROP_SPACES"]

#: Where crops are taken: the backbone's feature map (Feature Crop) or the input views.
CROP_SPACES = ("feature", "input")


def feature_map_tokens(fmap: torch.Tensor) -> torch.Tensor:
    """One token per time step of a last feature map: video ``(B, D, t, h, w)`` or audio
    ``(B, D, f, t)`` -> ``(B, t, D)`` (mean over the other axes)."""
    if fmap.dim() == 5:
        return fmap.mean(dim=(3, 4)).transpose(1, 2)  # (B, D, t, h, w) -> (B, D, t) -> (B, t, D)
    if fmap.dim() == 4:
        return fmap.mean(dim=2).transpose(1, 2)  # (B, D, f, t) -> (B, D, t) -> (B, t, D)
    raise ValueError(f"a feature map is (B, D, t, h, w) or (B, D, f, t), got {tuple(fmap.shape)}")


@dataclass
class Encoded:
    """What :class:`MultiViewEncoder` returns for V views of B videos.

    Attributes:
        views: ``(V, B, D)``: view ``v`` of video ``b`` at ``[v, b]``, views in the order given.
        crops: ``scale -> (n, V, B, D)``: crop ``k`` of view ``v`` of video ``b`` at ``[k, v, b]``, for
            each scale of :data:`~stica_slowfast.layers.CROP_SCALES` with n > 0, in that order; empty
            without crops.
    """

    views: torch.Tensor
    crops: Dict[str, torch.Tensor]

    def crops_of(self, *scales: str) -> torch.Tensor:
        """The crops of ``scales`` (default: all) stacked: ``(N, V, B, D)``, N = 0 when none."""
        picked = [self.crops[s] for s in (scales or CROP_SCALES) if s in self.crops]
        if not picked:
            return self.views.new_zeros((0, *self.views.shape))
        return torch.cat(picked)


@contextlib.contextmanager
def frozen_bn_statistics(modules: Sequence[nn.Module]) -> Iterator[None]:
    """BatchNorm layers of ``modules`` normalise with batch statistics but leave their running
    statistics as they are (a checkpointed view's recompute must not count its batch twice)."""
    norms = [m for module in modules for m in module.modules()
             if isinstance(m, _BatchNorm) and m.track_running_stats]
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


class MultiViewEncoder:
    """The pipeline of the module docstring over modules owned (registered) by the caller.

    Args:
        backbone: encoder with ``forward_feature_map(x) -> (B, D_b, ...)`` and ``forward(x) -> (B, D_b)``
            (its global average pool).
        projector: MLP ``(B, P) -> (B, D)``.
        pool: temporal pooling ``(B, t, D_b) -> (B, P)`` of the feature map's time tokens, or None for the
            mean over the whole feature map (the backbone's own pool).
        feature_crop: crops per view, or None.
        crop_space: one of :data:`CROP_SPACES` (read with ``feature_crop`` only).
        crop_projector: the crops' projector, or None to use ``projector``.
        sequential: encode the views one at a time (per-view BatchNorm statistics), each with
            activation checkpointing (its forward recomputed in the backward pass, BatchNorm running
            statistics frozen there), so a step's activation memory is one view's for any V. Without
            autograd the views are simply encoded one after another.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        projector: nn.Module,
        pool: Optional[nn.Module],
        feature_crop: Optional[FeatureCrop],
        crop_space: str,
        sequential: bool,
        crop_projector: Optional[nn.Module] = None,
    ) -> None:
        if crop_space not in CROP_SPACES:
            raise ValueError(f"crop_space must be one of {CROP_SPACES}, got {crop_space!r}")
        if feature_crop is not None and feature_crop.num_crops() == 0:
            raise ValueError("STICA.FEATURE_CROP.ENABLE needs at least one crop (STICA.FEATURE_CROP.NUM_*)")
        self.backbone = backbone
        self.projector = projector
        self.pool = pool
        self.feature_crop = feature_crop
        self.crop_space = crop_space
        self.sequential = sequential
        self.crop_projector = projector if crop_projector is None else crop_projector

    def without_crops(self, **modules: nn.Module) -> "MultiViewEncoder":
        """The same pipeline without crops, over other modules (e.g. the EMA target's ``backbone``,
        ``projector``, ``pool``)."""
        return MultiViewEncoder(
            backbone=modules["backbone"], projector=modules["projector"], pool=modules.get("pool"),
            feature_crop=None, crop_space=self.crop_space, sequential=self.sequential)

    def pool_feature_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` of a feature map (a view's or a crop's)."""
        if self.pool is None:
            return fmap.mean(dim=tuple(range(2, fmap.dim())))  # (B, D_b, ...) -> (B, D_b)
        return self.pool(feature_map_tokens(fmap))  # (B, D_b, ...) -> (B, t, D_b) -> (B, P)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, P)`` of input ``x`` without crops."""
        if self.pool is None:
            return self.backbone(x)  # the backbone's own global average pool
        return self.pool(feature_map_tokens(self.backbone.forward_feature_map(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Projection ``(B, D)`` of one view ``x``, no crops."""
        return self.projector(self.pooled(x))

    def __call__(
        self, views: Sequence[torch.Tensor], *, crops: bool = True, head: Optional[nn.Module] = None
    ) -> Encoded:
        """Encode V views ``(B, ...)`` of one shape.

        Args:
            views: the V views.
            crops: take the crops (when there is a ``feature_crop``).
            head: applied after the projectors, to the views and to each crop scale as separate
                batches (BYOL's predictor); inside the per-view recompute when ``sequential``.
        """
        views = list(views)
        if not views or any(v.shape != views[0].shape for v in views):
            raise ValueError(f"views must be >= 1 tensors of one shape, got {[tuple(v.shape) for v in views]}")
        with_crops = crops and self.feature_crop is not None
        scales = [s for s in CROP_SCALES if with_crops and self.feature_crop.num_crops(s) > 0]

        def encode(x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
            return self._encode(x, scales, head)

        v, b = len(views), views[0].shape[0]
        if not self.sequential:
            out = encode(torch.cat(views))  # (V*B, ...): (V*B, D) and each scale (n, V*B, D)
            full = out[0].unflatten(0, (v, b))  # (V*B, D) -> (V, B, D)
            return Encoded(views=full, crops={s: c.unflatten(1, (v, b)) for s, c in zip(scales, out[1:])})
        if torch.is_grad_enabled():
            modules = [m for m in (self.backbone, self.pool, self.projector, self.crop_projector, head)
                       if m is not None]
            contexts = lambda: (contextlib.nullcontext(), frozen_bn_statistics(modules))  # noqa: E731
            outs = [checkpoint(encode, x, use_reentrant=False, context_fn=contexts) for x in views]
        else:
            outs = [encode(x) for x in views]
        full = torch.stack([o[0] for o in outs])  # V x (B, D) -> (V, B, D)
        return Encoded(views=full, crops={s: torch.stack([o[1 + i] for o in outs], dim=1)  # (n, V, B, D)
                                          for i, s in enumerate(scales)})

    def _encode(self, x: torch.Tensor, scales: List[str], head: Optional[nn.Module]) -> Tuple[torch.Tensor, ...]:
        """``x (N, ...)`` -> ``(views (N, D), crops of each scale (n, N, D) ...)``."""
        def finish(z: torch.Tensor) -> torch.Tensor:
            return z if head is None else head(z)

        if not scales:
            return (finish(self.embed(x)),)
        fmap = self.backbone.forward_feature_map(x)  # (N, D_b, t, h, w)
        out = [finish(self.projector(self.pool_feature_map(fmap)))]
        crops = self.feature_crop(fmap if self.crop_space == "feature" else x).crops  # (N, n, C', t', h', w')
        for scale in scales:
            c = crops[scale]
            n = c.shape[1]
            c = c.transpose(0, 1).flatten(0, 1)  # (N, n, ...) -> (n*N, ...), crop-major
            if self.crop_space == "input":
                c = self.backbone.forward_feature_map(c)  # (n*N, D_b, t', h', w')
            z = finish(self.crop_projector(self.pool_feature_map(c)))  # (n*N, D)
            out.append(z.unflatten(0, (n, x.shape[0])))  # (n, N, D)
        return tuple(out)
