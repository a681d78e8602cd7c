"""The clip clock: seconds from the video stream's first presentation time.

All times are seconds on the file's presentation clock, measured from the first presentation time of
the video stream (``origin``), so a clip start of 0 is the first video frame and audio is placed on
the same clock (A/V sync is whatever the container says it is). A clip clock must be the video
stream's own: a container's span covers its longest stream, and Matroska streams carry no duration
of their own. The helpers here read PyAV timestamps on that clock.
"""

from typing import Optional

__all__ = ["TIME_EPS", "frame_time", "time_base_seconds", "pts_time"]

# Slack when comparing a frame time with a target time: target times are floats built from
# start + i * step, frame times exact fractions; without it a 30 fps source sampled at 30 fps could
# pick the previous frame because of a 1e-16 rounding difference.
TIME_EPS = 1e-6


def frame_time(frame, fallback: Optional[float]) -> Optional[float]:
    """Presentation time of a frame in seconds, or ``fallback`` when it has no timestamp."""
    if frame.pts is None or frame.time_base is None:
        return fallback
    return float(frame.pts * frame.time_base)


def time_base_seconds(time_base) -> Optional[float]:
    """A stream's time base as a float (None when unknown): reading ``.time_base`` makes a Fraction and
    multiplying by it another, which in the per-packet loop cost as much as a tenth of a pass."""
    return float(time_base) if time_base else None


def pts_time(item, time_base: Optional[float], origin: float) -> Optional[float]:
    """Presentation time of a packet or frame in seconds from ``origin`` (``time_base``: its stream's,
    in seconds, from :func:`time_base_seconds`), or None without a timestamp."""
    if item.pts is None or time_base is None:
        return None
    return item.pts * time_base - origin
