"""One pass: the clips of a video (frames and audio) decoded in a single demux of its file.

Cost. One seek (to the keyframe before the earliest clip or audio window) and one demux pass for all
clips, which skips what lies between them: the video packets no clip needs are held back by the
reference-frame gate (:mod:`~stica_slowfast.data.decoding.video_gate`), the audio packets far from
every window are not decoded (:mod:`~stica_slowfast.data.decoding.audio_windows`). The frames are
exactly those of decoding everything (``skip_gaps=False``; a video whose frames lie further apart
than the gate's margin is decoded again in full), and so are the samples, but for AAC's noise bands
(see :mod:`~stica_slowfast.data.decoding.audio_windows`). Only the selected frames are converted to
RGB.

Frames and samples that decode but are wrong are not used ("corrupt", "non_finite_audio"; see
:mod:`~stica_slowfast.data.bad_input`): a clip whose frame FFmpeg concealed damage in, or may be
predicted from such a frame (:meth:`FrameSelector.damaged_targets
<stica_slowfast.data.decoding.frame_selection.FrameSelector.damaged_targets>`); a clip that would hold
the last frame across a span the video stream's packets do not reach although its duration promises
it (a damaged MP4 sample table yields 1 of 50 frames, and every target would get that one); an audio
window with a NaN or infinite sample (float PCM; the resampler spreads one over its filter's length).
Only the end of the packets is compared with the duration, never the gaps between frames: a
variable-frame-rate video may legitimately show one frame for seconds, and neither MP4's packet
durations (decode-order deltas) nor Matroska's (a default) tell such a gap from a damaged one.

Timestamps that cannot be trusted are handled without failing: frames without pts follow the previous
one by a frame period (raw h264); pts that go backwards in presentation order (AVI with B-frames) switch
the file to timing by dts from the first frame; a container that cannot seek, or a seek that lands
after its target (MPEG-TS), is decoded from the start instead.

Symbols: T frames per clip, H, W frame size, S audio samples per clip.
"""

import logging
import math
from typing import Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from stica_slowfast.data.decoding import video_gate
from stica_slowfast.data.decoding.audio_windows import AudioGate, AudioPlacer, non_finite_window
from stica_slowfast.data.decoding.clock import TIME_EPS, pts_time, time_base_seconds
from stica_slowfast.data.decoding.errors import DecodeError
from stica_slowfast.data.decoding.frame_selection import FrameSelector, SkippedFrame

logger = logging.getLogger(__name__)

__all__ = ["PassSource", "decode_pass"]

# A clip start this close to 0 (seconds) is decoded from the beginning without seeking.
_NO_SEEK_BELOW = 1e-3
# The video packets may end this much before the stream's duration (frame periods, and at least
# seconds) without counting as missing frames: rounding, the B-frame delay of decode timestamps.
_MISSING_TAIL_FRAMES = 4
_MISSING_TAIL_S = 0.1


class PassSource(Protocol):
    """What a pass needs of the opened file (a :class:`~stica_slowfast.data.decoding.VideoFile`)."""

    path: str
    origin: float  # the clip clock's origin, seconds on the file's presentation clock
    duration: float  # seconds of video from the origin: the stream's own (its header's, where it has one)
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
    packets_end = -math.inf  # latest end (time + duration) of a video packet, when timed by pts
    at_end = False
    video_flushed = False  # the video decoder was sent the end-of-file packet (it holds no frame now)
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
            video_flushed = not packet.size
            if not video.timed_by_decode_order and packet.pts is not None and time_base is not None:
                span = packet.duration * time_base if packet.duration else period
                packets_end = max(packets_end, packet.pts * time_base - video.origin + span)
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
            at_end = True
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
    if at_end:
        _check_promised_end(video, selector.pending, max(packets_end, last_time + period), period)
    if selector.awaits_reference and not video_flushed:
        # The last frame taken is a B-frame; the reference frame shown after it was decoded before
        # it, and may have been concealed: drain the frames the decoder holds. (Also after the end of
        # file when the video was done before it: the pass went on for the audio only.)
        for frame in vs.codec_context.decode(None):
            selector.observe(frame)
            if not selector.awaits_reference:
                break
        vs.codec_context.flush_buffers()
    selector.finish()
    damaged = selector.damaged_targets()
    if damaged:
        raise DecodeError(f"FFmpeg concealed damaged data in {video.path} in the frame a clip takes at "
                          f"{damaged[0]:.3f} s, or in one that frame is predicted from", "corrupt")
    buffers = audio.placer.buffers if audio is not None else None
    if buffers is not None:
        bad = non_finite_window(buffers)
        if bad is not None:
            raise DecodeError(f"the audio of {video.path} holds NaN or infinite samples in the window "
                              f"from {audio_starts[bad]:.3f} s", "non_finite_audio")
    return selector.arrays, selector.times, buffers, count


def _check_promised_end(video: PassSource, held: Sequence[float], stream_end: float,
                        period: float) -> None:
    """Raise DecodeError("corrupt") when a target would hold the last frame across a span the video
    packets do not reach (they end at ``stream_end`` seconds) although the stream's duration promises
    frames there (a damaged sample table).

    ``held``: the targets past the last frame. Targets past the duration hold the last frame as
    they should (a video shorter than a clip).
    """
    slack = max(_MISSING_TAIL_FRAMES * period, _MISSING_TAIL_S)
    missing = [tau for tau in held if stream_end + slack < tau < video.duration - TIME_EPS]
    if missing:
        raise DecodeError(
            f"the video packets of {video.path} end at {stream_end:.3f} s, but its duration is "
            f"{video.duration:.3f} s (a damaged sample table?): a clip would hold its last frame from "
            f"there to {missing[-1]:.3f} s", "corrupt")
