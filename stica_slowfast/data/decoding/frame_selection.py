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

Damaged data. FFmpeg conceals the damage it detects in a frame (it fills the broken blocks from
their neighbours) and flags that frame (``frame.is_corrupt``), but not the frames predicted from it,
which carry the errors on until the next keyframe (measured: zeroed slice data in one h264 P-frame
flags that frame only, while the B-frames before it and every later frame of its GOP differ from the
undamaged decode as much; ``tests/data/test_damaged_media.py``).
So a clip must not take a flagged frame, nor a frame that may be predicted from one: any frame shown
after a flagged I- or P-frame up to the next keyframe, and a B-frame whose run of B-frames holds a
flagged frame or comes right before one (B-frames refer to the reference frame shown after them).
:meth:`FrameSelector.damaged_targets` names the targets that would; a flagged frame no target's
frame depends on (past the clips, or before a keyframe that precedes them) harms nothing, so it does
not count: whether a clip is usable depends on its own pixels, not on what else the pass decoded.

Symbols: T frames per clip, H, W frame size.
"""

import bisect
from typing import Callable, List, Optional, Sequence

import numpy as np
from av.video.frame import PictureType

from stica_slowfast.data.decoding.clock import TIME_EPS
from stica_slowfast.data.decoding.errors import DecodeError

__all__ = ["FrameSelector", "SkippedFrame"]

# What a decoded frame is, as far as damage goes (bits of FrameSelector's marks, one per frame).
_FLAGGED, _KEY, _BIDIR = 1, 2, 4
_PICT_B = int(PictureType.B)


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
        self._prev = None  # (frame, time, cached ndarray or None, serial)
        self._skipped: List[float] = []  # sorted times of the packets that may have given no frame
        # Per pushed frame (its serial), in presentation order: _FLAGGED | _KEY | _BIDIR bits; and the
        # serial of the frame each target (in sorted order) takes.
        self._marks: List[int] = []
        self._flagged = False
        self._serials: List[int] = [0] * len(targets)

    @property
    def done(self) -> bool:
        return self._next >= len(self._taus)

    @property
    def started(self) -> bool:
        return self._prev is not None

    def skipped(self, t: float) -> None:
        """A packet of time ``t`` may have given no frame."""
        bisect.insort(self._skipped, t)

    @property
    def pending(self) -> List[float]:
        """The target times (sorted) no frame was given yet: before :meth:`finish`, those that would
        hold the last frame."""
        return self._taus[self._next:]

    def _assign_prev(self, upto: int) -> None:
        frame, t, arr, serial = self._prev
        if upto > self._next:
            skip = bisect.bisect_right(self._skipped, t + TIME_EPS)  # first skip after this frame
            if skip < len(self._skipped) and self._skipped[skip] <= self._taus[upto - 1] + TIME_EPS:
                raise SkippedFrame()
            if arr is None:
                arr = self._to_rgb(frame)
                self._prev = (frame, t, arr, serial)
        for j in range(self._next, upto):
            self.arrays[self._order[j]] = arr
            self.times[self._order[j]] = t
            self._serials[j] = serial
        self._next = max(self._next, upto)

    @property
    def awaits_reference(self) -> bool:
        """Whether the last frame given is a B-frame: the reference frame shown after its run, which
        the decoder has already decoded but not given out yet, may be flagged (see :meth:`observe`)."""
        return bool(self._marks) and bool(self._marks[-1] & _BIDIR)

    def observe(self, frame) -> None:
        """Note what a frame given out after the pass was done says about damage (no target takes it)."""
        flagged = frame.is_corrupt
        self._flagged |= flagged
        self._marks.append(_FLAGGED * flagged | _KEY * frame.key_frame
                           | _BIDIR * (frame.pict_type == _PICT_B))

    def push(self, frame, t: float) -> None:
        serial = len(self._marks)
        self.observe(frame)
        if self._prev is None:
            # Targets before the first frame take the first frame.
            self._prev = (frame, t, None, serial)
            upto = bisect.bisect_right(self._taus, t - TIME_EPS, lo=self._next)
            self._assign_prev(upto)
            return
        # Targets strictly before this frame's time belong to the previous frame.
        upto = bisect.bisect_left(self._taus, t - TIME_EPS, lo=self._next)
        self._assign_prev(upto)
        self._prev = (frame, t, None, serial)  # the previous frame's pixels are dropped unconverted

    def finish(self) -> None:
        """End of stream: the remaining targets repeat the last frame."""
        if self._prev is None:
            raise DecodeError("no video frames decoded")
        self._assign_prev(len(self._taus))

    def damaged_targets(self) -> List[float]:
        """The target times (sorted) whose frame FFmpeg flagged as concealed, or that may be predicted
        from a flagged frame (see the module docstring); empty when no frame was flagged."""
        if not self._flagged:
            return []
        damaged = _reached_by_damage(self._marks)
        return [tau for tau, serial in zip(self._taus[:self._next], self._serials) if damaged[serial]]


def _reached_by_damage(marks: Sequence[int]) -> List[bool]:
    """Per frame (presentation order), whether it is flagged or may be predicted from a flagged frame:
    a flagged frame other than a B-frame reaches every frame after it up to the next keyframe; a run
    of B-frames is reached when one of its frames is flagged or the frame shown right after it is."""
    reached, carry = [False] * len(marks), False
    for i, m in enumerate(marks):
        if m & _KEY:
            carry = False  # nothing after a keyframe refers to a frame decoded before it
        if m & _FLAGGED:
            carry |= not m & _BIDIR
        reached[i] = bool(m & _FLAGGED) or carry
    i = 0
    while i < len(marks):
        if not marks[i] & _BIDIR:
            i += 1
            continue
        end = i
        while end < len(marks) and marks[end] & _BIDIR:
            end += 1
        if any(marks[k] & _FLAGGED for k in range(i, end)) or (end < len(marks) and reached[end]):
            reached[i:end] = [True] * (end - i)
        i = end
    return reached
