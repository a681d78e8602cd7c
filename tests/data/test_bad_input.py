"""Bad input never crashes and never silently corrupts: every broken file or split-file line is either
decoded correctly or skipped and counted under its reason, and too much of it stops the run.

All media are real files written here: h264/aac mp4s (tiny: 32 x 32, at most 1 s), cut or replaced
by raw bytes where the case needs it.
"""

import logging
import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from torch import nn

import stica_slowfast.data  # noqa: F401  (registers the datasets)
from stica_slowfast.config import ConfigError, assert_and_infer_cfg, get_cfg, merge_from_list
from stica_slowfast.data.bad_input import (
    SKIP_REASONS,
    TooManyBadVideosError,
    check_bad_lines,
    count_reasons,
    epoch_skip_stats,
)
from stica_slowfast.data.datasets import (
    BadLineError,
    Kinetics,
    SeededIndex,
    read_hmdb51_split,
    read_kinetics_csv,
    read_ucf101_split,
)
from stica_slowfast.data.decoding import DecodeError, decode_clips, video_file
from stica_slowfast.data.loader import construct_loader
from stica_slowfast.engine import trainer
from stica_slowfast.engine.evaluator import evaluate
from stica_slowfast.models.api import ModelBase
from stica_slowfast.synthetic import write_video

FPS, SIZE, AUDIO_RATE = 25, 32, 8000
T, STEP = 4, 0.1  # frames per clip, seconds between them (DATA.SAMPLING_RATE 3 at TARGET_FPS 30)


# ---------------------------------------------------------------------------------------------- #
# Writing the media
# ---------------------------------------------------------------------------------------------- #
def numbered(n: int, height: int = SIZE, width: int = SIZE, step: int = 3) -> np.ndarray:
    """Flat grey frames (n, H, W, 3) whose level encodes the frame index: 8 + step * i."""
    levels = 8 + step * np.arange(n)
    assert levels[-1] <= 255
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).astype(np.uint8)


def indices(clip: torch.Tensor, step: int = 3) -> list:
    """Source frame index of each frame of a decoded (T, H, W, 3) clip of ``numbered`` frames."""
    return [round((float(f.float().mean()) - 8) / step) for f in clip]


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * AUDIO_RATE))) / AUDIO_RATE
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def mux_audio(container, stream, wave):
    """Encode a mono waveform into ``stream`` (added before any packet was muxed)."""
    rate = stream.codec_context.sample_rate
    size = stream.codec_context.frame_size or 1024
    for s in range(0, len(wave), size):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, s:s + size]), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = rate, s
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_h264(path, frames, *, fps=FPS, pix_fmt="yuv420p", pts_ms=None, movflags=None):
    """An h264/aac mp4 in any pixel format libx264 takes, with 1 s of tone; ``pts_ms`` gives each
    frame's presentation time in milliseconds (variable frame rate)."""
    with av.open(str(path), "w", format="mp4", options={"movflags": movflags} if movflags else {}) as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.height, vs.width = frames.shape[1:3]
        vs.pix_fmt = pix_fmt
        vs.options = {"preset": "ultrafast"}
        audio = c.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        if pix_fmt == "gray":
            # FFmpeg's gray is full range: flag the stream so; an unflagged h264 stream is read as
            # limited range (16-235), which would clip the dark levels.
            vs.codec_context.color_range = 2  # AVCOL_RANGE_JPEG
        if pts_ms is not None:
            vs.codec_context.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
        mux_audio(c, audio, tone(1.0))


def write_audio_only(path, wave):
    """An mp4 holding only an aac stream."""
    with av.open(str(path), "w", format="mp4") as c:
        mux_audio(c, c.add_stream("aac", rate=AUDIO_RATE, layout="mono"), wave)


def write_avi(path, frames):
    """MPEG-4 part 2 video in AVI, as UCF-101 / HMDB-51 ship; no audio (AVIs PyAV writes with mp3
    audio come out with shifted video timestamps, with PCM audio with half of it)."""
    with av.open(str(path), "w", format="avi") as c:
        vs = c.add_stream("mpeg4", rate=FPS)
        vs.height, vs.width, vs.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        vs.bit_rate = 4_000_000  # the default quantiser moves flat grey levels by up to 4
        for f in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(vs.encode())


def cut(src, dst, fraction):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


VFR_PTS_MS = [0, 10, 25, 60, 70, 200, 210, 500, 900, 950]

# Files that must be skipped, and why. write_video puts the moov box last, so a cut at 90 % lands in
# it (FFmpeg would still open the file and find its video, minus the audio track); the faststart
# file has the moov first, so a cut lands in the media data, as in the AVI (FFmpeg would decode the
# frames left).
BAD = {
    "zero.mp4": "empty",
    "cut10.mp4": "truncated",
    "cut50.mp4": "truncated",
    "cut90.mp4": "truncated",
    "faststart_cut90.mp4": "truncated",
    "cut90.avi": "truncated",
    "random.mp4": "undecodable",
    "missing.mp4": "missing",
    "audio_only.mp4": "no_video",
}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    write_video(str(d / "good.mp4"), numbered(25), fps=FPS, audio=tone(1.0), audio_rate=AUDIO_RATE)
    write_video(str(d / "silent.mp4"), numbered(25), fps=FPS)  # no audio stream
    write_video(str(d / "one_frame.mp4"), numbered(1), fps=FPS, audio=tone(0.04), audio_rate=AUDIO_RATE)
    # 3 frames (0.12 s) and 0.12 s of audio: shorter than one 0.4 s clip.
    write_video(str(d / "short.mp4"), numbered(3), fps=FPS, audio=tone(0.12), audio_rate=AUDIO_RATE)
    # h264 4:2:0 cannot hold an odd size (its chroma planes are half size, and the SPS crops in
    # steps of 2 pixels there); a 97 x 33 h264 stream is 4:4:4 (or 4:0:0 gray), as written here.
    write_h264(d / "odd_97x33.mp4", numbered(10, height=33, width=97), pix_fmt="yuv444p")
    write_h264(d / "fps240.mp4", numbered(240, step=1), fps=240)
    write_h264(d / "vfr.mp4", numbered(len(VFR_PTS_MS)), pts_ms=VFR_PTS_MS)
    write_h264(d / "gray.mp4", numbered(10), pix_fmt="gray")
    write_h264(d / "yuv444p.mp4", numbered(10), pix_fmt="yuv444p")
    # The bad ones.
    (d / "zero.mp4").write_bytes(b"")
    for percent in (10, 50, 90):
        cut(d / "good.mp4", d / f"cut{percent}.mp4", percent / 100)
    write_h264(d / "faststart.mp4", numbered(25), movflags="faststart")
    cut(d / "faststart.mp4", d / "faststart_cut90.mp4", 0.9)
    write_avi(d / "good.avi", numbered(25))
    cut(d / "good.avi", d / "cut90.avi", 0.9)
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    write_audio_only(d / "audio_only.mp4", tone(1.0))
    return d


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
    cfg.STICA.AUDIO.ENABLE, cfg.STICA.AUDIO.SAMPLE_RATE = True, AUDIO_RATE
    cfg.STICA.AUDIO.FEATURE = "waveform"
    merge_from_list(cfg, [x for item in overrides.items() for x in item])
    return cfg


def write_csv(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))


def one_hot(reason: str) -> list:
    return [int(r == reason) for r in SKIP_REASONS]


# ---------------------------------------------------------------------------------------------- #
# Decoder: a bad file raises DecodeError with its reason, and nothing else
# ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,reason", sorted(BAD.items()))
def test_bad_file_raises_decode_error_with_reason(media, name, reason):
    with pytest.raises(DecodeError) as err:
        decode_clips(str(media / name), [0.0, 0.5], num_frames=T, frame_step=STEP, audio_rate=AUDIO_RATE)
    assert err.value.reason == reason and name in str(err.value)


def test_truncated_files_were_readable_by_ffmpeg(media):
    # Why the truncation check exists: FFmpeg alone opens these cut files and decodes their first
    # frames without an error.
    with av.open(str(media / "cut90.mp4")) as c:
        assert c.streams.video and not c.streams.audio  # the audio track's box was cut off
        assert next(c.decode(video=0)).width == SIZE
    for name in ("faststart_cut90.mp4", "cut90.avi"):
        with av.open(str(media / name)) as c:
            assert next(c.decode(video=0)).width == SIZE


def test_cut_or_corrupted_bytes_raise_only_decode_error(media, tmp_path):
    # Cuts anywhere (the truncation check off, so FFmpeg meets every cut) and random byte flips:
    # each file decodes or raises DecodeError, never anything else.
    data = (media / "good.mp4").read_bytes()
    rng = np.random.default_rng(0)
    variants = [data[:n] for n in range(1, len(data), len(data) // 24)]
    for _ in range(24):
        flipped = np.frombuffer(data, np.uint8).copy()
        flipped[rng.integers(len(data), size=8)] = rng.integers(256, size=8)
        variants.append(flipped.tobytes())
    path = tmp_path / "variant.mp4"
    outcomes = set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(video_file, "find_truncation", lambda *args: None)
        for variant in variants:
            path.write_bytes(variant)
            try:
                decode_clips(str(path), [0.0, 0.5], num_frames=T, frame_step=STEP, audio_rate=AUDIO_RATE)
                outcomes.add("decoded")
            except DecodeError as err:
                outcomes.add(err.reason)
    assert outcomes <= {"decoded", "undecodable", "no_video"} and "undecodable" in outcomes


def test_decode_error_reasons_are_checked():
    assert DecodeError("x").reason == "undecodable"
    with pytest.raises(ValueError, match="unknown skip reason 'bogus'"):
        DecodeError("x", "bogus")


# ---------------------------------------------------------------------------------------------- #
# Decoder: unusual but valid files decode into the right frames
# ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,shape,starts,expected", [
    # Latest frame at or before each target time start + 0.1 i.
    ("odd_97x33.mp4", (33, 97), [0.0], [[0, 2, 5, 7]]),
    ("fps240.mp4", (SIZE, SIZE), [0.0, 0.5], [[0, 24, 48, 72], [120, 144, 168, 192]]),
    # Frames at 0, 10, 25, 60, 70, 200, 210, 500, 900, 950 ms.
    ("vfr.mp4", (SIZE, SIZE), [0.0, 0.85], [[0, 4, 5, 6], [7, 9, 9, 9]]),
    ("gray.mp4", (SIZE, SIZE), [0.0], [[0, 2, 5, 7]]),
    ("yuv444p.mp4", (SIZE, SIZE), [0.0], [[0, 2, 5, 7]]),
    ("good.avi", (SIZE, SIZE), [0.5], [[12, 15, 17, 20]]),
])
def test_unusual_files_decode_to_the_right_frames(media, name, shape, starts, expected):
    clips = decode_clips(str(media / name), starts, num_frames=T, frame_step=STEP, audio_rate=AUDIO_RATE)
    for c, want in enumerate(expected):
        clip = clips.video[c]
        assert clip.shape == (T, *shape, 3) and clip.dtype == torch.uint8
        if name == "fps240.mp4":
            # 240 levels 1 apart: h264 may move a level by one or two, so the times tell the frame.
            assert [round(t * 240) for t in clips.frame_times[c]] == want
            assert np.abs(np.array(indices(clip, step=1)) - want).max() <= 2
        else:
            assert indices(clip) == want
        # Grey in, grey out: the three RGB channels agree.
        assert float((clip[..., 0].float() - clip[..., 2].float()).abs().max()) <= 2
        assert clips.audio[c].shape == (round(T * STEP * AUDIO_RATE),)
        assert float(clips.audio[c].abs().max()) > 0.3 or name == "good.avi"  # the AVI is silent


def test_short_videos_hold_their_last_frame(media):
    # One frame: every target time takes it.
    clips = decode_clips(str(media / "one_frame.mp4"), [0.0], num_frames=T, frame_step=STEP,
                         audio_rate=AUDIO_RATE)
    assert indices(clips.video[0]) == [0] * T and clips.frame_times[0] == [0.0] * T
    # Frames at 0, 0.04, 0.08 s; targets 0, 0.1, 0.2, 0.3 s: the last frame is held, not looped.
    clips = decode_clips(str(media / "short.mp4"), [0.0], num_frames=T, frame_step=STEP,
                         audio_rate=AUDIO_RATE)
    assert indices(clips.video[0]) == [0, 2, 2, 2]
    assert clips.frame_times[0] == pytest.approx([0.0, 0.08, 0.08, 0.08])
    audio = clips.audio[0]
    assert audio.shape == (round(T * STEP * AUDIO_RATE),)
    # 0.12 s of tone (AAC pads it to whole 1024-sample frames), then zeros to the end of the clip.
    assert float(audio[:900].abs().max()) > 0.3 and float(audio[2048:].abs().max()) == 0


# ---------------------------------------------------------------------------------------------- #
# Loader: each bad file skipped and counted with its reason
# ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,reason", sorted(BAD.items()) + [("silent.mp4", "no_audio")])
def test_train_loader_replaces_and_counts_a_bad_file(media, tmp_path, name, reason):
    write_csv(tmp_path / "train.csv", [f"{media / name} 0"] + [f"{media / 'good.mp4'} {i}" for i in range(3)])
    (batch,) = list(construct_loader(make_cfg(tmp_path), "train"))
    # The bad video is tried once (a substitute is never a video already tried for the sample).
    assert batch["skip_reasons"].shape == (4, len(SKIP_REASONS))
    assert batch["skip_reasons"].sum(dim=0).tolist() == one_hot(reason)
    assert int(batch["skipped"].sum()) == 1 and bool(batch["valid"].all())
    assert 0 not in batch["index"].tolist()
    assert batch["video"][0].shape == (4, 3, T, 16, 16)
    assert batch["audio"][0].shape == (4, round(T * STEP * AUDIO_RATE))


def test_missing_audio_zeros_is_no_skip(media, tmp_path):
    write_csv(tmp_path / "train.csv", [f"{media / 'silent.mp4'} 0"] * 4)
    cfg = make_cfg(tmp_path, **{"STICA.AUDIO.MISSING": "zeros"})
    (batch,) = list(construct_loader(cfg, "train"))
    assert int(batch["skip_reasons"].sum()) == 0 and float(batch["audio"][0].abs().max()) == 0


class ConstantClassifier(ModelBase):
    """Predicts class 0 for every video; checks the shape of every view it is given."""

    predicts_labels = True

    def __init__(self, view_shape):
        super().__init__()
        self.view_shape = view_shape

    def forward_features(self, x):
        assert x.shape[1:] == self.view_shape and bool(torch.isfinite(x).all())
        return torch.tensor([[1.0, 0.0, 0.0]]).expand(x.shape[0], 3)

    def forward(self, x):
        return self.forward_features(x)

    def forward_train(self, batch):
        raise NotImplementedError("evaluation only")


def test_evaluation_counts_every_reason_with_two_workers(media, tmp_path):
    good = ["good.mp4", "odd_97x33.mp4", "fps240.mp4", "vfr.mp4", "gray.mp4", "yuv444p.mp4",
            "one_frame.mp4", "short.mp4"]
    bad = sorted(BAD) + ["silent.mp4"]  # no audio, STICA.AUDIO.MISSING "skip"
    write_csv(tmp_path / "test.csv", [f"{media / name} 0" for name in good + bad] + ["good.mp4 zero"])
    cfg = make_cfg(tmp_path, **{"DATA_LOADER.NUM_WORKERS": 2, "DATA_LOADER.MAX_BAD_FRACTION": 0.1})
    loader = construct_loader(cfg, "test")
    stats = evaluate(ConstantClassifier((3, T, 24, 24)), loader, cfg, torch.device("cpu"))
    del loader
    want = {r: 0 for r in SKIP_REASONS}
    want["bad_csv_line"] = 1  # dropped when loading: no sample, but counted
    for name in bad:
        want[BAD.get(name, "no_audio")] += 1
    assert {r: stats[f"skipped_{r}"] for r in SKIP_REASONS} == want
    assert want == {"missing": 1, "empty": 1, "truncated": 5, "undecodable": 1, "no_video": 1,
                    "no_audio": 1, "bad_csv_line": 1, "corrupt": 0, "non_finite_audio": 0}
    # Every odd-but-valid file is scored (all labels 0, all predicted 0); the bad ones are not.
    assert (stats["num_videos"], stats["num_skipped"], stats["top1_acc"]) == (len(good), len(bad), 100.0)


def test_substitutes_are_never_retried_for_the_same_sample(media, tmp_path):
    # Two bad videos and one good one: with 3 attempts, a sample always ends on the good one.
    write_csv(tmp_path / "train.csv", [f"{media / 'random.mp4'} 0", f"{media / 'zero.mp4'} 1",
                                       f"{media / 'good.mp4'} 2"])
    cfg = make_cfg(tmp_path, **{"DATA_LOADER.NUM_RETRIES": 3, "DATA_LOADER.MAX_BAD_FRACTION": 1.0})
    ds = Kinetics(cfg, "train")
    for seed in range(10):
        torch.manual_seed(seed)
        for index in (0, 1):
            s = ds[index]
            assert s["index"] == 2 and s["valid"] and s["skipped"] in (1, 2)
            counts = s["skip_reasons"].tolist()
            assert counts[SKIP_REASONS.index("undecodable")] <= 1 and counts[SKIP_REASONS.index("empty")] <= 1
    # Indexed with a seed (as train loaders do), the substitutes follow the seed alone.
    skipped = [ds[SeededIndex(0, seed)]["skipped"] for seed in range(10)]
    assert skipped == [ds[SeededIndex(0, seed)]["skipped"] for seed in range(10)]
    assert set(skipped) == {1, 2}
    write_csv(tmp_path / "train.csv", [f"{media / 'random.mp4'} 0", f"{media / 'zero.mp4'} 1"])
    with pytest.raises(RuntimeError, match=r"3 undecodable videos in a row .*random.mp4' "
                                           r"\((empty: 1, undecodable: 2|empty: 2, undecodable: 1)\)"):
        Kinetics(cfg, "train")[0]


# ---------------------------------------------------------------------------------------------- #
# Split files: bad lines skipped, counted and named; nothing usable stops
# ---------------------------------------------------------------------------------------------- #
BAD_LINES = ["good.mp4", "good.mp4 one", "good.mp4 3", "good.mp4 -1"]  # columns, integer, range


def test_bad_csv_lines_are_skipped_with_file_and_line(media, tmp_path, caplog):
    path = tmp_path / "train.csv"
    write_csv(path, [f"{media / 'good.mp4'} {i % 3}" for i in range(4)] + BAD_LINES)
    cfg = make_cfg(tmp_path, **{"DATA_LOADER.MAX_BAD_FRACTION": 0.5})
    with caplog.at_level(logging.WARNING, logger="stica_slowfast.data.datasets"):
        ds = Kinetics(cfg, "train")
    assert len(ds) == 4 and len(ds.bad_lines) == 4
    messages = [r.getMessage() for r in caplog.records]
    for n, why in zip(range(5, 9), ["expected '<path> <label>'", "not an integer", r"label 3 outside [0, 3)",
                                    "label -1 outside"]):
        assert any(m.startswith(f"{path}:{n}: ") and why in m and "bad_csv_line" in m for m in messages), n
    # Over the limit: stops when loading, naming the counts, a bad line and the key.
    cfg.DATA_LOADER.MAX_BAD_FRACTION = 0.4
    with pytest.raises(TooManyBadVideosError, match=rf"4 of the 8 lines .*bad_csv_line: 4.*"
                                                    rf"MAX_BAD_FRACTION = 0.4: {path}:5"):
        Kinetics(cfg, "train")


@pytest.mark.parametrize("lines", [[], ["", "  "], BAD_LINES])
def test_split_file_without_videos_stops_naming_it(tmp_path, lines):
    write_csv(tmp_path / "train.csv", lines)
    with pytest.raises(ValueError, match=f"{tmp_path / 'train.csv'}: no videos listed"):
        Kinetics(make_cfg(tmp_path, **{"DATA_LOADER.MAX_BAD_FRACTION": 1.0}), "train")


def test_readers_report_bad_lines_or_raise(tmp_path):
    path = tmp_path / "k.csv"
    write_csv(path, ["a.mp4 0", "b.mp4 7"])
    bad = []
    assert read_kinetics_csv(str(path), prefix="", num_classes=3, on_bad_line=bad.append) == [("a.mp4", 0)]
    assert bad == [f"{path}:2: label 7 outside [0, 3) (MODEL.NUM_CLASSES = 3)"]
    with pytest.raises(BadLineError, match=f"{path}:2"):  # strict without a handler
        read_kinetics_csv(str(path), prefix="", num_classes=3)
    # UCF-101: a wrong label, an unknown class; HMDB-51: a bad id. classInd.txt stays strict.
    (tmp_path / "classInd.txt").write_text("1 Archery\n2 Bowling\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/a.avi 1\nArchery/b.avi 2\nSurfing/c.avi 5\n")
    bad = []
    items = read_ucf101_split(str(tmp_path), "train", split_id=1, prefix="", num_classes=2,
                              on_bad_line=bad.append)
    lists = tmp_path / "trainlist01.txt"
    assert items == [("Archery/a.avi", 0)] and [m.split(": ")[0] for m in bad] == [f"{lists}:2", f"{lists}:3"]
    (tmp_path / "archery_test_split1.txt").write_text("a.avi 1\nb.avi 9\nc.avi 2\n")
    bad = []
    items = read_hmdb51_split(str(tmp_path), "train", split_id=1, prefix="", num_classes=1,
                              on_bad_line=bad.append)
    assert items == [("archery/a.avi", 0)] and len(bad) == 1 and "archery_test_split1.txt:2" in bad[0]
    (tmp_path / "classInd.txt").write_text("1 Archery\nBowling\n")
    with pytest.raises(ValueError, match="classInd.txt:2"):
        read_ucf101_split(str(tmp_path), "train", split_id=1, prefix="", num_classes=2,
                          on_bad_line=bad.append)


# ---------------------------------------------------------------------------------------------- #
# The epoch's accounting and its limit
# ---------------------------------------------------------------------------------------------- #
class MeanLoss(ModelBase):
    """A one-parameter 'model' whose training step is a loss on the batch's first view."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward_features(self, video):
        return self.weight * video.mean(dim=(1, 2, 3, 4))[:, None]

    def forward_train(self, batch):
        return {"loss": (self.weight * batch["video"][0].mean()) ** 2}


def run_epoch(cfg, loader):
    model = MeanLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return trainer.train_epoch(cfg, trainer.TrainStep(model), model, loader, optimizer, None, 0,
                               torch.device("cpu"), None)


def test_train_epoch_logs_counts_per_reason_and_stops_past_the_limit(media, tmp_path, monkeypatch):
    # 8 lines: an empty video, 6 good ones and a line with a bad label; one epoch = 1 batch of 7.
    write_csv(tmp_path / "train.csv", [f"{media / 'zero.mp4'} 0"] + [f"{media / 'good.mp4'} 1"] * 6
              + ["good.mp4 9"])
    cfg = make_cfg(tmp_path, **{"DATA_LOADER.MAX_BAD_FRACTION": 0.3, "TRAIN.BATCH_SIZE": 7, "LOG_PERIOD": 100})
    loader = construct_loader(cfg, "train")
    # Then pretend to be one of two ranks that saw the same: the all-reduce doubles every count,
    # while the split file's bad line counts once.
    monkeypatch.setattr(trainer.du, "get_world_size", lambda: 2)
    monkeypatch.setattr(trainer.du, "all_reduce_tensor", lambda t, average=True: t * 2)
    stats = run_epoch(cfg, loader)
    assert stats["_type"] == "train_epoch" and math.isfinite(stats["loss"])
    assert stats["num_skipped_videos"] == 3
    assert {r: stats[f"skipped_{r}"] for r in SKIP_REASONS} == {**{r: 0 for r in SKIP_REASONS}, "empty": 2,
                                                                  "bad_csv_line": 1}
    # 3 bad among 14 samples + 3 skipped = 17.6 % of the videos read: over a limit of 15 %.
    cfg.DATA_LOADER.MAX_BAD_FRACTION = 0.15
    with pytest.raises(TooManyBadVideosError, match=r"3 of the 17 videos read in training epoch 1 \(17.6 %\) "
                                                    r"were skipped \(empty: 2, bad_csv_line: 1\), more than "
                                                    r"DATA_LOADER.MAX_BAD_FRACTION = 0.15"):
        run_epoch(cfg, loader)


def test_epoch_skip_stats_limit():
    counts = count_reasons(["missing", "no_audio", "missing"])
    assert counts.tolist() == [2, 0, 0, 0, 0, 1, 0, 0, 0]
    stats = epoch_skip_stats(counts, 57, max_fraction=0.05, where="epoch 1")  # 3 of 60: exactly 5 %
    assert stats == {"num_skipped_videos": 3, "skipped_missing": 2, "skipped_empty": 0, "skipped_truncated": 0,
                     "skipped_undecodable": 0, "skipped_no_video": 0, "skipped_no_audio": 1,
                     "skipped_bad_csv_line": 0, "skipped_corrupt": 0, "skipped_non_finite_audio": 0}
    with pytest.raises(TooManyBadVideosError, match=r"3 of the 59 videos read in epoch 2 \(5.1 %\) were skipped "
                                                    r"\(missing: 2, no_audio: 1\).*STICA.AUDIO.MISSING zeros"):
        epoch_skip_stats(counts, 56, max_fraction=0.05, where="epoch 2")
    nothing = epoch_skip_stats(torch.zeros(len(SKIP_REASONS)), 0, max_fraction=0.0, where="")
    assert nothing["num_skipped_videos"] == 0
    with pytest.raises(TooManyBadVideosError):
        epoch_skip_stats(count_reasons(["empty"]), 10 ** 6, max_fraction=0.0, where="")
    check_bad_lines(["f:1: x"], 19, max_fraction=0.05, source="f")  # 1 of 20: allowed
    with pytest.raises(ValueError, match="unknown skip reason"):
        count_reasons(["cursed"])


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_max_bad_fraction_is_validated(value):
    cfg = get_cfg()
    assert cfg.DATA_LOADER.MAX_BAD_FRACTION == 0.05
    assert_and_infer_cfg(cfg)
    cfg.DATA_LOADER.MAX_BAD_FRACTION = value
    with pytest.raises(ConfigError, match=r"DATA_LOADER.MAX_BAD_FRACTION must lie in \[0, 1\]"):
        assert_and_infer_cfg(cfg)
