"""Heads: cfg-free building blocks (``cls(**kwargs)``)."""

import torch
import torch.nn as nn

__all__ = ["ClassifierHead"]


class ClassifierHead(nn.Module):
    """Dropout then a linear classifier on pooled features.

    ::

        features (B, D) -> dropout -> linear -> logits (B, K)

    Args:
        in_dim: feature size D.
        num_classes: number of classes K.
        dropout_rate: dropout probability in [0, 1); 0 disables dropout.
        init_std: std of the normal init of the linear weights (the bias starts at zero).
    """

    def __init__(self, *, in_dim: int, num_classes: int, dropout_rate: float, init_std: float) -> None:
        super().__init__()
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0 else nn.Identity()
        self.fc = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.fc.weight, mean=0.0, std=init_std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map features ``(B, D)`` to logits ``(B, K)``."""
        return self.fc(self.dropout(features))
