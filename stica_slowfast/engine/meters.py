"""Meters: top-k accuracy, multi-view aggregation, the video-level test meter and the training step logs.

Symbols: B videos in a batch, V views per video (NUM_ENSEMBLE_VIEWS x NUM_SPATIAL_CROPS), K classes,
N samples.

Multi-view test data flow::

    logits (B, V, K) --aggregate_views--> scores (B, K) --TestMeter.update(idx, scores, labels, valid)-->
    per-video table (num_videos, K) --sync() across ranks--> finalize() -> top-1 / top-5 in percent

The test meter keys everything by the dataset's video index, so the duplicates a DistributedSampler adds
to even out the last batch land on the same row instead of being counted twice, on one rank or several.
"""

import math
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.distributed as dist
from fvcore.common.history_buffer import HistoryBuffer

from stica_slowfast.utils import distributed as du

__all__ = [
    "topk_accuracies",
    "aggregate_views",
    "TestMeter",
    "StepLogs",
]


# ------------------------------------------------------------------------------------------------ #
# Functional metrics
# ------------------------------------------------------------------------------------------------ #
def topk_accuracies(
    logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> List[float]:
    """Top-k accuracies in percent.

    Args:
        logits: Scores ``(N, K)`` (logits or probabilities; only their order matters).
        labels: Ground-truth class indices ``(N,)``.
        ks: The k values; each is clipped to K, so top-5 of a 3-class problem is top-3 (= 100%).

    Returns:
        One float per k, in percent; NaN for every k when N is 0.
    """
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Expected logits (N, K) and labels (N,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}."
        )
    num_samples, num_classes = logits.shape
    if num_samples == 0:
        return [math.nan for _ in ks]
    clipped = [max(1, min(int(k), num_classes)) for k in ks]
    # (N, maxk) class indices, best first.
    top = logits.topk(max(clipped), dim=1).indices
    hits = top == labels.to(top.device).view(-1, 1)  # (N, maxk)
    return [float(hits[:, :k].any(dim=1).float().mean()) * 100.0 for k in clipped]


def aggregate_views(logits: torch.Tensor) -> torch.Tensor:
    """Video-level scores: the mean over views of each view's softmax.

    Averaging probabilities rather than logits keeps one over-confident view from dominating.

    Args:
        logits: Per-view logits ``(B, V, K)``.

    Returns:
        Class probabilities ``(B, K)``, each row summing to 1.
    """
    if logits.ndim != 3:
        raise ValueError(f"Expected logits (B, V, K), got shape {tuple(logits.shape)}.")
    # Softmax in float32 at least: AMP logits in float16 lose the small probabilities.
    return logits.float().softmax(dim=-1).mean(dim=1)


# ------------------------------------------------------------------------------------------------ #
# Video-level test meter
# ------------------------------------------------------------------------------------------------ #
class TestMeter:
    """Collects one aggregated score row per test video and reports video-level accuracy.

    Rows are indexed by the dataset's video index and *overwritten*, not summed: a video that arrives
    again (DistributedSampler padding, a retried batch) is counted once. Invalid samples (videos that
    failed to decode) are ignored. :meth:`sync` merges the tables of all ranks (a video seen by several
    ranks gets the mean of their rows, which equals each row for a deterministic test pass).

    ``num_skipped`` in :meth:`finalize` counts the videos in ``[0, num_videos)`` without any valid score:
    invalid ones and ones never seen.

    Args:
        num_videos: Number of videos in the test set (video indices lie in ``[0, num_videos)``).
        num_classes: Number of classes K.
    """

    # Not a pytest test class despite the name.
    __test__ = False

    def __init__(self, num_videos: int, num_classes: int) -> None:
        if num_videos <= 0 or num_classes <= 0:
            raise ValueError(
                f"num_videos and num_classes must be positive, got {num_videos}, {num_classes}."
            )
        self.num_videos = int(num_videos)
        self.num_classes = int(num_classes)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.scores = torch.zeros(self.num_videos, self.num_classes, dtype=torch.float32)
        self.labels = torch.full((self.num_videos,), -1, dtype=torch.long)
        self.seen = torch.zeros(self.num_videos, dtype=torch.bool)

    def update(
        self,
        video_idx: torch.Tensor,
        scores: torch.Tensor,
        labels: torch.Tensor,
        valid: Optional[torch.Tensor] = None,
    ) -> None:
        """Record a batch.

        Args:
            video_idx: Dataset index of each video ``(B,)``.
            scores: Aggregated class scores ``(B, K)`` (e.g. from :func:`aggregate_views`).
            labels: Class index of each video ``(B,)``.
            valid: Bool ``(B,)``; False marks a sample to ignore. None = all valid.
        """
        video_idx = torch.as_tensor(video_idx).detach().long().cpu().view(-1)
        labels = torch.as_tensor(labels).detach().long().cpu().view(-1)
        scores = scores.detach().float().cpu()
        if scores.shape != (video_idx.numel(), self.num_classes) or labels.numel() != video_idx.numel():
            raise ValueError(
                f"Expected video_idx (B,), scores (B, {self.num_classes}), labels (B,); got "
                f"{tuple(video_idx.shape)}, {tuple(scores.shape)}, {tuple(labels.shape)}."
            )
        if valid is not None:
            keep = torch.as_tensor(valid).detach().bool().cpu().view(-1)
            video_idx, scores, labels = video_idx[keep], scores[keep], labels[keep]
        if video_idx.numel() == 0:
            return
        if int(video_idx.min()) < 0 or int(video_idx.max()) >= self.num_videos:
            raise IndexError(f"Video index out of [0, {self.num_videos}): {video_idx.tolist()}")
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(f"Label out of [0, {self.num_classes}): {labels.tolist()}")
        # Overwrite: a duplicate writes the same row again instead of adding to it.
        self.scores[video_idx] = scores
        self.labels[video_idx] = labels
        self.seen[video_idx] = True

    def sync(self) -> None:
        """Merge the tables of all ranks in place (collective; a no-op when not distributed).

        Every rank must call it. Uses only ``all_reduce`` (SUM and MAX), which gloo and NCCL support.
        """
        if du.get_world_size() == 1:
            return
        device = du.comm_device()
        seen = self.seen.to(device=device, dtype=torch.float32)
        # Zero unseen rows so that they add nothing; the count says how many ranks saw each video.
        scores = (self.scores * self.seen.view(-1, 1)).to(device)
        labels = self.labels.to(device)
        dist.all_reduce(seen, op=dist.ReduceOp.SUM)
        dist.all_reduce(scores, op=dist.ReduceOp.SUM)
        # Unseen rows hold -1, so MAX picks the label from a rank that saw the video.
        dist.all_reduce(labels, op=dist.ReduceOp.MAX)
        seen, scores, labels = seen.cpu(), scores.cpu(), labels.cpu()
        self.seen = seen > 0
        self.scores = scores / seen.clamp(min=1).view(-1, 1)
        self.labels = labels

    def finalize(self, ks: Sequence[int] = (1, 5)) -> Dict[str, Union[float, int]]:
        """Video-level accuracy over the videos with a valid score (call :meth:`sync` first).

        Args:
            ks: Must hold 1 and 5 (reported as ``top1_acc`` / ``top5_acc``); others add ``top{k}_acc``.

        Returns:
            ``{"top1_acc", "top5_acc"}`` in percent (NaN when no video was seen), ``"num_videos"``
            (videos scored) and ``"num_skipped"`` (videos without a valid score).
        """
        ks = sorted(set(int(k) for k in ks) | {1, 5})
        seen = self.seen
        accs = topk_accuracies(self.scores[seen], self.labels[seen], ks=ks)
        result: Dict[str, Union[float, int]] = {f"top{k}_acc": acc for k, acc in zip(ks, accs)}
        num_seen = int(seen.sum())
        result["num_videos"] = num_seen
        result["num_skipped"] = self.num_videos - num_seen
        return result


# ------------------------------------------------------------------------------------------------ #
# Training scalars
# ------------------------------------------------------------------------------------------------ #
class StepLogs:
    """The per-step log values of training, read back to the host once per :meth:`flush`.

    A method's ``forward_train`` returns its logs as 0-dim tensors on the training device (or host
    numbers); :meth:`add` keeps them as they are, so logging adds no host sync to a step, and
    :meth:`flush` (every ``LOG_PERIOD`` steps, and at the epoch's end) copies everything pending in one
    transfer per device. The values are then kept in fvcore ``HistoryBuffer``s: the window median is
    robust to the odd slow iteration or loss spike; the global average is what an epoch record reports.

    Args:
        window: number of recent steps the window median covers.
    """

    def __init__(self, window: int) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.window = int(window)
        self._pending: List[Dict[str, Union[float, torch.Tensor]]] = []
        self._history: Dict[str, HistoryBuffer] = {}

    def add(self, values: Mapping[str, Union[float, torch.Tensor]]) -> None:
        """Record one step's scalars (tensors are kept, detached, on their device)."""
        # A copy: a logged buffer must be read as it is now, not at the flush.
        self._pending.append({k: v.detach().reshape(()).clone() if torch.is_tensor(v) else float(v)
                              for k, v in values.items()})

    def flush(self) -> None:
        """Move the pending values to the host (one copy per device) into the histories."""
        tensors: Dict[torch.device, List[torch.Tensor]] = {}
        for step in self._pending:
            for v in step.values():
                if torch.is_tensor(v):
                    tensors.setdefault(v.device, []).append(v.float())
        host = {device: iter(torch.stack(ts).tolist()) for device, ts in tensors.items()}
        for step in self._pending:
            for key, v in step.items():
                value = next(host[v.device]) if torch.is_tensor(v) else v
                self._history.setdefault(key, HistoryBuffer()).update(value)
        self._pending.clear()

    def state(self) -> Dict[str, List[float]]:
        """Every value logged so far, per name (flushes first): a mid-epoch checkpoint's copy."""
        self.flush()
        return {key: [float(v) for v, _ in h.values()] for key, h in self._history.items()}

    def load_state(self, state: Mapping[str, Sequence[float]]) -> None:
        """Log again the values of :meth:`state`, in their order (global averages come out the same)."""
        for key, values in state.items():
            history = self._history.setdefault(key, HistoryBuffer())
            for value in values:
                history.update(float(value))

    def keys(self) -> List[str]:
        """The names logged so far (flushed), sorted."""
        return sorted(self._history)

    def medians(self) -> Dict[str, float]:
        """Median of each name over the last ``window`` flushed steps."""
        return {k: float(h.median(self.window)) for k, h in sorted(self._history.items())}

    def global_avg(self, key: str) -> float:
        """Mean of ``key`` over all flushed steps (NaN when there is none)."""
        history = self._history.get(key)
        return float(history.global_avg()) if history is not None and history.values() else math.nan
