"""Frame selection: which decoded frame each target time of each clip takes.

A clip starting at ``s`` samples ``T`` frames at the target times ``tau_i = s + i * frame_step``
(``frame_step = DATA.SAMPLING_RATE / DATA.TARGET_FPS``). For each ``tau_i`` the latest decoded frame
whose time is ``<= tau_i`` is taken (the first frame when none is), which resamples any source frame
rate onto the target grid: a 12 fps source sampled at 30 fps repeats frames, a 60 fps source drops
them.

Short videos: hold the last frame. Target times past the last frame take the last frame (hold, no
looping and no black padding): a 1-frame video gives T copies of its frame; a 3-frame video at
25 fps (frames at 0, 0.04, 0.08 s) sampled every 0.1 s with T = 4 gives frames 0, 2, 2, 2. Holding
keeps the clip's time axis true (no frame is shown before its time), where looping would splice a
jump into a clip the model is asked to learn motion from.

Symbols: T frames per clip, H, W frame size.
"""

import bisect
from typing import Callable, List, Optional, Sequence

import numpy as np

from stica_slowfast.data.decoding.clock import TIME_EPS
from stica_slowfast.data.decoding.errors import DecodeError

__all__ = ["FrameSelector", "SkippedFrame"]


class SkippedFrame(Exception):
    """A target's frame may be one the pass skipped (frames further apart than the gate's margin)."""


class FrameSelector:
    """Assigns decoded frames to the target times of all clips while frames stream past once.

    Targets are kept sorted; when a frame with time ``t`` arrives, every pending target ``tau < t``
    gets the previous frame (the latest one with time ``<= tau``). Only frames that some target
    selects are converted to numpy (by ``to_rgb``, to (H, W, 3) uint8), each once.

    A target is never given a frame when a packet that may have given no frame (see
    :class:`~stica_slowfast.data.decoding.video_gate.VideoGate`, which records them with
    :meth:`skipped`) lies between that frame and the target: that raises :class:`SkippedFrame`
    instead, as the skipped frame may be the one it wants.
    """

    def __init__(self, targets: Sequence[float], to_rgb: Callable[[object], np.ndarray]):
        self._order = sorted(range(len(targets)), key=lambda k: targets[k])
        self._taus = [targets[k] for k in self._order]
        self._to_rgb = to_rgb
        self._next = 0  # first target (in sorted order) without a frame yet
        self.arrays: List[Optional[np.ndarray]] = [None] * len(targets)
        self.times: List[float] = [0.0] * len(targets)
        self._prev = None  # (frame, time, cached ndarray or None)
        self._skipped: List[float] = []  # sorted times of the packets that may have given no frame

    @property
    def done(self) -> bool:
        return self._next >= len(self._taus)

    @property
    def started(self) -> bool:
        return self._prev is not None

    def skipped(self, t: float) -> None:
        """A packet of time ``t`` may have given no frame."""
        bisect.insort(self._skipped, t)

    def _assign_prev(self, upto: int) -> None:
        frame, t, arr = self._prev
        if upto > self._next:
            skip = bisect.bisect_right(self._skipped, t + TIME_EPS)  # first skip after this frame
            if skip < len(self._skipped) and self._skipped[skip] <= self._taus[upto - 1] + TIME_EPS:
                raise SkippedFrame()
            if arr is None:
                arr = self._to_rgb(frame)
                self._prev = (frame, t, arr)
        for j in range(self._next, upto):
            self.arrays[self._order[j]] = arr
            self.times[self._order[j]] = t
        self._next = max(self._next, upto)

    def push(self, frame, t: float) -> None:
        if self._prev is None:
            # Targets before the first frame take the first frame.
            self._prev = (frame, t, None)
            upto = bisect.bisect_right(self._taus, t - TIME_EPS, lo=self._next)
            self._assign_prev(upto)
            return
        # Targets strictly before this frame's time belong to the previous frame.
        upto = bisect.bisect_left(self._taus, t - TIME_EPS, lo=self._next)
        self._assign_prev(upto)
        self._prev = (frame, t, None)  # the previous frame's pixels are dropped unconverted

    def finish(self) -> None:
        """End of stream: the remaining targets repeat the last frame."""
        if self._prev is None:
            raise DecodeError("no video frames decoded")
        self._assign_prev(len(self._taus))
