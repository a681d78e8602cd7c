"""Bad input: why a video was left out, how often, and when there is too much of it.

Every video the loader cannot use is counted under exactly one reason of :data:`SKIP_REASONS`:

================ ===================================================================================
reason           what happened
================ ===================================================================================
missing          the file does not exist
empty            the file has zero bytes
truncated        the container says it is longer than the file (an interrupted download or copy);
                 checked for MP4/MOV (ISO BMFF boxes) and AVI (RIFF chunks)
undecodable      not a media file, corrupt data, no decodable frame
no_video         no video stream (e.g. an .mp4 holding only audio)
no_audio         no audio stream while audio is needed and ``STICA.AUDIO.MISSING`` is "skip"
bad_csv_line     a split-file line that cannot be read (too few columns, a label that is not an
                 integer or lies outside [0, MODEL.NUM_CLASSES)); dropped when the split is loaded
                 (paths may hold the separator, so a line with too many columns reads as a path
                 that then counts as "missing")
corrupt          decoded, but a clip would take wrong pixels: FFmpeg concealed damaged data in a
                 frame the clip takes or in one that frame may be predicted from (an earlier I- or
                 P-frame since the last keyframe, or the reference frame shown right after a run of
                 B-frames), or the video stream's packets end well before the duration its header
                 states (a damaged sample table) and the clip would hold the last frame across that
                 gap
non_finite_audio the clip's audio window holds NaN or infinite samples (float PCM), or its
                 spectrogram does (samples so large that it overflows)
================ ===================================================================================

Data flow of the counts::

    sample["skip_reasons"] (R,) int64 -- collate --> batch (B, R) -- sum over the epoch, all ranks
      + bad_csv_line (lines dropped at load) --> epoch_skip_stats() --> json_stats + limit check

R = ``len(SKIP_REASONS)``. A training sample's vector counts the failed videos tried before it (the
sample itself is good; each substitute is a random video not yet tried for that sample, so one bad
file costs one count); an evaluated sample's vector is the one-hot reason why it is invalid.

Logged as ``num_skipped_videos`` and ``skipped_<reason>`` in every ``train_epoch`` record (bad lines
count again each epoch), and as ``skipped_<reason>`` next to ``num_skipped`` in evaluation results.

The limit ``DATA_LOADER.MAX_BAD_FRACTION`` applies to the fraction of bad videos among all those
read: ``skipped / (samples + skipped)`` per training epoch (bad split-file lines count as skipped
and as read), and ``bad lines / all lines`` when a split file is loaded. Evaluation counts but never
stops (invalid videos are already left out of its accuracy, and ``num_skipped`` says how many).
"""

from typing import Dict, Iterable, Sequence, Union

import torch
from torch.utils.data import Dataset, Subset

__all__ = [
    "SKIP_REASONS",
    "TooManyBadVideosError",
    "reason_index",
    "count_reasons",
    "num_bad_lines",
    "describe_counts",
    "reason_stats",
    "epoch_skip_stats",
    "check_bad_lines",
]

SKIP_REASONS = ("missing", "empty", "truncated", "undecodable", "no_video", "no_audio", "bad_csv_line",
                "corrupt", "non_finite_audio")

_NO_AUDIO = SKIP_REASONS.index("no_audio")
_NO_AUDIO_HINT = " Videos without audio can be used with silence: STICA.AUDIO.MISSING zeros."


class TooManyBadVideosError(RuntimeError):
    """More bad videos (or split-file lines) than ``DATA_LOADER.MAX_BAD_FRACTION`` allows."""


def reason_index(reason: str) -> int:
    """Position of ``reason`` in :data:`SKIP_REASONS`; raises ValueError for an unknown one."""
    try:
        return SKIP_REASONS.index(reason)
    except ValueError:
        raise ValueError(f"unknown skip reason {reason!r}; one of {SKIP_REASONS}") from None


def count_reasons(reasons: Iterable[str]) -> torch.Tensor:
    """How often each reason occurs in ``reasons``: an int64 vector (R,) in the order of SKIP_REASONS."""
    counts = torch.zeros(len(SKIP_REASONS), dtype=torch.int64)
    for reason in reasons:
        counts[reason_index(reason)] += 1
    return counts


def num_bad_lines(dataset: Dataset) -> int:
    """Split-file lines dropped when ``dataset`` (or the dataset under a Subset) was loaded."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return len(getattr(dataset, "bad_lines", ()))


def describe_counts(counts: Sequence[int]) -> str:
    """``"missing: 2, undecodable: 1"``: the non-zero counts of a (R,) vector, or "none"."""
    return ", ".join(f"{r}: {int(c)}" for r, c in zip(SKIP_REASONS, counts) if int(c)) or "none"


def reason_stats(counts: Union[torch.Tensor, Sequence[int]]) -> Dict[str, int]:
    """``{"skipped_<reason>": count}`` for every reason, from a (R,) vector (json_stats names)."""
    counts = [int(c) for c in counts]
    if len(counts) != len(SKIP_REASONS):
        raise ValueError(f"expected {len(SKIP_REASONS)} counts ({SKIP_REASONS}), got {len(counts)}")
    return {f"skipped_{r}": c for r, c in zip(SKIP_REASONS, counts)}


def epoch_skip_stats(
    counts: Union[torch.Tensor, Sequence[int]],
    num_samples: int,
    *,
    max_fraction: float,
    where: str,
) -> Dict[str, int]:
    """The skip counts of an epoch for ``json_stats``, after checking them against the limit.

    Args:
        counts: (R,) videos skipped per reason over the epoch and all processes, bad split-file lines
            included (``bad_csv_line``).
        num_samples: samples the epoch delivered (all processes).
        max_fraction: ``DATA_LOADER.MAX_BAD_FRACTION``, in [0, 1].
        where: what was read, for the error message (e.g. "epoch 3 of the train split").

    Returns:
        ``{"num_skipped_videos": total, "skipped_<reason>": count, ...}`` for every reason.

    Raises:
        TooManyBadVideosError: ``skipped / (num_samples + skipped) > max_fraction``, naming the counts
            per reason and the config key.
    """
    stats = reason_stats(counts)
    counts = list(stats.values())
    skipped = sum(counts)
    read = int(num_samples) + skipped
    if read and skipped / read > max_fraction:
        raise TooManyBadVideosError(
            f"{skipped} of the {read} videos read in {where} ({100.0 * skipped / read:.1f} %) were "
            f"skipped ({describe_counts(counts)}), more than DATA_LOADER.MAX_BAD_FRACTION = {max_fraction}. "
            f"Fix or remove the files named in the warnings above, or raise "
            f"DATA_LOADER.MAX_BAD_FRACTION.{_NO_AUDIO_HINT if counts[_NO_AUDIO] else ''}")
    return {"num_skipped_videos": skipped, **stats}


def check_bad_lines(bad_lines: Sequence[str], num_good: int, *, max_fraction: float, source: str) -> None:
    """Stop when too many lines of a split file were malformed.

    Args:
        bad_lines: one message per dropped line (``"file:line: why"``).
        num_good: lines that gave a video.
        max_fraction: ``DATA_LOADER.MAX_BAD_FRACTION``, in [0, 1].
        source: the split file(s), for the error message.

    Raises:
        TooManyBadVideosError: ``len(bad_lines) / (num_good + len(bad_lines)) > max_fraction``, naming
            the counts, the first bad lines and the config key.
    """
    total = num_good + len(bad_lines)
    if total and len(bad_lines) / total > max_fraction:
        first = "; ".join(bad_lines[:3]) + (" ..." if len(bad_lines) > 3 else "")
        raise TooManyBadVideosError(
            f"{len(bad_lines)} of the {total} lines of {source} ({100.0 * len(bad_lines) / total:.1f} %) "
            f"cannot be read (bad_csv_line: {len(bad_lines)}), more than DATA_LOADER.MAX_BAD_FRACTION = "
            f"{max_fraction}: {first}")
