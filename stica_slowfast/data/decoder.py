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

Cost. One open, one seek (to the keyframe before the earliest clip or audio window) and one demux
pass for all clips, which skips what lies between them. A video frame more than 1.5 frame periods
before the next target is never selected, so there only the frames that later frames refer to are
decoded (``skip_frame = "NONREF"`` drops most B-frames), and past a keyframe in such a gap nothing
before it is decoded at all (the pass starts afresh there, without seeking). Audio packets are
decoded only near the windows. The frames are exactly those of decoding everything
(``skip_gaps=False``; a video whose frames lie further apart than the margin is decoded again in
full), and so are the samples, but for the noise AAC decoders synthesise for noise-coded bands,
which depends on where decoding started (as it already does between one clip and several). Only the
selected frames are converted to RGB.

Symbols: T frames per clip, H, W frame size, S audio samples per clip.
"""

import bisect
import collections
import contextlib
import logging
import math
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Deque, Iterator, List, Optional, Sequence, Tuple

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

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
# A frame more than this many frame periods before the next target is never selected (a target takes
# the latest frame at or before it, less than a period before it; the half period absorbs rounded
# timestamps, and a longer gap between frames is detected): only the frames that later ones refer to
# are decoded there, or none at all past a keyframe (see _VideoGate).
_GAP_MARGIN_FRAMES = 1.5
# Audio packets decoded before a window after skipping the ones before it, and windows closer than
# this (seconds) decoded as one, so that at least that many packets lie between two (see _AudioGate).
_AUDIO_PREROLL_PACKETS = 2
_AUDIO_MERGE_S = 0.5


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


class _SkippedFrame(Exception):
    """A target's frame may be one the pass skipped (frames further apart than the gate's margin)."""


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
            the seek, of skipping frames between clips and of stopping after the last clip.
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


def _seconds(time_base) -> Optional[float]:
    """A stream's time base as a float (None when unknown): reading ``.time_base`` makes a Fraction and
    multiplying by it another, which in the per-packet loop cost as much as a tenth of a pass."""
    return float(time_base) if time_base else None


def _pts_time(item, time_base: Optional[float], origin: float) -> Optional[float]:
    """Presentation time of a packet or frame in seconds from ``origin`` (``time_base``: its stream's,
    in seconds, from :func:`_seconds`), or None without a timestamp."""
    if item.pts is None or time_base is None:
        return None
    return item.pts * time_base - origin


class _FrameSelector:
    """Assigns decoded frames to the target times of all clips while frames stream past once.

    Targets are kept sorted; when a frame with time ``t`` arrives, every pending target ``tau < t``
    gets the previous frame (the latest one with time ``<= tau``). Only frames that some target
    selects are converted to numpy (by ``to_rgb``), each once.

    A target is never given a frame when a packet that may have given no frame (see
    :class:`_VideoGate`, which records them with :meth:`skipped`) lies between that frame and the
    target: that raises :class:`_SkippedFrame` instead, as the skipped frame may be the one it wants.
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
            skip = bisect.bisect_right(self._skipped, t + _TIME_EPS)  # first skip after this frame
            if skip < len(self._skipped) and self._skipped[skip] <= self._taus[upto - 1] + _TIME_EPS:
                raise _SkippedFrame()
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


class _VideoGate:
    """Decides which video packets are decoded, so that the frames no target takes cost little.

    A target takes the latest frame at or before it, less than a frame period before it; so a frame
    of time ``t`` is *needed* only when a target lies in ``[t, t + margin)`` (``margin`` a little more
    than a period: frames further apart are detected by the selector). The packets of the other
    frames are held back:

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
    """

    # Yielded by :meth:`admit` for a fresh start: empty the decoder (see :meth:`drain`).
    DRAIN = object()

    def __init__(self, selector: _FrameSelector, codec, *, targets: Sequence[float], margin: float,
                 time_base: Optional[float], origin: float):
        self.selector, self.codec, self.margin = selector, codec, margin
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
        lo = bisect.bisect_left(self._taus, t - _TIME_EPS)
        return range(lo, bisect.bisect_left(self._taus, t + self.margin, lo=lo))

    def _covered_before(self, t: float) -> bool:
        """Whether every target before time ``t`` has the packet of its frame decoded."""
        while self._first_uncovered < len(self._taus) and self._covered[self._first_uncovered]:
            self._first_uncovered += 1
        return self._first_uncovered == len(self._taus) or self._taus[self._first_uncovered] >= t - _TIME_EPS

    def admit(self, packet, may_restart: bool) -> Iterator[object]:
        """The packets to decode now, in order: none (``packet`` is held), or the held ones and
        ``packet``, after :attr:`DRAIN` for a fresh start.

        Decode each before taking the next: the codec's ``skip_frame`` is set for it in between.
        ``may_restart``: a keyframe may drop the packets held before it.
        """
        t = _pts_time(packet, self.time_base, self.origin)
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
        if t < self._restarted_at - _TIME_EPS:
            # A frame shown before the keyframe decoding started afresh at, which refers to frames
            # before it (an open GOP's leading B-frame): it cannot be decoded; should a target want
            # it, the selector's check has the pass done again without skipping.
            self.selector.skipped(t)
            return
        taken_by = self._targets_of(t)
        # A frame after the last target tells the selector which frame that target takes, and so
        # that the pass is over; from then on every packet is decoded, as the decoder gives frames
        # out only as later packets come in.
        self._after_last |= bool(self._taus) and t > self._taus[-1] + _TIME_EPS
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
        self._time_base: Optional[float] = None  # of the resampled frames, from the first one

    @property
    def done(self) -> bool:
        return self.cursor is not None and self.cursor >= self.end

    def push(self, frame, origin: float) -> None:
        if self._time_base is None:
            self._time_base = _seconds(frame.time_base)
        t = _pts_time(frame, self._time_base, origin)
        if t is None:
            # No timestamp: continue where the previous frame ended.
            offset = self.cursor if self.cursor is not None else 0
        else:
            offset = int(round(t * self.rate))
        n = frame.samples
        # fltp mono: one plane of float32 (read in place; ``to_ndarray`` stacks planes, 3x slower).
        samples = np.frombuffer(frame.planes[0], dtype=np.float32, count=n)
        for first, buf in zip(self.first, self.buffers):
            lo, hi = max(offset, first), min(offset + n, first + self.num_samples)
            if lo < hi:
                buf[lo - first:hi - first] = samples[lo - offset:hi - offset]
        self.cursor = offset + n


def _contiguous(frames: Sequence[object]) -> bool:
    """Whether each audio frame starts where the one before it ends (to a timestamp tick)."""
    for a, b in zip(frames, frames[1:]):
        if a.pts is None or b.pts is None or a.time_base is None or not a.sample_rate:
            return False
        if abs(b.pts - a.pts - Fraction(a.samples, a.sample_rate) / a.time_base) > 1:
            return False
    return True


def _audio_frame_like(array: np.ndarray, like, pts: Optional[int]):
    """An audio frame of ``array`` (planar: (channels, n); packed: (1, n * channels)) in the format,
    layout, rate and time base of frame ``like``, with timestamp ``pts``."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format=like.format.name,
                                       layout=like.layout.name)
    frame.sample_rate, frame.time_base, frame.pts = like.sample_rate, like.time_base, pts
    return frame


class _AudioGate:
    """Decodes the audio packets the clips' windows need, skipping those between windows.

    The windows, merged where less than ``_AUDIO_MERGE_S`` apart, are filled in time order. A packet
    that ends before the window being filled is not decoded; the last ``_AUDIO_PREROLL_PACKETS`` of
    those are kept, and decoding resumes with them, after a flush of the decoder, when a packet
    reaches into the window: codecs whose frames depend on the previous ones (AAC's overlapping
    transforms, MP3's bit reservoir) then give exact samples from the second one on, before the
    window starts. A window's decoded audio is resampled in one call once a packet past its end is
    decoded (the resampler's filter reaches a few samples ahead), by a resampler of its own.

    With ``skip_gaps`` False every packet is decoded and resampled as it comes, by one resampler.

    Every resampler starts on a time where input and output samples coincide (every
    1 / gcd(input rate, output rate) s from the origin; the samples before it are dropped): it then
    computes each output sample at the same time, and so the same value, wherever it started. Output
    samples are placed by their rounded time, so a resampler started off that grid would shift the
    audio by up to half a sample, depending on where the pass started.
    """

    def __init__(self, placer: _AudioPlacer, codec, *, time_base: Optional[float], origin: float,
                 skip_gaps: bool):
        self.placer, self.codec, self.skip_gaps = placer, codec, skip_gaps
        self.time_base, self.origin = time_base, origin
        merge = int(round(_AUDIO_MERGE_S * placer.rate))
        spans: List[List[int]] = []  # merged windows [first, end) in samples, in time order
        for first in sorted(placer.first):
            if spans and first <= spans[-1][1] + merge:
                spans[-1][1] = max(spans[-1][1], first + placer.num_samples)
            else:
                spans.append([first, first + placer.num_samples])
        self._spans = [(first / placer.rate, end / placer.rate) for first, end in spans]  # seconds
        self._span = 0  # the span being filled
        self._recent: Deque[object] = collections.deque(maxlen=_AUDIO_PREROLL_PACKETS)
        self._resampler = None  # a new one for every span (for the pass without skip_gaps)
        self._aligning = False  # a new resampler waits for a frame on the grid
        self._frames: List[object] = []  # decoded frames of the span, from its first on the grid

    @property
    def done(self) -> bool:
        return self.placer.done

    def push(self, packet) -> None:
        """Decode ``packet`` (and the kept ones before it) into the windows, or skip it."""
        t = _pts_time(packet, self.time_base, self.origin)
        span = self._spans[self._span] if self.skip_gaps and self._span < len(self._spans) else None
        if span is not None and t is not None and packet.duration and \
                t + packet.duration * self.time_base < span[0]:
            self._recent.append(packet)
            return
        packets = [packet]
        if self._resampler is None or self._recent:
            if self._recent:
                self.codec.flush_buffers()
                packets = [*self._recent, packet]
                self._recent.clear()
            self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=self.placer.rate)
            self._aligning = True
        for p in packets:
            for frame in p.decode():
                if self._aligning:
                    frame = self._aligned(frame)
                    if frame is None:
                        continue
                    self._aligning = False
                if self.skip_gaps:
                    self._frames.append(frame)
                else:
                    self._place(self._resampler.resample(frame))
        if span is not None and t is not None and t >= span[1]:
            self._resample_span()
            self._span += 1

    def _place(self, rframes) -> None:
        for rframe in rframes:
            self.placer.push(rframe, self.origin)

    def _resample_span(self) -> None:
        """Resample the span's decoded frames and place them; the next span gets a fresh resampler.

        Frames that follow each other without a gap (every packet of a span is decoded, so unless a
        packet gave no frame) are resampled in one call: 40 calls a second of 44.1 kHz AAC cost
        more than the resampling itself. Otherwise one by one, placed by their own times.
        """
        frames = self._frames
        if frames and _contiguous(frames):
            arrays = [f.to_ndarray() for f in frames]  # planar: (channels, n); packed: (1, n * channels)
            frames = [_audio_frame_like(np.concatenate(arrays, axis=1), frames[0], frames[0].pts)]
        for frame in frames:
            self._place(self._resampler.resample(frame))
        if self._resampler is not None:
            self._place(self._resampler.resample(None))
        self._frames = []
        self._resampler = None

    def _aligned(self, frame):
        """``frame`` from its first sample on the grid where input and output samples coincide, or
        None when it ends before that sample (the frame itself when it has no time)."""
        t, rate = _time(frame, None), frame.sample_rate
        if t is None or not rate or frame.time_base is None:
            return frame
        grid = math.gcd(rate, self.placer.rate)  # grid points per second
        steps = (t - self.origin) * grid  # grid points since the origin
        skip = int(round((math.ceil(steps - _TIME_EPS) - steps) / grid * rate))  # samples to the next one
        if skip <= 0:
            return frame
        if skip >= frame.samples:
            return None
        array = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
        array = array[:, skip:] if frame.format.is_planar else array[:, skip * len(frame.layout.channels):]
        return _audio_frame_like(array, frame, frame.pts + int(round(Fraction(skip, rate) / frame.time_base)))

    def finish(self) -> None:
        """End of the file: the last samples (the span's, or the resampler's tail)."""
        if self.skip_gaps:
            self._resample_span()
        elif self._resampler is not None and not self.done:
            self._place(self._resampler.resample(None))


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
        # One converter to RGB for every frame: ``frame.to_ndarray(format="rgb24")`` builds a new
        # swscale context per frame, with a thread pool (1.3-2.9 ms a 320 x 240 frame on a loaded
        # 2-core machine, against 0.15 ms here); one thread, as data-loader workers have one core each.
        self._reformatter = VideoReformatter()

    def _to_rgb(self, frame) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels of a decoded video frame."""
        return self._reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()

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
        with _as_decode_error(self.path):
            duration = self.duration
            frames, times, audio, count = self._decode_pass(
                starts, targets, audio_starts if want_audio else None, num_samples,
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

    def _frame_time(self, frame, last_time: Optional[float], period: float,
                    dts_anchor: Optional[int], time_base: Optional[float]) -> float:
        """Seconds from the origin of a decoded video frame (frames arrive in presentation order).

        Normally its pts (x ``time_base``, the stream's in seconds). With unusable pts, the dts
        relative to the first frame's (decoders hand out frames in presentation order, and dts are
        monotonic there). A frame with no usable timestamp comes one frame period after the previous one.
        """
        if not self._decode_order_times:
            t = _pts_time(frame, time_base, self.origin)
            if t is None:
                return last_time + period if last_time is not None else 0.0
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

    def _decode_pass(self, starts, targets, audio_starts, num_samples, audio_rate, skip_gaps):
        """Seek once near the earliest start and decode; fall back to decoding from the start, and to
        decoding every frame when frames are further apart than the gaps' margin.

        ``audio_starts`` (seconds, None without audio) are the audio windows' starts; a window
        starting before its clip moves the seek earlier.
        """
        try:
            return self._seek_and_decode(starts, targets, audio_starts, num_samples, audio_rate, skip_gaps)
        except _SkippedFrame:
            logger.debug("frames further apart than %g periods in %s, decoding every frame",
                         _GAP_MARGIN_FRAMES, self.path)
            return self._seek_and_decode(starts, targets, audio_starts, num_samples, audio_rate, False)

    def _seek_and_decode(self, starts, targets, audio_starts, num_samples, audio_rate, skip_gaps):
        """:meth:`_decode_pass` but for the fallback to decoding every frame."""
        args = (targets, audio_starts, num_samples, audio_rate, skip_gaps)
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

    def _decode_from(self, seek_to, targets, audio_starts, num_samples, audio_rate, skip_gaps):
        """One demux pass from ``seek_to`` seconds (None: from the first packet); with ``skip_gaps``
        the packets between clips are skipped where no selected frame or audio window needs them."""
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
        selector = _FrameSelector(targets, self._to_rgb)
        rate = vs.average_rate or vs.guessed_rate
        period = float(1 / rate) if rate else 0.0
        time_base = _seconds(vs.time_base)
        # Frames timed by their order cannot be skipped; without a frame rate there is no margin.
        gate = None
        if skip_gaps and period > 0 and not self._decode_order_times and vs.codec_context is not None:
            gate = _VideoGate(selector, vs.codec_context, targets=targets, margin=_GAP_MARGIN_FRAMES * period,
                              time_base=time_base, origin=self.origin)
        audio, streams = None, [vs]
        if audio_rate is not None:
            astream = self.audio_stream
            audio = _AudioGate(_AudioPlacer(audio_starts, num_samples, audio_rate), astream.codec_context,
                               time_base=_seconds(astream.time_base), origin=self.origin, skip_gaps=skip_gaps)
            streams.append(self.audio_stream)

        last_time: Optional[float] = None
        dts_anchor: Optional[int] = None
        count = 0
        video_index = vs.index
        try:
            for packet in self._container.demux(streams):
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
                    for frame in gate.drain() if admitted is _VideoGate.DRAIN else admitted.decode():
                        t = self._frame_time(frame, last_time, period, dts_anchor, time_base)
                        if last_time is None:
                            dts_anchor = frame.dts
                            if seek_to is not None and t > seek_to + _TIME_EPS:
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
            raise DecodeError(f"no video frames decoded from {self.path}")
        selector.finish()
        buffers = audio.placer.buffers if audio is not None else None
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
    skip_gaps: bool = True,
) -> DecodedClips:
    """Decode several clips (and their audio) from one video in a single sequential pass.

    The file is demuxed once, video and audio together: one seek to the keyframe before the earliest
    start (none when it is ~0), decoding stops once every clip's last frame and audio sample is
    known. Between clips, only the frames later frames refer to are decoded, none past a keyframe,
    and only the audio packets next to the clips' windows (see the module docstring). Only selected
    frames are converted to RGB arrays.

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
    """Duration of the video stream of ``path`` in seconds.

    Stream duration x time base when the header has it, else the container duration, else found by
    decoding every frame.

    Raises:
        DecodeError: the file cannot be opened or has no video.
    """
    with open_video(path) as video:
        return video.duration
