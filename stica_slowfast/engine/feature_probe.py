"""A linear probe that converges: multinomial logistic regression fitted by L-BFGS on frozen features.

The SGD probe (``LinearProbe`` trained by the engine, the paper's Kinetics protocol) needs an LR and a
schedule that suit the features; on a small dataset it may stop far from its optimum, and then a
probe figure says as much about the probe as about the backbone. Here the objective is convex and
solved to its optimum instead, as for small evaluation sets in the SSL literature:

::

    train videos --test views--> frozen features (N, V, D) --standardise (train statistics)-->
      logistic regression on every view, L2 weight lambda, L-BFGS to convergence
      lambda: best top-1 on a held-out share of the train videos (split by video, per class), then
      refitted on all train videos
    test videos --test views--> (M, V, D) --> softmax averaged over each video's V views --> top-1

N train and M test videos, V = ``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS`` views, D feature
size, K classes. The run mode (``STICA.FEATURE_PROBE.ENABLE``) probes ``TRAIN.CHECKPOINT_FILE_PATH``
(loaded as ``LinearProbe`` loads it for SGD; a random initialisation when empty) and also writes
:func:`representation_diagnostics` of the test features, which tell a collapsed representation
from one that is merely not yet linearly useful.
"""

import logging
import math
from typing import Dict, NamedTuple, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from fvcore.common.config import CfgNode

from stica_slowfast.checkpoint import naming_config_key
from stica_slowfast.data import construct_loader
from stica_slowfast.models.api import contract
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.logging import log_json_stats

from .evaluator import write_metrics
from .retrieval import encoder_of, extract_features_each
from .setup import build_model_on, setup_process

__all__ = [
    "LogisticRegression",
    "fit_logistic_regression",
    "holdout_split",
    "probe_features",
    "representation_diagnostics",
    "feature_probe",
]

logger = logging.getLogger(__name__)


class LogisticRegression(NamedTuple):
    """A fitted multinomial logistic regression on standardised features (float64)."""

    mean: torch.Tensor  # (D,) feature mean of the training samples
    scale: torch.Tensor  # (D,) feature std of the training samples (1 where it was 0)
    weight: torch.Tensor  # (K, D)
    bias: torch.Tensor  # (K,)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(..., K)`` of raw features ``(..., D)``."""
        z = (x.double() - self.mean) / self.scale
        return z @ self.weight.T + self.bias


def fit_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float, max_iter: int = 500,
) -> LogisticRegression:
    """Minimise mean cross-entropy + ``l2 / 2 * ||W||^2`` over standardised ``x`` with L-BFGS.

    Args:
        x: ``(S, D)`` training samples.
        y: ``(S,)`` int64 classes in [0, num_classes).
        num_classes: K.
        l2: weight decay lambda >= 0 on W (not on the bias).
        max_iter: L-BFGS iterations at most (the convex objective usually converges well before).

    Returns:
        The fitted :class:`LogisticRegression`.
    """
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(f"need samples (S, D) and labels (S,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    x = x.double()
    mean, scale = x.mean(dim=0), x.std(dim=0, correction=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    z = (x - mean) / scale
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LogisticRegression(mean, scale, weight.detach(), bias.detach())


def holdout_split(labels: torch.Tensor, fraction: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row indices (fit, held out) of a stratified random split: ``fraction`` of each class's rows
    (at least one of a class with two or more) held out. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for c in torch.unique(labels).tolist():
        rows = torch.nonzero(labels == c).flatten().numpy()
        rows = rows[rng.permutation(len(rows))]
        n_held = min(len(rows) - 1, max(1, round(fraction * len(rows)))) if len(rows) > 1 else 0
        held += rows[:n_held].tolist()
        fit += rows[n_held:].tolist()
    return torch.tensor(sorted(fit), dtype=torch.int64), torch.tensor(sorted(held), dtype=torch.int64)


def _video_top1(model: LogisticRegression, views: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 (percent) of videos ``(N, V, D)``: softmax averaged over each video's views."""
    probs = model.logits(views).softmax(dim=-1).mean(dim=1)  # (N, V, K) -> (N, K)
    return float((probs.argmax(dim=1) == labels).double().mean()) * 100.0


def probe_features(
    train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
    num_classes: int, *, l2_grid: Sequence[float], holdout_fraction: float = 0.2, seed: int = 0,
    max_iter: int = 500,
) -> Dict[str, float]:
    """Choose lambda on held-out train videos, refit on all of them, score the test videos.

    Args:
        train: ``(N, V, D)`` features of every view of the train videos.
        train_labels: ``(N,)`` their classes.
        test: ``(M, V', D)`` features of the test videos' views.
        test_labels: ``(M,)`` their classes.
        num_classes: K.
        l2_grid: candidate lambdas (one value: no selection; ties go to the largest).
        holdout_fraction: share of each class's train videos held out to choose lambda, in (0, 1).
        seed: seed of the held-out split.
        max_iter: L-BFGS iterations per fit.

    Returns:
        ``top1_acc`` (test), ``train_top1_acc`` (train videos, final fit), ``l2`` (chosen),
        ``holdout_top1_acc`` (at the chosen lambda; absent with one lambda), in percent.
    """
    if train.ndim != 3 or test.ndim != 3:
        raise ValueError(f"need per-view features (N, V, D), got {tuple(train.shape)} and {tuple(test.shape)}")
    if not l2_grid:
        raise ValueError("l2_grid is empty")

    def fit(videos: torch.Tensor, l2: float) -> LogisticRegression:
        x = train[videos]  # (n, V, D) -> every view a sample (n V, D), labels repeated per view
        y = train_labels[videos].repeat_interleave(train.shape[1])
        return fit_logistic_regression(x.flatten(0, 1), y, num_classes, l2=l2, max_iter=max_iter)

    out: Dict[str, float] = {}
    grid = sorted(float(v) for v in l2_grid)
    l2 = grid[0]
    if len(grid) > 1:
        fit_rows, held_rows = holdout_split(train_labels, holdout_fraction, seed)
        scores = [(_video_top1(fit(fit_rows, v), train[held_rows], train_labels[held_rows]), v) for v in grid]
        out["holdout_top1_acc"], l2 = max(scores)  # ties: the strongest regularisation
    everything = torch.arange(train.shape[0])
    model = fit(everything, l2)
    out["l2"] = l2
    out["train_top1_acc"] = _video_top1(model, train, train_labels)
    out["top1_acc"] = _video_top1(model, test, test_labels)
    return out


def representation_diagnostics(views: torch.Tensor) -> Dict[str, float]:
    """What tells a collapsed representation from a slow learner, from per-view features ``(N, V, D)``.

    * ``effective_rank``: exp of the entropy of the normalised singular values of the centred video
      features (mean over views; Roy & Vetterli 2007, as RankMe, arXiv 2210.02885), in
      [1, min(N, D)]; near 1 is a collapse onto a line.
    * ``alignment``: mean squared distance between two L2-normalised views of the same video, in
      [0, 4] (Wang & Isola 2020, arXiv 2005.10242); near 0 with a low uniformity is a collapse.
    * ``uniformity``: ``log mean exp(-2 ||f_i - f_j||^2)`` over pairs of L2-normalised video features,
      in [-4, 0]; 0 when every video maps to one point.
    """
    if views.ndim != 3 or views.shape[0] < 2:
        raise ValueError(f"need per-view features (N >= 2, V, D), got {tuple(views.shape)}")
    x = views.double()
    mean = x.mean(dim=1)  # (N, V, D) -> (N, D)
    sv = torch.linalg.svdvals(mean - mean.mean(dim=0))
    videos = F.normalize(mean, dim=1)
    p = sv / sv.sum() if sv.sum() > 0 else torch.ones(1, dtype=x.dtype)
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    out = {"effective_rank": float(entropy.exp())}
    if x.shape[1] >= 2:
        a, b = F.normalize(x[:, 0], dim=1), F.normalize(x[:, 1], dim=1)
        out["alignment"] = float((a - b).pow(2).sum(dim=1).mean())
    sq = torch.cdist(videos, videos).pow(2)
    pairs = sq[torch.triu_indices(len(videos), len(videos), offset=1).unbind()]
    out["uniformity"] = float(torch.logsumexp(-2 * pairs, dim=0) - math.log(len(pairs)))
    return out


def _probe_models(cfg: CfgNode, device: torch.device) -> Dict[str, Tuple[nn.Module, str]]:
    """The model of TRAIN.CHECKPOINT_FILE_PATH (name "") and those of STICA.FEATURE_PROBE.ALSO, each
    with its checkpoint path ("" for a random initialisation)."""
    specs = [("", cfg.TRAIN.CHECKPOINT_FILE_PATH, "")] + [tuple(spec) for spec in cfg.STICA.FEATURE_PROBE.ALSO]
    models = {}
    for name, path, arch in specs:
        model_cfg = cfg
        if arch:
            model_cfg = cfg.clone()
            model_cfg.defrost()
            model_cfg.MODEL.ARCH = arch
        # (build_model_on draws from RNG_SEED: a random initialisation is the one a run of its own draws.)
        model = build_model_on(model_cfg, device)
        what = f"{name or 'the model'} ({model_cfg.MODEL.ARCH})"
        if path:
            with naming_config_key(f"STICA.FEATURE_PROBE.ALSO ({name})" if name else "TRAIN.CHECKPOINT_FILE_PATH"):
                # TRAIN.CHECKPOINT_TYPE / _ENCODER say what TRAIN.CHECKPOINT_FILE_PATH is; ALSO's are recognised.
                epoch = (contract(model).load_pretrained(path, layout=cfg.TRAIN.CHECKPOINT_TYPE,
                                                         encoder=cfg.TRAIN.CHECKPOINT_ENCODER)
                         if not name else contract(model).load_pretrained(path))
            logger.info("Feature probe of %s: %s (epoch %d)", what, path, epoch + 1)
        else:
            logger.warning("Feature probe of %s: no checkpoint, a randomly initialised model", what)
        models[name] = (model, path)
    return models


def feature_probe(cfg: CfgNode) -> Dict[str, float]:
    """The feature-probe run mode (``STICA.FEATURE_PROBE.ENABLE``) of ``TRAIN.CHECKPOINT_FILE_PATH``,
    and of the encoders of ``STICA.FEATURE_PROBE.ALSO`` in the same pass over the videos.

    Train and test videos are read with test sampling (``TEST.NUM_ENSEMBLE_VIEWS x
    TEST.NUM_SPATIAL_CROPS`` deterministic views), each decoded once for all the encoders; see the
    module docstring for the fit.

    Returns:
        ``feature_probe_top1_acc``, ``feature_probe_train_top1_acc``, ``feature_probe_l2``,
        ``feature_probe_holdout_top1_acc`` and the test features' ``effective_rank``, ``alignment``
        and ``uniformity`` of TRAIN.CHECKPOINT_FILE_PATH's model; also logged (json_stats
        ``feature_probe``, with ``name`` "" for it) and merged into metrics.json, where
        ``feature_probe_also`` holds the same figures of each ALSO encoder under its name.
    """
    device = setup_process(cfg, "feature_probe")
    models = _probe_models(cfg, device)
    encoders = {name: encoder_of(model) for name, (model, _) in models.items()}
    train = extract_features_each(encoders, construct_loader(cfg, "train", sampling="test"), device, keep_views=True)
    test = extract_features_each(encoders, construct_loader(cfg, "test"), device, keep_views=True)
    probe = cfg.STICA.FEATURE_PROBE
    results = {}
    for name, (_, path) in models.items():
        fitted = probe_features(
            train[name].features, train[name].labels, test[name].features, test[name].labels, cfg.MODEL.NUM_CLASSES,
            l2_grid=[float(v) for v in probe.L2], holdout_fraction=float(probe.HOLDOUT_FRACTION),
            seed=int(cfg.RNG_SEED), max_iter=int(probe.MAX_ITER))
        stats = {f"feature_probe_{k}": v for k, v in fitted.items()}
        stats.update(representation_diagnostics(test[name].features))
        stats.update({"feature_probe_num_train": len(train[name]), "feature_probe_num_test": len(test[name])})
        log_json_stats({"_type": "feature_probe", "name": name, **stats}, cfg.OUTPUT_DIR, to_file=True)
        results[name] = {**stats, "feature_probe_checkpoint": path}
    if du.is_master_proc():
        # Always written (empty without ALSO), so a rerun in the same OUTPUT_DIR leaves no stale entries.
        also = {name: r for name, r in results.items() if name}
        write_metrics(cfg.OUTPUT_DIR, {**results[""], "feature_probe_also": also})
    return {k: v for k, v in results[""].items() if k != "feature_probe_checkpoint"}
