"""The clip clock: seconds from the video stream's first presentation time.

All times are seconds on the file's presentation clock, measured from the first presentation time of
the video stream (``origin``), so a clip start of 0 is the first video frame and audio is placed on
the same clock (A/V sync is whatever the container says it is). A clip clock must be the video
stream's own: a container's span covers its longest stream, measured from the container's start, and
Matroska streams carry no duration of their own. Where no header states the video stream's span,
:func:`read_video_span` reads it from the video packets' own timestamps. The helpers here read PyAV
timestamps on that clock.
"""

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

__all__ = ["TIME_EPS", "VideoSpan", "frame_time", "time_base_seconds", "pts_time", "read_video_span"]

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


# A decode timestamp this far (seconds) before the largest one so far starts a new segment when the
# frame rate is unknown (otherwise one frame period): decode timestamps only go back where the
# timestamps restart.
_RESTART_TOLERANCE_S = 0.1


@dataclass(frozen=True)
class VideoSpan:
    """Where a video stream's packets lie on the file's presentation clock, read from the packets.

    Attributes:
        segments: per stretch of non-decreasing decode timestamps, in file order, ``(first, end)`` in
            seconds: the earliest presentation time read, and one frame duration past the latest.
            More than one where the timestamps restart (concatenated MPEG-TS or MPEG-PS files).
    """

    segments: Tuple[Tuple[float, float], ...]

    @property
    def end(self) -> float:
        """One frame duration past the last frame's presentation time (seconds, file clock)."""
        return self.segments[-1][1]

    @property
    def restarts(self) -> int:
        """How often the timestamps went back."""
        return len(self.segments) - 1

    @property
    def length(self) -> float:
        """Seconds of video, the segments' lengths added up (a file read from its first packet)."""
        return sum(end - first for first, end in self.segments)


def read_video_span(packets: Iterable, time_base: float, period: float) -> Optional[VideoSpan]:
    """The span of the video ``packets`` (one stream's, in file order), or None when none has a pts.

    A packet lasts its own duration, else one frame ``period`` (seconds; 0 when unknown). A decode
    timestamp more than a period before the largest so far starts a new segment; presentation
    timestamps cannot tell, as B-frames put them out of order.

    Args:
        packets: demuxed packets of the video stream (PyAV's empty end-of-file packets are skipped).
        time_base: the stream's time base in seconds (see :func:`time_base_seconds`).
        period: the stream's frame period in seconds, 0 when unknown.
    """
    tolerance = period if period > 0 else _RESTART_TOLERANCE_S
    segments: List[Tuple[float, float]] = []
    first = end = last_dts = None
    for packet in packets:
        if packet.dts is not None:
            dts = packet.dts * time_base
            if last_dts is not None and dts < last_dts - tolerance:
                if first is not None:
                    segments.append((first, end))
                first = end = last_dts = None
            last_dts = dts if last_dts is None else max(last_dts, dts)
        if packet.pts is None:
            continue
        t = packet.pts * time_base
        t_end = t + (packet.duration * time_base if packet.duration else period)
        first = t if first is None else min(first, t)
        end = t_end if end is None else max(end, t_end)
    if first is not None:
        segments.append((first, end))
    return VideoSpan(tuple(segments)) if segments else None
