"""The reference-frame gate: which video packets one pass decodes, so that frames no clip takes cost little.

A video frame more than :data:`GAP_MARGIN_FRAMES` frame periods before the next target is never
selected, so there only the frames that later frames refer to are decoded (``skip_frame = "NONREF"``
drops most B-frames), and past a keyframe in such a gap nothing before it is decoded at all (the
pass starts afresh there, without seeking).
"""

import bisect
import math
from typing import Iterator, List, Optional, Sequence, Tuple

from stica_slowfast.data.decoding.clock import TIME_EPS, pts_time
from stica_slowfast.data.decoding.frame_selection import FrameSelector

__all__ = ["GAP_MARGIN_FRAMES", "VideoGate"]

# A frame more than this many frame periods before the next target is never selected (a target takes
# the latest frame at or before it, less than a period before it; the half period absorbs rounded
# timestamps, and a longer gap between frames is detected): only the frames that later ones refer to
# are decoded there, or none at all past a keyframe.
GAP_MARGIN_FRAMES = 1.5


class VideoGate:
    """Decides which video packets are decoded, so that the frames no target takes cost little.

    A target takes the latest frame at or before it, less than a frame period before it; so a frame
    of time ``t`` is *needed* only when a target lies in ``[t, t + margin)`` (``margin`` =
    :data:`GAP_MARGIN_FRAMES` periods, a little more than one: frames further apart are detected by
    the selector). The packets of the other frames are held back:

    * a keyframe after held packets, once every target before it has the packet of its frame
      decoded, is a fresh start: the decoder gives out what it holds and is flushed, and the held
      packets are dropped undecoded. One pass thus jumps forward across every gap between clips
      that holds a keyframe, without seeking;
    * a needed packet releases the held ones, decoded with ``skip_frame = "NONREF"``: the frames no
      other frame refers to (most B-frames) are not decoded at all, the others are, since the
      needed frames may refer to them;
    * a packet after the last target, and every one after it, is decoded: the first frame after
      the last target ends the pass.

    Packets without a timestamp, and the end of the stream, release the held packets in full.
    Decisions depend on the targets and the packets alone, not on when the decoder gives frames
    out (which is later, by the B-frame delay and any frame threads).

    Args:
        selector: the pass's frame selector, told of every packet that may have given no frame.
        codec: the video stream's codec context (its ``skip_frame`` is set here).
        targets: the target times of all clips, seconds on the clip clock.
        period: the source's frame period in seconds.
        time_base: the video stream's time base in seconds.
        origin: the clip clock's origin in seconds.
    """

    # Yielded by :meth:`admit` for a fresh start: empty the decoder (see :meth:`drain`).
    DRAIN = object()

    def __init__(self, selector: FrameSelector, codec, *, targets: Sequence[float], period: float,
                 time_base: Optional[float], origin: float):
        self.selector, self.codec, self.margin = selector, codec, GAP_MARGIN_FRAMES * period
        self.time_base, self.origin = time_base, origin
        self._taus = sorted(targets)
        self._covered = [False] * len(self._taus)  # the packet of the target's frame was decoded
        self._first_uncovered = 0
        self.held: List[Tuple[object, float]] = []  # (packet, time), in decode order
        self._nonref = False
        self._after_last = False  # a packet after the last target was seen
        self._restarted_at = -math.inf  # time of the keyframe of the last fresh start

    def _set_nonref(self, nonref: bool) -> None:
        if nonref != self._nonref:
            self.codec.skip_frame = "NONREF" if nonref else "DEFAULT"
            self._nonref = nonref

    def _targets_of(self, t: float) -> range:
        """Sorted indices of the targets a frame of time ``t`` may be taken by."""
        lo = bisect.bisect_left(self._taus, t - TIME_EPS)
        return range(lo, bisect.bisect_left(self._taus, t + self.margin, lo=lo))

    def _covered_before(self, t: float) -> bool:
        """Whether every target before time ``t`` has the packet of its frame decoded."""
        while self._first_uncovered < len(self._taus) and self._covered[self._first_uncovered]:
            self._first_uncovered += 1
        return self._first_uncovered == len(self._taus) or self._taus[self._first_uncovered] >= t - TIME_EPS

    def admit(self, packet, may_restart: bool) -> Iterator[object]:
        """The packets to decode now, in order: none (``packet`` is held), or the held ones and
        ``packet``, after :attr:`DRAIN` for a fresh start.

        Decode each before taking the next: the codec's ``skip_frame`` is set for it in between.
        ``may_restart``: a keyframe may drop the packets held before it.
        """
        t = pts_time(packet, self.time_base, self.origin)
        if t is None:
            # Perhaps the end of the stream, whose last frames every later target takes.
            yield from self._release(nonref=False)
            yield packet
            return
        if packet.is_keyframe and self.held and may_restart and self._covered_before(t):
            for _, held_time in self.held:
                self.selector.skipped(held_time)
            self.held.clear()
            self._restarted_at = t
            yield self.DRAIN
        if t < self._restarted_at - TIME_EPS:
            # A frame shown before the keyframe decoding started afresh at, which refers to frames
            # before it (an open GOP's leading B-frame): it cannot be decoded; should a target want
            # it, the selector's check has the pass done again without skipping.
            self.selector.skipped(t)
            return
        taken_by = self._targets_of(t)
        # A frame after the last target tells the selector which frame that target takes, and so
        # that the pass is over; from then on every packet is decoded, as the decoder gives frames
        # out only as later packets come in.
        self._after_last |= bool(self._taus) and t > self._taus[-1] + TIME_EPS
        if not taken_by and not self._after_last:
            self.held.append((packet, t))
            return
        for k in taken_by:
            self._covered[k] = True
        yield from self._release(nonref=True)
        yield packet

    def _release(self, nonref: bool) -> Iterator[object]:
        for held, held_time in self.held:
            self._set_nonref(nonref)
            if nonref:
                self.selector.skipped(held_time)
            yield held
        self.held.clear()
        self._set_nonref(False)

    def drain(self) -> List[object]:
        """The frames the decoder still holds; it is then flushed, ready for a keyframe."""
        frames = self.codec.decode(None)
        self.codec.flush_buffers()
        return frames
