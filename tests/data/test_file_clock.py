"""The clock of a file: clips are drawn from the video stream's own span, in every container.

Every file is written here with PyAV: tiny (64 x 48) numbered frames (grey level = index), streams of
different lengths and starts (audio 2 s longer than the video; video starting 1 s after the audio),
in Matroska / WebM (no stream durations), MPEG-TS and MPEG-PS (whose stream durations FFmpeg
estimates, and MPEG-PS under-reports). Each test first checks that its file really has the property
it is about, then that clip starts lie in the video's span and the frames equal a full decode's at
the returned times, with the audio where a full decode puts it. Also: MPEG-TS files joined together
(timestamps that restart), and cover art (an ``attached_pic`` stream), which is no video.
"""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import stica_slowfast.data  # noqa: F401  (registers the datasets)
from stica_slowfast.config import get_cfg
from stica_slowfast.data.bad_input import SKIP_REASONS
from stica_slowfast.data.datasets import Kinetics
from stica_slowfast.data.decoding import DecodeError, decode_clips, get_clip_starts, get_duration, open_video
from stica_slowfast.data.decoding import video_file

H, W, FPS = 48, 64, 25
LEVEL0, LEVEL_STEP = 8, 3  # frame i is a flat grey of LEVEL0 + LEVEL_STEP * i
T, STEP = 6, 0.12  # frames per clip and seconds between them (step > frame period: no frame twice)
AUDIO_RATE = 16000  # of the returned audio
TONE_AT = 0.8  # seconds after the first video frame, where every file's tone begins


def grey(i: int) -> np.ndarray:
    return np.full((H, W, 3), LEVEL0 + LEVEL_STEP * i, np.uint8)


def audio_frames(stream, wave: np.ndarray, first_sample: int, rate: int):
    """``wave`` (mono float32) as audio frames in the encoder's sample format and layout, timed from
    ``first_sample`` (in 1 / rate)."""
    ctx = stream.codec_context
    if not ctx.is_open:
        ctx.open()  # its frame size is known once open
    size = ctx.frame_size or 1024
    fmt = ctx.format
    channels = len(ctx.layout.channels)
    for s in range(0, len(wave), size):
        chunk = wave[s:s + size]
        if fmt.name[:3] in ("s16", "s32"):
            dtype = np.int16 if fmt.name.startswith("s16") else np.int32
            chunk = (chunk.astype(np.float64) * np.iinfo(dtype).max).astype(dtype)
        planes = np.repeat(chunk[None], channels, 0) if fmt.is_planar else np.repeat(chunk, channels)[None]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format=fmt.name, layout=ctx.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = rate, first_sample + s, Fraction(1, rate)
        yield frame


def write_av(path, fmt, vcodec, acodec, *, video_s=2.0, audio_s=2.0, video_at=0.0, audio_first=False,
             bframes=0, audio_rate=48000, layout="mono", first_level=0):
    """A file of ``video_s`` seconds of numbered frames starting ``video_at`` seconds after its audio,
    which lasts ``audio_s`` seconds: silence, then a 440 Hz tone from ``TONE_AT`` s after the first
    video frame. Packets are interleaved by decode time."""
    with av.open(str(path), "w", format=fmt) as c:
        def add_video():
            vs = c.add_stream(vcodec, rate=FPS)
            vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
            vs.options = {"g": "10", "bf": str(bframes)} if vcodec != "libx264" else \
                {"g": "10", "bframes": str(bframes), "preset": "veryfast"}
            return vs

        def add_audio():
            a = c.add_stream(acodec, rate=audio_rate, layout=layout)
            if acodec == "vorbis":
                a.codec_context.options = {"strict": "experimental"}
            return a

        if audio_first:
            a = add_audio()
            vs = add_video()
        else:
            vs = add_video()
            a = add_audio()
        packets = []
        offset = int(round(video_at * FPS))
        for i in range(int(round(video_s * FPS))):
            frame = av.VideoFrame.from_ndarray(grey(first_level + i), format="rgb24")
            frame.pts, frame.time_base = offset + i, Fraction(1, FPS)
            packets += vs.encode(frame)
        packets += vs.encode()
        t = np.arange(int(round(audio_s * audio_rate))) / audio_rate
        wave = (0.5 * np.sin(2 * np.pi * 440 * t) * (t >= video_at + TONE_AT)).astype(np.float32)
        for frame in audio_frames(a, wave, 0, audio_rate):
            packets += a.encode(frame)
        packets += a.encode()
        for p in sorted(packets, key=lambda p: float((p.dts if p.dts is not None else p.pts) * p.time_base)):
            c.mux(p)


def full_decode(path):
    """Every video frame (time, RGB) and the first loud audio sample's time, by plain PyAV from the
    first packet; times in seconds from the first video frame."""
    with av.open(path) as c:
        vs = next(s for s in c.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(vs)]
    origin = frames[0][0]
    onset = None
    with av.open(path) as c:
        if c.streams.audio:
            for f in c.decode(c.streams.audio[0]):
                samples = f.to_ndarray()[0]
                scale = np.iinfo(samples.dtype).max if samples.dtype.kind == "i" else 1
                loud = np.flatnonzero(np.abs(samples) > 0.05 * scale)
                if len(loud):
                    step = len(f.layout.channels) if not f.format.is_planar else 1
                    onset = float(f.pts * f.time_base) + loud[0] // step / f.sample_rate - origin
                    break
    return [(t - origin, rgb) for t, rgb in frames], onset


def seconds(stream, value):
    return None if value is None else float(value * stream.time_base)


def container_facts(path):
    """What the header says: the container's duration, the streams' durations, starts and order."""
    with av.open(path) as c:
        vs = next(s for s in c.streams.video if not s.disposition & av.stream.Disposition.attached_pic)
        a = c.streams.audio[0]
        return dict(container_s=c.duration / av.time_base, video_duration=seconds(vs, vs.duration),
                    video_start=seconds(vs, vs.start_time), audio_start=seconds(a, a.start_time),
                    video_index=vs.index)


# name: (container, extension, video codec, audio codec, writer arguments)
CASES = {
    "mkv_h264_aac_audio_longer": ("matroska", "mkv", "libx264", "aac", dict(audio_s=4.0, bframes=2)),
    "mkv_mpeg4_mp3_video_late": ("matroska", "mkv", "mpeg4", "libmp3lame",
                                 dict(video_at=1.0, audio_s=3.0, audio_first=True)),
    "webm_vp8_opus_audio_longer": ("webm", "webm", "libvpx", "libopus", dict(audio_s=4.0)),
    "webm_vp9_vorbis_video_late": ("webm", "webm", "libvpx-vp9", "vorbis",
                                   dict(video_at=1.0, audio_s=3.0, audio_rate=44100, layout="stereo")),
    "ts_h264_aac_video_late": ("mpegts", "ts", "libx264", "aac", dict(video_at=1.0, audio_s=3.0, bframes=2)),
    "ts_mpeg2_mp2_audio_longer": ("mpegts", "ts", "mpeg2video", "mp2", dict(audio_s=4.0, audio_first=True)),
    "mpg_mpeg2_mp2_video_late": ("mpeg", "mpg", "mpeg2video", "mp2",
                                 dict(video_at=1.0, audio_s=3.0, bframes=2, audio_first=True)),
    "mpg_mpeg1_mp2_audio_longer": ("mpeg", "mpg", "mpeg1video", "mp2", dict(audio_s=4.0)),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("file_clock")
    paths = {}
    for name, (fmt, ext, vcodec, acodec, kw) in CASES.items():
        paths[name] = str(d / f"{name}.{ext}")
        write_av(paths[name], fmt, vcodec, acodec, **kw)
    return paths


@pytest.mark.parametrize("name", sorted(CASES))
def test_clips_lie_in_the_video_span_and_equal_a_full_decode(files, name):
    path = files[name]
    fmt, _, _, _, kw = CASES[name]
    frames, onset = full_decode(path)
    span = frames[-1][0] + 1 / FPS  # the video's own seconds
    facts = container_facts(path)
    # The file has the property the case is about (so this cannot pass vacuously).
    assert len(frames) == 50 and span == pytest.approx(2.0, abs=1e-3)
    if fmt in ("matroska", "webm"):
        assert facts["video_duration"] is None  # Matroska streams carry no duration of their own
    if "audio_longer" in name:
        assert facts["container_s"] > span + 1.5  # the container's span is the audio's
    if "video_late" in name:
        assert facts["video_start"] - facts["audio_start"] == pytest.approx(1.0, abs=0.05)
        assert facts["container_s"] > span + 0.5
    if fmt == "mpeg" and kw.get("bframes"):
        assert facts["video_duration"] < span - 0.1  # FFmpeg's estimate for MPEG-PS under-reports
    if kw.get("audio_first"):
        assert facts["video_index"] != 0  # the last frames need the flush to reach the video decoder

    by_time = {round(t, 4): rgb for t, rgb in frames}
    rng = np.random.default_rng(0)
    with open_video(path) as vf:
        assert vf.duration == pytest.approx(span, abs=2e-3)
        clip_s = T * STEP
        draws = [get_clip_starts(vf.duration, clip_s, 4, mode="uniform")]
        draws += [get_clip_starts(vf.duration, clip_s, 3, mode="random", rng=rng) for _ in range(3)]
        for starts in draws:
            assert max(starts) <= span - clip_s + 2e-3
            out = vf.decode_clips(starts, num_frames=T, frame_step=STEP, audio_rate=AUDIO_RATE)
            for clip, times in zip(out.video, out.frame_times):
                # Inside the video, never a held frame (the step is longer than a frame period).
                assert 0.0 <= times[0] and times[-1] <= frames[-1][0] + 1e-6
                assert all(b > a for a, b in zip(times, times[1:]))
                for rgb, t in zip(clip, times):
                    assert np.array_equal(rgb.numpy(), by_time[round(t, 4)])
        # The last uniform clip ends at the end of the video: the duration is not under-reported.
        last = vf.decode_clips(draws[0][-1:], num_frames=T, frame_step=STEP)
        assert last.frame_times[0][-1] >= frames[-1][0] - STEP
        # The last frame itself is decoded (the decoder's flush reaches it, whatever its stream).
        end = vf.decode_clips([frames[-1][0]], num_frames=2, frame_step=STEP)
        assert end.frame_times[0] == pytest.approx([frames[-1][0]] * 2)
        assert np.array_equal(end.video[0][0].numpy(), frames[-1][1])
        # The audio is where a full decode puts it, and where it was written (codec delays aside).
        assert onset == pytest.approx(TONE_AT, abs=0.05)
        out = vf.decode_clips([0.5], num_frames=T, frame_step=STEP, audio_rate=AUDIO_RATE)
        loud = np.flatnonzero(np.abs(out.audio[0].numpy()) > 0.05)
        assert len(loud) and abs(0.5 + loud[0] / AUDIO_RATE - onset) <= 0.004


def test_duration_is_measured_once_per_file(files, monkeypatch):
    """The span is read from packets once; a file opened again takes it from the cache, a file
    rewritten (other size or mtime) is measured again."""
    path = files["webm_vp8_opus_audio_longer"]
    monkeypatch.setattr(video_file, "_DURATIONS", {})  # measured by no earlier test
    scans = []
    scan = video_file.VideoFile._scan_span
    monkeypatch.setattr(video_file.VideoFile, "_scan_span", lambda self: scans.append(1) or scan(self))
    first = get_duration(path)
    assert scans == [1]

    def no_scan(self):
        raise AssertionError("measured again")

    monkeypatch.setattr(video_file.VideoFile, "_scan_span", no_scan)
    assert get_duration(path) == first
    with open(path, "ab") as f:  # a different file at the same path
        f.write(b"\0" * 16)
    with pytest.raises(AssertionError, match="measured again"):
        get_duration(path)


def test_joined_transport_streams_time_video_by_order_and_skip_audio(tmp_path):
    """Two MPEG-TS files joined byte for byte: the second one's timestamps restart. Its video is
    timed by decode order (2 s, each frame once, in file order); asked for audio, the file is skipped
    ("undecodable", naming the restart) rather than decoded with misplaced audio."""
    parts = []
    for k in range(2):
        parts.append(tmp_path / f"part{k}.ts")
        write_av(parts[-1], "mpegts", "libx264", "aac", video_s=1.0, audio_s=1.0, bframes=2,
                 first_level=25 * k)
    path = tmp_path / "joined.ts"
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    path = str(path)
    # The property: video decode timestamps go back where the second file begins.
    with av.open(path) as c:
        dts = [p.dts for p in c.demux(c.streams.video[0]) if p.dts is not None]
        header_s = float(c.streams.video[0].duration * c.streams.video[0].time_base)
    assert any(b < a for a, b in zip(dts, dts[1:])) and header_s < 1.5
    with av.open(path) as c:
        reference = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(reference) == 50

    assert get_duration(path) == pytest.approx(2.0, abs=1e-3)
    starts = [0.1, 0.7, 1.2]  # the second clip crosses the join
    out = decode_clips(path, starts, num_frames=T, frame_step=STEP)
    for clip, times in zip(out.video, out.frame_times):
        for rgb, t in zip(clip, times):
            assert np.array_equal(rgb.numpy(), reference[round(t * FPS)])
    # Frame i of the second file is frame 25 + i of the whole (its grey level says so).
    levels = [round((float(f.float().mean()) - LEVEL0) / LEVEL_STEP) for f in out.video[1]]
    assert levels == [int((0.7 + i * STEP) * FPS + 1e-9) for i in range(T)] and levels[-1] >= 25
    with pytest.raises(DecodeError, match="restart") as err:
        decode_clips(path, starts, num_frames=T, frame_step=STEP, audio_rate=AUDIO_RATE)
    assert err.value.reason == "undecodable"


# ---------------------------------------------------------------------------------------------- #
# What counts as a video: cover art does not
# ---------------------------------------------------------------------------------------------- #
def write_cover_art(path, fmt, acodec, pic_codec, *, real_video=False):
    """Audio with an embedded picture (an ``attached_pic`` stream, first); with ``real_video`` also
    1 s of numbered frames after it."""
    with av.open(str(path), "w", format=fmt) as c:
        pic = c.add_stream(pic_codec, rate=1)
        pic.width, pic.height = 32, 32
        pic.pix_fmt = "yuvj420p" if pic_codec == "mjpeg" else "rgb24"
        pic.disposition = av.stream.Disposition.attached_pic
        vs = None
        if real_video:
            vs = c.add_stream("libx264", rate=FPS)
            vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        a = c.add_stream(acodec, rate=44100, layout="mono")
        image = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 200, np.uint8), format="rgb24")
        for p in pic.encode(image) + pic.encode():
            c.mux(p)
        if vs is not None:
            for i in range(FPS):
                frame = av.VideoFrame.from_ndarray(grey(i), format="rgb24")
                frame.pts = i
                c.mux(vs.encode(frame))
            c.mux(vs.encode())
        for frame in audio_frames(a, np.zeros(44100, np.float32), 0, 44100):
            c.mux(a.encode(frame))
        c.mux(a.encode())


@pytest.fixture(scope="module")
def cover_art(tmp_path_factory):
    d = tmp_path_factory.mktemp("cover_art")
    paths = {"mp3": d / "song.mp3", "m4a": d / "song.m4a", "mp4": d / "video_with_cover.mp4"}
    write_cover_art(paths["mp3"], "mp3", "libmp3lame", "mjpeg")
    write_cover_art(paths["m4a"], "mp4", "aac", "png")
    write_cover_art(paths["mp4"], "mp4", "aac", "mjpeg", real_video=True)
    return {k: str(v) for k, v in paths.items()}


def video_dispositions(path):
    with av.open(path) as c:
        return [bool(s.disposition & av.stream.Disposition.attached_pic) for s in c.streams.video]


@pytest.mark.parametrize("kind", ["mp3", "m4a"])
def test_cover_art_alone_is_no_video(cover_art, kind):
    assert video_dispositions(cover_art[kind]) == [True]  # its only "video" stream is the picture
    for read in (get_duration, lambda p: decode_clips(p, [0.0], num_frames=T, frame_step=STEP)):
        with pytest.raises(DecodeError, match="cover art") as err:
            read(cover_art[kind])
        assert err.value.reason == "no_video"


def test_cover_art_and_a_real_video_uses_the_video(cover_art):
    path = cover_art["mp4"]
    # Written first, the picture is read back last (MP4 keeps it in the metadata; no container PyAV
    # writes keeps an attached picture before the video): the choice does not depend on the order.
    assert sorted(video_dispositions(path)) == [False, True]
    out = decode_clips(path, [0.0, 0.4], num_frames=4, frame_step=0.1, audio_rate=AUDIO_RATE)
    assert out.duration == pytest.approx(1.0, abs=1e-3)
    for start, clip in zip([0.0, 0.4], out.video):
        assert clip.shape == (4, H, W, 3)
        levels = [round((float(f.float().mean()) - LEVEL0) / LEVEL_STEP) for f in clip]
        assert levels == [int((start + 0.1 * i) * FPS + 1e-9) for i in range(4)]


def test_cover_art_is_no_video_in_training_and_evaluation(cover_art, tmp_path):
    """Training replaces it and counts ``no_video``; evaluation marks it invalid with that reason."""
    lines = [f"{cover_art['mp3']} 0", f"{cover_art['mp4']} 1"]
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text("".join(f"{line}\n" for line in lines))
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = str(tmp_path)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 4, 3, 30
    cfg.DATA.TRAIN_JITTER_SCALES = [24, 32]
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 16, 24
    cfg.DATA.TRAIN_CROP_NUM_TEMPORAL = 1
    cfg.MODEL.NUM_CLASSES = 2
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 1, 1
    no_video = [int(r == "no_video") for r in SKIP_REASONS]

    sample = Kinetics(cfg, "train")[(0, 7)]
    assert sample["skip_reasons"].tolist() == no_video and sample["valid"]
    assert sample["index"] == 1  # the real video stood in for it
    test = Kinetics(cfg, "test")
    sample = test[0]
    assert sample["skip_reasons"].tolist() == no_video and not sample["valid"]
    assert test[1]["valid"] and int(test[1]["skipped"]) == 0
    assert all(bool(torch.isfinite(v).all()) for v in test[1]["video"])
