"""Evaluation in feature space, without training a classifier: weighted kNN and video retrieval.

* **kNN monitor** (the instance-discrimination protocol of Wu et al. 2018, arXiv:1805.01978, used to
  follow SSL pretraining): the features of labelled train videos form a memory bank; each query video
  votes with its k most cosine-similar bank videos, each vote weighted by ``exp(similarity / T)``;
  top-1 accuracy of the summed votes.
* **Retrieval** (the nearest-neighbour protocol of Xu et al. 2019 used by STiCA and GDT): every test
  video queries the train videos; R@k is the percentage of queries with a video of their own class
  among their k nearest neighbours.

Feature data flow (one process; with several, each takes its shard and the rows are gathered)::

    views [ (B, C, T, H, W) ] * V --model.forward_features--> (B, V, D) --mean over V, L2--> (B, D)
    --gathered by video index--> bank (N, D)

B videos in a batch, V views per video, D feature size, N videos, K classes.
"""

import logging
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from stica_slowfast.data import construct_loader, prepare_batch
from stica_slowfast.models.api import audio_visual
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.logging import log_json_stats

from .evaluator import input_key, load_eval_model, write_metrics
from .meters import topk_accuracies
from .setup import setup_process

__all__ = [
    "Features",
    "Encoder",
    "encoder_of",
    "extract_features",
    "extract_features_each",
    "knn_scores",
    "recall_at_k",
    "instance_recall_at_k",
    "KnnMonitor",
    "retrieval",
    "cross_modal_retrieval",
]

logger = logging.getLogger(__name__)

# Query rows per similarity block: bounds memory at (block x N) for any bank size N.
_BLOCK = 1024


class Features(NamedTuple):
    """Features of a split's decodable videos, sorted by video index (L2-normalised unless asked)."""

    features: torch.Tensor  # (N, D) float32, unit rows; (N, V, D) per view with keep_views
    labels: torch.Tensor  # (N,) int64
    index: torch.Tensor  # (N,) int64 video index in the split

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class Encoder(NamedTuple):
    """What :func:`extract_features_each` runs on a batch: ``encode(view) -> (B, D)`` of each view of
    ``batch[key]``, with ``model`` put in eval mode meanwhile."""

    model: nn.Module
    encode: Callable[[torch.Tensor], torch.Tensor]
    key: str


def encoder_of(
    model: nn.Module, encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, key: Optional[str] = None
) -> Encoder:
    """``model.forward_features`` of its input (``"video"`` unless it says), or ``encode`` of ``key``."""
    return Encoder(model, model.forward_features if encode is None else encode, input_key(model) if key is None else key)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader,
    device: torch.device,
    encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    key: Optional[str] = None,
    keep_views: bool = False,
) -> Features:
    """Features of every video the loader yields, from ``model.forward_features`` or ``encode``.

    The model runs in eval mode (restored afterwards). Views of a video are averaged before the L2
    normalisation, or with ``keep_views`` returned one by one as they are; videos marked invalid
    (undecodable) are left out. Every process extracts its shard and receives all rows; duplicates a
    DistributedSampler adds are dropped by video index.

    Args:
        model: module with ``forward_features(x) -> (B, D)`` of its input (``batch["video"]`` views,
            or ``batch[model.input_key]``).
        loader: yields the dataset's batches (``"video"`` (and ``"audio"``) lists of V views,
            ``"label"``, ``"index"``, ``"valid"``).
        device: where the model runs.
        encode: maps one view of ``batch[key]`` to ``(B, D)`` instead of ``model.forward_features``
            (e.g. a cross-modal model's joint-space audio embedding).
        key: the batch entry to encode (default: the model's input, ``"video"`` unless it says).
        keep_views: return the raw ``(N, V, D)`` features of every view (neither averaged nor
            normalised), e.g. for a classifier fitted on them.

    Returns:
        :class:`Features` on the CPU.
    """
    return extract_features_each({"": encoder_of(model, encode, key)}, loader, device, keep_views)[""]


@torch.no_grad()
def extract_features_each(
    encoders: Mapping[str, Encoder], loader, device: torch.device, keep_views: bool = False
) -> Dict[str, Features]:
    """:func:`extract_features` of several encoders in one pass over the loader: each video is read
    and decoded once for all of them (e.g. a model and its baselines, or a video and an audio
    embedding). Returns each encoder's :class:`Features` under its name."""
    was_training = {name: enc.model.training for name, enc in encoders.items()}
    for enc in encoders.values():
        enc.model.eval()
    rows = {name: [] for name in encoders}
    labels, index = [], []
    keys = {enc.key for enc in encoders.values()}  # each batch entry moved to the device once
    try:
        for batch in loader:
            keep = batch["valid"].bool()
            inputs = prepare_batch(batch, device, keys)
            for name, enc in encoders.items():
                feats = torch.stack([enc.encode(v).float() for v in inputs[enc.key]], dim=1)  # V x (B, D) -> (B, V, D)
                if not keep_views:
                    feats = F.normalize(feats.mean(dim=1), dim=1)  # (B, V, D) -> (B, D)
                rows[name].append(feats.cpu()[keep])
            labels.append(batch["label"][keep])
            index.append(batch["index"][keep])
    finally:
        for name, enc in encoders.items():
            enc.model.train(was_training[name])
    local = ({name: torch.cat(r) for name, r in rows.items()}, torch.cat(labels), torch.cat(index))
    gathered = du.all_gather_objects(local) if du.get_world_size() > 1 else [local]
    labels_all = torch.cat([part[1] for part in gathered])
    index_all = torch.cat([part[2] for part in gathered])
    # Unique video indices, sorted; np.unique's return_index gives each one's first row.
    _, first = np.unique(index_all.numpy(), return_index=True)
    first = torch.from_numpy(first)
    return {name: Features(torch.cat([part[0][name] for part in gathered])[first], labels_all[first], index_all[first])
            for name in encoders}


def _nearest(queries: torch.Tensor, bank: torch.Tensor, k: int):
    """Cosine similarities ``(Q, k)`` and bank rows ``(Q, k)`` of each query's k nearest bank rows."""
    k = min(k, bank.shape[0])
    sims, rows = [], []
    for start in range(0, queries.shape[0], _BLOCK):
        # (block, D) @ (D, N) -> (block, N) -> top-k
        top = (queries[start:start + _BLOCK] @ bank.T).topk(k, dim=1)
        sims.append(top.values)
        rows.append(top.indices)
    return torch.cat(sims), torch.cat(rows)


def knn_scores(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Class scores of each query from its k nearest bank rows (weighted kNN, Wu et al. 2018).

    Args:
        queries: ``(Q, D)`` L2-normalised query features.
        bank: ``(N, D)`` L2-normalised bank features.
        bank_labels: ``(N,)`` int64 class of each bank row, in [0, K).
        num_classes: K.
        k: neighbours per query (clipped to N).
        temperature: T > 0; a neighbour's vote is ``exp(cosine / T)``.

    Returns:
        ``(Q, K)`` summed votes (argmax = prediction).
    """
    if bank.shape[0] == 0:
        raise ValueError("the kNN memory bank is empty")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    sims, rows = _nearest(queries, bank, k)
    weights = (sims / temperature).exp()  # (Q, k)
    scores = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype)
    return scores.scatter_add_(1, bank_labels[rows], weights)


def recall_at_k(
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
) -> Dict[str, float]:
    """Retrieval recall: percent of queries with a same-class bank row among their k nearest.

    Args:
        queries, bank: ``(Q, D)`` and ``(N, D)`` L2-normalised features.
        query_labels, bank_labels: ``(Q,)`` and ``(N,)`` classes.
        ks: the k values (each clipped to N).

    Returns:
        ``{"R@k": percent}`` for each k.
    """
    if bank.shape[0] == 0 or queries.shape[0] == 0:
        raise ValueError(f"retrieval needs queries and a bank, got {queries.shape[0]} and {bank.shape[0]}")
    _, rows = _nearest(queries, bank, max(ks))
    hits = bank_labels[rows] == query_labels.view(-1, 1)  # (Q, k) same class, nearest first
    return {f"R@{k}": float(hits[:, :k].any(dim=1).float().mean()) * 100.0 for k in ks}


def instance_recall_at_k(
    queries: torch.Tensor, bank: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> Dict[str, float]:
    """Paired retrieval: percent of queries whose own pair (bank row ``i`` for query ``i``) is among
    their k nearest bank rows; ``queries`` and ``bank`` are ``(N, D)`` L2-normalised, row-aligned."""
    if queries.shape != bank.shape or queries.shape[0] == 0:
        raise ValueError(f"paired retrieval needs row-aligned (N, D) features, got "
                         f"{tuple(queries.shape)} and {tuple(bank.shape)}")
    _, rows = _nearest(queries, bank, max(ks))
    hits = rows == torch.arange(queries.shape[0]).view(-1, 1)  # (N, k) own pair, nearest first
    return {f"R@{k}": float(hits[:, :k].any(dim=1).float().mean()) * 100.0 for k in ks}


def bank_subset(num_videos: int, size: int, seed: int) -> Optional[Sequence[int]]:
    """A fixed random choice of ``size`` of ``num_videos`` indices (sorted), or None for all."""
    if size <= 0 or size >= num_videos:
        return None
    return sorted(np.random.default_rng(seed).choice(num_videos, size, replace=False).tolist())


class KnnMonitor:
    """The kNN monitor of a training run (``STICA.KNN.*``).

    The bank is ``STICA.KNN.NUM_TRAIN`` train videos (a fixed random subset; all when 0), the queries
    are the val or test split, all read with val sampling (one centred clip, centre crop). Loaders are
    built once and reused; features are recomputed at every call since the model changes.
    """

    def __init__(self, cfg: CfgNode):
        self.cfg = cfg
        knn = cfg.STICA.KNN
        self.k, self.temperature = int(knn.K), float(knn.T)
        train = construct_loader(cfg, "train", sampling="val")
        subset = bank_subset(len(train.dataset), int(knn.NUM_TRAIN), cfg.RNG_SEED)
        self.bank_loader = train if subset is None else construct_loader(cfg, "train", "val", subset)
        self.query_loaders: Dict[str, object] = {}

    def _queries(self, split: str):
        if split not in self.query_loaders:
            self.query_loaders[split] = construct_loader(self.cfg, split, sampling="val")
        return self.query_loaders[split]

    def evaluate(self, model: nn.Module, device: torch.device, splits: Sequence[str]) -> Mapping[str, float]:
        """kNN top-1 accuracy (percent) of each query split, e.g. ``{"val": 71.9}``."""
        bank = extract_features(model, self.bank_loader, device)
        results = {}
        for split in splits:
            queries = extract_features(model, self._queries(split), device)
            scores = knn_scores(queries.features, bank.features, bank.labels, self.cfg.MODEL.NUM_CLASSES,
                                self.k, self.temperature)
            results[split] = topk_accuracies(scores, queries.labels, ks=(1,))[0]
        return results


def retrieval(cfg: CfgNode) -> Dict[str, float]:
    """The retrieval run mode (``STICA.RETRIEVAL.ENABLE``): test videos query the train videos.

    Evaluates TEST.CHECKPOINT_FILE_PATH (default: this run's newest checkpoint; a random
    initialisation when there is none). Both splits are read with test sampling and each video's
    feature is the mean over its ``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS`` views.

    Returns:
        ``{"R@k": percent for k in STICA.RETRIEVAL.KS}``, also logged and merged into metrics.json.
    """
    device = setup_process(cfg, "retrieval")
    model, path = load_eval_model(cfg, device)
    bank = extract_features(model, construct_loader(cfg, "train", sampling="test"), device)
    queries = extract_features(model, construct_loader(cfg, "test"), device)
    ks = [int(k) for k in cfg.STICA.RETRIEVAL.KS]
    stats = recall_at_k(queries.features, queries.labels, bank.features, bank.labels, ks=ks)
    log_json_stats({"_type": "retrieval", "num_queries": len(queries), "num_bank": len(bank), **stats},
                   cfg.OUTPUT_DIR, to_file=True)
    if cfg.STICA.AUDIO.ENABLE and audio_visual(model) is not None:
        cross = cross_modal_retrieval(audio_visual(model), construct_loader(cfg, "test"), device, ks)
        log_json_stats({"_type": "cross_modal_retrieval", **cross}, cfg.OUTPUT_DIR, to_file=True)
        stats.update(cross)
    if du.is_master_proc():
        write_metrics(cfg.OUTPUT_DIR, {**stats, "retrieval_checkpoint": path})
    return stats


def cross_modal_retrieval(
    model: nn.Module, loader, device: torch.device, ks: Sequence[int] = (1, 5, 10)
) -> Dict[str, float]:
    """Audio -> video and video -> audio retrieval among the loader's (test) videos.

    Each video's audio queries the videos' joint-space embeddings (``model.embed_audio``,
    ``model.embed_video``, each averaged over the views) and the other way round. Two scores per
    direction, in percent:

    * ``a2v_R@k`` / ``v2a_R@k``: a video (audio) of the query's class is among its k nearest
      (class-level, as :func:`recall_at_k`); ``a2v_chance_R@1`` is the R@1 of a random ranking, the
      mean share of same-class videos in the bank.
    * ``a2v_pair_R@k`` / ``v2a_pair_R@k``: the query's own video (audio) is among its k nearest.

    Returns:
        The scores above, plus ``cross_modal_num_videos``.
    """
    both = extract_features_each({"video": encoder_of(model, model.embed_video, "video"),
                                  "audio": encoder_of(model, model.embed_audio, "audio")}, loader, device)
    video, audio = both["video"], both["audio"]
    out: Dict[str, float] = {"cross_modal_num_videos": len(video)}
    for name, queries, bank in (("a2v", audio, video), ("v2a", video, audio)):
        classwise = recall_at_k(queries.features, queries.labels, bank.features, bank.labels, ks=ks)
        pairs = instance_recall_at_k(queries.features, bank.features, ks=ks)
        out.update({f"{name}_{k}": v for k, v in classwise.items()})
        out.update({f"{name}_pair_{k}": v for k, v in pairs.items()})
    same = (video.labels.view(-1, 1) == video.labels.view(1, -1)).float()  # (N, N)
    out["a2v_chance_R@1"] = float(same.mean()) * 100.0
    return out
