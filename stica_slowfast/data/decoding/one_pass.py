"""One pass: the clips of a video (frames and audio) decoded in a single demux of its file.

Cost. One seek (to the keyframe before the earliest clip or audio window) and one demux pass for all
clips, which skips what lies between them: the video packets no clip needs are held back by the
reference-frame gate (:mod:`~stica_slowfast.data.decoding.video_gate`), the audio packets far from
every window are not decoded (:mod:`~stica_slowfast.data.decoding.audio_windows`). The frames are
exactly those of decoding everything (``skip_gaps=False``; a video whose frames lie further apart
than the gate's margin is decoded again in full), and so are the samples, but for AAC's noise bands
(see :mod:`~stica_slowfast.data.decoding.audio_windows`). Only the selected frames are converted to
RGB.

Timestamps that cannot be trusted are handled without failing: frames without pts follow the previous
one by a frame period (raw h264); pts that go backwards in presentation order (AVI with B-frames) switch
the file to timing by dts from the first frame; a container that cannot seek, or a seek that lands
after its target (MPEG-TS), is decoded from the start instead.

Symbols: T frames per clip, H, W frame size, S audio samples per clip.
"""

import logging
from typing import Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from stica_slowfast.data.decoding import video_gate
from stica_slowfast.data.decoding.audio_windows import AudioGate, AudioPlacer
from stica_slowfast.data.decoding.clock import TIME_EPS, pts_time, time_base_seconds
from stica_slowfast.data.decoding.errors import DecodeError
from stica_slowfast.data.decoding.frame_selection import FrameSelector, SkippedFrame

logger = logging.getLogger(__name__)

__all__ = ["PassSource", "decode_pass"]

# A clip start this close to 0 (seconds) is decoded from the beginning without seeking.
_NO_SEEK_BELOW = 1e-3


class PassSource(Protocol):
    """What a pass needs of the opened file (a :class:`~stica_slowfast.data.decoding.VideoFile`)."""

    path: str
    origin: float  # the clip clock's origin, seconds on the file's presentation clock
    video_stream: object
    audio_stream: Optional[object]
    # Set by a pass once the pts are found unusable: frames are then timed by decode order.
    timed_by_decode_order: bool

    def to_rgb(self, frame) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels of a decoded video frame."""

    def seek(self, seconds: float) -> bool:
        """To the keyframe at or before ``seconds``; False when the file cannot seek."""

    def rewind(self) -> None:
        """Back to the first packet (the streams may be new objects after it)."""

    def demux(self, streams: Iterable[object]) -> Iterator[object]:
        """The packets of ``streams`` from where seek or rewind left the file."""


class _SeekOvershoot(Exception):
    """The first frame after a seek lies after the seek target."""


class _SeekFailed(Exception):
    """The container cannot seek."""


class _UnorderedTimestamps(Exception):
    """Frame pts go backwards in presentation order (e.g. AVI with B-frames, where the demuxer
    hands out decode timestamps as pts)."""


def decode_pass(video: PassSource, starts: Sequence[float], targets: Sequence[float],
                audio_starts: Optional[Sequence[float]], num_samples: int, audio_rate: Optional[int],
                skip_gaps: bool) -> Tuple[List[np.ndarray], List[float], Optional[List[np.ndarray]], int]:
    """Decode the frames of every target time, and the audio windows, of the opened ``video``.

    Seeks once near the earliest clip start (``starts``) or audio window start (``audio_starts``,
    seconds; None without audio); falls back to decoding from the start, and to decoding every frame
    when frames are further apart than the gaps' margin.

    Args:
        video: the opened file.
        starts: the clips' start times, seconds on the clip clock.
        targets: the target times of all clips (T per clip, clip-major), seconds.
        audio_starts: the audio windows' start times in seconds, or None for no audio.
        num_samples: samples per audio window (S).
        audio_rate: the windows' sample rate in Hz, or None for no audio.
        skip_gaps: skip the packets no target or window needs.

    Returns:
        Per target its frame, an (H, W, 3) uint8 array (one array per frame, shared by the targets
        that take it), and the frame's time; the audio windows, float32 (S,) arrays (None without
        audio); the video frames decoded.
    """
    try:
        return _seek_and_decode(video, starts, targets, audio_starts, num_samples, audio_rate, skip_gaps)
    except SkippedFrame:
        logger.debug("frames further apart than %g periods in %s, decoding every frame",
                     video_gate.GAP_MARGIN_FRAMES, video.path)
        return _seek_and_decode(video, starts, targets, audio_starts, num_samples, audio_rate, False)


def _frame_time(video: PassSource, frame, last_time: Optional[float], period: float,
                dts_anchor: Optional[int], time_base: Optional[float]) -> float:
    """Seconds from the origin of a decoded video frame (frames arrive in presentation order).

    Normally its pts (x ``time_base``, the stream's in seconds). With unusable pts, the dts
    relative to the first frame's (decoders hand out frames in presentation order, and dts are
    monotonic there). A frame with no usable timestamp comes one frame period after the previous one.
    """
    if not video.timed_by_decode_order:
        t = pts_time(frame, time_base, video.origin)
        if t is None:
            return last_time + period if last_time is not None else 0.0
        if last_time is not None and t < last_time - TIME_EPS:
            raise _UnorderedTimestamps()
        return t
    if last_time is None:
        return 0.0
    if frame.dts is not None and dts_anchor is not None and frame.time_base is not None:
        t = float((frame.dts - dts_anchor) * frame.time_base)
        if t > last_time + TIME_EPS:
            return t
    return last_time + period


def _seek_and_decode(video: PassSource, starts, targets, audio_starts, num_samples, audio_rate, skip_gaps):
    """:func:`decode_pass` but for the fallback to decoding every frame."""
    args = (targets, audio_starts, num_samples, audio_rate, skip_gaps)
    earliest = min(starts + (list(audio_starts) if audio_starts is not None else []))
    try:
        if earliest > _NO_SEEK_BELOW and not video.timed_by_decode_order:
            try:
                return _decode_from(video, earliest, *args)
            except _SeekOvershoot:
                # A broken index can put the "keyframe before" after the target.
                logger.debug("seek overshot in %s, decoding from the start", video.path)
            except _SeekFailed:
                # Formats without an index (raw streams) cannot seek.
                logger.debug("cannot seek in %s, decoding from the start", video.path)
        return _decode_from(video, None, *args)
    except _UnorderedTimestamps:
        # The pts cannot be trusted: time the frames by their order from the first one.
        logger.debug("unordered pts in %s, timing frames by decode order", video.path)
        video.timed_by_decode_order = True
        return _decode_from(video, None, *args)


def _decode_from(video: PassSource, seek_to, targets, audio_starts, num_samples, audio_rate, skip_gaps):
    """One demux pass from ``seek_to`` seconds (None: from the first packet); with ``skip_gaps``
    the packets between clips are skipped where no selected frame or audio window needs them."""
    if seek_to is not None:
        if not video.seek(seek_to):
            raise _SeekFailed()
    else:
        video.rewind()
    vs = video.video_stream  # after rewind: a reopened container has new stream objects
    selector = FrameSelector(targets, video.to_rgb)
    rate = vs.average_rate or vs.guessed_rate
    period = float(1 / rate) if rate else 0.0
    time_base = time_base_seconds(vs.time_base)
    # Frames timed by their order cannot be skipped; without a frame rate there is no margin.
    gate = None
    if skip_gaps and period > 0 and not video.timed_by_decode_order and vs.codec_context is not None:
        gate = video_gate.VideoGate(selector, vs.codec_context, targets=targets, period=period,
                                    time_base=time_base, origin=video.origin)
    audio, streams = None, [vs]
    if audio_rate is not None:
        astream = video.audio_stream
        audio = AudioGate(AudioPlacer(audio_starts, num_samples, audio_rate), astream.codec_context,
                          time_base=time_base_seconds(astream.time_base), origin=video.origin,
                          skip_gaps=skip_gaps)
        streams.append(astream)

    last_time: Optional[float] = None
    dts_anchor: Optional[int] = None
    count = 0
    video_index = vs.index
    try:
        for packet in video.demux(streams):
            video_done, audio_done = selector.done, audio is None or audio.done
            if video_done and audio_done:
                break  # past the last clip end: stop reading the file
            if packet.stream_index != video_index:
                if not audio_done:
                    audio.push(packet)
                continue
            if video_done:
                continue  # keep demuxing only for the audio
            # Before the first frame after a seek, keep every packet: the seek's check below
            # needs the frame it landed on.
            packets = (packet,) if gate is None else gate.admit(
                packet, may_restart=seek_to is None or selector.started)
            for admitted in packets:
                for frame in gate.drain() if admitted is video_gate.VideoGate.DRAIN else admitted.decode():
                    t = _frame_time(video, frame, last_time, period, dts_anchor, time_base)
                    if last_time is None:
                        dts_anchor = frame.dts
                        if seek_to is not None and t > seek_to + TIME_EPS:
                            raise _SeekOvershoot()
                    last_time = t
                    count += 1
                    selector.push(frame, t)
        else:
            # End of file (demux already flushed the decoders): flush the resampler's tail.
            if audio is not None:
                audio.finish()
    finally:
        if gate is not None:
            gate.codec.skip_frame = "DEFAULT"  # a fallback pass decodes with this context again
    if not selector.started:
        if seek_to is not None:
            # Inexact seeking (e.g. MPEG-TS) can land past the only keyframes: no frame at all.
            raise _SeekOvershoot()
        raise DecodeError(f"no video frames decoded from {video.path}")
    selector.finish()
    buffers = audio.placer.buffers if audio is not None else None
    return selector.arrays, selector.times, buffers, count
