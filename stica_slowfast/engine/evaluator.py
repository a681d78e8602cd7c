"""Multi-view evaluation (PySlowFast's test protocol) and the run's ``metrics.json``.

Each test video is decoded once into ``TEST.NUM_ENSEMBLE_VIEWS x TEST.NUM_SPATIAL_CROPS`` views; the
softmax scores of its views are averaged and top-1/top-5 accuracy is taken over videos. Videos that
cannot be decoded are left out and counted per reason (``skipped_<reason>``); evaluation does not stop
for them (``DATA_LOADER.MAX_BAD_FRACTION`` applies to training).
"""

import json
import logging
import os
from typing import Dict, Tuple

import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch import nn

from stica_slowfast.checkpoint import load_checkpoint, load_last_good_checkpoint, naming_config_key
from stica_slowfast.data import construct_loader, prepare_batch
from stica_slowfast.data.bad_input import SKIP_REASONS, num_bad_lines, reason_index, reason_stats
from stica_slowfast.models.api import contract
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.io import PathManager, atomic_open
from stica_slowfast.utils.logging import log_json_stats

from .meters import TestMeter, aggregate_views
from .setup import build_model_on, check_same_checkpoint, setup_process

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def predicts_labels(model: nn.Module) -> bool:
    """Whether ``model(video)`` returns class logits (classifiers and linear probes do)."""
    return bool(contract(model).predicts_labels)


def input_key(model: nn.Module) -> str:
    """The batch entry the model classifies: ``"video"``, or ``"audio"`` for an audio probe."""
    return str(contract(model).input_key)


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: CfgNode, device: torch.device) -> Dict[str, float]:
    """Top-1/top-5 (percent) over the loader's videos, averaging softmax scores over each video's views.

    Every process evaluates its shard of the videos; the meter merges them.

    Returns:
        ``top1_acc``, ``top5_acc``, ``num_videos``, ``num_skipped`` (see ``TestMeter.finalize``) and
        ``skipped_<reason>`` for every reason of ``bad_input.SKIP_REASONS``: the invalid videos, and
        the split file's unreadable lines (``skipped_bad_csv_line``).
    """
    was_training = model.training
    model.eval()
    meter = TestMeter(len(loader.dataset), cfg.MODEL.NUM_CLASSES)
    # (num_videos, R): why each video is invalid; by index, so padding duplicates count once.
    reasons = torch.zeros(len(loader.dataset), len(SKIP_REASONS), dtype=torch.int64)
    for batch in loader:
        if "skip_reasons" in batch:
            reasons[batch["index"]] = batch["skip_reasons"]
        batch = prepare_batch(batch, device)
        # V views of (B, C, T, H, W) (or spectrograms) -> logits (B, V, K)
        logits = torch.stack([model(view) for view in batch[input_key(model)]], dim=1)
        meter.update(batch["index"], aggregate_views(logits.float()), batch["label"], batch["valid"])
    meter.sync()
    if du.get_world_size() > 1:
        # A video's row is the same on every rank that decoded it, zeros on the others.
        merged = reasons.to(du.comm_device())
        dist.all_reduce(merged, op=dist.ReduceOp.MAX)
        reasons = merged.cpu()
    model.train(was_training)
    counts = reasons.sum(dim=0)
    counts[reason_index("bad_csv_line")] += num_bad_lines(loader.dataset)
    return {**meter.finalize(), **reason_stats(counts)}


def write_metrics(output_dir: str, metrics: Dict[str, float]) -> str:
    """Merge ``metrics`` into ``output_dir/metrics.json`` (written atomically); return its path."""
    path = os.path.join(output_dir, METRICS_FILE)
    merged = {}
    if PathManager.exists(path):
        with PathManager.open(path, "r") as f:
            merged = json.load(f)
    merged.update(metrics)
    with atomic_open(path, "w") as f:
        json.dump(merged, f, indent=2, sort_keys=True)
    return path


def load_eval_model(cfg: CfgNode, device: torch.device) -> Tuple[nn.Module, str]:
    """The model of TEST.CHECKPOINT_FILE_PATH (default: this run's newest usable checkpoint) and that path.

    Without either, the model keeps its random initialisation (a baseline) and the path is "".
    Raises CheckpointFileError naming TEST.CHECKPOINT_FILE_PATH when that file is not a usable
    checkpoint, or naming the checkpoint directory when none of its files is.
    """
    model = build_model_on(cfg, device)
    path, epoch = cfg.TEST.CHECKPOINT_FILE_PATH, -1
    if path:
        with naming_config_key("TEST.CHECKPOINT_FILE_PATH"):
            epoch = load_checkpoint(path, model, layout=cfg.TEST.CHECKPOINT_TYPE)
    else:  # the newest usable one (an unusable newer file is skipped, with a warning)
        path, epoch = (load_last_good_checkpoint(cfg.OUTPUT_DIR, model, warn=du.is_master_proc()) or ("", -1))[:2]
        check_same_checkpoint(path)
    if path:
        logger.info("Evaluating %s (epoch %d)", path, epoch + 1)
    else:
        logger.warning("No checkpoint given or found in %s: evaluating a randomly initialised model", cfg.OUTPUT_DIR)
    return model, path


def test(cfg: CfgNode) -> Dict[str, float]:
    """Multi-view test of TEST.CHECKPOINT_FILE_PATH (default: this run's newest checkpoint)."""
    device = setup_process(cfg, "test")
    model, path = load_eval_model(cfg, device)
    if not predicts_labels(model):
        logger.info("%s does not predict labels; no multi-view test", cfg.MODEL.MODEL_NAME)
        return {}
    loader = construct_loader(cfg, "test")
    stats = evaluate(model, loader, cfg, device)
    log_json_stats({"_type": "test_final", **stats}, cfg.OUTPUT_DIR, to_file=True)
    if du.is_master_proc():
        write_metrics(cfg.OUTPUT_DIR, {**stats, "checkpoint": path})
    return stats
