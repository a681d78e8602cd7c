"""cfg-free SSL building blocks shared by the methods: MLP heads, momentum encoders, key queues,
STiCA's feature crops and temporal poolings.

Importing this package registers ``MLP``, ``ProjectionMLP``, ``Predictor``, ``TransformerPooling`` and
``GlobalAveragePooling`` in :data:`stica_slowfast.registry.HEAD`.
"""

from .feature_crop import CROP_SCALES, FeatureCrop, FeatureCrops
from .mlp import MLP, Predictor, ProjectionMLP
from .momentum import MomentumEncoder, cosine_momentum, make_target, momentum_update, unwrap
from .queue import FeatureQueue
from .transformer_pooling import (
    TEMPORAL_POOLINGS,
    GlobalAveragePooling,
    TransformerPooling,
    build_temporal_pooling,
)

__all__ = [
    "MLP",
    "ProjectionMLP",
    "Predictor",
    "MomentumEncoder",
    "momentum_update",
    "cosine_momentum",
    "make_target",
    "unwrap",
    "FeatureQueue",
    "FeatureCrop",
    "FeatureCrops",
    "CROP_SCALES",
    "TransformerPooling",
    "GlobalAveragePooling",
    "build_temporal_pooling",
    "TEMPORAL_POOLINGS",
]
