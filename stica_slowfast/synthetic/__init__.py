"""The synthetic audio-visual dataset: real mp4 files (h264 + aac) whose class shows in the video alone
and, separately, in the audio alone.

The embedded default data source: ``engine.entry`` generates it from ``STICA.SYNTHETIC.*`` when a
config asks for it, ``tools/make_synthetic_dataset.py`` writes it by hand. It is read back like any
dataset on disk, through :mod:`stica_slowfast.data`, which does not import this package.

* :mod:`.generate` -- the class recipes, the rendering and synthesis of one video, and the dataset
  layout on disk (:func:`generate_dataset`, :func:`generate_dataset_from_cfg`);
* :mod:`.av_writer` -- :func:`write_video`, the mp4 encoder (deterministic for given frames).
"""

from .av_writer import write_video
from .generate import (
    FORMAT_VERSION,
    HMDB51_SPLIT_DIR,
    OFFICIAL_SPLIT_IDS,
    ClassSpec,
    class_specs,
    generate_dataset,
    generate_dataset_from_cfg,
    max_num_classes,
    official_split,
    render_video,
    synthesize_audio,
)

__all__ = [
    "FORMAT_VERSION",
    "HMDB51_SPLIT_DIR",
    "OFFICIAL_SPLIT_IDS",
    "ClassSpec",
    "class_specs",
    "generate_dataset",
    "generate_dataset_from_cfg",
    "max_num_classes",
    "official_split",
    "render_video",
    "synthesize_audio",
    "write_video",
]
