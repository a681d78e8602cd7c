"""Damaged media that still decodes is never used as if it were good: it is skipped and counted.

* "corrupt": FFmpeg conceals the damage it detects in a frame and flags that frame only, while the
  frames predicted from it carry the errors on; and a damaged MP4 sample table makes the demuxer stop
  long before the duration the header states, so every later target would hold one frame.
* "non_finite_audio": float PCM with NaN or infinite samples, which the decoders pass through and
  the resampler spreads; and finite samples so large that the spectrogram overflows.

Every file is written here with PyAV (h264 in MP4; float PCM in Matroska, QuickTime and AVI) and
damaged at fixed bytes; each group first checks that FFmpeg really flags, loses or passes through
what the damage should, so that no test passes on a file that is not damaged.
"""

import struct
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import stica_slowfast.data  # noqa: F401  (registers the datasets)
from stica_slowfast.config import get_cfg, merge_from_list
from stica_slowfast.data.audio import AudioTransform
from stica_slowfast.data.bad_input import SKIP_REASONS
from stica_slowfast.data.decoding import DecodeError, decode_clips, open_video_per_clip
from stica_slowfast.data.loader import construct_loader
from stica_slowfast.engine.evaluator import evaluate
from stica_slowfast.models.api import ModelBase

FPS, SIZE, N = 25, 64, 50  # 2 s of video, a keyframe every second
B_FRAME = int(av.video.frame.PictureType.B)
PCM_RATE = 16000  # float PCM written at this rate; decoded at it (no resampling) or at 8 kHz
DAMAGED_AT = 0.4  # presentation time (s) of the P-frame whose slice data is zeroed


# ---------------------------------------------------------------------------------------------- #
# Writing and damaging the media
# ---------------------------------------------------------------------------------------------- #
def moving_noise(n: int, size: int = SIZE) -> np.ndarray:
    """(n, size, size, 3) uint8 noise sliding 3 pixels a frame: every P-frame carries real data."""
    base = np.random.default_rng(0).integers(0, 256, (size, 4 * size, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1)[:, :size] for i in range(n)])


def write_h264(path, frames, *, keyint=FPS, bframes=3, last_duration_ms=None, audio=None):
    """h264 in MP4, a keyframe every ``keyint`` frames (no scene cuts), one thread (the same file
    every time); ``last_duration_ms`` stretches the last frame's packet (a closing still); ``audio``
    (a waveform at PCM_RATE) adds an AAC track."""
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.height, vs.width, vs.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        vs.options = {"preset": "veryfast", "threads": "1", "bf": str(bframes),
                      "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:mbtree=0"}
        vs.codec_context.time_base = Fraction(1, 1000)
        packets = []
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts, frame.time_base = i * 1000 // FPS, Fraction(1, 1000)
            packets += vs.encode(frame)
        packets += vs.encode()
        if last_duration_ms is not None:
            packets[-1].duration = int(last_duration_ms / 1000 / packets[-1].time_base)
        if audio is not None:
            stream = c.add_stream("aac", rate=PCM_RATE, layout="mono")
            for s in range(0, len(audio), 1024):
                chunk = np.ascontiguousarray(audio[None, s:s + 1024], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts = PCM_RATE, s
                packets += stream.encode(frame)
            packets += stream.encode()
        for p in packets:
            c.mux(p)


def write_with_float_audio(path, fmt, codec, wave, sample_format):
    """A 2-s 32 x 32 h264 video with a mono float PCM track (``codec``) of ``wave`` at PCM_RATE."""
    with av.open(str(path), "w", format=fmt) as c:
        vs = c.add_stream("libx264", rate=FPS)
        vs.height = vs.width = 32
        vs.pix_fmt, vs.options = "yuv420p", {"preset": "ultrafast", "threads": "1"}
        audio = c.add_stream(codec, rate=PCM_RATE, layout="mono")
        for i in range(N):
            grey = np.full((32, 32, 3), 4 * i, np.uint8)
            c.mux(vs.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")))
        c.mux(vs.encode())
        dtype = np.float64 if sample_format == "dbl" else np.float32
        for s in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, s:s + 1024], dtype=dtype),
                                               format=sample_format, layout="mono")
            frame.sample_rate, frame.pts = PCM_RATE, s
            c.mux(audio.encode(frame))
        c.mux(audio.encode())


def tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * PCM_RATE)) / PCM_RATE
    return 0.5 * np.sin(2 * np.pi * 440 * t)


def with_samples(wave: np.ndarray, times, value) -> np.ndarray:
    """A copy of ``wave`` with the samples at ``times`` (seconds) set to ``value``."""
    out = wave.copy()
    out[[int(round(t * PCM_RATE)) for t in times]] = value
    return out


def video_packet(path, t: float):
    """(byte position, size) of the video packet presented at ``t`` seconds."""
    with av.open(str(path)) as c:
        for p in c.demux(video=0):
            if p.size and abs(float(p.pts * p.time_base) - t) < 1e-6:
                return p.pos, p.size
    raise AssertionError(f"no video packet at {t} s in {path}")


def box(data: bytes, path) -> int:
    """Byte offset of the box at ``path`` (e.g. ``("moov", "trak", ..., "stsz")``), first of each."""
    start, end = 0, len(data)
    for name in path:
        while start + 8 <= end:
            size, kind = struct.unpack(">I4s", data[start:start + 8])
            if kind.decode("latin-1") == name:
                break
            start += size
        else:
            raise AssertionError(f"no {name} box")
        if name != path[-1]:
            start, end = start + 8, start + size
    return start


STBL = ("moov", "trak", "mdia", "minf", "stbl")


def damage_sample_table(src, dst, how: str) -> None:
    """Copy ``src`` with its (only) video track's sample table damaged: "stsz" states 1 sample,
    "stsz_half" 25, "stsc" puts 1 sample in the one chunk that holds them all."""
    data = bytearray(src.read_bytes())
    if how.startswith("stsz"):
        at = box(data, STBL + ("stsz",)) + 16  # size, type, version/flags, sample size, >count<
        data[at:at + 4] = struct.pack(">I", 1 if how == "stsz" else N // 2)
    else:
        at = box(data, STBL + ("stsc",)) + 20  # size, type, version/flags, entries, first chunk, >per chunk<
        data[at:at + 4] = struct.pack(">I", 1)
    dst.write_bytes(bytes(data))


def decode_all(path):
    """Every frame as PyAV decodes it: (time, flagged, picture type, keyframe, rgb pixels)."""
    with av.open(str(path)) as c:
        return [(round(float(f.time), 3), f.is_corrupt, int(f.pict_type), f.key_frame,
                 f.to_ndarray(format="rgb24").astype(np.int16)) for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("damaged_media")
    write_h264(d / "clean.mp4", moving_noise(N))
    # Concealment: the slice data of one P-frame zeroed (its NAL header and slice header kept).
    data = bytearray((d / "clean.mp4").read_bytes())
    pos, size = video_packet(d / "clean.mp4", DAMAGED_AT)
    data[pos + 20:pos + size] = bytes(size - 20)
    (d / "concealed.mp4").write_bytes(bytes(data))
    write_h264(d / "clean_aac.mp4", moving_noise(N), audio=tone())  # the same, with a sound track
    data = bytearray((d / "clean_aac.mp4").read_bytes())
    pos, size = video_packet(d / "clean_aac.mp4", DAMAGED_AT)
    data[pos + 20:pos + size] = bytes(size - 20)
    (d / "concealed_aac.mp4").write_bytes(bytes(data))
    for how in ("stsz", "stsz_half", "stsc"):
        damage_sample_table(d / "clean.mp4", d / f"{how}.mp4", how)
    # Legitimately held frames: a 1-frame video; a variable-frame-rate one whose last frame stays 2 s.
    write_h264(d / "one_frame.mp4", moving_noise(1))
    write_h264(d / "still_end.mp4", moving_noise(N // 2), bframes=0, last_duration_ms=2000)
    # Float PCM: NaN samples at 0.1 s, 1.0 s and 1.5-1.9 s every 0.1 s, inf at 1.2 s; and a clean track.
    spoiled = with_samples(tone(), [0.1, 1.0] + [1.5 + 0.1 * k for k in range(5)], np.nan)
    spoiled = with_samples(spoiled, [1.2], np.inf)
    for name, fmt, codec, sample_format in (("f32.mkv", "matroska", "pcm_f32le", "flt"),
                                            ("f64.mkv", "matroska", "pcm_f64le", "dbl"),
                                            ("f32.mov", "mov", "pcm_f32le", "flt"),
                                            ("f32.avi", "avi", "pcm_f32le", "flt")):
        write_with_float_audio(d / f"nan_{name}", fmt, codec, spoiled, sample_format)
    write_with_float_audio(d / "clean_f32.mkv", "matroska", "pcm_f32le", tone(), "flt")
    # NaN every 50 ms (every window has one), and finite samples far beyond full scale every 50 ms.
    every = [0.05 * k for k in range(40)]
    for name, value in (("nan_everywhere.mkv", np.nan), ("huge.mkv", 1e30)):
        write_with_float_audio(d / name, "matroska", "pcm_f32le", with_samples(tone(), every, value), "flt")
    return d


def clip(path, start, **kwargs):
    kwargs = {"num_frames": 4, "frame_step": 1 / FPS, **kwargs}
    return decode_clips(str(path), [start] if np.isscalar(start) else start, **kwargs)


# ---------------------------------------------------------------------------------------------- #
# Concealed frames
# ---------------------------------------------------------------------------------------------- #
def test_ffmpeg_flags_the_concealed_frame_only_while_its_errors_spread(media):
    clean, damaged = decode_all(media / "clean.mp4"), decode_all(media / "concealed.mp4")
    assert [f[0] for f in damaged] == [f[0] for f in clean] == [round(i / FPS, 3) for i in range(N)]
    assert [t for t, flagged, *_ in damaged if flagged] == [DAMAGED_AT]
    kinds = {t: (kind, key) for t, _, kind, key, _ in clean}
    assert kinds[0.4][0] != B_FRAME and kinds[0.32][0] == kinds[0.36][0] == B_FRAME and kinds[1.0][1]
    differs = [t for (t, *_, a), (_, *_, b) in zip(clean, damaged) if np.abs(a - b).mean() > 10]
    # The B-frames shown before it (decoded after it) and every frame up to the next keyframe.
    assert differs == [round(i / FPS, 3) for i in range(8, 25)]
    assert all(np.array_equal(a, b) for (t, *_, a), (_, *_, b) in zip(clean, damaged) if t not in differs)


@pytest.mark.parametrize("skip_gaps", [True, False])
@pytest.mark.parametrize("start,corrupt", [
    (0.0, False),  # before the damage
    (0.2, True),   # takes the B-frame at 0.32, predicted from the flagged P-frame
    (0.4, True),   # takes the flagged frame
    (0.6, True),   # unflagged, predicted from it
    (1.1, False),  # past the next keyframe
])
def test_a_clip_reached_by_concealed_damage_is_corrupt(media, start, corrupt, skip_gaps):
    if not corrupt:
        got = clip(media / "concealed.mp4", start, skip_gaps=skip_gaps)
        want = clip(media / "clean.mp4", start, skip_gaps=skip_gaps)
        assert got.frame_times == want.frame_times and torch.equal(got.video[0], want.video[0])
        assert got.video[0].dtype == torch.uint8  # video cannot hold NaN
        return
    with pytest.raises(DecodeError, match="concealed damaged data") as err:
        clip(media / "concealed.mp4", start, skip_gaps=skip_gaps)
    assert err.value.reason == "corrupt"


@pytest.mark.parametrize("skip_gaps", [True, False])
def test_damage_after_a_clip_is_found_when_the_pass_reads_on_for_the_audio(media, skip_gaps):
    # The clip at 0.2 s ends on a B-frame predicted from the flagged P-frame after it; a 10-s audio
    # window (past the end of the sound) keeps the pass reading to the end of the file once the
    # video is done, where the decoder still holds that P-frame.
    kwargs = {"audio_rate": 8000, "audio_duration": 10.0, "skip_gaps": skip_gaps}
    with pytest.raises(DecodeError, match="concealed damaged data") as err:
        clip(media / "concealed_aac.mp4", 0.2, **kwargs)
    assert err.value.reason == "corrupt"
    got, want = clip(media / "concealed_aac.mp4", 0.0, **kwargs), clip(media / "clean_aac.mp4", 0.0, **kwargs)
    assert torch.equal(got.video[0], want.video[0]) and torch.equal(got.audio[0], want.audio[0])


def per_clip(path):
    """Clips at 0 and 1.1 s by the per-clip reference decoder (each clip decoded on its own)."""
    with open_video_per_clip(str(path)) as video:
        return video.decode_clips([0.0, 1.1], num_frames=4, frame_step=1 / FPS)


def test_concealed_damage_between_clips_harms_no_clip(media):
    # The flagged frame lies between the clips, before a keyframe: no clip depends on it.
    for decode in (lambda p: clip(p, [0.0, 1.1]), lambda p: clip(p, [0.0, 1.1], skip_gaps=False), per_clip):
        got, want = decode(media / "concealed.mp4"), decode(media / "clean.mp4")
        assert all(torch.equal(a, b) for a, b in zip(got.video, want.video))
    with pytest.raises(DecodeError, match="concealed") as err:
        clip(media / "concealed.mp4", [0.0, 0.6], threads=True)
    assert err.value.reason == "corrupt"


# ---------------------------------------------------------------------------------------------- #
# Damaged sample tables
# ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("how,packets", [("stsz", 1), ("stsc", 1), ("stsz_half", N // 2)])
def test_damaged_sample_table_loses_frames_the_header_promises(media, how, packets):
    with av.open(str(media / f"{how}.mp4")) as c:
        vs = c.streams.video[0]
        assert vs.frames == N and float(vs.duration * vs.time_base) == pytest.approx(N / FPS)
        assert sum(1 for p in c.demux(vs) if p.size) == packets
    # Targets at 1.2-1.5 s: past the last frame the demuxer gives (at 0 or 0.96 s), within 2 s.
    for starts in ([1.2], [0.0, 1.2]):
        with pytest.raises(DecodeError, match="damaged sample table") as err:
            clip(media / f"{how}.mp4", starts, frame_step=0.1)
        assert err.value.reason == "corrupt"


def test_the_frames_a_damaged_sample_table_keeps_are_used(media):
    # Half the samples stated: the clips in the first second are whole, and the same as the clean file's.
    got = clip(media / "stsz_half.mp4", 0.5, frame_step=0.1)
    want = clip(media / "clean.mp4", 0.5, frame_step=0.1)
    assert got.frame_times == [pytest.approx(want.frame_times[0])] and torch.equal(got.video[0], want.video[0])


def test_legitimately_held_frames_stay_valid(media):
    # A video shorter than a clip holds its frame (documented), as does a closing 2-s still.
    assert clip(media / "one_frame.mp4", 0.0, frame_step=0.1).frame_times == [[0.0] * 4]
    with av.open(str(media / "still_end.mp4")) as c:
        vs = c.streams.video[0]
        last = max(float(p.pts * p.time_base) for p in c.demux(vs) if p.size)
        assert last == pytest.approx(0.96) and float(vs.duration * vs.time_base) == pytest.approx(2.96)
    held = clip(media / "still_end.mp4", 1.5, frame_step=0.3)
    assert held.frame_times == [[pytest.approx(0.96)] * 4]


# ---------------------------------------------------------------------------------------------- #
# Non-finite audio
# ---------------------------------------------------------------------------------------------- #
NAN_FILES = ["nan_f32.mkv", "nan_f64.mkv", "nan_f32.mov", "nan_f32.avi"]


@pytest.mark.parametrize("name", NAN_FILES)
def test_float_pcm_keeps_its_nan_and_inf_samples(media, name):
    with av.open(str(media / name)) as c:
        wave = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert int(np.isnan(wave).sum()) == 7 and int(np.isinf(wave).sum()) == 1


@pytest.mark.parametrize("rate", [PCM_RATE, 8000])
@pytest.mark.parametrize("name", NAN_FILES)
def test_an_audio_window_with_nan_or_inf_is_refused(media, name, rate):
    # Windows of 0.16 s at 0.95 s (NaN at 1.0 s) and 1.1 s (inf at 1.2 s); one at 0.3 s is clean.
    for start in (0.95, 1.1):
        with pytest.raises(DecodeError, match="NaN or infinite") as err:
            clip(media / name, start, audio_rate=rate)
        assert err.value.reason == "non_finite_audio"
    audio = clip(media / name, [0.3, 1.3], audio_rate=rate, num_frames=2).audio
    assert all(bool(torch.isfinite(a).all()) and float(a.abs().max()) > 0.4 for a in audio)


def test_the_resampler_spreads_a_nan_into_a_window_it_lies_outside_of(media):
    # The window [0.84, 1.0) s ends right before the NaN at 1.0 s: clean at the file's own rate;
    # resampled to 8 kHz, the filter reaches the NaN and spreads it into the window.
    window = {"num_frames": 4, "frame_step": 0.04}
    own_rate = clip(media / "nan_f32.mkv", 0.84, audio_rate=PCM_RATE, **window).audio[0]
    assert bool(torch.isfinite(own_rate).all())
    with pytest.raises(DecodeError) as err:
        clip(media / "nan_f32.mkv", 0.84, audio_rate=8000, **window)
    assert err.value.reason == "non_finite_audio"


# ---------------------------------------------------------------------------------------------- #
# The loaders: skipped, counted, never used
# ---------------------------------------------------------------------------------------------- #
T, STEP = 4, 0.1


def make_cfg(data_dir, **overrides):
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = str(data_dir)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = T, 3, 30
    cfg.DATA.TRAIN_JITTER_SCALES = [24, 32]
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 16, 24
    cfg.DATA.TRAIN_CROP_NUM_TEMPORAL = 1
    cfg.MODEL.NUM_CLASSES = 3
    cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE = 4, 4
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.DATA_LOADER.MAX_BAD_FRACTION = 1.0
    cfg.STICA.AUDIO.ENABLE, cfg.STICA.AUDIO.SAMPLE_RATE = True, 8000
    cfg.STICA.AUDIO.MISSING = "zeros"
    merge_from_list(cfg, [x for item in overrides.items() for x in item])
    return cfg


def write_csv(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))


def counts(**reasons) -> list:
    return [reasons.get(r, 0) for r in SKIP_REASONS]


@pytest.mark.parametrize("name,reason", [("stsz.mp4", "corrupt"), ("nan_everywhere.mkv", "non_finite_audio"),
                                         ("huge.mkv", "non_finite_audio")])
def test_train_loader_replaces_and_counts_a_damaged_file(media, tmp_path, name, reason):
    good = media / "clean_f32.mkv"
    write_csv(tmp_path / "train.csv", [f"{media / name} 0"] + [f"{good} {i}" for i in range(3)])
    (batch,) = list(construct_loader(make_cfg(tmp_path), "train"))
    assert batch["skip_reasons"].sum(dim=0).tolist() == counts(**{reason: 1})
    assert bool(batch["valid"].all()) and 0 not in batch["index"].tolist()
    # Every spectrogram handed on is finite (with the file, the huge one would be inf / NaN).
    assert batch["audio"][0].shape[:2] == (4, 1) and bool(torch.isfinite(batch["audio"][0]).all())


def test_huge_finite_samples_make_a_non_finite_spectrogram(media):
    # The decoder hands them on (they are finite); the spectrogram overflows, hence the dataset's check.
    wave = clip(media / "huge.mkv", 0.3, audio_rate=8000).audio[0]
    assert bool(torch.isfinite(wave).all()) and float(wave.abs().max()) > 1e25
    assert not bool(torch.isfinite(AudioTransform(sample_rate=8000)(wave)).all())


class ConstantClassifier(ModelBase):
    """Predicts class 0 for every video; checks it is never given a non-finite view."""

    predicts_labels = True

    def forward_features(self, x):
        assert bool(torch.isfinite(x).all())
        return torch.tensor([[1.0, 0.0, 0.0]]).expand(x.shape[0], 3)

    def forward(self, x):
        return self.forward_features(x)

    def forward_train(self, batch):
        raise NotImplementedError("evaluation only")


def test_evaluation_marks_damaged_files_invalid_and_counts_them(media, tmp_path):
    good = ["clean.mp4", "clean_f32.mkv", "one_frame.mp4", "still_end.mp4"]
    bad = {"stsz.mp4": "corrupt", "stsc.mp4": "corrupt", "nan_everywhere.mkv": "non_finite_audio",
           "huge.mkv": "non_finite_audio"}
    write_csv(tmp_path / "test.csv", [f"{media / name} 0" for name in good + sorted(bad)])
    cfg = make_cfg(tmp_path, **{"STICA.AUDIO.FEATURE": "log_spectrogram"})
    stats = evaluate(ConstantClassifier(), construct_loader(cfg, "test"), cfg, torch.device("cpu"))
    skipped = {r: stats[f"skipped_{r}"] for r in SKIP_REASONS}
    assert skipped == dict(zip(SKIP_REASONS, counts(corrupt=2, non_finite_audio=2)))
    assert (stats["num_videos"], stats["num_skipped"], stats["top1_acc"]) == (len(good), len(bad), 100.0)
