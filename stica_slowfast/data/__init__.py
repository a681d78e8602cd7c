"""Data pipeline: PyAV decoding, per-clip video and audio transforms, registered datasets and loaders.

The synthetic dataset's generator (and its mp4 writer) live apart, in :mod:`stica_slowfast.synthetic`.

Importing this package registers the datasets ``kinetics``, ``ucf101`` and ``hmdb51`` in
:data:`stica_slowfast.registry.DATASET`.
"""

from .appearance import ClipAppearance, prepare_batch
from .audio import (
    AudioTransform,
    build_audio_transform,
    log_spectrogram,
    mask_band,
    mel_filterbank,
    spec_augment,
    standardize,
    volume_jitter,
)
from .bad_input import SKIP_REASONS, TooManyBadVideosError
from .datasets import (
    BadLineError,
    Hmdb51,
    Kinetics,
    SeededIndex,
    Ucf101,
    VideoDataset,
    read_hmdb51_split,
    read_kinetics_csv,
    read_ucf101_split,
)
from .decoding import (
    DecodedClips,
    DecodeError,
    VideoFile,
    VideoOpener,
    decode_clips,
    get_clip_starts,
    get_duration,
    open_video,
)
from .loader import (
    SeededSampler,
    build_dataset,
    construct_loader,
    per_process_batch_size,
    shuffle_dataset,
)
from .transforms import (
    RandomShortSideScaleCrop,
    augments_on_device,
    ShortSideSpatialCrop,
    VideoTransform,
    build_test_transform,
    build_train_transform,
    build_transforms_from_cfg,
)

__all__ = [
    "VideoDataset", "SeededIndex", "Kinetics", "Ucf101", "Hmdb51",
    "read_kinetics_csv", "read_ucf101_split", "read_hmdb51_split", "BadLineError",
    "SKIP_REASONS", "TooManyBadVideosError",
    "DecodeError", "DecodedClips", "VideoFile", "VideoOpener", "open_video", "decode_clips", "get_duration",
    "get_clip_starts",
    "build_dataset", "construct_loader", "shuffle_dataset", "per_process_batch_size", "SeededSampler",
    "ClipAppearance", "prepare_batch", "augments_on_device",
    "VideoTransform", "RandomShortSideScaleCrop", "ShortSideSpatialCrop",
    "build_train_transform", "build_test_transform", "build_transforms_from_cfg",
    "AudioTransform", "build_audio_transform", "log_spectrogram", "mel_filterbank", "spec_augment",
    "mask_band", "volume_jitter", "standardize",
]
