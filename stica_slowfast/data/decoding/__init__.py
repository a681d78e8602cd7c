"""Video decoding with PyAV: many clips (video frames + aligned mono audio) from one file in one pass.

Times are seconds from the video stream's first frame (:mod:`.clock`). A clip of T frames starting
at ``s`` takes, for each target time ``s + i * frame_step``, the latest frame at or before it, the
last frame past the end (:mod:`.frame_selection`); its audio window is centred on it, zeros where the
file has none (:mod:`.audio_windows`). Every failure is a :class:`DecodeError` with a reason
(:mod:`.errors`, :mod:`.truncation`).

Modules, from the file down:

* :mod:`.video_file` -- :func:`open_video`, :class:`VideoFile` (checks, container, duration, the
  clips' target times and audio windows), :func:`decode_clips` and its :class:`DecodedClips`,
  :func:`get_duration`, and the :data:`VideoOpener` the datasets take;
* :mod:`.one_pass` -- the single demux pass over all clips, and its fallbacks;
* :mod:`.video_gate` -- which video packets the pass decodes (reference frames between clips);
* :mod:`.audio_windows` -- which audio packets it decodes and where their samples land;
* :mod:`.frame_selection` -- which frame each target time takes;
* :mod:`.clip_starts` -- :func:`get_clip_starts`, where the clips of a video begin;
* :mod:`.clock`, :mod:`.errors`, :mod:`.truncation` -- timestamps, errors, cut-short files;
* :mod:`.reference` -- the plain per-clip decoder (:func:`decode_per_clip`): the tests' oracle and
  the benchmarks' baseline.
"""

from .clip_starts import get_clip_starts
from .errors import DecodeError
from .reference import PerClipVideo, decode_per_clip, open_video_per_clip
from .video_file import (
    DecodedClips,
    OpenedVideo,
    VideoFile,
    VideoOpener,
    decode_clips,
    get_duration,
    open_video,
)

__all__ = [
    "DecodeError",
    "DecodedClips",
    "OpenedVideo",
    "VideoOpener",
    "VideoFile",
    "open_video",
    "decode_clips",
    "get_duration",
    "get_clip_starts",
    "decode_per_clip",
    "PerClipVideo",
    "open_video_per_clip",
]
