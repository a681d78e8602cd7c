"""cfg-free SSL building blocks shared by the methods: MLP heads, momentum (EMA) targets, key queues,
STiCA's feature crops and temporal poolings."""

from .feature_crop import CROP_SCALES, FeatureCrop, FeatureCrops
from .mlp import MLP
from .momentum import cosine_momentum, make_target, momentum_update
from .queue import FeatureQueue
from .transformer_pooling import (
    TEMPORAL_POOLINGS,
    GlobalAveragePooling,
    TransformerPooling,
    build_temporal_pooling,
)

__all__ = [
    "MLP",
    "momentum_update",
    "cosine_momentum",
    "make_target",
    "FeatureQueue",
    "FeatureCrop",
    "FeatureCrops",
    "CROP_SCALES",
    "TransformerPooling",
    "GlobalAveragePooling",
    "build_temporal_pooling",
    "TEMPORAL_POOLINGS",
]
