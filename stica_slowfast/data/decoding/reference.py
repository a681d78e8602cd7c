"""The plain per-clip decoder: every clip opened, sought and decoded on its own.

What a plain PyAV loader does, and the simple way to get each clip right: the oracle the tests hold
the one-pass decoder to (same frames, same samples), and the baseline of ``tools/benchmark.py decode``
and ``loader``. Frames are selected and converted as in one pass, so only the decoding differs.
"""

import contextlib
from typing import Iterator, Optional, Sequence

from stica_slowfast.data.decoding.video_file import DecodedClips, VideoFile, open_video

__all__ = ["decode_per_clip", "PerClipVideo", "open_video_per_clip"]


def decode_per_clip(video: VideoFile, clip_starts: Sequence[float], **kwargs) -> DecodedClips:
    """Decode each clip of the opened ``video`` on its own.

    Each clip (and its audio) gets an open, a seek to the keyframe before it and a decode of every
    frame and audio packet from there (``skip_gaps=False``); the first clip reuses ``video``, opened
    for the duration.

    Args:
        video: the opened file.
        clip_starts: start time of each clip in seconds from the first video frame.
        **kwargs: ``num_frames``, ``frame_step``, ``audio_rate``, ``audio_duration`` as for
            :func:`~stica_slowfast.data.decoding.decode_clips`.

    Returns:
        The clips in the order of ``clip_starts``; ``frames_decoded`` sums every clip's decode.
    """
    parts = [video.decode_clips(clip_starts[:1], skip_gaps=False, **kwargs)]
    for start in clip_starts[1:]:
        with open_video(video.path, threads=video.threads) as other:
            parts.append(other.decode_clips([start], skip_gaps=False, **kwargs))
    return DecodedClips(
        video=[p.video[0] for p in parts],
        audio=None if parts[0].audio is None else [p.audio[0] for p in parts],
        has_audio=video.has_audio,
        frame_times=[p.frame_times[0] for p in parts],
        duration=video.duration,
        frames_decoded=sum(p.frames_decoded for p in parts),
    )


class PerClipVideo:
    """An opened :class:`VideoFile` whose :meth:`decode_clips` is :func:`decode_per_clip`."""

    def __init__(self, video: VideoFile):
        self.video = video

    @property
    def path(self) -> str:
        return self.video.path

    @property
    def has_audio(self) -> bool:
        return self.video.has_audio

    @property
    def duration(self) -> float:
        return self.video.duration

    def decode_clips(self, clip_starts: Sequence[float], *, num_frames: int, frame_step: float,
                     audio_rate: Optional[int] = None, audio_duration: Optional[float] = None,
                     skip_gaps: bool = True) -> DecodedClips:
        """Every clip on its own, decoding every frame (``skip_gaps`` has no effect here)."""
        return decode_per_clip(self.video, clip_starts, num_frames=num_frames, frame_step=frame_step,
                               audio_rate=audio_rate, audio_duration=audio_duration)


@contextlib.contextmanager
def open_video_per_clip(path: str, *, threads: bool = False) -> Iterator[PerClipVideo]:
    """:func:`~stica_slowfast.data.decoding.open_video` for the per-clip decoder (a dataset's
    ``opener``)."""
    with open_video(path, threads=threads) as video:
        yield PerClipVideo(video)
