"""cfg-free SSL building blocks shared by the methods: MLP heads, momentum encoders, key queues.

Importing this package registers ``MLP``, ``ProjectionMLP`` and ``Predictor`` in
:data:`stica_slowfast.registry.HEAD`.
"""

from .mlp import MLP, Predictor, ProjectionMLP
from .momentum import MomentumEncoder, cosine_momentum, make_target, momentum_update, unwrap
from .queue import FeatureQueue

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
]
