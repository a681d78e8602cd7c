"""Audio front-end of STiCA (Patrick et al., "Space-Time Crop & Attend", ICCV 2021, arXiv 2103.10211).

Each clip's mono waveform becomes a log spectrogram in the dataset (DataLoader workers)::

    wave (S,) -> [volume jitter] -> |STFT|^2 (K, Ta) -> [mel filterbank] (F, Ta) -> log(x + eps)
        -> [standardise] -> [SpecAugment] -> (1, F, Ta)

The bracketed steps are options; volume jitter and SpecAugment (Park et al. 2019, arXiv 1904.08779)
only run with train sampling. The paper's audio is 24 kHz with 20 ms windows every 10 ms: a 480-sample
Hann window, FFT size 512 (the next power of two), so K = 257 linear frequency bins.

Framing. Frame t covers the samples ``[t * hop, t * hop + win)`` (no centring, no padding: only frames
that lie wholly inside the waveform), so ``Ta = 1 + (S - win) // hop`` -- 99 frames for 1 s and 199
for 2 s at the paper's settings, the sizes of the upstream code. Each frame is zero-padded to the FFT
size. Audio outside the video file is already zeros (the decoder pads it), so nothing is padded here.

Power, not magnitude: ``log(|X|^2 + eps)``, as ``python_speech_features.logfbank`` which the upstream
code uses. For linear bins log-power is twice log-magnitude (up to eps), so after standardisation the
two are the same.

Symbols: S samples, B batch, K = n_fft // 2 + 1 linear bins, F output bins (K or mel bins), Ta frames.
"""

import functools
import math
from typing import Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

__all__ = [
    "AudioTransform",
    "build_audio_transform",
    "default_n_fft",
    "hz_to_mel",
    "log_spectrogram",
    "mask_band",
    "mel_filterbank",
    "mel_to_hz",
    "num_spectrogram_frames",
    "spec_augment",
    "standardize",
    "volume_jitter",
]

FEATURES = ("log_spectrogram", "waveform")


def _samples(ms: float, sample_rate: int) -> int:
    """Milliseconds -> samples at ``sample_rate`` Hz (rounded)."""
    return int(round(ms * sample_rate / 1000.0))


def default_n_fft(win_length: int) -> int:
    """The next power of two >= ``win_length`` (480 -> 512)."""
    return 1 << max(0, int(win_length) - 1).bit_length()


def num_spectrogram_frames(num_samples: int, *, sample_rate: int, window_ms: float = 20.0,
                           hop_ms: float = 10.0) -> int:
    """Ta of :func:`log_spectrogram` for a waveform of ``num_samples`` samples: 1 + (S - win) // hop."""
    win, hop = _samples(window_ms, sample_rate), _samples(hop_ms, sample_rate)
    if num_samples < win:
        raise ValueError(f"a waveform of {num_samples} samples is shorter than one window of {win} "
                         f"samples ({window_ms} ms at {sample_rate} Hz)")
    return 1 + (num_samples - win) // hop


# ---------------------------------------------------------------------------------------------------- #
# Mel filterbank (HTK mel scale)
# ---------------------------------------------------------------------------------------------------- #
def hz_to_mel(freq):
    """HTK mel scale: 2595 * log10(1 + f / 700); works on floats and tensors."""
    if isinstance(freq, torch.Tensor):
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`: 700 * (10^(m / 2595) - 1)."""
    if isinstance(mel, torch.Tensor):
        return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    *, num_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: Optional[float] = None
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, for the bins of an ``n_fft``-point real FFT.

    ``num_mels + 2`` points equally spaced in mel between ``f_min`` and ``f_max`` give each filter m
    its lower edge, centre and upper edge ``(f[m], f[m + 1], f[m + 2])`` in Hz. Its weight at the
    frequency ``f_k = k * sample_rate / n_fft`` of bin k rises linearly from 0 at the lower edge to 1
    at the centre and falls back to 0 at the upper edge (no area normalisation, as HTK).

    Args:
        num_mels: number of filters F (>= 1).
        n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
        sample_rate: Hz.
        f_min: lowest edge in Hz (>= 0).
        f_max: highest edge in Hz (<= sample_rate / 2); None = sample_rate / 2.

    Returns:
        float32 (num_mels, n_fft // 2 + 1). With many filters and a small FFT, low filters can fall
        between two bins and be all zero.
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    if num_mels < 1 or n_fft < 2:
        raise ValueError(f"need num_mels >= 1 and n_fft >= 2, got {num_mels}, {n_fft}")
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}, "
                         f"got f_min={f_min}, f_max={f_max}")
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (K,)
    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), num_mels + 2, dtype=torch.float64)
    edges = mel_to_hz(mels)  # (F + 2,) Hz
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (F, 1) each
    rising = (freqs - lower) / (centre - lower)  # (F, K)
    falling = (upper - freqs) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


@functools.lru_cache(maxsize=8)
def _cached_filterbank(num_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    # Built once per process (and per DataLoader worker through fork), never modified.
    return mel_filterbank(num_mels=num_mels, n_fft=n_fft, sample_rate=sample_rate)


# ---------------------------------------------------------------------------------------------------- #
# Spectrogram
# ---------------------------------------------------------------------------------------------------- #
def log_spectrogram(
    wave: torch.Tensor,
    *,
    sample_rate: int,
    window_ms: float = 20.0,
    hop_ms: float = 10.0,
    n_fft: Optional[int] = None,
    num_mel_bins: int = 0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Log power spectrogram of a waveform (linear or mel frequency bins).

    Args:
        wave: float (S,) or (B, S).
        sample_rate: Hz.
        window_ms: Hann window length in ms (win = round(window_ms * sample_rate / 1000) samples).
        hop_ms: time between frames in ms.
        n_fft: FFT size (>= win); None or 0 = the next power of two >= win.
        num_mel_bins: 0 keeps the ``n_fft // 2 + 1`` linear bins; > 0 sums the power into that many
            HTK mel filters (:func:`mel_filterbank`, 0 Hz to sample_rate / 2).
        eps: added before the log (silence gives log(eps)).

    Returns:
        (F, Ta) or (B, F, Ta) in the dtype of ``wave``, ``Ta = 1 + (S - win) // hop``; F = num_mel_bins
        or n_fft // 2 + 1.
    """
    if wave.dim() not in (1, 2):
        raise ValueError(f"wave must be (S,) or (B, S), got shape {tuple(wave.shape)}")
    win, hop = _samples(window_ms, sample_rate), _samples(hop_ms, sample_rate)
    if win < 1 or hop < 1:
        raise ValueError(f"window {window_ms} ms and hop {hop_ms} ms are < 1 sample at {sample_rate} Hz")
    n_fft = default_n_fft(win) if not n_fft else int(n_fft)
    if n_fft < win:
        raise ValueError(f"n_fft={n_fft} is smaller than the window ({win} samples)")
    num_spectrogram_frames(wave.shape[-1], sample_rate=sample_rate, window_ms=window_ms, hop_ms=hop_ms)
    # Frames of n_fft samples whose centred window covers [t * hop, t * hop + win) of the input: pad
    # the input by the window's own zero padding, so frames start at sample 0 and stay inside.
    left = (n_fft - win) // 2
    padded = torch.nn.functional.pad(wave, (left, n_fft - win - left))  # (..., S + n_fft - win)
    window = torch.hann_window(win, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(padded, n_fft, hop_length=hop, win_length=win, window=window, center=False,
                      return_complex=True)  # (..., K, Ta) complex
    power = spec.real.square() + spec.imag.square()
    if num_mel_bins > 0:
        fb = _cached_filterbank(int(num_mel_bins), n_fft, int(sample_rate))
        power = torch.matmul(fb.to(power), power)  # (F, K) @ (..., K, Ta) -> (..., F, Ta)
    return torch.log(power + eps)


def standardize(spec: torch.Tensor, *, eps: float = 1e-5) -> torch.Tensor:
    """Per-spectrogram standardisation over its (F, Ta) cells: zero mean, unit std.

    Args:
        spec: (..., F, Ta); each trailing (F, Ta) map is standardised on its own.
        eps: lower bound of the std, so a constant map (silence) becomes all zeros.
    """
    # In float64: the float32 mean of a constant map is off by rounding, which /eps would blow up.
    x = spec.double()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return ((x - mean) / std.clamp_min(eps)).to(spec.dtype)


# ---------------------------------------------------------------------------------------------------- #
# Augmentation
# ---------------------------------------------------------------------------------------------------- #
def volume_jitter(
    wave: torch.Tensor, *, scale_range: Tuple[float, float], generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Multiply ``wave`` by one gain drawn uniformly in ``[lo, hi]`` (no draw when lo == hi)."""
    lo, hi = float(scale_range[0]), float(scale_range[1])
    if lo > hi:
        raise ValueError(f"scale_range must be (lo, hi) with lo <= hi, got {tuple(scale_range)}")
    gain = lo if lo == hi else lo + (hi - lo) * float(torch.rand((), generator=generator))
    return wave * gain


def mask_band(
    spec: torch.Tensor, *, dim: int, start: int, width: int, value: Optional[float] = None
) -> torch.Tensor:
    """Copy of ``spec`` with indices ``[start, start + width)`` along ``dim`` set to ``value``.

    Args:
        spec: any tensor, e.g. (..., F, Ta); dim -2 masks frequencies, -1 time frames.
        dim: the masked dimension.
        start, width: the band; it must lie inside the dimension.
        value: fill value; None = the mean of ``spec``.
    """
    size = spec.shape[dim]
    if width < 0 or start < 0 or start + width > size:
        raise ValueError(f"band [{start}, {start + width}) outside [0, {size}) of dim {dim}")
    out = spec.clone()
    out.narrow(dim, start, width).fill_(float(spec.mean()) if value is None else value)
    return out


def spec_augment(
    spec: torch.Tensor,
    *,
    freq_mask: int,
    time_mask: int,
    num_freq_masks: int = 1,
    num_time_masks: int = 1,
    fixed_width: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """SpecAugment frequency and time masking (Park et al. 2019, arXiv 1904.08779), no time warping.

    Each mask has a width w drawn uniformly in ``[0, freq_mask]`` (resp. ``[0, time_mask]``), clipped
    to the dimension's size, and a start drawn uniformly in ``[0, size - w]`` -- every valid position,
    the last one included. Masks may overlap. Masked cells get the mean of the input spectrogram (0
    after :func:`standardize`), as in the paper.

    Args:
        spec: (..., F, Ta); leading dimensions (channel, batch) share one set of masks.
        freq_mask, time_mask: largest mask widths in bins / frames (>= 0).
        num_freq_masks, num_time_masks: masks of each kind (>= 0).
        fixed_width: every mask is exactly ``freq_mask`` / ``time_mask`` wide (only the start is
            random); for tests and for a fixed masking budget.
        generator: torch generator of the draws; None = torch's global one.

    Returns:
        A masked copy of ``spec``.
    """
    value = float(spec.mean())
    out = spec.clone()
    for dim, max_width, count in ((-2, freq_mask, num_freq_masks), (-1, time_mask, num_time_masks)):
        if max_width < 0 or count < 0:
            raise ValueError(f"mask widths and counts must be >= 0, got width {max_width}, count {count}")
        size = out.shape[dim]
        for _ in range(count):
            width = max_width if fixed_width else int(torch.randint(0, max_width + 1, (), generator=generator))
            width = min(width, size)
            start = int(torch.randint(0, size - width + 1, (), generator=generator))
            out.narrow(dim, start, width).fill_(value)
    return out


# ---------------------------------------------------------------------------------------------------- #
# Per-clip transform
# ---------------------------------------------------------------------------------------------------- #
class AudioTransform:
    """Per-clip audio transform: waveform (S,) -> log spectrogram (1, F, Ta) float32.

    ::

        wave (S,) -> [volume jitter] -> log_spectrogram (F, Ta) -> [standardise] -> [SpecAugment]
            -> (1, F, Ta)

    With ``feature="waveform"`` the waveform is returned unchanged (S,). Each call draws new random
    parameters from torch's global generator (which the dataset seeds per train sample), like the
    video transforms.
    A gain adds a constant to the log spectrogram, so after ``normalize`` volume jitter only moves
    quiet cells relative to the log(eps) floor.
    A NaN or infinite sample, or one so large (beyond about 1e19) that its float32 power overflows,
    makes the output non-finite (all NaN once standardised): nothing here repairs it. The decoder
    refuses such windows and the datasets such outputs, both as "non_finite_audio"
    (:mod:`~stica_slowfast.data.bad_input`), so they are skipped and counted, never trained on.

    Args:
        sample_rate: Hz of the waveform.
        feature: "log_spectrogram" or "waveform".
        window_ms, hop_ms, n_fft, num_mel_bins: of :func:`log_spectrogram` (n_fft 0 = default).
        normalize: per-spectrogram standardisation (:func:`standardize`).
        volume_range: gain range of :func:`volume_jitter`; (1, 1) = off.
        freq_mask, time_mask: largest SpecAugment widths in bins / frames.
        num_masks: SpecAugment masks of each kind (frequency and time); 0 = off.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        feature: str = "log_spectrogram",
        window_ms: float = 20.0,
        hop_ms: float = 10.0,
        n_fft: int = 0,
        num_mel_bins: int = 0,
        normalize: bool = True,
        volume_range: Sequence[float] = (1.0, 1.0),
        freq_mask: int = 0,
        time_mask: int = 0,
        num_masks: int = 0,
    ):
        if feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
        self.sample_rate, self.feature = int(sample_rate), feature
        self.window_ms, self.hop_ms = float(window_ms), float(hop_ms)
        self.n_fft = int(n_fft) or default_n_fft(_samples(window_ms, sample_rate))
        self.num_mel_bins, self.normalize = int(num_mel_bins), bool(normalize)
        self.volume_range = (float(volume_range[0]), float(volume_range[1]))
        self.freq_mask, self.time_mask, self.num_masks = int(freq_mask), int(time_mask), int(num_masks)

    @property
    def num_bins(self) -> int:
        """F: mel bins, or the FFT's linear bins."""
        return self.num_mel_bins or self.n_fft // 2 + 1

    def output_shape(self, num_samples: int) -> Tuple[int, ...]:
        """Shape of the output for a waveform of ``num_samples`` samples: (S,) or (1, F, Ta)."""
        if self.feature == "waveform":
            return (num_samples,)
        return (1, self.num_bins, num_spectrogram_frames(
            num_samples, sample_rate=self.sample_rate, window_ms=self.window_ms, hop_ms=self.hop_ms))

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if self.feature == "waveform":
            return wave
        wave = volume_jitter(wave.float(), scale_range=self.volume_range)
        spec = log_spectrogram(wave, sample_rate=self.sample_rate, window_ms=self.window_ms,
                               hop_ms=self.hop_ms, n_fft=self.n_fft, num_mel_bins=self.num_mel_bins)
        if self.normalize:
            spec = standardize(spec)
        if self.num_masks > 0 and (self.freq_mask > 0 or self.time_mask > 0):
            spec = spec_augment(spec, freq_mask=self.freq_mask, time_mask=self.time_mask,
                                num_freq_masks=self.num_masks, num_time_masks=self.num_masks)
        return spec.unsqueeze(0)  # (F, Ta) -> (1, F, Ta): one input channel for the audio network

    def __repr__(self) -> str:
        if self.feature == "waveform":
            return f"{type(self).__name__}(feature='waveform', sample_rate={self.sample_rate})"
        return (f"{type(self).__name__}(sample_rate={self.sample_rate}, window_ms={self.window_ms}, "
                f"hop_ms={self.hop_ms}, n_fft={self.n_fft}, num_mel_bins={self.num_mel_bins}, "
                f"normalize={self.normalize}, volume_range={self.volume_range}, "
                f"freq_mask={self.freq_mask}, time_mask={self.time_mask}, num_masks={self.num_masks})")


def build_audio_transform(cfg: CfgNode, sampling: str) -> AudioTransform:
    """The audio transform of ``STICA.AUDIO.*`` for ``sampling`` ("train", "val" or "test").

    Volume jitter (``VOLUME_JITTER``) and SpecAugment (``SPEC_AUGMENT.*``) only with "train".
    """
    a = cfg.STICA.AUDIO
    train = sampling == "train"
    aug = a.SPEC_AUGMENT
    return AudioTransform(
        sample_rate=a.SAMPLE_RATE, feature=a.FEATURE, window_ms=a.WINDOW_MS, hop_ms=a.HOP_MS,
        n_fft=a.N_FFT, num_mel_bins=a.NUM_MEL_BINS, normalize=a.NORMALIZE,
        volume_range=tuple(a.VOLUME_JITTER) if train else (1.0, 1.0),
        freq_mask=aug.FREQ_MASK, time_mask=aug.TIME_MASK,
        num_masks=aug.NUM_MASKS if train and aug.ENABLE else 0)
