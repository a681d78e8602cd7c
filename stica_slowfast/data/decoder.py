"""Decode many clips (video frames + aligned mono audio) from one file in a single PyAV pass.

Time model. All times are seconds on the file's presentation clock, measured from the first
presentation time of the video stream (``origin``), so a clip start of 0 is the first video frame and
audio is placed on the same clock (A/V sync is whatever the container says it is).

Frame selection. A clip starting at ``s`` samples ``T`` frames at the target times
``tau_i = s + i * frame_step`` (``frame_step = DATA.SAMPLING_RATE / DATA.TARGET_FPS``). For each
``tau_i`` the latest decoded frame whose time is ``<= tau_i`` is taken (the first frame when none is),
which resamples any source frame rate onto the target grid: a 12 fps source sampled at 30 fps repeats
frames, a 60 fps source drops them.

Short videos: hold the last frame. A clip never starts before 0 or, when the video is long enough,
after ``duration - T * frame_step``; a video shorter than one clip has the single start 0, and its
target times past the last frame take the last frame (hold, no looping and no black padding): a
1-frame video gives T copies of its frame; a 3-frame video at 25 fps (frames at 0, 0.04, 0.08 s)
sampled every 0.1 s with T = 4 gives frames 0, 2, 2, 2. Audio past the end of the file is zeros.
Holding keeps the clip's time axis true (no frame is shown before its time), where looping would
splice a jump into a clip the model is asked to learn motion from.

Timestamps that cannot be trusted are handled without failing: frames without pts follow the previous
one by a frame period (raw h264); pts that go backwards in presentation order (AVI with B-frames) switch
the file to timing by dts from the first frame; a container that cannot seek, or a seek that lands
after its target (MPEG-TS), is decoded from the start instead.

Bad files. Every failure is a :class:`DecodeError` whose ``reason`` is one of
``stica_slowfast.data.bad_input.SKIP_REASONS``: "missing", "empty" (0 bytes), "truncated" (an MP4/MOV
box or AVI chunk runs past the end of the file; checked before FFmpeg sees the file, which would
otherwise decode what is left and silently lose frames or the whole audio track), "no_video" and
"undecodable" (anything else: not a media file, corrupt data, no frame). Errors PyAV, numpy or the
arithmetic on a broken header raise are mapped to it; header values that are missing (no time base,
no frame rate, no duration) have fallbacks instead of failing. Odd frame sizes, any pixel format
(gray, yuv444p, 10 bit, ...) and any frame rate decode to RGB like any other video.

Audio. Each clip gets a mono window of ``audio_duration`` seconds centred on the clip's centre (by
default exactly the clip's span ``[start, start + T * frame_step)``); parts of the window before the
first or after the last audio sample, or in a file without audio, are zeros.

Symbols: T frames per clip, H, W frame size, S audio samples per clip.
"""

import bisect
import contextlib
import logging
import math
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, List, Optional, Sequence

import av
import numpy as np
import torch

from stica_slowfast.data.bad_input import reason_index
from stica_slowfast.utils.io import PathManager

logger = logging.getLogger(__name__)

__all__ = [
    "DecodeError",
    "DecodedClips",
    "VideoFile",
    "open_video",
    "decode_clips",
    "get_duration",
    "get_clip_starts",
]

# Slack when comparing a frame time with a target time: target times are floats built from
# start + i * step, frame times exact fractions; without it a 30 fps source sampled at 30 fps could
# pick the previous frame because of a 1e-16 rounding difference.
_TIME_EPS = 1e-6
# A clip start this close to 0 (seconds) is decoded from the beginning without seeking.
_NO_SEEK_BELOW = 1e-3


# What a corrupt file makes PyAV / FFmpeg, numpy or the arithmetic on its header values raise; each
# means "this file cannot be decoded" and becomes a DecodeError.
_FILE_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, ArithmeticError, IndexError, MemoryError)


class DecodeError(RuntimeError):
    """A video cannot be decoded.

    Args:
        message: what failed, naming the file.
        reason: why, one of ``stica_slowfast.data.bad_input.SKIP_REASONS`` ("missing", "empty",
            "truncated", "undecodable", "no_video"; the datasets add "no_audio").
    """

    def __init__(self, message: str, reason: str = "undecodable"):
        super().__init__(message)
        reason_index(reason)  # an unknown reason is a bug here, not a bad file
        self.reason = reason

    def __reduce__(self):  # keep the reason through pickling (worker processes)
        return type(self), (str(self), self.reason)


@contextlib.contextmanager
def _as_decode_error(path: str) -> Iterator[None]:
    """Re-raise the errors a corrupt file causes as DecodeError("undecodable")."""
    try:
        yield
    except DecodeError:
        raise
    except _FILE_ERRORS as err:
        raise DecodeError(f"error decoding {path}: {type(err).__name__}: {err}") from err


# Top-level ISO BMFF (MP4, MOV, M4A, 3GP) box types a file may start with.
_ISO_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"sidx"}


def _iso_truncation(f, size: int) -> Optional[str]:
    """Walk the top-level boxes of an ISO BMFF file: the first one that runs past ``size`` bytes."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        head = f.read(16)
        box_size, box_type = struct.unpack(">I4s", head[:8])
        if not all(32 <= c < 127 for c in box_type):
            return None  # trailing bytes that are not a box: leave them to FFmpeg
        if box_size == 1:  # 64-bit size after the type
            if len(head) < 16:
                return f"the {box_type.decode()!r} box at byte {offset} is cut inside its header"
            box_size = struct.unpack(">Q", head[8:16])[0]
        elif box_size == 0:  # the last box, up to the end of the file
            return None
        if box_size < 8:
            return None  # not a valid box: leave it to FFmpeg
        if offset + box_size > size:
            return (f"the {box_type.decode()!r} box at byte {offset} needs {box_size} bytes, the file "
                    f"ends {size - offset} bytes after its start")
        offset += box_size
    return None


def _riff_truncation(f, size: int) -> Optional[str]:
    """Walk the top-level RIFF chunks of an AVI file (OpenDML adds "RIFF AVIX" chunks)."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        if chunk_id != b"RIFF" or chunk_size in (0, 0xFFFFFFFF):
            return None  # junk after the chunks, or a size left unset by a streaming writer
        if offset + 8 + chunk_size > size:
            return (f"the RIFF chunk at byte {offset} needs {8 + chunk_size} bytes, the file ends "
                    f"{size - offset} bytes after its start")
        offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even size
    return None


def _truncation(local_path: str, size: int) -> Optional[str]:
    """Why a local MP4/MOV or AVI file is cut short (a box or chunk runs past its end), else None.

    Other containers are not checked. Reads a few bytes per top-level box or chunk.
    """
    with open(local_path, "rb") as f:
        head = f.read(12)
        if len(head) >= 8 and head[4:8] in _ISO_FIRST_BOXES:
            return _iso_truncation(f, size)
        if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            return _riff_truncation(f, size)
    return None


class _SeekOvershoot(Exception):
    """The first frame after a seek lies after the seek target."""


class _SeekFailed(Exception):
    """The container cannot seek."""


class _UnorderedTimestamps(Exception):
    """Frame pts go backwards in presentation order (e.g. AVI with B-frames, where the demuxer
    hands out decode timestamps as pts)."""


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
            the seek and of stopping after the last clip.
    """

    video: List[torch.Tensor]
    audio: Optional[List[torch.Tensor]]
    has_audio: bool
    frame_times: List[List[float]]
    duration: float
    frames_decoded: int


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


def _time(frame, fallback: Optional[float]) -> Optional[float]:
    """Presentation time of a frame in seconds, or ``fallback`` when it has no timestamp."""
    if frame.pts is None or frame.time_base is None:
        return fallback
    return float(frame.pts * frame.time_base)


class _FrameSelector:
    """Assigns decoded frames to the target times of all clips while frames stream past once.

    Targets are kept sorted; when a frame with time ``t`` arrives, every pending target ``tau < t``
    gets the previous frame (the latest one with time ``<= tau``). Only frames that some target
    selects are converted to numpy, each once.
    """

    def __init__(self, targets: Sequence[float]):
        self._order = sorted(range(len(targets)), key=lambda k: targets[k])
        self._taus = [targets[k] for k in self._order]
        self._next = 0  # first target (in sorted order) without a frame yet
        self.arrays: List[Optional[np.ndarray]] = [None] * len(targets)
        self.times: List[float] = [0.0] * len(targets)
        self._prev = None  # (frame, time, cached ndarray or None)

    @property
    def done(self) -> bool:
        return self._next >= len(self._taus)

    @property
    def started(self) -> bool:
        return self._prev is not None

    def _assign_prev(self, upto: int) -> None:
        frame, t, arr = self._prev
        if upto > self._next and arr is None:
            arr = frame.to_ndarray(format="rgb24")
            self._prev = (frame, t, arr)
        for j in range(self._next, upto):
            self.arrays[self._order[j]] = arr
            self.times[self._order[j]] = t
        self._next = max(self._next, upto)

    def push(self, frame, t: float) -> None:
        if self._prev is None:
            # Targets before the first frame take the first frame.
            self._prev = (frame, t, None)
            upto = bisect.bisect_right(self._taus, t - _TIME_EPS, lo=self._next)
            self._assign_prev(upto)
            return
        # Targets strictly before this frame's time belong to the previous frame.
        upto = bisect.bisect_left(self._taus, t - _TIME_EPS, lo=self._next)
        self._assign_prev(upto)
        self._prev = (frame, t, None)  # the previous frame's pixels are dropped unconverted

    def finish(self) -> None:
        """End of stream: the remaining targets repeat the last frame."""
        if self._prev is None:
            raise DecodeError("no video frames decoded")
        self._assign_prev(len(self._taus))


class _AudioPlacer:
    """Writes resampled audio into per-clip buffers by the audio frames' timestamps.

    ``starts`` are the windows' start times in seconds; they may be negative (a window reaching before
    the file), and windows may run past its end: those samples stay zero.
    """

    def __init__(self, starts: Sequence[float], num_samples: int, rate: int):
        self.rate = rate
        self.num_samples = num_samples
        self.first = [int(round(s * rate)) for s in starts]  # first sample index of each window
        self.buffers = [np.zeros(num_samples, dtype=np.float32) for _ in starts]
        self.end = max(self.first) + num_samples  # one past the last sample any clip needs
        self.cursor: Optional[int] = None  # sample index just after the last placed frame

    @property
    def done(self) -> bool:
        return self.cursor is not None and self.cursor >= self.end

    def push(self, frame, origin: float) -> None:
        t = _time(frame, None)
        if t is None:
            # No timestamp: continue where the previous frame ended.
            offset = self.cursor if self.cursor is not None else 0
        else:
            offset = int(round((t - origin) * self.rate))
        samples = frame.to_ndarray().reshape(-1)  # fltp mono -> (1, n) -> (n,)
        n = samples.shape[0]
        for first, buf in zip(self.first, self.buffers):
            lo, hi = max(offset, first), min(offset + n, first + self.num_samples)
            if lo < hi:
                buf[lo - first:hi - first] = samples[lo - offset:hi - offset]
        self.cursor = offset + n


class VideoFile:
    """An opened video file: read its duration, then decode clips in one pass.

    Use through :func:`open_video` (a context manager) so the file is opened once for both steps.

    Args:
        path: any iopath path.
        threads: let FFmpeg decode video with several threads (frame + slice threading).
    """

    def __init__(self, path: str, *, threads: bool = False):
        self.path, self.threads = path, threads
        self._local = self._check_file(path)
        self._open()
        vs = self.video_stream
        # Clock origin: the video stream's first presentation time (may be > 0 with edit lists).
        self.origin = 0.0
        if vs.start_time is not None and vs.time_base is not None:
            self.origin = float(vs.start_time * vs.time_base)
        self._duration: Optional[float] = None
        # Set once the pts are found unusable: frames are then timed by their dts (or position)
        # relative to the first frame, which needs decoding from the start.
        self._decode_order_times = False

    @staticmethod
    def _check_file(path: str) -> str:
        """The local path of ``path`` once it is known to exist, hold bytes and not be cut short."""
        try:
            local = PathManager.get_local_path(path)
        except Exception as err:  # missing remote file, no backend for the path, ...
            missing = not PathManager.exists(path) if "://" in path else not os.path.exists(path)
            raise DecodeError(f"cannot open {path}: {err}", "missing" if missing else "undecodable") from err
        try:
            size = os.path.getsize(local)
        except FileNotFoundError as err:
            raise DecodeError(f"no such file: {path}", "missing") from err
        except OSError as err:  # permissions, a broken link, ...
            raise DecodeError(f"cannot open {path}: {err}") from err
        if size == 0:
            raise DecodeError(f"empty file (0 bytes): {path}", "empty")
        try:
            cut = _truncation(local, size)
        except OSError as err:
            raise DecodeError(f"cannot read {path}: {err}") from err
        if cut is not None:
            raise DecodeError(f"truncated file {path}: {cut}", "truncated")
        return local

    def _open(self) -> None:
        try:
            self._container = av.open(self._local, mode="r", metadata_errors="ignore")
        except Exception as err:  # not a media file, corrupt header, a file removed meanwhile, ...
            reason = "missing" if isinstance(err, FileNotFoundError) else "undecodable"
            raise DecodeError(f"cannot open {self.path}: {err}", reason) from err
        if not self._container.streams.video:
            self.close()
            raise DecodeError(f"no video stream in {self.path}", "no_video")
        self.video_stream = self._container.streams.video[0]
        if self.threads:
            self.video_stream.thread_type = "AUTO"
        audio = self._container.streams.audio
        self.audio_stream = audio[0] if audio else None
        self._consumed = False  # packets were read, so a decode from the start must rewind

    def _rewind(self) -> None:
        """Back to the first packet: seek to 0, or reopen where the format cannot seek (raw h264)."""
        if not self._consumed:
            return
        try:
            self._container.seek(0)
            self._consumed = False
        except av.FFmpegError:
            self.close()
            self._open()

    @property
    def has_audio(self) -> bool:
        return self.audio_stream is not None

    def close(self) -> None:
        self._container.close()

    @property
    def duration(self) -> float:
        """Duration in seconds: stream duration, else container duration, else decode everything."""
        if self._duration is None:
            with _as_decode_error(self.path):
                self._duration = self._read_duration()
        return self._duration

    def _read_duration(self) -> float:
        vs = self.video_stream
        if vs.duration is not None and vs.time_base is not None and vs.duration > 0:
            return float(vs.duration * vs.time_base)
        if self._container.duration is not None and self._container.duration > 0:
            return float(Fraction(self._container.duration, av.time_base))
        # Unknown from headers: count the frames (last time + one frame period).
        first, last, count = None, None, 0
        self._rewind()
        self._consumed = True
        for frame in self._container.decode(self.video_stream):
            t = _time(frame, None)
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
        with _as_decode_error(self.path):
            duration = self.duration
            frames, times, audio, count = self._decode_pass(
                starts, targets, audio_starts if want_audio else None, num_samples,
                audio_rate if want_audio else None)
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

    def _frame_time(self, frame, last_time: Optional[float], period: float,
                    dts_anchor: Optional[int]) -> float:
        """Seconds from the origin of a decoded video frame (frames arrive in presentation order).

        Normally its pts. With unusable pts, the dts relative to the first frame's (decoders hand
        out frames in presentation order, and dts are monotonic there). A frame with no usable
        timestamp comes one frame period after the previous one.
        """
        if not self._decode_order_times:
            t = _time(frame, None)
            if t is None:
                return last_time + period if last_time is not None else 0.0
            t -= self.origin
            if last_time is not None and t < last_time - _TIME_EPS:
                raise _UnorderedTimestamps()
            return t
        if last_time is None:
            return 0.0
        if frame.dts is not None and dts_anchor is not None and frame.time_base is not None:
            t = float((frame.dts - dts_anchor) * frame.time_base)
            if t > last_time + _TIME_EPS:
                return t
        return last_time + period

    def _decode_pass(self, starts, targets, audio_starts, num_samples, audio_rate):
        """Seek once near the earliest start and decode; fall back to decoding from the start.

        ``audio_starts`` (seconds, None without audio) are the audio windows' starts; a window
        starting before its clip moves the seek earlier.
        """
        args = (targets, audio_starts, num_samples, audio_rate)
        earliest = min(starts + (list(audio_starts) if audio_starts is not None else []))
        try:
            if earliest > _NO_SEEK_BELOW and not self._decode_order_times:
                try:
                    return self._decode_from(earliest, *args)
                except _SeekOvershoot:
                    # A broken index can put the "keyframe before" after the target.
                    logger.debug("seek overshot in %s, decoding from the start", self.path)
                except _SeekFailed:
                    # Formats without an index (raw streams) cannot seek.
                    logger.debug("cannot seek in %s, decoding from the start", self.path)
            return self._decode_from(None, *args)
        except _UnorderedTimestamps:
            # The pts cannot be trusted: time the frames by their order from the first one.
            logger.debug("unordered pts in %s, timing frames by decode order", self.path)
            self._decode_order_times = True
            return self._decode_from(None, *args)

    def _decode_from(self, seek_to, targets, audio_starts, num_samples, audio_rate):
        """One demux pass from ``seek_to`` seconds (None: from the first packet)."""
        if seek_to is not None:
            vs = self.video_stream
            if vs.time_base is None:
                raise _SeekFailed()
            # Backward seek lands on the keyframe at or before the target; FFmpeg's mov demuxer
            # moves the audio stream to the same time.
            try:
                self._container.seek(int(math.floor((seek_to + self.origin) / vs.time_base)),
                                     backward=True, any_frame=False, stream=vs)
            except av.FFmpegError as err:
                raise _SeekFailed() from err
        else:
            self._rewind()
        self._consumed = True
        vs = self.video_stream  # after _rewind: a reopened container has new stream objects
        selector = _FrameSelector(targets)
        placer, resampler = None, None
        streams = [vs]
        if audio_rate is not None:
            placer = _AudioPlacer(audio_starts, num_samples, audio_rate)
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=audio_rate)
            streams.append(self.audio_stream)

        rate = vs.average_rate or vs.guessed_rate
        period = float(1 / rate) if rate else 0.0
        last_time: Optional[float] = None
        dts_anchor: Optional[int] = None
        count = 0
        for packet in self._container.demux(streams):
            video_done, audio_done = selector.done, placer is None or placer.done
            if video_done and audio_done:
                break  # past the last clip end: stop reading the file
            if packet.stream.index == vs.index:
                if video_done:
                    continue  # keep demuxing only for the audio
                for frame in packet.decode():
                    t = self._frame_time(frame, last_time, period, dts_anchor)
                    if last_time is None:
                        dts_anchor = frame.dts
                        if seek_to is not None and t > seek_to + _TIME_EPS:
                            raise _SeekOvershoot()
                    last_time = t
                    count += 1
                    selector.push(frame, t)
            elif not audio_done:
                for frame in packet.decode():
                    for rframe in resampler.resample(frame):
                        placer.push(rframe, self.origin)
        else:
            # End of file (demux already flushed the decoders): flush the resampler's tail.
            if placer is not None and not placer.done:
                for rframe in resampler.resample(None):
                    placer.push(rframe, self.origin)
        if not selector.started:
            if seek_to is not None:
                # Inexact seeking (e.g. MPEG-TS) can land past the only keyframes: no frame at all.
                raise _SeekOvershoot()
            raise DecodeError(f"no video frames decoded from {self.path}")
        selector.finish()
        buffers = placer.buffers if placer is not None else None
        return selector.arrays, selector.times, buffers, count


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
) -> DecodedClips:
    """Decode several clips (and their audio) from one video in a single sequential pass.

    The file is demuxed once, video and audio together: one seek to the keyframe before the earliest
    start (none when it is ~0), decoding stops once every clip's last frame and audio sample is
    known. Only selected frames are converted to RGB arrays.

    Args:
        path: video file (any iopath path).
        clip_starts: start time of each clip in seconds from the first video frame.
        num_frames: frames per clip (T).
        frame_step: seconds between sampled frames (``DATA.SAMPLING_RATE / DATA.TARGET_FPS``).
        audio_rate: sample rate in Hz of the returned mono audio, or None for no audio.
        audio_duration: seconds of audio per clip, centred on the clip's centre (may reach before
            the file's start or past its end: zeros there); None = the clip's span.
        threads: multi-threaded video decoding (``stream.thread_type = "AUTO"``).

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
                                  audio_rate=audio_rate, audio_duration=audio_duration)


def get_duration(path: str) -> float:
    """Duration of the video stream of ``path`` in seconds.

    Stream duration x time base when the header has it, else the container duration, else found by
    decoding every frame.

    Raises:
        DecodeError: the file cannot be opened or has no video.
    """
    with open_video(path) as video:
        return video.duration
