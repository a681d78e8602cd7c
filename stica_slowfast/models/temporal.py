"""Config glue of the STiCA building blocks shared by several models: temporal pooling of a backbone's
feature map (STiCA, its fine-tuning classifier, rho methods) and Feature Crop.

Symbols: B batch, D channels, t time steps, h x w feature-map size, P pooled size.
"""

from typing import Optional

import torch.nn as nn

from stica_slowfast.layers import FeatureCrop, build_temporal_pooling

__all__ = ["temporal_pooling_from_config", "feature_crop_from_config"]


def temporal_pooling_from_config(cfg, in_dim: int) -> nn.Module:
    """The temporal pooling ``STICA.POOL.TYPE`` ("gap" or "transformer") of ``in_dim``-wide tokens."""
    p = cfg.STICA.POOL
    return build_temporal_pooling(
        p.TYPE, in_dim=in_dim, width=p.WIDTH or None, depth=p.DEPTH, num_heads=p.NUM_HEADS,
        mlp_ratio=p.MLP_RATIO, dropout=p.DROPOUT, max_len=p.MAX_LEN, gap_init=p.GAP_INIT)


def feature_crop_from_config(cfg) -> Optional[FeatureCrop]:
    """The :class:`FeatureCrop` of ``STICA.FEATURE_CROP.*``, or None when it is disabled."""
    c = cfg.STICA.FEATURE_CROP
    if not c.ENABLE:
        return None
    return FeatureCrop(
        num_large_spatial=c.NUM_LARGE_SPATIAL, num_small_spatial=c.NUM_SMALL_SPATIAL,
        large_spatial_size=c.LARGE_SPATIAL_SIZE, small_spatial_size=c.SMALL_SPATIAL_SIZE,
        num_large_temporal=c.NUM_LARGE_TEMPORAL, num_small_temporal=c.NUM_SMALL_TEMPORAL,
        large_temporal_size=c.LARGE_TEMPORAL_SIZE, small_temporal_size=c.SMALL_TEMPORAL_SIZE,
        snap_to_grid=c.SNAP_TO_GRID)
