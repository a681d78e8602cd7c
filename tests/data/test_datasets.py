"""Datasets: split-file parsing, views per split, audio alignment, undecodable files, RNG."""

import contextlib
import logging
import math
import os

import numpy as np
import pytest
import torch

from stica_slowfast.config import get_cfg, merge_from_list
from stica_slowfast.data.datasets import (
    Hmdb51,
    Kinetics,
    SeededIndex,
    SplitFileError,
    Ucf101,
    read_hmdb51_split,
    read_kinetics_csv,
    read_ucf101_split,
)
from stica_slowfast.data.decoding import open_video_per_clip
from stica_slowfast.registry import get_dataset_class
from stica_slowfast.synthetic import write_video

FPS, N_FRAMES, H, W = 25, 50, 48, 64  # 2 s videos
AUDIO_IN, TONE_AT = 16000, 1.0


def coded_frames() -> np.ndarray:
    """Flat grey frames whose level encodes the frame index: 8 + 4 i."""
    levels = (8 + 4 * np.arange(N_FRAMES)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (N_FRAMES, H, W, 3)).copy()


def ramp_frames() -> np.ndarray:
    """Static grey ramp along the width (4 x): tells which spatial crop was taken."""
    ramp = (4 * np.arange(W)).astype(np.uint8)
    return np.broadcast_to(ramp[None, None, :, None], (N_FRAMES, H, W, 3)).copy()


def tone() -> np.ndarray:
    t = np.arange(int(N_FRAMES / FPS * AUDIO_IN)) / AUDIO_IN
    return (0.5 * np.sin(2 * np.pi * 440 * t) * (t >= TONE_AT)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Good videos (with and without audio) and three undecodable files, under videos/."""
    root = tmp_path_factory.mktemp("media")
    vids = root / "videos"
    vids.mkdir()
    write_video(str(vids / "a.mp4"), coded_frames(), fps=FPS, audio=tone(), audio_rate=AUDIO_IN)
    write_video(str(vids / "silent.mp4"), coded_frames(), fps=FPS)
    write_video(str(vids / "ramp.mp4"), ramp_frames(), fps=FPS)
    (vids / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    data = (vids / "a.mp4").read_bytes()
    (vids / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return root


def make_cfg(data_dir, **overrides):
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = str(data_dir)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 3, 30  # 0.1 s step
    cfg.DATA.TRAIN_JITTER_SCALES = [32, 40]
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 24, 32
    cfg.MODEL.NUM_CLASSES = 3
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 3, 3
    cfg.DATA_LOADER.NUM_RETRIES = 5
    merge_from_list(cfg, [x for item in overrides.items() for x in item])
    return cfg


def write_csv(data_dir, split, rows, sep=" "):
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f"{split}.csv"), "w") as f:
        f.writelines(f"{p}{sep}{label}\n" for p, label in rows)


def grey_level(clip: torch.Tensor, cfg) -> torch.Tensor:
    """Per-frame mean level (0-255) of the first channel of a normalised (C, T, H, W) clip."""
    return (clip[0] * cfg.DATA.STD[0] + cfg.DATA.MEAN[0]).mean(dim=(1, 2)) * 255


def frame_index(clip, cfg):
    """Source frame index of each frame of a clip of ``coded_frames``."""
    return [round((float(v) - 8) / 4) for v in grey_level(clip, cfg)]


# ---------------------------------------------------------------------------------------------- #
# Parsing
# ---------------------------------------------------------------------------------------------- #
def test_kinetics_csv_paths_and_labels(tmp_path):
    d = tmp_path / "ann"
    write_csv(d, "train", [("x/a.mp4", 0), ("/abs/b.mp4", 2), ("with space.mp4", 1)])
    items = read_kinetics_csv(str(d / "train.csv"), prefix="/videos", num_classes=3)
    assert items == [("/videos/x/a.mp4", 0), ("/abs/b.mp4", 2), ("/videos/with space.mp4", 1)]
    # Empty PATH_PREFIX: relative to PATH_TO_DATA_DIR; a custom separator.
    write_csv(d, "val", [("a.mp4", 1)], sep=",")
    cfg = make_cfg(d, **{"DATA.PATH_LABEL_SEPARATOR": ","})
    cfg.DATA.TRAIN_JITTER_SCALES = [32, 40]
    assert Kinetics(cfg, "val").items == [(os.path.join(str(d), "a.mp4"), 1)]
    cfg.DATA.PATH_PREFIX = "/data/k400"
    assert Kinetics(cfg, "val").items == [("/data/k400/a.mp4", 1)]


@pytest.mark.parametrize("bad,message", [
    ("c.mp4", "expected '<path> <label>'"),
    ("c.mp4 one", "not an integer"),
    ("c.mp4 3", r"label 3 outside \[0, 3\)"),
    ("c.mp4 -1", r"label -1 outside"),
])
def test_kinetics_bad_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "train.csv"
    path.write_text(f"a.mp4 0\n\nb.mp4 1\n{bad}\n")
    with pytest.raises(ValueError, match=message) as err:
        read_kinetics_csv(str(path), prefix="", num_classes=3)
    assert f"{path}:4" in str(err.value)  # line numbers count the blank line


def write_ucf_lists(d):
    os.makedirs(d, exist_ok=True)
    (d / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n3 HandstandPushups\n")
    (d / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n")
    (d / "testlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi\nHandStandPushups/v_HandStandPushups_g01_c01.avi\n"
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    (d / "trainlist02.txt").write_text("HandstandPushups/v_HandStandPushups_g02_c01.avi 3\n")
    (d / "testlist02.txt").write_text("Archery/v_Archery_g02_c01.avi\n")


def test_ucf101_official_lists(tmp_path):
    d = tmp_path / "ucf"
    write_ucf_lists(d)
    train = read_ucf101_split(str(d), "train", split_id=1, prefix="/ucf", num_classes=3)
    assert train == [("/ucf/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
                     ("/ucf/Archery/v_Archery_g08_c01.avi", 1)]
    test = read_ucf101_split(str(d), "test", split_id=1, prefix="/ucf", num_classes=3)
    # Test labels come from the folder (case-insensitively, as in the official lists).
    assert [label for _, label in test] == [1, 2, 0]
    assert read_ucf101_split(str(d), "val", split_id=1, prefix="/ucf", num_classes=3) == test
    cfg = make_cfg(d, **{"TRAIN.DATASET": "ucf101", "STICA.DATA.SPLIT": 2})
    assert Ucf101(cfg, "train").items == [
        (os.path.join(str(d), "HandstandPushups/v_HandStandPushups_g02_c01.avi"), 2)]
    assert [lab for _, lab in Ucf101(cfg, "val").items] == [1]


def test_ucf101_errors_name_the_line(tmp_path):
    d = tmp_path / "ucf"
    write_ucf_lists(d)
    (d / "testlist01.txt").write_text("Archery/v_a.avi\nBowling/v_Bowling_g01_c01.avi\n")
    with pytest.raises(ValueError, match=r"testlist01.txt:2: .*'Bowling'"):
        read_ucf101_split(str(d), "test", split_id=1, prefix="", num_classes=3)
    (d / "trainlist01.txt").write_text("Archery/v_a.avi 2\nArchery/v_b.avi\n")
    with pytest.raises(ValueError, match="trainlist01.txt:2"):
        read_ucf101_split(str(d), "train", split_id=1, prefix="", num_classes=3)
    (d / "trainlist01.txt").write_text("Archery/v_a.avi 1\n")
    with pytest.raises(ValueError, match="trainlist01.txt:1: label 1 disagrees"):
        read_ucf101_split(str(d), "train", split_id=1, prefix="", num_classes=3)
    (d / "trainlist01.txt").write_text("Archery/v_a.avi 2\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:1: label 1 outside \[0, 1\)"):
        read_ucf101_split(str(d), "train", split_id=1, prefix="", num_classes=1)
    with pytest.raises(SplitFileError, match="trainlist03.txt"):
        read_ucf101_split(str(d), "train", split_id=3, prefix="", num_classes=3)


def write_hmdb_lists(d, split_id=1):
    os.makedirs(d, exist_ok=True)
    (d / f"ride_bike_test_split{split_id}.txt").write_text("r1.avi 1 \nr2.avi 2 \nr3.avi 0 \n")
    (d / f"brush_hair_test_split{split_id}.txt").write_text("b1.avi 2\nb2.avi 1\n")
    (d / "brush_hair_test_split9.txt").write_text("other_split.avi 1\n")


def test_hmdb51_official_lists(tmp_path):
    d = tmp_path / "hmdb"
    write_hmdb_lists(d)
    train = read_hmdb51_split(str(d), "train", split_id=1, prefix="/h", num_classes=2)
    # Classes in sorted order: brush_hair = 0, ride_bike = 1; id 0 (unused) is dropped.
    assert train == [("/h/brush_hair/b2.avi", 0), ("/h/ride_bike/r1.avi", 1)]
    test = read_hmdb51_split(str(d), "test", split_id=1, prefix="/h", num_classes=2)
    assert test == [("/h/brush_hair/b1.avi", 0), ("/h/ride_bike/r2.avi", 1)]
    cfg = make_cfg(d, **{"MODEL.NUM_CLASSES": 2, "DATA.PATH_PREFIX": "/h"})
    assert Hmdb51(cfg, "val").items == test
    assert get_dataset_class("HMDB51") is Hmdb51


def test_hmdb51_errors(tmp_path):
    d = tmp_path / "hmdb"
    write_hmdb_lists(d)
    (d / "ride_bike_test_split1.txt").write_text("r1.avi 1\nr2.avi 3\n")
    with pytest.raises(ValueError, match=r"ride_bike_test_split1.txt:2: expected '<video> <0\|1\|2>'"):
        read_hmdb51_split(str(d), "train", split_id=1, prefix="", num_classes=2)
    write_hmdb_lists(d)
    with pytest.raises(ValueError, match=r"ride_bike_test_split1.txt:1: label 1 outside \[0, 1\)"):
        read_hmdb51_split(str(d), "train", split_id=1, prefix="", num_classes=1)
    with pytest.raises(SplitFileError, match="_test_split2.txt"):
        read_hmdb51_split(str(d), "train", split_id=2, prefix="", num_classes=2)


def test_bad_split_and_empty_split(tmp_path):
    write_csv(tmp_path, "train", [])
    cfg = make_cfg(tmp_path)
    with pytest.raises(ValueError, match=r"train.csv: no videos listed \(the file is empty"):
        Kinetics(cfg, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        Kinetics(cfg, "eval")


# ---------------------------------------------------------------------------------------------- #
# Samples
# ---------------------------------------------------------------------------------------------- #
def test_train_rho_clips_with_own_augmentation(media):
    write_csv(media / "k", "train", [("a.mp4", 2), ("ramp.mp4", 0)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "DATA.TRAIN_CROP_NUM_TEMPORAL": 3})
    torch.manual_seed(0)
    ds = Kinetics(cfg, "train")
    starts, crops = set(), set()
    for _ in range(4):
        s = ds[0]
        # No audio requested.
        assert set(s) == {"video", "label", "index", "skipped", "skip_reasons", "valid"}
        assert (s["label"], s["index"], s["skipped"], s["valid"]) == (2, 0, 0, True)
        assert len(s["video"]) == 3
        for clip in s["video"]:
            assert clip.shape == (3, 4, 24, 24) and clip.dtype == torch.float32
            idx = frame_index(clip, cfg)
            # Consecutive sampled frames are 0.1 s = 2.5 source frames apart.
            assert all(b - a in (2, 3) for a, b in zip(idx, idx[1:])), idx
            assert 0 <= idx[0] and idx[-1] <= N_FRAMES - 1
            starts.add(idx[0])
        # The ramp video shows where each clip was cropped (and whether it was flipped).
        for clip in ds[1]["video"]:
            # (C, T, H, W) -> first channel's level per output column (W,): first and last column.
            columns = (clip[0] * cfg.DATA.STD[0] + cfg.DATA.MEAN[0]).mean(dim=(0, 1)) * 255
            crops.add((round(float(columns[0])), round(float(columns[-1]))))
    assert len(starts) > 4 and len(crops) > 4  # independent starts and crops per clip


def test_train_spatial_crops_share_their_clip(media):
    # rho = 1 SSL: one clip time, two independently augmented crops (temporal-major views).
    write_csv(media / "k", "train", [("a.mp4", 2)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "DATA.TRAIN_CROP_NUM_TEMPORAL": 2, "DATA.TRAIN_CROP_NUM_SPATIAL": 2})
    torch.manual_seed(0)
    ds = Kinetics(cfg, "train")
    assert ds.num_views == 4
    views = ds[0]["video"]
    assert len(views) == 4
    idx = [frame_index(v, cfg) for v in views]
    assert idx[0] == idx[1] and idx[2] == idx[3]  # crops of one clip: the same frames


def test_train_is_reproducible_from_torch_seed(media):
    write_csv(media / "k", "train", [("a.mp4", 2)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos")})
    out = []
    for _ in range(2):
        torch.manual_seed(123)
        ds = Kinetics(cfg, "train")
        out.append([ds[0]["video"][0] for _ in range(2)])
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert not torch.equal(out[0][0], out[0][1])


def test_seeded_index_draws_from_its_seed_only(media):
    write_csv(media / "k", "train", [("a.mp4", 2), ("ramp.mp4", 0)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos")})
    ds = Kinetics(cfg, "train")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = ds[SeededIndex(1, 5)]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left as it was
    ds[0], ds[1]  # draws from the process's generators
    torch.manual_seed(1)
    again = Kinetics(cfg, "train")[(1, 5)]  # another dataset, another process state, a plain tuple
    assert first["index"] == again["index"] == 1
    assert all(torch.equal(a, b) for a, b in zip(first["video"], again["video"]))
    other = ds[SeededIndex(1, 6)]
    assert not all(torch.equal(a, b) for a, b in zip(first["video"], other["video"]))


def test_the_decoder_is_an_argument(media):
    """A dataset opens its videos with the ``opener`` it is given: the per-clip reference decoder
    makes the same sample (frames and audio) as the default one-pass decoder for the same seed."""
    write_csv(media / "k", "train", [("a.mp4", 2)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "DATA.TRAIN_CROP_NUM_TEMPORAL": 3, "STICA.AUDIO.ENABLE": True,
                                   "STICA.AUDIO.SAMPLE_RATE": 8000})
    opened = []

    @contextlib.contextmanager
    def recording_opener(path, *, threads=False):
        opened.append(path)
        with open_video_per_clip(path, threads=threads) as video:
            yield video

    default = Kinetics(cfg, "train")[SeededIndex(0, 7)]
    reference = Kinetics(cfg, "train", opener=recording_opener)[SeededIndex(0, 7)]
    assert opened == [str(media / "videos" / "a.mp4")]
    assert len(default["video"]) == len(reference["video"]) == 3
    assert all(torch.equal(a, b) for a, b in zip(default["video"], reference["video"]))
    # A pure tone: the same samples but for float rounding, so the same spectrograms but for it.
    for a, b in zip(default["audio"], reference["audio"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3)


def test_clip_distance_bounds_reach_the_sampler(media):
    write_csv(media / "k", "train", [("a.mp4", 2)])
    write_csv(media / "k", "val", [("a.mp4", 2)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos")})
    assert Kinetics(cfg, "train").clip_deltas == {"min_delta": 0.0, "max_delta": math.inf}
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "CONTRASTIVE.DELTA_CLIPS_MIN": 0.2, "CONTRASTIVE.DELTA_CLIPS_MAX": 0.5})
    assert Kinetics(cfg, "train").clip_deltas == {"min_delta": 0.2, "max_delta": 0.5}
    assert Kinetics(cfg, "val").clip_deltas == {}  # val/test views stay uniform


def test_val_is_one_centred_clip(media):
    write_csv(media / "k", "val", [("a.mp4", 1)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos")})
    s = Kinetics(cfg, "val")[0]
    (clip,) = s["video"]
    assert clip.shape == (3, 4, 32, 32)
    # Centred start: (2.0 - 0.4) / 2 = 0.8 s -> frames 20, 22, 25, 27.
    assert frame_index(clip, cfg) == [20, 22, 25, 27]
    assert s["valid"] and s["skipped"] == 0


def test_test_views_temporal_major_with_aligned_audio(media):
    write_csv(media / "k", "test", [("a.mp4", 1), ("silent.mp4", 0), ("ramp.mp4", 2)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "STICA.AUDIO.ENABLE": True, "STICA.AUDIO.SAMPLE_RATE": 8000,
                                   "STICA.AUDIO.FEATURE": "waveform", "STICA.AUDIO.MISSING": "zeros"})
    ds = Kinetics(cfg, "test")
    s = ds[0]
    assert len(s["video"]) == len(s["audio"]) == 9
    # Uniform starts 0, 0.8, 1.6 s; view = t * 3 + s.
    first = [frame_index(v, cfg)[0] for v in s["video"]]
    assert first == [0, 0, 0, 20, 20, 20, 40, 40, 40]
    ramp = ds[2]["video"]
    for t in range(3):
        # Mean level of each crop of the ramp: left, centre, right (crops start 0, 8, 16 px).
        means = [float(grey_level(ramp[t * 3 + k], cfg).mean()) for k in range(3)]
        assert means == pytest.approx([4 * (23.5 + left) for left in (0, 8, 16)], abs=2)
    n = round(0.4 * 8000)
    assert all(a.shape == (n,) and a.dtype == torch.float32 for a in s["audio"])
    loud = [np.flatnonzero(np.abs(a.numpy()) > 0.05) for a in s["audio"]]
    assert len(loud[0]) == 0  # [0, 0.4) s: silence
    assert abs(loud[3][0] - 0.2 * 8000) <= 0.004 * 8000  # tone at 1.0 s, clip from 0.8 s
    assert loud[6][0] <= 0.004 * 8000
    assert torch.equal(s["audio"][3], s["audio"][5])  # spatial views share their clip's audio
    # A file without audio gets silent waveforms of the same length (STICA.AUDIO.MISSING "zeros").
    s = ds[1]
    assert all(a.shape == (n,) and float(a.abs().max()) == 0 for a in s["audio"])


def test_audio_window_centred_on_the_clip(media):
    # STICA.AUDIO.DURATION 1 s around 0.4 s clips starting 0, 0.8, 1.6 s: windows [-0.3, 0.7),
    # [0.5, 1.5), [1.3, 2.3), zero-padded outside the 2 s file.
    write_csv(media / "k", "test", [("a.mp4", 1)])
    cfg = make_cfg(media / "k", **{"DATA.PATH_PREFIX": str(media / "videos"), "TEST.NUM_SPATIAL_CROPS": 1,
                                   "STICA.AUDIO.ENABLE": True, "STICA.AUDIO.SAMPLE_RATE": 8000,
                                   "STICA.AUDIO.FEATURE": "waveform", "STICA.AUDIO.DURATION": 1.0})
    s = Kinetics(cfg, "test")[0]
    assert [a.shape for a in s["audio"]] == [(8000,)] * 3
    loud = [np.flatnonzero(np.abs(a.numpy()) > 0.05) for a in s["audio"]]
    tol = 0.004 * 8000
    assert len(loud[0]) == 0  # [-0.3, 0.7) s: before the tone
    assert abs(loud[1][0] - 0.5 * 8000) <= tol  # tone at 1.0 s, window from 0.5 s
    assert loud[2][0] <= tol and abs(loud[2][-1] - 0.7 * 8000) <= tol  # file ends 0.7 s in
    assert float(s["audio"][2][round(0.85 * 8000):].abs().max()) == 0  # zero-padded past the end


@pytest.fixture
def corrupt_csv(media):
    rows = [("junk.mp4", 0), ("truncated.mp4", 1), ("missing.mp4", 2), ("a.mp4", 1)]
    for split in ("train", "test"):
        write_csv(media / "bad", split, rows)
    return media / "bad"


def test_train_skips_and_counts_undecodable(media, corrupt_csv, caplog):
    cfg = make_cfg(corrupt_csv, **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "DATA_LOADER.NUM_RETRIES": 100})
    torch.manual_seed(0)
    ds = Kinetics(cfg, "train")
    for index in range(3):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="stica_slowfast.data.datasets"):
            s = ds[index]
        # Only a.mp4 decodes; every failure before it is counted and logged with the file name.
        assert (s["index"], s["label"], s["valid"]) == (3, 1, True)
        assert s["skipped"] >= 1 and s["skipped"] == len(caplog.records)
        assert ds.items[index][0] in caplog.records[0].getMessage()
    assert ds[3]["skipped"] == 0


def test_train_gives_up_after_num_retries(media, corrupt_csv):
    write_csv(corrupt_csv, "train", [("junk.mp4", 0), ("missing.mp4", 2)])
    cfg = make_cfg(corrupt_csv, **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "DATA_LOADER.NUM_RETRIES": 4})
    with pytest.raises(RuntimeError, match="4 undecodable videos in a row .*junk.mp4"):
        Kinetics(cfg, "train")[0]


def test_test_flags_undecodable_without_substituting(media, corrupt_csv):
    cfg = make_cfg(corrupt_csv, **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "STICA.AUDIO.ENABLE": True, "STICA.AUDIO.SAMPLE_RATE": 8000})
    ds = Kinetics(cfg, "test")
    # Log spectrograms of 0.4 s at 8 kHz: 129 bins (n_fft 256), 1 + (3200 - 160) // 80 = 39 frames.
    spec_shape = (1, 129, 39)
    for index in range(3):
        s = ds[index]
        assert (s["index"], s["label"], s["valid"], s["skipped"]) == (index, index, False, 1)
        assert len(s["video"]) == len(s["audio"]) == 9
        assert all(v.shape == (3, 4, 32, 32) and float(v.abs().max()) == 0 for v in s["video"])
        assert all(a.shape == spec_shape and float(a.abs().max()) == 0 for a in s["audio"])
    s = ds[3]
    assert s["valid"] and s["skipped"] == 0 and float(s["video"][0].abs().max()) > 0
    assert all(a.shape == spec_shape for a in s["audio"])
    assert float(s["audio"][0].abs().max()) == 0  # [0, 0.4) s is silent: a constant, standardised to 0
    assert float(s["audio"][3].std()) > 0.5  # [0.8, 1.2) s holds the tone's onset


def test_train_videos_read_for_evaluation(media, corrupt_csv):
    # The kNN memory bank: train videos, val sampling (one centred clip), never substituted.
    cfg = make_cfg(corrupt_csv, **{"DATA.PATH_PREFIX": str(media / "videos"),
                                   "DATA.TRAIN_CROP_NUM_TEMPORAL": 3})
    ds = Kinetics(cfg, "train", sampling="val")
    assert (ds.split, ds.sampling, ds.num_views) == ("train", "val", 1)
    assert ds.clip_deltas == {}
    s = ds[0]  # junk.mp4
    assert (s["index"], s["valid"], s["skipped"]) == (0, False, 1)
    good = ds[3]
    assert good["valid"] and frame_index(good["video"][0], cfg) == [20, 22, 25, 27]
    assert torch.equal(good["video"][0], ds[3]["video"][0])  # deterministic
    assert Kinetics(cfg, "train", sampling="test").num_views == 9
    with pytest.raises(ValueError, match="sampling"):
        Kinetics(cfg, "train", sampling="eval")


def test_ucf101_decodes_from_class_folders(tmp_path):
    d = tmp_path / "ucf"
    write_ucf_lists(d)
    video = d / "Archery" / "v_Archery_g01_c01.avi"  # mp4 data under .avi: probed by content
    video.parent.mkdir()
    write_video(str(video), coded_frames(), fps=FPS)
    (d / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    cfg = make_cfg(d, **{"TEST.DATASET": "ucf101", "TEST.NUM_ENSEMBLE_VIEWS": 1,
                         "TEST.NUM_SPATIAL_CROPS": 1})
    s = get_dataset_class(cfg.TEST.DATASET)(cfg, "test")[0]
    assert s["label"] == 1 and s["valid"] and len(s["video"]) == 1
    assert frame_index(s["video"][0], cfg) == [math.floor((0.8 + 0.1 * i) * FPS) for i in range(4)]
