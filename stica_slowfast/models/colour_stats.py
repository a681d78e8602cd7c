"""A parameter-free "backbone" of colour statistics: the shortcut baseline of every linear probe.

A linear probe on these features measures how much of a dataset's labels colour alone gives away
(a dataset whose classes differ in hue is solved without seeing shape or motion). Probed the same
way as a learned backbone (``MODEL.ARCH colour_stats`` under ``LinearProbe``), on the same decoded,
cropped and normalised clips, it is the row a method's probe must clear besides random init.

::

    video (B, C, T, H, W), normalised -> un-normalised RGB in [0, 1]
      -> mean, std per channel                                         (B, 6)
      -> mean, std per channel of the 10 % most saturated pixels      (B, 6)
      -> joint RGB histogram, ``bins`` per channel, fractions of pixels (B, bins ** 3)
      -> concatenated                                                  (B, D = 12 + bins ** 3)

B batch, C = 3 channels, T frames, H x W frame size. Saturation is max - min over the channels.
"""

from typing import Sequence

import torch
import torch.nn as nn

from stica_slowfast.registry import BACKBONE

__all__ = ["ColourStatistics", "colour_stats"]


class ColourStatistics(nn.Module):
    """Colour statistics of a clip (see the module docstring); no parameters, nothing to train.

    Args:
        mean: per-channel mean the clips were normalised with (``DATA.MEAN``).
        std: per-channel std the clips were normalised with (``DATA.STD``).
        bins: histogram bins per channel (the joint histogram has ``bins ** 3``).
        saturated_fraction: share of a clip's pixels, the most saturated, with their own mean / std.
    """

    def __init__(self, *, mean: Sequence[float], std: Sequence[float], bins: int = 4,
                 saturated_fraction: float = 0.1) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"colour statistics need 3-channel mean and std, got {list(mean)}, {list(std)}")
        if bins < 1 or not 0 < saturated_fraction <= 1:
            raise ValueError(f"need bins >= 1 and 0 < saturated_fraction <= 1, got {bins}, {saturated_fraction}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1), persistent=False)
        self.bins, self.saturated_fraction = int(bins), float(saturated_fraction)
        self.out_dim = 12 + self.bins ** 3

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Features ``(B, D)`` of normalised clips ``(B, 3, T, H, W)`` (or a one-pathway list of them)."""
        if isinstance(video, (list, tuple)):
            (video,) = video
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"expected RGB clips (B, 3, T, H, W), got shape {tuple(video.shape)}")
        # (B, 3, T, H, W) -> (B, 3, P) pixels, back in [0, 1]
        rgb = (video.flatten(2).float() * self.std + self.mean).clamp(0.0, 1.0)
        num_pixels = rgb.shape[2]
        saturation = rgb.amax(dim=1) - rgb.amin(dim=1)  # (B, P)
        k = max(1, round(self.saturated_fraction * num_pixels))
        top = saturation.topk(k, dim=1).indices  # (B, k)
        vivid = rgb.gather(2, top.unsqueeze(1).expand(-1, 3, -1))  # (B, 3, k)
        # Joint histogram: one bin index per pixel, (B, P) -> counts (B, bins^3) -> fractions.
        level = (rgb * self.bins).long().clamp_(max=self.bins - 1)  # (B, 3, P)
        cell = (level[:, 0] * self.bins + level[:, 1]) * self.bins + level[:, 2]
        hist = torch.zeros(rgb.shape[0], self.bins ** 3, device=rgb.device)
        hist.scatter_add_(1, cell, torch.ones_like(cell, dtype=hist.dtype))
        return torch.cat([rgb.mean(2), rgb.std(2, correction=0), vivid.mean(2), vivid.std(2, correction=0), hist / num_pixels], dim=1)


@BACKBONE.register()
def colour_stats(cfg) -> ColourStatistics:
    """Colour statistics of the clip (no parameters), ``out_dim`` 76: the colour-only probe baseline."""
    return ColourStatistics(mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
