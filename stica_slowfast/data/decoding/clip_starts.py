"""Clip starts: where on the clip clock (seconds from the first video frame) each clip begins.

A clip never starts before 0 or, when the video is long enough, after ``duration - clip_duration``;
a video shorter than one clip has the single start 0 (its clip then holds the last frame, see
:mod:`~stica_slowfast.data.decoding.frame_selection`). Pure arithmetic: no file is read here.
"""

import math
from typing import List, Optional

import numpy as np

__all__ = ["get_clip_starts"]


def get_clip_starts(
    duration: float,
    clip_duration: float,
    num_clips: int,
    *,
    mode: str,
    rng: Optional[np.random.Generator] = None,
    min_delta: float = 0.0,
    max_delta: float = math.inf,
) -> List[float]:
    """Clip start times (seconds) for a video.

    Args:
        duration: video duration in seconds.
        clip_duration: clip length in seconds (``num_frames * frame_step``).
        num_clips: number of clips.
        mode: "random" -- independent uniform starts in [0, max(0, duration - clip_duration)];
            "uniform" -- evenly spaced starts from 0 to the last full-clip start (one clip is centred).
        rng: numpy generator, required for "random".
        min_delta, max_delta: "random" only -- every clip after the first starts between
            ``min_delta`` and ``max_delta`` seconds (before or after) from the first clip's start
            (``CONTRASTIVE.DELTA_CLIPS_MIN/MAX``); when no such start fits in the video, the nearest
            feasible start is used.

    Returns:
        ``num_clips`` start times in seconds.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    # A video shorter than a clip only has start 0 (the clip then repeats its last frame).
    max_start = max(0.0, float(duration) - float(clip_duration))
    if mode == "random":
        if rng is None:
            raise ValueError("mode='random' needs an rng (np.random.Generator)")
        if min_delta <= 0.0 and math.isinf(max_delta):  # unbounded: independent uniform starts
            return [float(x) for x in rng.uniform(0.0, max_start, size=num_clips)]
        first = float(rng.uniform(0.0, max_start))
        return [first] + [_start_near(first, max_start, min_delta, max_delta, rng) for _ in range(num_clips - 1)]
    if mode == "uniform":
        if num_clips == 1:
            return [max_start / 2.0]
        return [max_start * i / (num_clips - 1) for i in range(num_clips)]
    raise ValueError(f"mode must be 'random' or 'uniform', got {mode!r}")


def _start_near(
    anchor: float, max_start: float, min_delta: float, max_delta: float, rng: np.random.Generator
) -> float:
    """A uniform start in [0, max_start] at a distance in [min_delta, max_delta] from ``anchor``."""
    lo, hi = max(0.0, min_delta), max(max(0.0, min_delta), max_delta)
    # The two feasible intervals, after and before the anchor, clipped to the video.
    spans = [(anchor + lo, min(anchor + hi, max_start)), (max(anchor - hi, 0.0), anchor - lo)]
    spans = [(a, b) for a, b in spans if b >= a]
    if not spans:  # video too short for the minimum distance: go as far from the anchor as it can
        return max_start if max_start - anchor >= anchor else 0.0
    lengths = np.array([b - a for a, b in spans])
    pick = int(rng.choice(len(spans), p=lengths / lengths.sum())) if lengths.sum() > 0 else 0
    a, b = spans[pick]
    return float(rng.uniform(a, b))
