"""Audio front-end: log spectrogram, mel filterbank, SpecAugment, volume jitter, the dataset's audio."""

import math

import numpy as np
import pytest
import torch

from stica_slowfast.config import ConfigError, get_cfg, load_config, merge_from_list
from stica_slowfast.data.audio import (
    AudioTransform,
    build_audio_transform,
    log_spectrogram,
    mask_band,
    mel_filterbank,
    num_spectrogram_frames,
    spec_augment,
    standardize,
    volume_jitter,
)
from stica_slowfast.data.datasets import Kinetics
from stica_slowfast.synthetic import write_video


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def sine(freq: float, seconds: float, rate: int) -> torch.Tensor:
    return torch.sin(2 * math.pi * freq * torch.arange(int(seconds * rate), dtype=torch.float64) / rate)


def textbook_mel_filterbank(num_mels, n_fft, rate, f_min=0.0, f_max=None):
    """Triangular HTK filters written out bin by bin (independent of the package)."""
    f_max = rate / 2 if f_max is None else f_max
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    edges = [hz(m) for m in np.linspace(mel(f_min), mel(f_max), num_mels + 2)]
    fb = np.zeros((num_mels, n_fft // 2 + 1))
    for m in range(num_mels):
        lo, centre, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * rate / n_fft
            if lo <= f <= centre:
                fb[m, k] = (f - lo) / (centre - lo)
            elif centre < f <= hi:
                fb[m, k] = (hi - f) / (hi - centre)
    return fb, np.array(edges[1:-1])


# ---------------------------------------------------------------------------------------------- #
# Spectrogram
# ---------------------------------------------------------------------------------------------- #
def test_paper_shapes():
    # 24 kHz, 20 ms window (480 samples -> n_fft 512), 10 ms hop: 257 bins, 99 frames per second.
    one_second = torch.randn(24000)
    spec = log_spectrogram(one_second, sample_rate=24000)
    assert spec.shape == (257, 99) and spec.dtype == torch.float32
    assert log_spectrogram(torch.randn(3, 48000), sample_rate=24000).shape == (3, 257, 199)
    assert num_spectrogram_frames(48000, sample_rate=24000) == 199
    assert log_spectrogram(one_second, sample_rate=24000, n_fft=1024).shape == (513, 99)
    assert log_spectrogram(one_second, sample_rate=24000, num_mel_bins=40).shape == (40, 99)
    with pytest.raises(ValueError, match="shorter than one window"):
        log_spectrogram(torch.randn(479), sample_rate=24000)
    with pytest.raises(ValueError, match="n_fft=256 is smaller"):
        log_spectrogram(one_second, sample_rate=24000, n_fft=256)


def test_frames_cover_window_at_every_hop():
    # A click at sample 1000 is seen only by the frames whose window [t * hop, t * hop + win) holds it.
    rate, win, hop = 8000, 160, 80
    wave = torch.zeros(1600)
    wave[1000] = 1.0
    spec = log_spectrogram(wave, sample_rate=rate)
    loud = (spec.max(dim=0).values > math.log(1e-6) + 1).nonzero().flatten().tolist()
    assert loud == [t for t in range(spec.shape[1]) if t * hop <= 1000 < t * hop + win] == [11, 12]


@pytest.mark.parametrize("rate, freq", [(24000, 1000.0), (24000, 5000.0), (16000, 440.0)])
def test_tone_peaks_in_its_linear_bin(rate, freq):
    spec = log_spectrogram(sine(freq, 0.5, rate), sample_rate=rate)  # float64 in, float64 out
    n_fft = 512
    peak = spec.argmax(dim=0)  # (Ta,) peak bin of every frame
    assert spec.dtype == torch.float64
    assert set(peak.tolist()) == {round(freq * n_fft / rate)}


@pytest.mark.parametrize("freq", [500.0, 3000.0])
def test_tone_peaks_in_its_mel_bin(freq):
    rate, n_fft, mels = 16000, 512, 40
    _, centres = textbook_mel_filterbank(mels, n_fft, rate)
    nearest = int(np.argmin(np.abs(centres - freq)))  # filters overlap: the nearest centre wins
    spec = log_spectrogram(sine(freq, 0.5, rate), sample_rate=rate, num_mel_bins=mels)
    assert spec.shape[0] == mels and set(spec.argmax(dim=0).tolist()) == {nearest}


def test_mel_filterbank_matches_textbook_and_peaks_at_centres():
    rate, n_fft, mels = 16000, 1024, 24
    fb = mel_filterbank(num_mels=mels, n_fft=n_fft, sample_rate=rate)
    expected, centres = textbook_mel_filterbank(mels, n_fft, rate)
    assert fb.shape == (mels, n_fft // 2 + 1) and fb.dtype == torch.float32
    np.testing.assert_allclose(fb.numpy(), expected, atol=1e-6)
    band = mel_filterbank(num_mels=mels, n_fft=n_fft, sample_rate=rate, f_min=300.0, f_max=4000.0)
    np.testing.assert_allclose(band.numpy(), textbook_mel_filterbank(mels, n_fft, rate, 300.0, 4000.0)[0],
                               atol=1e-6)
    # Each filter peaks at the bin next to its centre frequency (one of the two bracketing bins).
    spacing = rate / n_fft
    peaks = fb.argmax(dim=1).numpy() * spacing
    assert np.all(np.abs(peaks - centres) < spacing)
    assert float(fb.max(dim=1).values.min()) > 0.5
    # Between the first and the last centre, neighbouring triangles sum to one.
    freqs = np.arange(n_fft // 2 + 1) * spacing
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    np.testing.assert_allclose(fb.sum(0).numpy()[inside], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(num_mels=8, n_fft=512, sample_rate=rate, f_max=9000.0)


def test_standardize_and_silence():
    spec = 3.0 + 2.0 * torch.randn(2, 1, 20, 30)
    out = standardize(spec)
    mean, std = out.mean(dim=(-2, -1)), out.std(dim=(-2, -1), unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-5)
    silent = log_spectrogram(torch.zeros(3200), sample_rate=8000)
    assert torch.all(silent == math.log(1e-6))
    assert torch.equal(standardize(silent), torch.zeros_like(silent))


# ---------------------------------------------------------------------------------------------- #
# Augmentation
# ---------------------------------------------------------------------------------------------- #
def masked_lines(out, value, dim):
    """Indices along dim (-2 rows, -1 columns) whose every cell equals value."""
    full = (out == value).all(dim=-1 if dim == -2 else -2)
    return full.nonzero().flatten().tolist()


def test_spec_augment_masks_exact_widths_with_the_mean():
    spec = torch.rand(10, 20) + 1.0
    mean = float(spec.mean())
    for _ in range(20):
        out = spec_augment(spec, freq_mask=3, time_mask=5, fixed_width=True)
        rows, cols = masked_lines(out, mean, -2), masked_lines(out, mean, -1)
        assert len(rows) == 3 and rows == list(range(rows[0], rows[0] + 3))
        assert len(cols) == 5 and cols == list(range(cols[0], cols[0] + 5))
        assert int((out != spec).sum()) == 3 * 20 + 5 * 10 - 3 * 5  # nothing else changed
    assert torch.equal(spec_augment(spec, freq_mask=3, time_mask=5, num_freq_masks=0, num_time_masks=0),
                       spec)
    # Leading (channel) dimensions share the masks.
    out = spec_augment(spec.expand(2, 10, 20), freq_mask=2, time_mask=0, fixed_width=True)
    assert torch.equal(out[0], out[1])


def test_spec_augment_draws_every_width_and_start():
    g = torch.Generator().manual_seed(0)
    spec = torch.rand(6, 7) + 1.0
    mean = float(spec.mean())
    starts, pairs = set(), set()
    for _ in range(300):
        rows = masked_lines(spec_augment(spec, freq_mask=2, time_mask=0, fixed_width=True, generator=g), mean, -2)
        starts.add(rows[0])
        cols = masked_lines(spec_augment(spec, freq_mask=0, time_mask=3, generator=g), mean, -1)
        pairs.add((cols[0], len(cols)) if cols else (None, 0))
    assert starts == {0, 1, 2, 3, 4}  # 6 rows, width 2: the last start (4) included
    # Widths 0..3 and, for each, every start 0..7 - w.
    assert pairs == {(None, 0)} | {(s, w) for w in (1, 2, 3) for s in range(7 - w + 1)}
    # A width larger than the dimension masks all of it.
    assert masked_lines(spec_augment(spec, freq_mask=9, time_mask=0, fixed_width=True), mean, -2) == list(range(6))


def test_mask_band():
    spec = torch.arange(12.0).reshape(3, 4)
    out = mask_band(spec, dim=-1, start=3, width=1, value=-1.0)
    assert out[:, 3].tolist() == [-1.0] * 3 and torch.equal(out[:, :3], spec[:, :3])
    assert mask_band(spec, dim=-2, start=1, width=2)[1:].eq(5.5).all()  # default: the mean
    with pytest.raises(ValueError, match="outside"):
        mask_band(spec, dim=-1, start=3, width=2)


def test_volume_jitter_range():
    wave = torch.ones(4)
    gains = [float(volume_jitter(wave, scale_range=(0.5, 2.0))[0]) for _ in range(300)]
    assert 0.5 <= min(gains) < 0.6 and 1.9 < max(gains) <= 2.0
    state = torch.get_rng_state()
    assert torch.equal(volume_jitter(wave, scale_range=(1.0, 1.0)), wave)
    assert torch.equal(torch.get_rng_state(), state)  # a fixed gain draws nothing
    with pytest.raises(ValueError):
        volume_jitter(wave, scale_range=(2.0, 1.0))


def audio_cfg(**overrides):
    cfg = get_cfg()
    cfg.STICA.AUDIO.ENABLE, cfg.STICA.AUDIO.SAMPLE_RATE = True, 8000
    merge_from_list(cfg, [x for item in overrides.items() for x in item])
    return cfg


def test_audio_transform_train_augments_eval_does_not():
    wave = sine(300.0, 0.5, 8000).float() * torch.linspace(0, 1, 4000)
    cfg = audio_cfg(**{"STICA.AUDIO.VOLUME_JITTER": [0.5, 2.0], "STICA.AUDIO.NORMALIZE": False,
                       "STICA.AUDIO.SPEC_AUGMENT.ENABLE": True, "STICA.AUDIO.SPEC_AUGMENT.NUM_MASKS": 2})
    val = build_audio_transform(cfg, "val")
    out = val(wave)
    assert out.shape == val.output_shape(4000) == (1, 129, 49) and out.dtype == torch.float32
    assert torch.equal(out[0], log_spectrogram(wave, sample_rate=8000)) and torch.equal(val(wave), out)
    train = build_audio_transform(cfg, "train")
    assert (train.volume_range, train.num_masks) == ((0.5, 2.0), 2)
    a, b = train(wave), train(wave)
    assert a.shape == out.shape and not torch.equal(a, b) and not torch.equal(a, out)
    normalised = AudioTransform(sample_rate=8000, num_mel_bins=16)(wave)
    assert normalised.shape == (1, 16, 49) and abs(float(normalised.mean())) < 1e-5
    waveform = build_audio_transform(audio_cfg(**{"STICA.AUDIO.FEATURE": "waveform"}), "train")
    assert waveform(wave) is wave and waveform.output_shape(4000) == (4000,)


def test_audio_keys_are_validated_by_name():
    assert get_cfg().STICA.AUDIO.SAMPLE_RATE == 24000
    for opts, key in [(["STICA.AUDIO.FEATURE", "mfcc"], "STICA.AUDIO.FEATURE must be one of"),
                      (["STICA.AUDIO.MISSING", "drop"], "STICA.AUDIO.MISSING must be one of"),
                      (["STICA.AUDIO.HOP_MS", "0.0"], "STICA.AUDIO.HOP_MS must be positive"),
                      (["STICA.AUDIO.N_FFT", "256"], "STICA.AUDIO.N_FFT=256 must be 0 or >= the window"),
                      (["STICA.AUDIO.NUM_MEL_BINS", "-1"], "STICA.AUDIO.NUM_MEL_BINS must be >= 0"),
                      (["STICA.AUDIO.SPEC_AUGMENT.TIME_MASK", "-2"], "SPEC_AUGMENT.TIME_MASK must be >= 0"),
                      (["STICA.AUDIO.VOLUME_JITTER", "[1.1, 0.9]"], "STICA.AUDIO.VOLUME_JITTER must be"),
                      (["STICA.AUDIO.ENABLE", "True", "STICA.AUDIO.DURATION", "0.01"],
                       "STICA.AUDIO.DURATION: 0.01 s")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
            load_config(opts=opts)


# ---------------------------------------------------------------------------------------------- #
# Dataset: the audio of each view, missing audio, audio duration
# ---------------------------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """2 s at 10 fps, 32 x 32: with a 300 Hz tone at 8 kHz, and without an audio stream."""
    root = tmp_path_factory.mktemp("audio_media")
    frames = np.full((20, 32, 32, 3), 128, np.uint8)
    write_video(str(root / "tone.mp4"), frames, fps=10,
                audio=(0.5 * sine(300.0, 2.0, 8000)).numpy().astype(np.float32), audio_rate=8000)
    write_video(str(root / "mute.mp4"), frames, fps=10)
    for split in ("train", "test"):
        (root / f"{split}.csv").write_text("mute.mp4 0\ntone.mp4 1\n")
    return root


def dataset_cfg(root, **overrides):
    cfg = audio_cfg(**overrides)
    cfg.DATA.PATH_TO_DATA_DIR = str(root)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 3, 30  # 0.4 s clips
    cfg.DATA.TRAIN_JITTER_SCALES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = [16, 20], 16, 16
    cfg.DATA.TRAIN_CROP_NUM_TEMPORAL = 2
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 1
    cfg.MODEL.NUM_CLASSES, cfg.DATA_LOADER.NUM_RETRIES = 2, 50
    return cfg


# 0.4 s at 8 kHz = 3200 samples; 20 ms = 160-sample window (n_fft 256: 129 bins), 80-sample hop.
CLIP_SPEC = (1, 129, 1 + (3200 - 160) // 80)


def test_missing_audio_skip_substitutes_in_training(media):
    ds = Kinetics(dataset_cfg(media), "train")
    s = ds[0]  # mute.mp4: replaced by tone.mp4
    assert (s["index"], s["label"], s["valid"]) == (1, 1, True) and s["skipped"] >= 1
    assert [a.shape for a in s["audio"]] == [CLIP_SPEC] * 2
    assert all(abs(float(a.mean())) < 1e-5 and float(a.std()) > 0.5 for a in s["audio"])
    assert ds[1]["skipped"] == 0


def test_missing_audio_skip_marks_test_video_invalid(media):
    ds = Kinetics(dataset_cfg(media), "test")
    s = ds[0]
    assert (s["index"], s["valid"], s["skipped"]) == (0, False, 1)
    assert [a.shape for a in s["audio"]] == [CLIP_SPEC] * 2
    assert all(float(a.abs().max()) == 0 for a in s["audio"] + s["video"])
    assert ds[1]["valid"]


def test_missing_audio_zeros_gives_silent_spectrograms(media):
    ds = Kinetics(dataset_cfg(media, **{"STICA.AUDIO.MISSING": "zeros", "STICA.AUDIO.NORMALIZE": False}),
                  "train")
    s = ds[0]
    assert (s["index"], s["skipped"], s["valid"]) == (0, 0, True)
    for a in s["audio"]:
        assert a.shape == CLIP_SPEC and torch.all(a == math.log(1e-6))  # constant: log(0 + eps)
    normalised = Kinetics(dataset_cfg(media, **{"STICA.AUDIO.MISSING": "zeros"}), "test")[0]
    assert normalised["valid"] and all(torch.equal(a, torch.zeros(CLIP_SPEC)) for a in normalised["audio"])


def test_audio_duration_sets_the_frames(media):
    # 1 s of audio centred on each 0.4 s clip: 8000 samples -> 1 + (8000 - 160) // 80 = 99 frames.
    ds = Kinetics(dataset_cfg(media, **{"STICA.AUDIO.DURATION": 1.0}), "test")
    s = ds[1]
    assert [a.shape for a in s["audio"]] == [(1, 129, 99)] * 2
    # The first clip (0 - 0.4 s) has its window at -0.3 - 0.7 s: the first 0.3 s are zero-padded, so
    # the first frames are silence and the rest is the tone.
    raw = Kinetics(dataset_cfg(media, **{"STICA.AUDIO.DURATION": 1.0, "STICA.AUDIO.NORMALIZE": False}),
                   "test")[1]["audio"][0][0]
    assert raw.shape == (129, 99)
    energy = raw.max(dim=0).values
    assert torch.all(energy[:25] == math.log(1e-6)) and torch.all(energy[35:] > 0)
