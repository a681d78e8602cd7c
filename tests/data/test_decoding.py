"""Decoder: which frames are selected, audio alignment, one-pass seeking, errors, clip starts."""

import logging
import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from stica_slowfast.data.decoding import (
    DecodeError,
    decode_clips,
    decode_per_clip,
    get_clip_starts,
    get_duration,
    one_pass,
    open_video,
    video_gate,
)
from stica_slowfast.synthetic import class_specs, render_video, synthesize_audio, write_video

H, W = 48, 64
LEVEL0, LEVEL_STEP = 8, 3  # frame i is a flat grey of LEVEL0 + LEVEL_STEP * i


def numbered_frames(n: int) -> np.ndarray:
    """Frames whose grey level encodes their index (recoverable after h264 within +-1 level)."""
    levels = LEVEL0 + LEVEL_STEP * np.arange(n)
    assert levels[-1] <= 255
    return np.broadcast_to(levels[:, None, None, None], (n, H, W, 3)).astype(np.uint8)


def frame_indices(clip: torch.Tensor) -> list:
    """Source frame index of each decoded frame of a (T, H, W, 3) clip."""
    return [round((float(f.float().mean()) - LEVEL0) / LEVEL_STEP) for f in clip]


def tone(duration: float, rate: int, onset: float) -> np.ndarray:
    """Silence, then a 440 Hz tone from ``onset`` seconds on."""
    t = np.arange(int(round(duration * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t) * (t >= onset)).astype(np.float32)


def onset(wave: torch.Tensor, threshold: float = 0.05) -> int:
    loud = np.flatnonzero(np.abs(wave.numpy()) > threshold)
    return int(loud[0]) if len(loud) else -1


def write_with_gop(path, frames, fps, gop, audio=None, audio_rate=16000):
    """Like write_video but with a keyframe every ``gop`` frames, so seeking really skips data."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"g": str(gop), "keyint_min": str(gop), "preset": "veryfast"}
        astream = c.add_stream("aac", rate=audio_rate, layout="mono") if audio is not None else None
        for f in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(vs.encode())
        if astream is not None:
            for s in range(0, len(audio), 1024):
                af = av.AudioFrame.from_ndarray(audio[None, s:s + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts = audio_rate, s
                c.mux(astream.encode(af))
            c.mux(astream.encode())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    paths = {
        "v25": d / "v25.mp4",      # 2 s at 25 fps, tone from 1.0 s (22050 Hz source)
        "v12": d / "v12.mp4",      # 2.5 s at 12 fps, no audio
        "gop": d / "gop.mp4",      # 3 s at 25 fps, keyframe every 5 frames, tone from 2.2 s
    }
    write_video(str(paths["v25"]), numbered_frames(50), fps=25, audio=tone(2.0, 22050, 1.0),
                audio_rate=22050)
    write_video(str(paths["v12"]), numbered_frames(30), fps=12)
    write_with_gop(paths["gop"], numbered_frames(75), 25, 5, audio=tone(3.0, 16000, 2.2))
    return {k: str(v) for k, v in paths.items()}


def expected_indices(start, num_frames, step, fps, n_src):
    """Latest source frame i with i / fps <= tau, computed independently of the decoder."""
    return [min(math.floor((start + i * step) * fps + 1e-9), n_src - 1) for i in range(num_frames)]


def test_duration(videos):
    assert get_duration(videos["v25"]) == pytest.approx(2.0, abs=1e-6)
    assert get_duration(videos["v12"]) == pytest.approx(2.5, abs=1e-6)


def test_selects_latest_frame_25fps_to_30fps(videos):
    # DATA.SAMPLING_RATE 2 at TARGET_FPS 30: one frame every 2/30 s.
    step = 2 / 30
    starts = [0.0, 0.5, 0.93]
    out = decode_clips(videos["v25"], starts, num_frames=8, frame_step=step, audio_rate=None)
    assert out.audio is None and out.has_audio
    for start, clip in zip(starts, out.video):
        assert clip.shape == (8, H, W, 3) and clip.dtype == torch.uint8
        assert frame_indices(clip) == expected_indices(start, 8, step, 25, 50)
    # 0.5 s at 25 fps is frame 12.5 -> 12; then +1.67 frames each step.
    assert frame_indices(out.video[1]) == [12, 14, 15, 17, 19, 20, 22, 24]


def test_upsamples_12fps_to_30fps_by_repeating(videos):
    step = 1 / 30  # SAMPLING_RATE 1 at TARGET_FPS 30: every target frame
    out = decode_clips(videos["v12"], [0.0, 1.0], num_frames=10, frame_step=step)
    assert frame_indices(out.video[0]) == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert frame_indices(out.video[1]) == expected_indices(1.0, 10, step, 12, 30)
    assert not out.has_audio


def test_clip_past_end_repeats_last_frame(videos):
    out = decode_clips(videos["v25"], [1.8], num_frames=8, frame_step=0.1)
    assert frame_indices(out.video[0]) == [45, 47, 49, 49, 49, 49, 49, 49]
    assert out.frame_times[0][-1] == pytest.approx(49 / 25)


def test_one_pass_seeks_and_stops_early(videos):
    step = 0.1
    # One clip late in the file: the seek skips to the keyframe at frame 50, and decoding every
    # frame stops at the first frame after the last target (2.7 s -> frame 68); skipping the frames
    # no target takes decodes fewer.
    out = decode_clips(videos["gop"], [2.0], num_frames=8, frame_step=step, skip_gaps=False)
    assert out.frames_decoded == 69 - 50
    out = decode_clips(videos["gop"], [2.0], num_frames=8, frame_step=step)
    assert frame_indices(out.video[0]) == expected_indices(2.0, 8, step, 25, 75)
    assert out.frames_decoded < 69 - 50
    # A clip at the start never reads the end of the file.
    out = decode_clips(videos["gop"], [0.0], num_frames=8, frame_step=step, skip_gaps=False)
    assert out.frames_decoded == 19
    # Several clips (not sorted) in one pass keep their order and match separate decodes.
    starts = [2.2, 0.43, 1.31]
    out = decode_clips(videos["gop"], starts, num_frames=8, frame_step=step)
    assert out.frames_decoded <= 75 - 10  # decoding started at the keyframe before 0.43 s (frame 10)
    for start, clip in zip(starts, out.video):
        single = decode_clips(videos["gop"], [start], num_frames=8, frame_step=step).video[0]
        assert frame_indices(clip) == expected_indices(start, 8, step, 25, 75)
        assert torch.equal(clip, single)


def test_threaded_decode_matches(videos):
    a = decode_clips(videos["gop"], [0.3, 1.7], num_frames=6, frame_step=0.2)
    b = decode_clips(videos["gop"], [0.3, 1.7], num_frames=6, frame_step=0.2, threads=True)
    for x, y in zip(a.video, b.video):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name,starts", [("v25", [1.5, 0.0]), ("gop", [2.3, 0.1, 1.1])])
def test_skipping_gaps_decodes_less_for_the_same_clips(videos, name, starts):
    """Between clips only the frames later ones refer to are decoded (v25: one keyframe, B-frames), or
    none before a keyframe (gop), and only the audio next to the windows: the clips, their frame
    times and audio are those of decoding every frame, and of decoding each clip alone."""
    kw = dict(num_frames=4, frame_step=0.1, audio_rate=16000)
    fast = decode_clips(videos[name], starts, **kw)
    full = decode_clips(videos[name], starts, skip_gaps=False, **kw)
    assert fast.frames_decoded < full.frames_decoded
    assert fast.frame_times == full.frame_times
    for c, start in enumerate(starts):
        alone = decode_clips(videos[name], [start], skip_gaps=False, **kw)
        for video, audio in ((full.video[c], full.audio[c]), (alone.video[0], alone.audio[0])):
            assert torch.equal(fast.video[c], video)
            # The same samples, but for float rounding (resampled in one call or frame by frame).
            torch.testing.assert_close(fast.audio[c], audio, rtol=0, atol=1e-4)
    # The pixels are PyAV's own RGB conversion of the frames the times name.
    with av.open(videos[name]) as c:
        reference = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for clip, times in zip(fast.video, fast.frame_times):
        for frame, t in zip(clip, times):
            assert np.array_equal(frame.numpy(), reference[round(t * 25)])


def test_frames_further_apart_than_the_margin_are_decoded_in_full(videos, monkeypatch, caplog):
    """A target whose frame lies in a skipped stretch makes the pass start again without skipping:
    same clips. Forced here by a margin of a tenth of a frame period, as frames further apart than
    the margin would: the first clip's targets lie 0.01 s after its frames, so none of its B-frames
    is decoded before the second clip's frames are."""
    monkeypatch.setattr(video_gate, "GAP_MARGIN_FRAMES", 0.1)
    starts = [0.01, 1.0]
    with caplog.at_level(logging.DEBUG, logger=one_pass.__name__):
        out = decode_clips(videos["v25"], starts, num_frames=8, frame_step=0.04)
    assert "decoding every frame" in caplog.text
    for start, clip in zip(starts, out.video):
        assert frame_indices(clip) == expected_indices(start, 8, 0.04, 25, 50)


@pytest.mark.parametrize("gop", [None, 12])
def test_one_pass_matches_the_per_clip_reference_on_a_generated_video(tmp_path, gop):
    """On a synthetic-dataset video (moving shape on a drifting textured background, 29.97 fps,
    a tone over coloured noise at 22.05 kHz), x264's own keyframe spacing (one keyframe, B-frames:
    gaps are crossed with NONREF decoding) or a keyframe every 12 frames (fresh starts past a
    keyframe): one pass gives exactly the frames and frame times of decoding each clip on its own,
    and the same audio but for float rounding and AAC's noise bands, from fewer decoded frames."""
    spec = class_specs(3)[1]
    fps, seconds, source_rate = Fraction(30000, 1001), 4.0, 22050
    frames = render_video(spec, np.random.default_rng(1), width=W, height=H,
                          num_frames=int(seconds * fps), fps=float(fps))
    audio = synthesize_audio(spec, np.random.default_rng(2), num_samples=int(seconds * source_rate),
                             audio_rate=source_rate)
    path = tmp_path / "generated.mp4"
    if gop is None:
        write_video(str(path), frames, fps=fps, audio=audio, audio_rate=source_rate)
    else:
        write_with_gop(path, frames, fps, gop, audio=audio, audio_rate=source_rate)
    rng = np.random.default_rng(0)
    kw = dict(num_frames=8, frame_step=2 / 30, audio_rate=16000, audio_duration=0.8)
    with open_video(str(path)) as vf:
        clip_duration = kw["num_frames"] * kw["frame_step"]
        draws = [get_clip_starts(vf.duration, clip_duration, 4, mode="uniform")]
        draws += [get_clip_starts(vf.duration, clip_duration, rho, mode="random", rng=rng) for rho in (2, 3, 4)]
        for starts in draws:
            fast = vf.decode_clips(starts, **kw)
            reference = decode_per_clip(vf, starts, **kw)
            assert fast.frame_times == reference.frame_times
            for c in range(len(starts)):
                assert torch.equal(fast.video[c], reference.video[c])
                assert_same_audio_but_noise_bands(fast.audio[c], reference.audio[c])
            assert fast.frames_decoded < reference.frames_decoded


def assert_same_audio_but_noise_bands(audio: torch.Tensor, reference: torch.Tensor) -> None:
    """Equal samples up to float rounding; or, where the AAC decoder synthesised the noise of
    noise-coded bands (which depends on where decoding started), the same waveform in the same
    place: best aligned at lag 0, correlated above 0.98, with the same loudness every 20 ms."""
    x, y = audio.double().numpy(), reference.double().numpy()
    if np.abs(x - y).max() <= 1e-4:
        return
    n = len(x) - 4

    def corr(lag: int) -> float:
        return float(np.corrcoef(x[2:2 + n], y[2 + lag:2 + lag + n])[0, 1])

    assert corr(0) > 0.98 and corr(0) > max(corr(lag) for lag in (-2, -1, 1, 2))
    w = 320
    rms_x, rms_y = (np.sqrt((a[: len(a) // w * w].reshape(-1, w) ** 2).mean(1)) for a in (x, y))
    np.testing.assert_allclose(rms_x, rms_y, rtol=0.05, atol=1e-3)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_audio_aligned_to_clip(videos, rate):
    num_frames, step = 8, 2 / 30
    n = round(num_frames * step * rate)
    out = decode_clips(videos["v25"], [0.7, 0.1, 1.2], num_frames=num_frames, frame_step=step,
                       audio_rate=rate)
    assert [a.shape for a in out.audio] == [(n,)] * 3
    assert all(a.dtype == torch.float32 for a in out.audio)
    tol = round(0.004 * rate)  # 4 ms
    # Tone starts at 1.0 s: 0.3 s into the clip starting at 0.7 s.
    assert abs(onset(out.audio[0]) - round(0.3 * rate)) <= tol
    assert onset(out.audio[1]) == -1  # [0.1, 0.63) s is silent
    assert onset(out.audio[2]) <= tol  # already sounding
    # The tone has the right pitch after resampling: zero crossings of a 440 Hz sine.
    tail = out.audio[2].numpy()
    crossings = np.sum(np.diff(np.signbit(tail)) != 0)
    assert crossings == pytest.approx(2 * 440 * len(tail) / rate, rel=0.05)


def test_audio_after_seek_and_past_end(videos):
    rate, step = 16000, 0.1
    # Seeking to 1.9 s; the tone starts at 2.2 s -> 0.3 s into the clip.
    out = decode_clips(videos["gop"], [1.9, 2.5], num_frames=8, frame_step=step, audio_rate=rate)
    assert abs(onset(out.audio[0]) - round(0.3 * rate)) <= round(0.004 * rate)
    # The second clip covers [2.5, 3.3) s; the file ends at 3.0 s: the rest is zero-padded.
    tail = out.audio[1].numpy()
    assert len(tail) == round(0.8 * rate)
    assert np.abs(tail[: round(0.45 * rate)]).max() > 0.3
    assert np.abs(tail[round(0.55 * rate):]).max() == 0.0


def test_no_audio_stream_gives_silence(videos):
    out = decode_clips(videos["v12"], [0.2, 1.0], num_frames=4, frame_step=0.25, audio_rate=11025)
    assert out.has_audio is False
    assert [a.shape for a in out.audio] == [(11025,)] * 2
    assert all(float(a.abs().max()) == 0.0 for a in out.audio)


def test_open_once_for_duration_and_clips(videos):
    with open_video(videos["v25"]) as vf:
        assert vf.duration == pytest.approx(2.0)
        starts = get_clip_starts(vf.duration, 0.5, 3, mode="uniform")
        out = vf.decode_clips(starts, num_frames=5, frame_step=0.1)
    assert starts == pytest.approx([0.0, 0.75, 1.5])
    assert frame_indices(out.video[2]) == expected_indices(1.5, 5, 0.1, 25, 50)


def test_undecodable_files_raise_decode_error(tmp_path, videos):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    data = open(videos["v25"], "rb").read()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in [junk, truncated, empty, tmp_path / "missing.mp4"]:
        with pytest.raises(DecodeError):
            decode_clips(str(path), [0.0], num_frames=4, frame_step=0.1)
        with pytest.raises(DecodeError):
            get_duration(str(path))


def test_audio_only_file_has_no_video(tmp_path):
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts = 16000, 0
        c.mux(s.encode(f))
        c.mux(s.encode())
    with pytest.raises(DecodeError, match="no video stream"):
        decode_clips(str(path), [0.0], num_frames=2, frame_step=0.1)


def test_clip_starts_random():
    starts = get_clip_starts(10.0, 2.0, 1000, mode="random", rng=np.random.default_rng(0))
    assert min(starts) >= 0.0 and max(starts) <= 8.0
    assert np.mean(starts) == pytest.approx(4.0, abs=0.3)  # uniform on [0, 8]
    again = get_clip_starts(10.0, 2.0, 1000, mode="random", rng=np.random.default_rng(0))
    assert starts == again
    # A video shorter than a clip can only start at 0.
    assert get_clip_starts(1.0, 2.0, 3, mode="random", rng=np.random.default_rng(0)) == [0.0] * 3


def test_clip_starts_uniform():
    assert get_clip_starts(10.0, 2.0, 1, mode="uniform") == [4.0]  # centred
    assert get_clip_starts(10.0, 2.0, 5, mode="uniform") == pytest.approx([0, 2, 4, 6, 8])
    assert get_clip_starts(1.0, 2.0, 2, mode="uniform") == [0.0, 0.0]
    with pytest.raises(ValueError):
        get_clip_starts(10.0, 2.0, 2, mode="middle")


@pytest.mark.parametrize("fmt", ["h264", "avi", "mpegts", "matroska"])
def test_other_containers(tmp_path, fmt):
    """Raw h264 (no timestamps, no index, no duration: found by decoding), AVI with B-frames
    (the demuxer's pts are out of order), MPEG-TS (start time > 0, inexact seeking), MKV."""
    path = str(tmp_path / f"v.{fmt}")
    with av.open(path, "w", format=fmt) as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"bframes": "3", "preset": "veryfast"}
        for f in numbered_frames(50):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(vs.encode())
    assert get_duration(path) == pytest.approx(2.0, abs=1e-3)
    starts = [1.2, 0.0, 1.0]
    out = decode_clips(path, starts, num_frames=5, frame_step=0.2)
    for start, clip in zip(starts, out.video):
        assert frame_indices(clip) == expected_indices(start, 5, 0.2, 25, 50)


def test_random_starts_respect_clip_distance_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        starts = get_clip_starts(20.0, 1.0, 4, mode="random", rng=rng, min_delta=2.0, max_delta=3.0)
        assert all(0.0 <= s <= 19.0 for s in starts)
        assert all(2.0 - 1e-9 <= abs(s - starts[0]) <= 3.0 + 1e-9 for s in starts[1:])
    # both sides of the first clip are used
    firsts = [get_clip_starts(20.0, 1.0, 2, mode="random", rng=rng, min_delta=1.0, max_delta=2.0)
              for _ in range(200)]
    assert any(b > a for a, b in firsts) and any(b < a for a, b in firsts)
    # a video too short for the minimum distance: as far from the first clip as it can be
    for _ in range(20):
        a, b = get_clip_starts(3.0, 1.0, 2, mode="random", rng=rng, min_delta=5.0, max_delta=6.0)
        assert b in (0.0, 2.0) and abs(b - a) >= 1.0
