"""Write real h264/aac mp4 files with PyAV: the synthetic dataset's encoder, also used by the tests."""

from fractions import Fraction
from typing import Optional

import av
import numpy as np

from stica_slowfast.utils.forking import guard_forks
from stica_slowfast.utils.io import PathManager

_AUDIO_CHUNK = 1024  # samples per encoded audio frame

# A forked child must not free an inherited encoder (x264's threads were not forked).
guard_forks()


def write_video(
    path: str,
    frames: np.ndarray,
    *,
    fps: float,
    audio: Optional[np.ndarray] = None,
    audio_rate: int = 22050,
    crf: int = 23,
) -> None:
    """Encode ``frames`` (and optionally mono ``audio``) into an mp4 at ``path``.

    Args:
        path: output file (any iopath path; written locally then copied).
        frames: uint8 RGB frames (T, H, W, 3); H and W must be even (yuv420p).
        fps: frame rate of the video stream, frames/s.
        audio: float waveform (S,) in [-1, 1], or None for a video without audio.
        audio_rate: sample rate of ``audio`` in Hz.
        crf: x264 constant rate factor (lower = better quality, bigger file).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
    with PathManager.open(path, "wb") as f, av.open(f, mode="w", format="mp4") as container:
        # PyAV wants an int or Fraction rate; 29.97 -> 30000/1001
        vstream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        # One encoder thread: x264's output depends on its thread count, which it otherwise takes
        # from the CPUs this process may use, so the same frames would give other files elsewhere.
        # No MB-tree: its lookahead read memory it had not written, so the same frames gave other
        # files after other allocations in the process (frames differed from the fifth or so on).
        vstream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=audio_rate, layout="mono")
        for frame in frames:
            container.mux(vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(vstream.encode())
        if astream is not None:
            wave = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
            for start in range(0, len(wave), _AUDIO_CHUNK):
                chunk = av.AudioFrame.from_ndarray(
                    wave[None, start:start + _AUDIO_CHUNK], format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts = audio_rate, start
                container.mux(astream.encode(chunk))
            container.mux(astream.encode())
