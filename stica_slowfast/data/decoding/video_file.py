"""Opening a video: the checks before FFmpeg sees a file, its PyAV container, clock origin and duration.

:func:`open_video` opens a file once for reading its duration and decoding its clips in one pass
(:meth:`VideoFile.decode_clips`, see :mod:`~stica_slowfast.data.decoding.one_pass`). Any iopath path
is read from ``PathManager``'s local copy. A file that does not exist is "missing", one of 0 bytes
"empty", one cut short "truncated" (:mod:`~stica_slowfast.data.decoding.truncation`), one without a
video stream "no_video" (cover art, an ``attached_pic`` stream such as an MP3's or M4A's embedded
picture, is no video: a file with cover art and a real video stream uses the real one), anything else
FFmpeg cannot read "undecodable" (:class:`~stica_slowfast.data.decoding.errors.DecodeError`). Header
values that are missing (no time base, no frame rate, no duration) have fallbacks instead of failing.
Odd frame sizes, any pixel format (gray, yuv444p, 10 bit, ...) and any frame rate decode to RGB like
any other video.

The duration is the video stream's own span (:attr:`VideoFile.duration`): from the header where it
states each stream's duration (MP4/MOV, AVI), else from the video packets' own timestamps
(:func:`~stica_slowfast.data.decoding.clock.read_video_span`); never the container's span, which
covers its longest stream from the container's start (audio longer than the video, or video starting
late, would put clips after the last frame). Timestamps that restart mid-file (concatenated MPEG-TS
or MPEG-PS files) time the frames by decode order; such a file's audio is not decoded ("undecodable"
when audio is asked for) rather than misplaced. MPEG-PS is never sought in (see
:meth:`VideoFile.seek`).

The datasets open their videos with a :data:`VideoOpener` (:func:`open_video` unless they are given
another, such as :func:`~stica_slowfast.data.decoding.reference.open_video_per_clip`).

Symbols: T frames per clip, H, W frame size, S audio samples per clip.
"""

import contextlib
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, ContextManager, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from stica_slowfast.data.decoding.clock import VideoSpan, frame_time, read_video_span, time_base_seconds
from stica_slowfast.data.decoding.errors import DecodeError, as_decode_error
from stica_slowfast.data.decoding.one_pass import decode_pass
from stica_slowfast.data.decoding.truncation import find_truncation
from stica_slowfast.utils.forking import guard_forks
from stica_slowfast.utils.io import PathManager

__all__ = ["DecodedClips", "OpenedVideo", "VideoOpener", "VideoFile", "open_video", "decode_clips", "get_duration"]

# Containers whose header states each stream's duration (MP4/MOV: the track's media duration; AVI:
# the stream header's frame count). Elsewhere a stream has no duration (Matroska, WebM), or one FFmpeg
# estimated from a few packets or the bit rate (MPEG-PS under-reports it), and the video's span is
# read from its packets.
_HEADER_DURATION_FORMATS = frozenset({"mov", "mp4", "avi"})
# Containers a seek lands in with other timestamps than a decode from the start: MPEG-PS carries a
# timestamp on some packets only, the demuxer times the others from the packets before them, and a
# seek (a search over byte positions) starts that count elsewhere: frames come out shifted by part
# of a frame period, and a frame near the end can be lost. ("mpeg" also reads .vob files.)
_NO_SEEK_FORMATS = frozenset({"mpeg"})

# A forked DataLoader worker must not free an inherited decoder (its threads were not forked).
guard_forks()

# (local path, size, mtime) -> (duration, timestamp restarts): measuring a span reads packets, and a
# dataset opens its files again every epoch (a test or retrieval several times). Bounded: the oldest
# entries go first.
_DURATIONS: Dict[Tuple[str, int, int], Tuple[float, int]] = {}
_DURATIONS_MAX = 100_000


def _frame_period(stream) -> float:
    """A video stream's frame period in seconds, 0 when it has no frame rate."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(1 / rate) if rate else 0.0


@dataclass
class DecodedClips:
    """Result of :func:`decode_clips`, clips in the order of the requested starts.

    Attributes:
        video: per clip a uint8 tensor (T, H, W, 3), RGB.
        audio: per clip a float32 mono waveform (S,) covering the clip's audio window (by default
            [start, start + T * frame_step)), or None when no audio was requested. Zeros where the
            file has no audio.
        has_audio: whether the file has an audio stream.
        frame_times: per clip the presentation times (seconds from ``origin``) of the selected frames;
            handy to check which source frames a clip is made of.
        duration: duration of the video in seconds.
        frames_decoded: video frames decoded in the pass (all clips together); shows the effect of
            the seek, of skipping frames between clips and of stopping after the last clip.
    """

    video: List[torch.Tensor]
    audio: Optional[List[torch.Tensor]]
    has_audio: bool
    frame_times: List[List[float]]
    duration: float
    frames_decoded: int


class OpenedVideo(Protocol):
    """What the datasets use of an opened video: a :class:`VideoFile`, or anything that decodes alike."""

    @property
    def path(self) -> str: ...

    @property
    def has_audio(self) -> bool: ...

    @property
    def duration(self) -> float: ...

    def decode_clips(self, clip_starts: Sequence[float], **kwargs) -> DecodedClips:
        """The clips starting at ``clip_starts``; keyword arguments as :meth:`VideoFile.decode_clips`."""


# ``opener(path, threads=False)``: a context manager that gives the opened video and closes it after;
# raises DecodeError for a file that cannot be opened. :func:`open_video` is one.
VideoOpener = Callable[..., ContextManager[OpenedVideo]]


class VideoFile:
    """An opened video file: read its duration, then decode clips in one pass.

    Use through :func:`open_video` (a context manager) so the file is opened once for both steps.

    Args:
        path: any iopath path.
        threads: let FFmpeg decode video with several threads (frame + slice threading).
    """

    def __init__(self, path: str, *, threads: bool = False):
        self.path, self.threads = path, threads
        self._local, self._key = self._check_file(path)
        self._open()
        vs = self.video_stream
        # Clock origin: the video stream's first presentation time (may be > 0 with edit lists).
        self.origin = 0.0
        if vs.start_time is not None and vs.time_base is not None:
            self.origin = float(vs.start_time * vs.time_base)
        self._duration: Optional[float] = None
        # Set (by a pass, or by :attr:`duration` for timestamps that restart) once the pts are found
        # unusable: frames are then timed by their dts (or position) relative to the first frame,
        # which needs decoding from the start.
        self.timed_by_decode_order = False
        # How often the video's decode timestamps go back (concatenated MPEG-TS/PS); known once
        # :attr:`duration` was read.
        self.timestamp_restarts = 0
        # One converter to RGB for every frame: ``frame.to_ndarray(format="rgb24")`` builds a new
        # swscale context per frame, with a thread pool (1.3-2.9 ms a 320 x 240 frame on a loaded
        # 2-core machine, against 0.15 ms here); one thread, as data-loader workers have one core each.
        self._reformatter = VideoReformatter()

    def to_rgb(self, frame) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels of a decoded video frame."""
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()

    @staticmethod
    def _check_file(path: str) -> Tuple[str, Tuple[str, int, int]]:
        """The local path of ``path`` once it is known to exist, hold bytes and not be cut short, and
        the file's identity (local path, size, mtime in ns) for the duration cache."""
        try:
            local = PathManager.get_local_path(path)
        except Exception as err:  # missing remote file, no backend for the path, ...
            missing = not PathManager.exists(path) if "://" in path else not os.path.exists(path)
            raise DecodeError(f"cannot open {path}: {err}", "missing" if missing else "undecodable") from err
        try:
            stat = os.stat(local)
        except FileNotFoundError as err:
            raise DecodeError(f"no such file: {path}", "missing") from err
        except OSError as err:  # permissions, a broken link, ...
            raise DecodeError(f"cannot open {path}: {err}") from err
        if stat.st_size == 0:
            raise DecodeError(f"empty file (0 bytes): {path}", "empty")
        try:
            cut = find_truncation(local, stat.st_size)
        except OSError as err:
            raise DecodeError(f"cannot read {path}: {err}") from err
        if cut is not None:
            raise DecodeError(f"truncated file {path}: {cut}", "truncated")
        return local, (local, stat.st_size, stat.st_mtime_ns)

    def _open(self) -> None:
        try:
            self._container = av.open(self._local, mode="r", metadata_errors="ignore")
        except Exception as err:  # not a media file, corrupt header, a file removed meanwhile, ...
            reason = "missing" if isinstance(err, FileNotFoundError) else "undecodable"
            raise DecodeError(f"cannot open {self.path}: {err}", reason) from err
        # Cover art (an MP3's or M4A's embedded picture) is a one-packet "video" stream: not a video.
        videos = [s for s in self._container.streams.video
                  if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            art = " (only cover art)" if self._container.streams.video else ""
            self.close()
            raise DecodeError(f"no video stream in {self.path}{art}", "no_video")
        self.video_stream = videos[0]
        if self.threads:
            self.video_stream.thread_type = "AUTO"
        audio = self._container.streams.audio
        self.audio_stream = audio[0] if audio else None
        self._consumed = False  # packets were read, so a decode from the start must rewind

    def rewind(self) -> None:
        """Back to the first packet: seek to 0, or reopen where the format cannot seek (raw h264)
        or may have discontinuous timestamps (FFmpeg's ``ts_discont`` formats: MPEG-TS and MPEG-PS,
        whose seek to 0 lands on the video's first keyframe, after any audio before it, and can hand
        out a broken audio packet there; also Ogg).

        A reopened container has new stream objects: read :attr:`video_stream` after this.
        """
        if not self._consumed:
            return
        if not self._container.format.flags & av.format.Flags.ts_discont.value:
            try:
                self._container.seek(0)
                self._consumed = False
                return
            except av.FFmpegError:
                pass
        self.close()
        self._open()

    def seek(self, seconds: float) -> bool:
        """Move to the keyframe at or before ``seconds`` on the clip clock; False when the container
        cannot seek (no time base, or FFmpeg refuses; formats without an index, such as raw streams)
        or its seeks shift the frames' times (MPEG-PS): the pass then decodes from the start.

        FFmpeg's mov demuxer moves the audio stream to the same time.
        """
        vs = self.video_stream
        if vs.time_base is None or self._container.format.name in _NO_SEEK_FORMATS:
            return False
        try:
            self._container.seek(int(math.floor((seconds + self.origin) / vs.time_base)),
                                 backward=True, any_frame=False, stream=vs)
        except av.FFmpegError:
            return False
        self._consumed = True
        return True

    def demux(self, streams) -> Iterator[object]:
        """The packets of ``streams`` from where :meth:`seek` or :meth:`rewind` left the file.

        PyAV ends with an empty packet per stream, which flushes its decoder, but leaves its
        ``stream_index`` at 0: set here, so that the last frames of a video that is not stream 0
        (MPEG-PS, where audio often comes first) reach the video decoder, and an audio flush never
        reaches it.
        """
        self._consumed = True
        for packet in self._container.demux(streams):
            if not packet.size:
                packet.stream = packet.stream  # the setter writes the stream's index
            yield packet

    @property
    def has_audio(self) -> bool:
        return self.audio_stream is not None

    def close(self) -> None:
        self._container.close()

    @property
    def duration(self) -> float:
        """Seconds of video from its first frame: the video stream's own span, never the container's.

        From the header in MP4/MOV and AVI; elsewhere (Matroska, WebM, MPEG-TS, MPEG-PS, ...) from the
        video packets' timestamps (:meth:`_scan_span`), and by decoding every frame where they have
        none. Remembered per file (path, size, mtime) in this process. Reading it also finds
        timestamps that restart (:attr:`timestamp_restarts`); the frames are then timed by decode
        order, and the duration is the segments' lengths added up.
        """
        if self._duration is None:
            with as_decode_error(self.path):
                known = _DURATIONS.get(self._key)
                if known is None:
                    known = self._read_duration()
                    if len(_DURATIONS) >= _DURATIONS_MAX:
                        del _DURATIONS[next(iter(_DURATIONS))]
                    _DURATIONS[self._key] = known
            self._duration, self.timestamp_restarts = known
            if self.timestamp_restarts:
                self.timed_by_decode_order = True
        return self._duration

    def _read_duration(self) -> Tuple[float, int]:
        """(duration in seconds, timestamp restarts), measured."""
        vs = self.video_stream
        names = set(self._container.format.name.split(","))
        if names & _HEADER_DURATION_FORMATS and vs.duration and vs.time_base is not None:
            return float(vs.duration * vs.time_base), 0
        span = self._scan_span()
        if span is not None and span.restarts:
            return span.length, span.restarts
        if span is not None and span.end > self.origin:
            return span.end - self.origin, 0
        return self._count_frames(), 0

    def _scan_span(self) -> Optional[VideoSpan]:
        """The video stream's span read from its packets' timestamps (demuxed, not decoded).

        Only the last packets, after a seek on the video stream to the container's end (in Matroska,
        from the last keyframe on), where the container has a duration and its timestamps cannot
        restart; else every packet from the first: in MPEG-TS and MPEG-PS (FFmpeg's ``ts_discont``
        formats, Ogg among them), whose timestamps may restart where files were joined, and whose
        stream durations FFmpeg estimates from a few packets. None when no video packet has a timestamp.
        """
        c, vs = self._container, self.video_stream
        time_base = time_base_seconds(vs.time_base)
        if time_base is None:
            return None
        period = _frame_period(vs)
        if c.duration and not c.format.flags & av.format.Flags.ts_discont.value:
            end = Fraction((c.start_time or 0) + c.duration, av.time_base)  # the container's end, s
            self._consumed = True
            try:
                c.seek(math.ceil(end / vs.time_base), backward=True, any_frame=False, stream=vs)
            except av.FFmpegError:
                pass
            else:
                span = read_video_span(self.demux([vs]), time_base, period)
                if span is not None:
                    return span
        self.rewind()
        return read_video_span(self.demux([self.video_stream]), time_base, period)

    def _count_frames(self) -> float:
        """The duration of a video whose packets have no timestamps, by decoding every frame."""
        self.rewind()
        vs = self.video_stream  # after rewind: a reopened container has new stream objects
        first, last, count = None, None, 0
        self._consumed = True
        for frame in self._container.decode(vs):
            t = frame_time(frame, None)
            if t is not None:
                first = t if first is None else min(first, t)
                last = t if last is None else max(last, t)
            count += 1
        if count == 0:
            raise DecodeError(f"no video frames in {self.path}")
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        if last is None or first is None or last == first:
            # No usable timestamps (e.g. a raw h264 stream): frames are one period apart.
            return count / float(rate) if rate else float(count)
        # Span of the timestamps plus the last frame's own duration.
        period = float(1 / rate) if rate else (last - first) / max(1, count - 1)
        return last - self.origin + period

    def decode_clips(
        self,
        clip_starts: Sequence[float],
        *,
        num_frames: int,
        frame_step: float,
        audio_rate: Optional[int] = None,
        audio_duration: Optional[float] = None,
        skip_gaps: bool = True,
    ) -> DecodedClips:
        """Decode all clips in one sequential pass; see :func:`decode_clips`."""
        if num_frames < 1 or frame_step <= 0:
            raise ValueError(f"need num_frames >= 1 and frame_step > 0, got {num_frames}, {frame_step}")
        starts = [max(0.0, float(s)) for s in clip_starts]
        if not starts:
            raise ValueError("clip_starts is empty")
        targets = [s + i * frame_step for s in starts for i in range(num_frames)]
        clip_duration = num_frames * frame_step
        audio_duration = clip_duration if audio_duration is None else float(audio_duration)
        if audio_duration <= 0:
            raise ValueError(f"audio_duration must be > 0, got {audio_duration}")
        # Audio windows centred on the clips' centres (start == clip start by default).
        audio_starts = [s + (clip_duration - audio_duration) / 2.0 for s in starts]
        num_samples = int(round(audio_duration * audio_rate)) if audio_rate is not None else 0
        want_audio = audio_rate is not None and self.audio_stream is not None
        with as_decode_error(self.path):
            duration = self.duration  # first: it may switch the pass to timing by decode order
            if want_audio and self.timestamp_restarts:
                raise DecodeError(
                    f"the timestamps of {self.path} restart {self.timestamp_restarts} time(s) (files "
                    f"joined together?): its video is timed by decode order, its audio cannot be "
                    f"placed against it", "undecodable")
            frames, times, audio, count = decode_pass(
                self, starts, targets, audio_starts if want_audio else None, num_samples,
                audio_rate if want_audio else None, skip_gaps)
            video, clip_times = [], []
            for c in range(len(starts)):
                sl = slice(c * num_frames, (c + 1) * num_frames)
                # Repeated frames share one ndarray; stacking copies them into one (T, H, W, 3) block
                # (a ValueError when the frame size changes mid-stream).
                video.append(torch.from_numpy(np.stack(frames[sl])))
                clip_times.append(times[sl])
        audio_out = None
        if audio_rate is not None:
            if audio is None:  # no audio stream: silence of the right length
                audio = [np.zeros(num_samples, np.float32) for _ in starts]
            audio_out = [torch.from_numpy(b) for b in audio]
        return DecodedClips(video=video, audio=audio_out, has_audio=self.has_audio,
                            frame_times=clip_times, duration=duration, frames_decoded=count)


@contextlib.contextmanager
def open_video(path: str, *, threads: bool = False) -> Iterator[VideoFile]:
    """Open ``path`` for reading its duration and decoding clips; raises :class:`DecodeError`."""
    video = VideoFile(path, threads=threads)
    try:
        yield video
    finally:
        video.close()


def decode_clips(
    path: str,
    clip_starts: Sequence[float],
    *,
    num_frames: int,
    frame_step: float,
    audio_rate: Optional[int] = None,
    audio_duration: Optional[float] = None,
    threads: bool = False,
    skip_gaps: bool = True,
) -> DecodedClips:
    """Decode several clips (and their audio) from one video in a single sequential pass.

    The file is demuxed once, video and audio together: one seek to the keyframe before the earliest
    start (none when it is ~0), decoding stops once every clip's last frame and audio sample is
    known. Between clips, only the frames later frames refer to are decoded, none past a keyframe,
    and only the audio packets next to the clips' windows (see
    :mod:`~stica_slowfast.data.decoding.one_pass`). Only selected frames are converted to RGB arrays.

    Args:
        path: video file (any iopath path).
        clip_starts: start time of each clip in seconds from the first video frame.
        num_frames: frames per clip (T).
        frame_step: seconds between sampled frames (``DATA.SAMPLING_RATE / DATA.TARGET_FPS``).
        audio_rate: sample rate in Hz of the returned mono audio, or None for no audio.
        audio_duration: seconds of audio per clip, centred on the clip's centre (may reach before
            the file's start or past its end: zeros there); None = the clip's span.
        threads: multi-threaded video decoding (``stream.thread_type = "AUTO"``).
        skip_gaps: skip what lies between clips (the default); False decodes every video frame and
            audio packet from the seek on, as a plain PyAV reader does (same frames and samples,
            slower: the baseline of ``tools/benchmark.py loader``, and a way round a decoder that
            mishandles ``skip_frame``).

    Returns:
        :class:`DecodedClips` with per clip a uint8 (T, H, W, 3) tensor and, with ``audio_rate``, a
        float32 (S,) waveform, S = round(audio_duration * audio_rate) (default duration
        T * frame_step: the window [start, start + T * frame_step)); missing audio (none in the file,
        before its start, past its end) is zero.

    Raises:
        DecodeError: the file cannot be decoded; its ``reason`` says why (see the module docstring).
    """
    with open_video(path, threads=threads) as video:
        return video.decode_clips(clip_starts, num_frames=num_frames, frame_step=frame_step,
                                  audio_rate=audio_rate, audio_duration=audio_duration, skip_gaps=skip_gaps)


def get_duration(path: str) -> float:
    """Duration of the video stream of ``path`` in seconds (see :attr:`VideoFile.duration`).

    The header's stream duration in MP4/MOV and AVI, else read from the video packets' timestamps,
    else found by decoding every frame; never the container's duration.

    Raises:
        DecodeError: the file cannot be opened or has no video.
    """
    with open_video(path) as video:
        return video.duration
