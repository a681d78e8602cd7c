"""Video datasets: a list of (path, label) read from split files, decoded once per sample.

``VideoDataset(cfg, split)`` turns one video into one sample dict::

    file --(one PyAV pass)--> clips uint8 (T, H, W, 3) [+ audio (S,)]
         --(per-clip transform)--> "video": [ (C, T, h, w) ] * V,  "audio": [ (1, F, Ta) ] * V

with V views: train -- rho = ``DATA.TRAIN_CROP_NUM_TEMPORAL`` clips at independent random starts,
each in ``DATA.TRAIN_CROP_NUM_SPATIAL`` crops with their own random augmentation (temporal-major); val -- one centred clip, centre crop; test --
``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS`` views, temporal-major
(``view = t * NUM_SPATIAL_CROPS + s``).

Registered datasets (``stica_slowfast.registry.DATASET``, looked up case-insensitively):

* ``kinetics`` -- PySlowFast format ``DATA.PATH_TO_DATA_DIR/{train,val,test}.csv``, ``path label``.
* ``ucf101``  -- official ``classInd.txt`` / ``trainlist0N.txt`` / ``testlist0N.txt``.
* ``hmdb51``  -- official ``<class>_test_splitN.txt`` files.

Relative video paths are joined to ``DATA.PATH_PREFIX`` (or to ``DATA.PATH_TO_DATA_DIR`` when the
prefix is empty); absolute paths and URIs (read through iopath's PathManager) are kept, and
``file://`` URIs become the local paths they name. Split files are UTF-8 text, or UTF-16/32 when a
byte-order mark says so; a UTF-8 BOM is ignored.

Bad input (reasons in ``stica_slowfast.data.bad_input``): a split-file line that cannot be read (a
malformed line, a byte that does not decode, a NUL byte) is dropped with a warning naming
``file:line`` and counted as "bad_csv_line"; a split file that is not text (compressed, a video,
binary) stops with an error naming it and what it looks like; a split with no readable line, or with
more than ``DATA_LOADER.MAX_BAD_FRACTION`` of its lines bad, stops with an error naming the file. A
video that cannot be decoded is replaced (training) or marked invalid (evaluation), and its reason is
counted in the sample's ``"skip_reasons"``.
"""

import logging
import math
import os
import re
import urllib.parse
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode

from stica_slowfast.data.appearance import PARAM_KEY
from stica_slowfast.data.audio import build_audio_transform
from stica_slowfast.data.bad_input import check_bad_lines, count_reasons, describe_counts
from stica_slowfast.data.decoding import DecodeError, VideoOpener, get_clip_starts, open_video
from stica_slowfast.data.transforms import augments_on_device, build_transforms_from_cfg
from stica_slowfast.registry import DATASET
from stica_slowfast.utils.io import PathManager
from stica_slowfast.utils.text import decode_text, looks_binary, split_lines, undecodable

logger = logging.getLogger(__name__)

__all__ = [
    "SeededIndex",
    "SplitFileError",
    "VideoDataset",
    "Kinetics",
    "Ucf101",
    "Hmdb51",
    "read_kinetics_csv",
    "read_ucf101_split",
    "read_hmdb51_split",
    "BadLineError",
]

SPLITS = ("train", "val", "test")
Item = Tuple[str, int]  # (video path, 0-based label)
# Called with "file:line: why" for a line that cannot be read; None = raise BadLineError instead.
OnBadLine = Optional[Callable[[str], None]]
# Bad lines warned about one by one per split file; the rest are only counted.
_MAX_LINE_WARNINGS = 20


class SplitFileError(ValueError):
    """A split file (or a directory of them) that cannot be used: missing, not text, listing no video, a
    malformed class index; the message is one line naming the file (and line)."""


class BadLineError(ValueError):
    """A split-file line that cannot be read; the message starts with ``file:line``."""


class SeededIndex(NamedTuple):
    """A sample index with the seed of all its random draws (clip starts, substitutes, augmentation).

    Train loaders index the dataset with these (``stica_slowfast.data.loader.SeededSampler``), so a
    sample does not depend on which DataLoader worker loads it, nor on what that worker loaded before.
    """

    index: int
    seed: int


# ---------------------------------------------------------------------------------------------------- #
# Split-file parsing (pure functions: file in, list of (path, label) out)
# ---------------------------------------------------------------------------------------------------- #
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _local_file_uri(path: str) -> str:
    """The local path a ``file://`` URI names (other paths unchanged); ValueError for another host.

    iopath's PathManager has no handler for ``file://`` (it would look for a relative path of that
    name) and the decoder stats local files, so these URIs become paths here. They are
    percent-decoded as RFC 8089 says (``Path.as_uri()`` writes ``%20``), unless only the undecoded
    name exists, as when a name holding ``%`` was written into a URI by hand.
    """
    if path[:7].lower() != "file://":
        return path
    host, slash, rest = path[7:].partition("/")
    if host not in ("", "localhost"):
        raise SplitFileError(f"file URI {path!r} names host {host!r}; only local files (file:///path) "
                             f"can be read")
    raw = slash + rest
    local = urllib.parse.unquote(raw)
    if local != raw and not os.path.exists(local) and os.path.exists(raw):
        return raw
    return local


def _join(prefix: str, path: str, where: str) -> str:
    """``prefix/path`` for a relative path; absolute paths and URIs of iopath's handlers (``s3://...``)
    unchanged; a ``file://`` URI (or a prefix that is one) as its local path. ``where`` ("file:line")
    names the line in the BadLineError of a file URI on another host."""
    if not (os.path.isabs(path) or _SCHEME.match(path)):
        path = os.path.join(prefix, path)
    try:
        return _local_file_uri(path)
    except ValueError as err:
        raise BadLineError(f"{where}: {err}") from None


# A non-blank line of a split file: its 1-based number, its stripped text, and why it cannot be read
# (None when it can). A plain tuple: Kinetics lists have 10^5-10^6 lines.
_Line = Tuple[int, str, Optional[str]]


def _read_lines(path: str) -> List[_Line]:
    """The non-blank lines of a split file, as ``_Line`` tuples (a BOM and surrounding blanks stripped).

    A file that is not text (compressed, a video, NUL bytes throughout) is refused as a whole; a line
    with an undecodable byte or a NUL byte (which no path may hold) is returned with its problem, for
    the caller to drop and count. A byte-order mark selects UTF-16 or UTF-32 (PowerShell's and
    Notepad's "Unicode"); without one the file is UTF-8.

    Raises:
        SplitFileError: naming the file, when it does not exist or is not text (and what it looks like).
    """
    path = _local_file_uri(path)
    if not PathManager.exists(path):
        raise SplitFileError(f"split file not found: {path}")
    with PathManager.open(path, "rb") as f:
        data = f.read()
    what = looks_binary(data)
    if what is not None:
        raise SplitFileError(f"{path}: not a text file: it looks like {what}; a split file is text "
                             f"(UTF-8, or UTF-16 with a byte-order mark)")
    text, encoding = decode_text(data)
    check = undecodable(text, encoding) is not None or "\x00" in text  # else no line needs a look
    lines = []
    for n, raw in enumerate(split_lines(text), start=1):
        line = raw.strip().lstrip("\ufeff").strip()  # a BOM also starts each file of a concatenation
        if not line:
            continue
        problem = undecodable(raw, encoding) if check else None  # columns count in the line as written
        if problem is not None:
            problem += " (re-save the file as UTF-8)"
        elif check and "\x00" in raw:
            problem = f"NUL byte at column {raw.index(chr(0)) + 1} (no path can hold one)"
        lines.append((n, line, problem))
    return lines


def _check_label(label: int, num_classes: int, where: str) -> int:
    if not 0 <= label < num_classes:
        raise BadLineError(
            f"{where}: label {label} outside [0, {num_classes}) (MODEL.NUM_CLASSES = {num_classes})")
    return label


def _int_label(text: str, where: str, line: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadLineError(f"{where}: label {text!r} is not an integer in {line!r}") from None


def _parse_lines(
    path: str, parse: Callable[[str, str], Optional[Item]], on_bad_line: OnBadLine
) -> List[Item]:
    """``parse(line, "file:line")`` for every non-blank line of ``path``; None results are left out.

    A line ``parse`` rejects with BadLineError raises, or with ``on_bad_line`` is reported and dropped.
    """
    items = []
    for n, line, problem in _read_lines(path):
        where = f"{path}:{n}"
        try:
            if problem is not None:
                raise BadLineError(f"{where}: {problem}")
            item = parse(line, where)
        except BadLineError as err:
            if on_bad_line is None:
                raise
            on_bad_line(str(err))
            continue
        if item is not None:
            items.append(item)
    return items


def read_kinetics_csv(
    path: str, *, separator: str = " ", prefix: str, num_classes: int, on_bad_line: OnBadLine = None
) -> List[Item]:
    """Read a PySlowFast Kinetics-format file: one ``<path><separator><label>`` per line.

    Args:
        path: the csv file.
        separator: between path and label (``DATA.PATH_LABEL_SEPARATOR``); the LAST occurrence
            splits, so paths may contain it.
        prefix: directory joined to relative video paths.
        num_classes: labels must lie in [0, num_classes).
        on_bad_line: called with ``"file:line: why"`` for each line that cannot be read (wrong number
            of columns, a label that is not an integer or out of range, a byte that does not decode,
            a NUL byte), which is then dropped; None raises instead.

    Returns:
        [(video path, label)] in file order.

    Raises:
        BadLineError (a ValueError): naming the file and line, for a bad line without ``on_bad_line``.
        SplitFileError: naming the file, when it does not exist, is not text, or lists no video (empty,
            or only bad lines).
    """

    def parse(line: str, where: str) -> Item:
        parts = line.rsplit(separator, 1) if separator.strip() else line.rsplit(None, 1)
        # Paths may hold the separator, so only too few columns can be told from the text.
        if len(parts) != 2 or not parts[0].strip():
            raise BadLineError(f"{where}: expected '<path>{separator}<label>', got {line!r}")
        label = _int_label(parts[1], where, line)
        return _join(prefix, parts[0].strip(), where), _check_label(label, num_classes, where)

    items = _parse_lines(path, parse, on_bad_line)
    if not items:
        raise SplitFileError(f"{path}: no videos listed (the file is empty or no line has the form "
                             f"'<path>{separator}<label>' with a label in [0, {num_classes}))")
    return items


def _read_ucf_class_index(path: str) -> Dict[str, int]:
    """``classInd.txt`` ("1 ApplyEyeMakeup" per line) -> {class name: 0-based label}."""
    classes: Dict[str, int] = {}
    for n, line, problem in _read_lines(path):
        if problem is not None:
            raise SplitFileError(f"{path}:{n}: {problem}")
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise SplitFileError(f"{path}:{n}: expected '<index> <ClassName>', got {line!r}")
        if parts[1] in classes:
            raise SplitFileError(f"{path}:{n}: class {parts[1]!r} listed twice")
        classes[parts[1]] = int(parts[0]) - 1
    return classes


def read_ucf101_split(
    data_dir: str, split: str, *, split_id: int, prefix: str, num_classes: int,
    on_bad_line: OnBadLine = None,
) -> List[Item]:
    """Read an official UCF-101 split (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``).

    Args:
        data_dir: directory with the split files.
        split: "train" (trainlist) or "val"/"test" (testlist).
        split_id: N of the official split (1, 2 or 3).
        prefix: directory holding ``<Class>/<video>.avi``.
        num_classes: labels must lie in [0, num_classes).
        on_bad_line: called with ``"file:line: why"`` for each list line that cannot be read, which
            is then dropped; None raises instead.

    Returns:
        [(video path, 0-based label)]; train labels come from the list (1-based there), test labels
        from the video's folder via ``classInd.txt``.

    Raises:
        BadLineError (a ValueError): naming the file and line, without ``on_bad_line``, for a malformed
            line, an unknown class, a train label that disagrees with the folder, or a label out of
            range.
        SplitFileError: a malformed ``classInd.txt`` (always), or a list without any readable line.
        FileNotFoundError: a split file does not exist.
    """
    classes = _read_ucf_class_index(os.path.join(data_dir, "classInd.txt"))
    lower = {name.lower(): idx for name, idx in classes.items()}
    name = f"{'trainlist' if split == 'train' else 'testlist'}{split_id:02d}.txt"
    list_path = os.path.join(data_dir, name)

    def parse(line: str, where: str) -> Item:
        parts = line.split()
        if len(parts) not in (1, 2) or (split == "train" and len(parts) != 2):
            raise BadLineError(f"{where}: expected '<Class>/<video>{' <label>' if split == 'train' else ''}'"
                               f", got {line!r}")
        video = parts[0]
        norm = video.replace("\\", "/")
        folder = norm.split("/")[0] if "/" in norm else None
        from_folder = None
        if folder is not None:
            # The official lists spell some folders with another case than classInd.txt.
            from_folder = classes.get(folder, lower.get(folder.lower()))
        if len(parts) == 2:
            label = _int_label(parts[1], where, line) - 1
            if from_folder is not None and from_folder != label:
                raise BadLineError(f"{where}: label {label + 1} disagrees with folder {folder!r} "
                                   f"(class {from_folder + 1} in classInd.txt)")
        elif from_folder is None:
            raise BadLineError(f"{where}: cannot tell the class of {video!r}: folder {folder!r} is not in "
                               f"{os.path.join(data_dir, 'classInd.txt')}")
        else:
            label = from_folder
        return _join(prefix, video, where), _check_label(label, num_classes, where)

    items = _parse_lines(list_path, parse, on_bad_line)
    if not items:
        raise SplitFileError(f"{list_path}: no videos listed (the file is empty or no line can be read)")
    return items


def read_hmdb51_split(
    data_dir: str, split: str, *, split_id: int, prefix: str, num_classes: int,
    on_bad_line: OnBadLine = None,
) -> List[Item]:
    """Read an official HMDB-51 split from the ``<class>_test_split<N>.txt`` files.

    Each line is ``<video>.avi <id>`` with id 1 = train, 2 = test, 0 = unused. Class indices follow
    the sorted class names; videos live at ``prefix/<class>/<video>``.

    Args:
        data_dir: directory with the split files.
        split: "train" (id 1) or "val"/"test" (id 2).
        split_id: N of the official split (1, 2 or 3).
        prefix: directory holding ``<class>/<video>.avi``.
        num_classes: labels must lie in [0, num_classes).
        on_bad_line: called with ``"file:line: why"`` for each line that cannot be read, which is
            then dropped; None raises instead.

    Returns:
        [(video path, label)], classes in sorted order, videos in file order.

    Raises:
        BadLineError (a ValueError): naming the file and line, without ``on_bad_line``, for a malformed
            line or a class index out of range.
        SplitFileError: no split file, or no video of the split in any file.
    """
    suffix = f"_test_split{split_id}.txt"
    data_dir = _local_file_uri(data_dir)
    if not PathManager.isdir(data_dir):
        raise SplitFileError(f"HMDB-51 split directory not found: {data_dir}")
    names = sorted(f for f in PathManager.ls(data_dir) if f.endswith(suffix))
    if not names:
        raise SplitFileError(f"no '*{suffix}' files in {data_dir}")
    wanted = "1" if split == "train" else "2"
    items = []
    for label, fname in enumerate(names):
        cls = fname[: -len(suffix)]

        def parse(line: str, where: str, cls=cls, label=label) -> Optional[Item]:
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise BadLineError(f"{where}: expected '<video> <0|1|2>', got {line!r}")
            if parts[1] != wanted:
                return None  # another split's video
            return _join(prefix, os.path.join(cls, parts[0]), where), _check_label(label, num_classes, where)

        items += _parse_lines(os.path.join(data_dir, fname), parse, on_bad_line)
    if not items:
        raise SplitFileError(f"{os.path.join(data_dir, '*' + suffix)}: no videos of the {split} split "
                             f"(id {wanted}) can be read")
    return items


# ---------------------------------------------------------------------------------------------------- #
# Datasets
# ---------------------------------------------------------------------------------------------------- #
class VideoDataset(torch.utils.data.Dataset):
    """Base dataset: subclasses implement :meth:`load_items`; decoding and views live here.

    Each item is a dict:

    * ``"video"``: list of V float tensors (C, T, h, w); with ``STICA.AUG.DEVICE`` resolving to the
      device, uint8 crops (C, T, h, w) instead, and their appearance parameters in ``"video_aug"``
      (V dicts, :mod:`stica_slowfast.data.appearance`) for :func:`~stica_slowfast.data.appearance.prepare_batch`;
    * ``"audio"`` (only with ``STICA.AUDIO.ENABLE``): list of V float32 log spectrograms (1, F, Ta)
      (``stica_slowfast.data.audio``), or (S,) waveforms at ``STICA.AUDIO.SAMPLE_RATE`` with
      ``STICA.AUDIO.FEATURE "waveform"``; each of ``STICA.AUDIO.DURATION`` seconds (default: the
      clip's span) centred on its view's clip, one per clip shared by that clip's spatial views.
      A video without audio is skipped like an undecodable one, or silent with
      ``STICA.AUDIO.MISSING "zeros"``;
    * ``"label"``, ``"index"``: int (index of the video actually loaded, in this split);
    * ``"skip_reasons"``: int64 (R,), per reason of ``bad_input.SKIP_REASONS``, the videos that could
      not be used for this sample: in training the failed videos tried before this one, each
      replaced by a random video not yet tried for this sample; for an invalid evaluated video,
      the one-hot reason why;
    * ``"skipped"``: int, the sum of ``"skip_reasons"``;
    * ``"valid"``: False only for an evaluated video that could not be decoded (zeros are returned):
      one of the test split, or one read with another split's ``sampling``.

    Split-file lines that cannot be read are dropped with a warning and kept in :attr:`bad_lines`
    (``"file:line: why"``), which subclasses get by passing :meth:`bad_line` to their reader.

    Args:
        cfg: full config.
        split: "train", "val" or "test": which videos.
        sampling: "train", "val" or "test": how they are sampled (clips, crops, augmentation); the
            split's own by default. The kNN monitor and retrieval read the train videos with "val" or
            "test" sampling (deterministic views) for their labelled memory bank.
        opener: opens a video for decoding, ``opener(path, threads=...)`` (a
            :data:`~stica_slowfast.data.decoding.VideoOpener`); the one-pass decoder's
            :func:`~stica_slowfast.data.decoding.open_video` by default. Benchmarks and tests pass
            another (e.g. :func:`~stica_slowfast.data.decoding.open_video_per_clip`). A DataLoader
            with worker processes pickles it with the dataset.
    """

    def __init__(self, cfg: CfgNode, split: str, sampling: Optional[str] = None, *,
                 opener: VideoOpener = open_video):
        sampling = split if sampling is None else sampling
        for name, value in (("split", split), ("sampling", sampling)):
            if value not in SPLITS:
                raise ValueError(f"{name} must be one of {SPLITS}, got {value!r}")
        self.cfg, self.split, self.sampling = cfg, split, sampling
        self.opener = opener
        self.bad_lines: List[str] = []
        self.items: List[Item] = self.load_items(cfg, split)
        if not self.items:
            raise SplitFileError(f"{type(self).__name__}: no videos in the {split} split "
                                 f"(DATA.PATH_TO_DATA_DIR = {cfg.DATA.PATH_TO_DATA_DIR!r})")
        if len(self.bad_lines) > _MAX_LINE_WARNINGS:
            logger.warning("%d lines of the %s split cannot be read and were skipped (the first %d "
                           "are named above)", len(self.bad_lines), split, _MAX_LINE_WARNINGS)
        check_bad_lines(self.bad_lines, len(self.items), max_fraction=cfg.DATA_LOADER.MAX_BAD_FRACTION,
                        source=f"the {split} split of {type(self).__name__} in {cfg.DATA.PATH_TO_DATA_DIR}")
        d = cfg.DATA
        self.num_frames = int(d.NUM_FRAMES)
        self.frame_step = d.SAMPLING_RATE / d.TARGET_FPS  # seconds between sampled frames
        self.clip_duration = self.num_frames * self.frame_step
        self.audio_rate: Optional[int] = (
            int(cfg.STICA.AUDIO.SAMPLE_RATE) if cfg.STICA.AUDIO.ENABLE else None)
        if self.audio_rate is not None:
            a = cfg.STICA.AUDIO
            # Seconds of audio per clip, centred on the clip (DURATION 0 = the clip's span).
            self.audio_duration = float(a.DURATION) or self.clip_duration
            self.audio_samples = int(round(self.audio_duration * self.audio_rate))
            self.audio_transform = build_audio_transform(cfg, sampling)
            self.missing_audio = a.MISSING
        self.threads = bool(cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE)
        # Like PySlowFast: this many undecodable videos in a row make the sample fail.
        self.num_retries = max(1, int(cfg.DATA_LOADER.NUM_RETRIES))
        if sampling == "train":
            self.num_clips, self.start_mode = int(d.TRAIN_CROP_NUM_TEMPORAL), "random"
        elif sampling == "val":
            self.num_clips, self.start_mode = 1, "uniform"
        else:
            self.num_clips, self.start_mode = int(cfg.TEST.NUM_ENSEMBLE_VIEWS), "uniform"
        # Bounds on the time between the rho clips (CONTRASTIVE.DELTA_CLIPS_MIN/MAX, seconds; < 0 = none).
        self.clip_deltas = {}
        if sampling == "train" and "CONTRASTIVE" in cfg:
            lo, hi = cfg.CONTRASTIVE.DELTA_CLIPS_MIN, cfg.CONTRASTIVE.DELTA_CLIPS_MAX
            self.clip_deltas = {"min_delta": max(0.0, lo), "max_delta": math.inf if hi < 0 else hi}
        # train: one random transform (redrawn per clip); val: centre crop; test: one per spatial crop.
        self.transforms = build_transforms_from_cfg(cfg, sampling)
        if sampling == "train":  # the random transform, applied once per crop (a new draw each call)
            self.transforms = self.transforms * int(d.TRAIN_CROP_NUM_SPATIAL)
        # STICA.AUG.DEVICE: views leave as uint8 crops with their appearance parameters ("video_aug"),
        # for the device to apply (stica_slowfast.data.appearance.prepare_batch).
        self.aug_on_device = augments_on_device(cfg)
        self.crop_size = int(d.TRAIN_CROP_SIZE if sampling == "train" else d.TEST_CROP_SIZE)
        self.num_channels = len(d.MEAN)
        self._rng_key: Optional[Tuple[int, int]] = None
        self._rng_gen: Optional[np.random.Generator] = None

    # -- to implement -------------------------------------------------------------------------------- #
    def load_items(self, cfg: CfgNode, split: str) -> List[Item]:
        """The (path, 0-based label) list of ``split``."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------------ #
    def bad_line(self, message: str) -> None:
        """Record (and, for the first few, warn about) a split-file line that cannot be read."""
        self.bad_lines.append(message)
        if len(self.bad_lines) <= _MAX_LINE_WARNINGS:
            logger.warning("%s; line skipped (bad_csv_line)", message)

    @staticmethod
    def path_prefix(cfg: CfgNode) -> str:
        """Directory relative video paths are joined to."""
        return cfg.DATA.PATH_PREFIX or cfg.DATA.PATH_TO_DATA_DIR

    @property
    def num_views(self) -> int:
        """Views per sample: rho x train crops (train), 1 (val), ensemble views x spatial crops (test)."""
        return self.num_clips * len(self.transforms)

    @property
    def rng(self) -> np.random.Generator:
        """Per-process generator seeded from ``torch.initial_seed()``, for samples indexed by an int.

        In a DataLoader worker torch's initial seed is the loader's base seed + worker id, so workers
        draw different clips and a seeded run draws the same ones again. Keyed on the pid as well, so
        a generator copied into a forked worker is never reused there. Samples indexed by a
        :class:`SeededIndex` draw from a generator of their own instead.
        """
        key = (os.getpid(), torch.initial_seed())
        if self._rng_key != key:
            self._rng_key, self._rng_gen = key, np.random.default_rng(torch.initial_seed())
        return self._rng_gen

    def __len__(self) -> int:
        return len(self.items)

    def _decode_views(self, index: int, rng: np.random.Generator) -> Dict[str, object]:
        """Decode video ``index`` into its views (clip starts drawn from ``rng``); raises DecodeError."""
        path, label = self.items[index]
        with self.opener(path, threads=self.threads) as vf:
            if self.audio_rate is not None and not vf.has_audio and self.missing_audio == "skip":
                raise DecodeError(f"no audio stream in {path} (STICA.AUDIO.MISSING = 'skip')", "no_audio")
            starts = get_clip_starts(vf.duration, self.clip_duration, self.num_clips,
                                     mode=self.start_mode, rng=rng, **self.clip_deltas)
            clips = vf.decode_clips(
                starts, num_frames=self.num_frames, frame_step=self.frame_step,
                audio_rate=self.audio_rate,
                audio_duration=self.audio_duration if self.audio_rate is not None else None)
        videos, audios, params = [], [], []
        for c, frames in enumerate(clips.video):
            # One audio feature per clip (one augmentation draw), shared by its spatial views.
            audio = self.audio_transform(clips.audio[c]) if clips.audio is not None else None
            if audio is not None and not bool(torch.isfinite(audio).all()):
                # The decoder refuses NaN/inf samples; finite ones beyond ~1e19 overflow float32 here.
                raise DecodeError(f"the audio feature of clip {c} of {path} is not finite (samples of up "
                                  f"to {float(clips.audio[c].abs().max()):.3g})", "non_finite_audio")
            # Temporal-major: all spatial views of clip c before clip c + 1. Each call of the train
            # transform draws new parameters, so every clip gets its own augmentation.
            for transform in self.transforms:
                if self.aug_on_device:
                    crop, drawn = transform.crop_and_draw(frames)
                    videos.append(crop)
                    params.append(drawn)
                else:
                    videos.append(transform(frames))
                if audio is not None:
                    audios.append(audio)
        sample = {"video": videos, "label": int(label), "index": int(index)}
        if self.aug_on_device:
            sample[PARAM_KEY] = params
        if self.audio_rate is not None:
            sample["audio"] = audios
        return sample

    def _invalid_sample(self, index: int) -> Dict[str, object]:
        """Zeros of the right shapes for a test video that cannot be decoded."""
        shape = (self.num_channels, self.num_frames, self.crop_size, self.crop_size)
        dtype = torch.uint8 if self.aug_on_device else torch.float32
        sample = {"video": [torch.zeros(shape, dtype=dtype) for _ in range(self.num_views)],
                  "label": int(self.items[index][1]), "index": int(index)}
        if self.aug_on_device:
            views = (t for _ in range(self.num_clips) for t in self.transforms)  # temporal-major
            sample[PARAM_KEY] = [t.appearance.identity() for t in views]
        if self.audio_rate is not None:
            shape = self.audio_transform.output_shape(self.audio_samples)
            sample["audio"] = [torch.zeros(shape) for _ in range(self.num_views)]
        return sample

    def _substitute(self, tried: List[int], rng: np.random.Generator) -> int:
        """A uniformly random index not in ``tried`` (any index once all have been tried)."""
        excluded = sorted(set(tried))
        if len(excluded) >= len(self.items):
            return int(rng.integers(len(self.items)))
        k = int(rng.integers(len(self.items) - len(excluded)))
        for e in excluded:  # the k-th index that is not excluded
            if k >= e:
                k += 1
        return k

    def __getitem__(self, index: Union[int, SeededIndex]) -> Dict[str, object]:
        """The sample of video ``index``.

        Args:
            index: an int, whose draws come from this process's generators (:attr:`rng` and torch's
                global one), or an ``(index, seed)`` pair (:class:`SeededIndex`, as train loaders
                pass), whose draws come from generators seeded with ``seed`` alone: the same pair
                gives the same sample in any process. The caller's torch generator is left as it was.

        Returns:
            The sample dict (see the class docstring).
        """
        if isinstance(index, tuple):
            index, seed = int(index[0]), int(index[1])
            # Only the CPU generator: the transforms draw nothing else, and torch.manual_seed would
            # also reseed the GPUs' (of the trainer itself with NUM_WORKERS 0).
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)
                return self._sample(index, np.random.default_rng(seed))
        return self._sample(int(index), self.rng)

    def _sample(self, index: int, rng: np.random.Generator) -> Dict[str, object]:
        """:meth:`__getitem__` with clip starts and substitutes drawn from ``rng``."""
        if self.split == "test" or self.sampling != self.split:
            # Never substitute a video that is evaluated (the test split, or a feature bank such as the
            # kNN monitor's train videos): the meter drops invalid samples so accuracy stays honest.
            try:
                sample, reasons, valid = self._decode_views(index, rng), [], True
            except DecodeError as err:
                logger.warning("Video %s cannot be used (%s), marked invalid: %s",
                               self.items[index][0], err.reason, err)
                sample, reasons, valid = self._invalid_sample(index), [err.reason], False
            sample.update(skip_reasons=count_reasons(reasons), skipped=len(reasons), valid=valid)
            return sample
        tried, reasons = [index], []
        for attempt in range(self.num_retries):
            try:
                sample = self._decode_views(tried[-1], rng)
            except DecodeError as err:
                logger.warning("Video %s cannot be used (%s): %s; trying another one (%d/%d)",
                               self.items[tried[-1]][0], err.reason, err, attempt + 1, self.num_retries)
                reasons.append(err.reason)
                tried.append(self._substitute(tried, rng))
                continue
            sample.update(skip_reasons=count_reasons(reasons), skipped=len(reasons), valid=True)
            return sample
        raise RuntimeError(
            f"{self.num_retries} undecodable videos in a row in the {self.split} split of "
            f"{type(self).__name__}, starting at {self.items[index][0]!r} "
            f"({describe_counts(count_reasons(reasons))}); check the files "
            f"(DATA_LOADER.NUM_RETRIES = {self.cfg.DATA_LOADER.NUM_RETRIES})")


def _register(name: str):
    """Register a dataset class under a lower-case ``name`` (PySlowFast configs write ``kinetics``)."""

    def deco(cls):
        DATASET._do_register(name, cls)
        return cls

    return deco


@_register("kinetics")
class Kinetics(VideoDataset):
    """PySlowFast Kinetics format: ``DATA.PATH_TO_DATA_DIR/{train,val,test}.csv``, ``path label``."""

    def load_items(self, cfg: CfgNode, split: str) -> List[Item]:
        return read_kinetics_csv(
            os.path.join(cfg.DATA.PATH_TO_DATA_DIR, f"{split}.csv"),
            separator=cfg.DATA.PATH_LABEL_SEPARATOR, prefix=self.path_prefix(cfg),
            num_classes=cfg.MODEL.NUM_CLASSES, on_bad_line=self.bad_line)


@_register("ucf101")
class Ucf101(VideoDataset):
    """UCF-101 official split ``STICA.DATA.SPLIT``; val is the test list."""

    def load_items(self, cfg: CfgNode, split: str) -> List[Item]:
        return read_ucf101_split(cfg.DATA.PATH_TO_DATA_DIR, split, split_id=cfg.STICA.DATA.SPLIT,
                                 prefix=self.path_prefix(cfg), num_classes=cfg.MODEL.NUM_CLASSES,
                                 on_bad_line=self.bad_line)


@_register("hmdb51")
class Hmdb51(VideoDataset):
    """HMDB-51 official split ``STICA.DATA.SPLIT``; val is the test list."""

    def load_items(self, cfg: CfgNode, split: str) -> List[Item]:
        return read_hmdb51_split(cfg.DATA.PATH_TO_DATA_DIR, split, split_id=cfg.STICA.DATA.SPLIT,
                                 prefix=self.path_prefix(cfg), num_classes=cfg.MODEL.NUM_CLASSES,
                                 on_bad_line=self.bad_line)
