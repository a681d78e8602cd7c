"""Temporal pooling of per-time-step tokens to one vector: STiCA's transformer pooling, or a plain mean.

Patrick et al., "Space-Time Crop & Attend" (ICCV 2021, arXiv 2103.10211) pool the spatially averaged
feature map of a clip (or of a feature crop) over time with a small transformer and read out a CLS
token, instead of averaging. :class:`GlobalAveragePooling` is the averaging baseline with the same call
signature, and :func:`build_temporal_pooling` picks one by name.

Upstream reshapes the time axis in a way that silently merges samples of the batch at 60 frames;
here every sample is pooled on its own and a wrong input shape is an error.
"""

import inspect
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from stica_slowfast.utils.suggest import closest, did_you_mean

__all__ = ["TransformerPooling", "GlobalAveragePooling", "build_temporal_pooling", "TEMPORAL_POOLINGS"]


def _check_tokens(x: torch.Tensor, in_dim: int) -> None:
    if x.dim() != 3 or x.shape[-1] != in_dim:
        raise ValueError(f"tokens must be (B, T, C) with C={in_dim}, got shape {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"tokens need at least one time step, got shape {tuple(x.shape)}")


class TransformerPooling(nn.Module):
    """Pool ``(B, T, C)`` tokens to ``(B, D)`` with a CLS token and pre-norm transformer layers.

    Symbols: B batch, T time steps, C input channels, D width, L ``max_len``::

        x (B, T, C)
          -> Linear(C, D) (only if ``width`` is given)          (B, T, D)
          -> + positional embedding (L, D) resized to T          (B, T, D)
          -> prepend CLS token                                   (B, 1 + T, D)
          -> dropout -> ``depth`` x pre-norm encoder layer       (B, 1 + T, D)
          -> take the CLS token -> LayerNorm                     (B, D)
          [gap_init] -> Linear(D, D), zero-initialised, + mean over T of the projected tokens

    With ``gap_init`` the pooling *starts as global average pooling*: the CLS readout is added to the
    tokens' mean through a zero-initialised linear layer, so at initialisation the output is exactly
    the mean, and training learns where to attend on top of it. A CLS readout alone starts
    from a random function of the tokens, which the objective must first undo (STiCA's transformer
    only has to beat averaging, so averaging is the natural starting point). ``gap_init=False`` is
    the plain CLS readout.

    Positional embeddings are learned for L positions. For ``T != L`` they are linearly interpolated
    to T (``align_corners=False``, i.e. token i sits at relative position ``(i + 0.5) / T``): positions
    are *relative within the clip or crop*, so a full clip, a temporal crop and a clip with more or
    fewer steps than in training (including ``T > L``) all get an embedding of the same span. The CLS
    token has no positional embedding.

    No normalisation mixes samples (LayerNorm only), so each sample's output depends only on its own
    tokens.

    Every argument is required: their defaults live in ``STICA.POOL.*`` alone, so a pooling built by
    hand and one built from the config cannot silently differ.

    Args:
        in_dim: input channels C.
        width: transformer width D. If given, a ``Linear(C, D)`` projects the tokens first; if None,
            there is no projection and D = C.
        depth: number of encoder layers, >= 1.
        num_heads: attention heads; must divide D.
        mlp_ratio: hidden width of each layer's MLP as a multiple of D.
        dropout: dropout after the positional embedding and inside every layer (attention and MLP).
        max_len: number L of learned positional embeddings (e.g. the T used in training).
        gap_init: add the CLS readout to the tokens' mean through a zero-initialised linear layer
            (see above).
    """

    def __init__(
        self,
        *,
        in_dim: int,
        width: Optional[int],
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
        max_len: int,
        gap_init: bool,
    ) -> None:
        super().__init__()
        dim = in_dim if width is None else width
        if in_dim < 1 or dim < 1:
            raise ValueError(f"in_dim and width must be >= 1, got in_dim={in_dim}, width={width}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(f"num_heads must be >= 1 and divide the width {dim}, got {num_heads}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        self.in_dim = in_dim
        self.out_dim = dim
        self.max_len = max_len

        self.proj = nn.Identity() if width is None else nn.Linear(in_dim, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_len, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=dim,
                nhead=num_heads,
                dim_feedforward=max(1, int(round(dim * mlp_ratio))),
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.readout: Optional[nn.Linear] = None
        if gap_init:
            self.readout = nn.Linear(dim, dim)
            nn.init.zeros_(self.readout.weight)
            nn.init.zeros_(self.readout.bias)

    def positional_embedding(self, t: int) -> torch.Tensor:
        """The ``(1, t, D)`` positional embedding for a sequence of t steps (interpolated if t != L)."""
        if t == self.max_len:
            return self.pos_embed
        # (1, L, D) -> (1, D, L): interpolate along the last axis -> (1, D, t) -> (1, t, D)
        pos = F.interpolate(self.pos_embed.transpose(1, 2), size=t, mode="linear", align_corners=False)
        return pos.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool tokens ``(B, T, C)`` to ``(B, D)``."""
        _check_tokens(x, self.in_dim)
        b, t, _ = x.shape
        tokens = self.proj(x)  # (B, T, D)
        x = tokens + self.positional_embedding(t)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)  # (B, T, D) -> (B, 1 + T, D)
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x)
        cls = self.norm(x[:, 0])  # CLS token (B, D)
        if self.readout is None:
            return cls
        return tokens.mean(dim=1) + self.readout(cls)


class GlobalAveragePooling(nn.Module):
    """Mean over time: tokens ``(B, T, C)`` -> ``(B, C)``; the no-parameter baseline.

    Args:
        in_dim: input channels C (checked on every call; also the output size).
    """

    def __init__(self, *, in_dim: int) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        self.in_dim = in_dim
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average tokens ``(B, T, C)`` over T to ``(B, C)``."""
        _check_tokens(x, self.in_dim)
        return x.mean(dim=1)


# Names a config may use (e.g. ``STICA.POOL.TYPE``), mapped to the module.
TEMPORAL_POOLINGS = {"transformer": TransformerPooling, "gap": GlobalAveragePooling}


def build_temporal_pooling(kind: str, *, in_dim: int, **transformer_args: Any) -> nn.Module:
    """Build a temporal pooling ``(B, T, C) -> (B, out_dim)`` by name.

    Args:
        kind: ``"transformer"`` (:class:`TransformerPooling`) or ``"gap"`` (:class:`GlobalAveragePooling`),
            case-insensitive.
        in_dim: input channels C.
        **transformer_args: the other :class:`TransformerPooling` arguments (``width``, ``depth``,
            ``num_heads``, ``mlp_ratio``, ``dropout``, ``max_len``, ``gap_init``), all required for
            ``"transformer"``; ``"gap"`` ignores them (so one config section serves both kinds) but
            still rejects a name that is not one of them.

    Returns:
        The module; its ``out_dim`` attribute is the output size.
    """
    key = kind.lower()
    if key not in TEMPORAL_POOLINGS:
        raise ValueError(
            f"Unknown temporal pooling {kind!r}; choose one of {sorted(TEMPORAL_POOLINGS)}"
            + did_you_mean(closest(key, TEMPORAL_POOLINGS))
        )
    if key == "transformer":
        return TransformerPooling(in_dim=in_dim, **transformer_args)
    unknown = sorted(set(transformer_args) - set(inspect.signature(TransformerPooling).parameters))
    if unknown:
        raise TypeError(f"build_temporal_pooling got unexpected arguments {unknown}")
    return GlobalAveragePooling(in_dim=in_dim)
