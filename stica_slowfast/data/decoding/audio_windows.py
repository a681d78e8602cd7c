"""Audio placement: each clip's mono window, decoded from the packets near it and placed by time.

Each clip gets a mono window of ``audio_duration`` seconds centred on the clip's centre (by default
exactly the clip's span ``[start, start + T * frame_step)``); parts of the window before the first
or after the last audio sample, or in a file without audio, are zeros. Audio packets are decoded only
near the windows; the samples are exactly those of decoding every packet, but for the noise AAC
decoders synthesise for noise-coded bands, which depends on where decoding started (as it already
does between one clip and several).

Non-finite samples. Float PCM (pcm_f32le, pcm_f64le, ... in WAV-style tracks of MKV, MOV, AVI) can
hold NaN or infinite samples, which the decoders pass through and the resampler spreads over its
filter's length (a few dozen samples on each side). :func:`non_finite_window` finds a window that
holds one, so that the pass can refuse it ("non_finite_audio") rather than hand it on: one NaN makes
the whole standardised spectrogram NaN.

Symbols: S audio samples per clip.
"""

import collections
import math
from fractions import Fraction
from typing import Deque, List, Optional, Sequence

import av
import numpy as np

from stica_slowfast.data.decoding.clock import TIME_EPS, frame_time, pts_time, time_base_seconds

__all__ = ["AudioPlacer", "AudioGate", "non_finite_window"]

# Audio packets decoded before a window after skipping the ones before it, and windows closer than
# this (seconds) decoded as one, so that at least that many packets lie between two (see AudioGate).
_AUDIO_PREROLL_PACKETS = 2
_AUDIO_MERGE_S = 0.5


class AudioPlacer:
    """Writes resampled audio into per-clip buffers of S samples by the audio frames' timestamps.

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
            self._time_base = time_base_seconds(frame.time_base)
        t = pts_time(frame, self._time_base, origin)
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


def non_finite_window(buffers: Sequence[np.ndarray]) -> Optional[int]:
    """The index of the first window (an (S,) array) holding a NaN or infinite sample, else None.

    One sum per window in float64 (finite float32 samples cannot overflow it; any NaN or infinity
    makes it non-finite), with no temporary array.
    """
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, as it should, unwarned
        for k, buf in enumerate(buffers):
            if not math.isfinite(buf.sum(dtype=np.float64)):
                return k
    return None


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


class AudioGate:
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

    def __init__(self, placer: AudioPlacer, codec, *, time_base: Optional[float], origin: float,
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
        t = pts_time(packet, self.time_base, self.origin)
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
        t, rate = frame_time(frame, None), frame.sample_rate
        if t is None or not rate or frame.time_base is None:
            return frame
        grid = math.gcd(rate, self.placer.rate)  # grid points per second
        steps = (t - self.origin) * grid  # grid points since the origin
        skip = int(round((math.ceil(steps - TIME_EPS) - steps) / grid * rate))  # samples to the next one
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
