"""Generic training loop. The model owns its training step (``forward_train``); the engine owns data,
optimisation, schedules, mixed precision, distribution, checkpoints and logs. It never looks at the
model's name.
"""

import logging
import math
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from stica_slowfast.checkpoint import (
    Resumed,
    get_last_checkpoint,
    load_last_good_checkpoint,
    naming_config_key,
    prune_mid_epoch_checkpoints,
    save_checkpoint,
)
from stica_slowfast.data import construct_loader, prepare_batch, shuffle_dataset
from stica_slowfast.data.bad_input import SKIP_REASONS, epoch_skip_stats, num_bad_lines, reason_index
from stica_slowfast.models.api import contract
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.logging import drop_json_stats_after, log_json_stats
from stica_slowfast.utils.misc import derive_seed, rng_states, set_rng_states, set_seed, unwrap

from .evaluator import evaluate, predicts_labels, write_metrics
from .meters import StepLogs
from .optim import construct_optimizer, get_lr_at_epoch, optimizer_step, set_lr
from .preemption import StopSignals
from .retrieval import KnnMonitor
from .setup import (
    MIN_FREE_BYTES,
    TensorBoardWriter,
    build_model_on,
    check_output_dir,
    check_same_checkpoint,
    setup_process,
)

logger = logging.getLogger(__name__)


class TrainStep(nn.Module):
    """Makes ``model.forward_train`` the ``forward`` of a module.

    DistributedDataParallel synchronises gradients only for computations run through its own
    ``forward``; wrapping this module (not the model) keeps each method's step inside DDP.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Dict) -> Dict:
        return self.model.forward_train(batch)


def amp_dtype(cfg: CfgNode, device: torch.device) -> torch.dtype:
    """Autocast dtype: ``STICA.SOLVER.AMP_DTYPE`` on CUDA, bfloat16 on CPU."""
    return getattr(torch, cfg.STICA.SOLVER.AMP_DTYPE) if device.type == "cuda" else torch.bfloat16


def autocast(cfg: CfgNode, device: torch.device):
    """Mixed precision context in :func:`amp_dtype`, off unless TRAIN.MIXED_PRECISION."""
    return torch.autocast(device_type=device.type, dtype=amp_dtype(cfg, device),
                          enabled=cfg.TRAIN.MIXED_PRECISION)


def resume_point(cfg: CfgNode, model, optimizer, scaler) -> Tuple[int, Optional[Resumed]]:
    """Load the newest usable checkpoint of this run, else ``TRAIN.CHECKPOINT_FILE_PATH``; return the
    start epoch and, when resuming this run, what was loaded (a mid-epoch checkpoint says where in
    the start epoch to go on).

    With ``TRAIN.AUTO_RESUME`` an unusable newest checkpoint (a copy cut short) is skipped for the
    previous one, with a warning naming both (:func:`load_last_good_checkpoint`).

    Raises:
        CheckpointFileError: every checkpoint of the run is unusable, or ``TRAIN.CHECKPOINT_FILE_PATH``
            is not a usable checkpoint (the message names the key and the file).
    """
    if cfg.TRAIN.AUTO_RESUME:
        resumed = load_last_good_checkpoint(cfg.OUTPUT_DIR, model, optimizer, scaler, warn=du.is_master_proc())
        check_same_checkpoint(resumed.path if resumed is not None else "")
        if resumed is not None:
            logger.info("Resuming from %s", resumed.path)
            return resumed.epoch + 1, resumed
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        path = cfg.TRAIN.CHECKPOINT_FILE_PATH
        logger.info("Initialising from %s", path)
        with naming_config_key("TRAIN.CHECKPOINT_FILE_PATH"):
            epoch = contract(model).load_pretrained(path, layout=cfg.TRAIN.CHECKPOINT_TYPE,
                                                    encoder=cfg.TRAIN.CHECKPOINT_ENCODER)
        return (0 if cfg.TRAIN.CHECKPOINT_EPOCH_RESET else epoch + 1), None
    return 0, None


def resume_or_initialise(cfg: CfgNode, model, optimizer, scaler) -> int:
    """The start epoch of :func:`resume_point` (after loading what it loads)."""
    return resume_point(cfg, model, optimizer, scaler)[0]


class TrainingDivergedError(RuntimeError):
    """The loss or the weights became NaN or infinite; raised on every process at the same step."""


def _ranks_where(flag: bool) -> List[int]:
    """The ranks on which ``flag`` is True (one small all-reduce when distributed; all must call)."""
    if du.get_world_size() == 1:
        return [0] if flag else []
    flags = torch.zeros(du.get_world_size(), dtype=torch.float32)
    flags[du.get_rank()] = float(flag)
    return [r for r, f in enumerate(du.all_reduce_tensor(flags, average=False).tolist()) if f]


def _diverged(what: str, where: str, ranks: List[int], cfg: CfgNode) -> TrainingDivergedError:
    on = f" on process {', '.join(map(str, ranks))}" if du.get_world_size() > 1 else ""
    last = get_last_checkpoint(cfg.OUTPUT_DIR) or "none"
    return TrainingDivergedError(f"{what} {where}{on}; stopping (last checkpoint: {last})")


def _step_verdict(loss_value: float, epoch: int, it: int, cfg: CfgNode, signum: int = 0,
                  checkpoint_due: bool = False) -> Tuple[int, bool]:
    """What every process must do after this step, agreed in one small all-reduce (MAX).

    Each process sees only its own loss (a supervised loss, or a bad input, can go NaN on one rank)
    and its own signals. A process that stopped alone would leave the others waiting in DDP's
    gradient all-reduce (until the 30-minute timeout with NCCL across machines), so the verdicts are
    shared first: all processes stop at the same step, before the optimiser update, with the same
    message; all write a checkpoint (and stop) when any one of them was signalled; all checkpoint when
    process 0's clock says one is due (``TRAIN.CHECKPOINT_MINUTES``).

    Args:
        loss_value: this process's loss.
        signum: the stop signal this process received (0: none).
        checkpoint_due: process 0's clock says a checkpoint is due (ignored on other processes).

    Returns:
        ``(signal number any process received or 0, checkpoint due)``, the same on every process.

    Raises:
        TrainingDivergedError: on every process, when any process's loss is not finite.
    """
    world, rank = du.get_world_size(), du.get_rank()
    # Per process: [loss not finite, signal number]; then process 0's clock.
    votes = torch.zeros(2 * world + 1, dtype=torch.float64)
    votes[rank] = float(not math.isfinite(loss_value))
    votes[world + rank] = float(signum)
    votes[2 * world] = float(checkpoint_due and rank == 0)
    if world > 1:
        votes = du.all_reduce_tensor(votes, average=False)
    ranks = [r for r in range(world) if votes[r]]
    if ranks:
        what = f"loss is {loss_value}" if not math.isfinite(loss_value) else "loss is not finite"
        raise _diverged(what, f"at epoch {epoch + 1}, iteration {it + 1}", ranks, cfg)
    return int(votes[world:2 * world].max()), bool(votes[2 * world])


def _check_finite_state(model: nn.Module, where: str, cfg: CfgNode) -> None:
    """Raise TrainingDivergedError (every process) when a weight or buffer is not finite.

    Called before a checkpoint is written, so that the last checkpoint is always a good one: the
    last update before it can make the weights non-finite while every loss was finite.

    Args:
        where: e.g. ``"after epoch 3"``.
    """
    state = unwrap(model).state_dict()
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    ranks = _ranks_where(bool(bad))
    if ranks:
        what = f"weights are not finite ({', '.join(bad[:3]) or 'another process'})"
        raise _diverged(what, f"{where}, not saved", ranks, cfg)


def _checkpoint_bytes(model: nn.Module) -> int:
    """Estimated size of a checkpoint: the model state plus up to two optimiser moments (AdamW)."""
    state = unwrap(model).state_dict().values()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return sum(v.numel() * v.element_size() for v in state) + 2 * params


class Checkpoints:
    """When the training writes checkpoints, and writing them (every process calls :meth:`save`).

    At epoch ends (``TRAIN.CHECKPOINT_PERIOD``) and, mid-epoch, every ``TRAIN.CHECKPOINT_ITER_PERIOD``
    steps, when ``TRAIN.CHECKPOINT_MINUTES`` passed since the last one (process 0's clock), and at a
    stop signal (``TRAIN.PREEMPT_SIGNALS``, see :mod:`.preemption`). A mid-epoch checkpoint holds
    every process's random states and partial epoch statistics, so that a run resumed from it repeats
    the uninterrupted run (samples depend on (seed, epoch, rank, position) only); of those, the newest
    ``TRAIN.CHECKPOINT_KEEP`` are kept, and none older than an epoch checkpoint.
    """

    def __init__(self, cfg: CfgNode, model: nn.Module, optimizer, scaler, device: torch.device,
                 stop: StopSignals) -> None:
        self.cfg, self.model, self.optimizer, self.scaler, self.device = cfg, model, optimizer, scaler, device
        self.stop = stop
        self._last = time.monotonic()

    def time_due(self) -> bool:
        minutes = self.cfg.TRAIN.CHECKPOINT_MINUTES
        return minutes > 0 and time.monotonic() - self._last >= 60.0 * minutes

    def iteration_due(self, step: int) -> bool:
        """``step``: 1-based count of the run's steps."""
        period = self.cfg.TRAIN.CHECKPOINT_ITER_PERIOD
        return period > 0 and step % period == 0

    def save(self, epoch: int, iteration: int = 0, partial: Optional[Dict[str, Any]] = None) -> None:
        """Write the checkpoint after 0-based epoch ``epoch`` or, with ``iteration`` > 0, after that many
        iterations of it, with this process's ``partial`` epoch state. A collective: every process
        calls it at the same step."""
        where = f"after epoch {epoch + 1}" if not iteration else f"at epoch {epoch + 1}, iteration {iteration}"
        _check_finite_state(self.model, where, self.cfg)
        train_state = None
        if iteration:
            ranks = du.all_gather_objects({"rng": rng_states(self.device), **(partial or {})})
            train_state = {"world_size": du.get_world_size(), "ranks": ranks}
        if du.is_master_proc():
            path = save_checkpoint(self.cfg.OUTPUT_DIR, epoch - 1 if iteration else epoch, self.model,
                                   self.optimizer, self.cfg, self.scaler, iteration=iteration, train_state=train_state)
            prune_mid_epoch_checkpoints(self.cfg.OUTPUT_DIR, path, self.cfg.TRAIN.CHECKPOINT_KEEP)
        du.synchronize()
        self._last = time.monotonic()

    def signal_received(self, epoch: int) -> int:
        """The stop signal any process received (0: none); a collective."""
        return _step_verdict(0.0, epoch, 0, self.cfg, self.stop.received or 0)[0]


def _rank_state(train_state: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """This process's part of a mid-epoch checkpoint's train state, or None (with a warning) when it
    was written by another number of processes."""
    world = du.get_world_size()
    if not train_state or train_state.get("world_size") != world:
        written = (train_state or {}).get("world_size", "?")
        logger.warning("The mid-epoch checkpoint was written by %s process(es), this run has %d: the rest "
                       "of the epoch does not repeat the interrupted run's (random states and the epoch's "
                       "statistics so far are not restored)", written, world)
        return None
    return train_state["ranks"][du.get_rank()]


def train_epoch(
    cfg: CfgNode,
    step_module: nn.Module,
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    epoch: int,
    device: torch.device,
    writer: Optional[TensorBoardWriter],
    checkpoints: Optional[Checkpoints] = None,
    resume: Optional[Resumed] = None,
) -> Dict[str, float]:
    """One pass over the training data; returns the epoch's averaged statistics (all ranks).

    With ``checkpoints``, mid-epoch checkpoints are written when due, and a stop signal writes one and
    raises :class:`~.preemption.Preempted` (an epoch's last step leaves the stop to the epoch's end).
    ``resume`` (a mid-epoch checkpoint of this epoch, loaded) continues after its iteration, with
    the loader prepared for it (:func:`shuffle_dataset` ``start_batch``).

    The statistics include ``num_skipped_videos`` and ``skipped_<reason>`` for every reason of
    ``bad_input.SKIP_REASONS``: the videos replaced during the epoch on all ranks, plus the split
    file's unreadable lines (``skipped_bad_csv_line``).

    Raises:
        TooManyBadVideosError: more than ``DATA_LOADER.MAX_BAD_FRACTION`` of the videos read in the
            epoch were bad (same decision on every rank: the counts are all-reduced first).
    """
    step_module.train()
    hooks = contract(model)  # checked once, called every step
    num_iters = len(loader)
    max_steps = num_iters * cfg.SOLVER.MAX_EPOCH
    logs = StepLogs(cfg.LOG_PERIOD)
    # Videos skipped per reason and samples delivered, on this rank.
    skip_counts = torch.zeros(len(SKIP_REASONS), dtype=torch.float64)
    num_samples = 0
    start = tick = time.perf_counter()
    first = resume.iteration if resume is not None else 0
    batches = iter(loader)
    if first:
        state = _rank_state(resume.train_state)
        if state is not None:  # after the loader's start: from here on, all is as in the whole epoch
            set_rng_states(state["rng"], device)
            logs.load_state(state["logs"])
            skip_counts += state["skips"]
            num_samples += int(state["samples"])
            start -= float(state["seconds"])
    progress = _progress(num_iters, epoch, cfg)
    if progress is not None and first:
        progress.update(first)
    for it, batch in enumerate(batches, start=first):
        data_time = time.perf_counter() - tick
        # Counted before the copy to the device, where reading them would cost a sync per step.
        if "skip_reasons" in batch:
            skip_counts += batch["skip_reasons"].sum(dim=0)  # (B, R) -> (R,)
        num_samples += len(batch["label"])
        batch = prepare_batch(batch, device)
        lr = get_lr_at_epoch(cfg, epoch + it / num_iters, cfg.TRAIN.BATCH_SIZE)
        set_lr(optimizer, lr)
        with autocast(cfg, device):
            out = step_module(batch)
        loss = out["loss"]
        loss_value = loss.item()  # the step's one host sync; a NaN must stop before the update
        signum, time_due = _step_verdict(loss_value, epoch, it, cfg,
                                         checkpoints.stop.received or 0 if checkpoints else 0,
                                         checkpoints is not None and checkpoints.time_due())
        optimizer_step(loss, model, optimizer, scaler, cfg)
        hooks.on_step_end(epoch * num_iters + it + 1, max_steps)

        # The method's other scalar logs stay on the device until the next flush.
        logs.add({"loss": loss_value,
                  **{k: v for k, v in out.items() if k != "loss" and not isinstance(v, (dict, list))}})
        iter_time = time.perf_counter() - tick
        tick = time.perf_counter()
        if progress is not None:
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.3g}", refresh=False)
            progress.update()
        if (it + 1) % cfg.LOG_PERIOD == 0:
            logs.flush()
        if (it + 1) % cfg.LOG_PERIOD == 0 and du.is_master_proc():
            window = logs.medians()  # this process, median of the window
            eta = iter_time * (num_iters * (cfg.SOLVER.MAX_EPOCH - epoch) - it - 1)
            log_json_stats({
                "_type": "train_iter",
                "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                "iter": f"{it + 1}/{num_iters}",
                "lr": lr,
                "time_diff": iter_time,
                "dt_data": data_time,
                "eta": time.strftime("%H:%M:%S", time.gmtime(eta)),
                **window,
            })
            if writer is not None:
                writer.add_scalars({f"Train/{k}": v for k, v in window.items()}, epoch * num_iters + it)
                writer.add_scalars({"Train/lr": lr}, epoch * num_iters + it)
        done = it + 1
        if checkpoints is not None and done < num_iters and (
                signum or time_due or checkpoints.iteration_due(epoch * num_iters + done)):
            checkpoints.save(epoch, done, {"logs": logs.state(), "skips": skip_counts.clone(),
                                           "samples": num_samples, "seconds": time.perf_counter() - start})
            if signum:
                checkpoints.stop.leave(signum)
    if progress is not None:
        progress.close()
    # Average over iterations and processes; count samples and skipped videos over processes.
    logs.flush()
    keys = logs.keys()
    totals = du.all_reduce_tensor(
        torch.cat([torch.tensor([logs.global_avg(k) for k in keys] + [float(num_samples)],
                                dtype=torch.float64), skip_counts]),
        average=False,
    )
    world = du.get_world_size()
    stats = {k: totals[i].item() / world for i, k in enumerate(keys)}
    counts = totals[len(keys) + 1:].round().long()
    # Every rank read the same split file: its bad lines count once.
    counts[reason_index("bad_csv_line")] += num_bad_lines(loader.dataset)
    skips = epoch_skip_stats(counts, int(totals[len(keys)].item()),
                             max_fraction=cfg.DATA_LOADER.MAX_BAD_FRACTION, where=f"training epoch {epoch + 1}")
    stats.update(
        _type="train_epoch",
        epoch=f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
        lr=lr if num_iters else 0.0,
        time=time.perf_counter() - start,
        **skips,
    )
    return stats


def _progress(num_iters: int, epoch: int, cfg: CfgNode):
    """A tqdm progress bar on the master when attached to a terminal, else None."""
    if not (du.is_master_proc() and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=num_iters, desc=f"epoch {epoch + 1}/{cfg.SOLVER.MAX_EPOCH}", leave=False, file=sys.stderr)


def _due(epoch: int, period: int, cfg: CfgNode) -> bool:
    return (epoch + 1) % period == 0 or epoch + 1 == cfg.SOLVER.MAX_EPOCH


def train(cfg: CfgNode) -> Dict[str, float]:
    """Train ``MODEL.MODEL_NAME`` for ``SOLVER.MAX_EPOCH`` epochs; returns the final metrics.

    Interruption: with ``TRAIN.AUTO_RESUME`` a run started again (after a kill, a crash, a
    preemption) continues from the newest checkpoint in OUTPUT_DIR and reproduces the uninterrupted
    run: everything stateful is in the checkpoint (weights and buffers, hence EMA targets, queues and
    SwAV's step; optimiser and AMP scaler state), the learning rate and momentum schedules are
    functions of the step, and each epoch reseeds every random stream from (RNG_SEED, epoch, rank).
    A checkpoint is written after the epoch's records and evaluation; on start, ``json_stats.log``
    loses the records of epochs after the starting point (an interrupted run's unsaved epochs), so it
    holds each epoch once.

    Raises:
        OutputDirError: OUTPUT_DIR is not writable, or has no room for a checkpoint (before training).
        TrainingDivergedError: the loss (any process) or, at a checkpoint, the weights are not finite;
            the message names the epoch and iteration and the last (good) checkpoint.
    """
    device = setup_process(cfg, "train")
    model = build_model_on(cfg, device)
    if cfg.BN.NORM_TYPE == "sync_batchnorm":
        if device.type == "cuda" and du.get_world_size() > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("BN.NORM_TYPE sync_batchnorm needs several GPU processes; using plain BN")
    if cfg.LOG_MODEL_INFO and du.is_master_proc():
        from stica_slowfast.utils.misc import log_model_info

        shape = (cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)
        log_model_info(model, shape, device)

    optimizer = construct_optimizer(model, cfg, contract(model).lr_scales)
    # Loss scaling only for float16, whose range underflows small gradients (bfloat16 has float32's).
    use_scaler = cfg.TRAIN.MIXED_PRECISION and amp_dtype(cfg, device) == torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    start_epoch, resumed = resume_point(cfg, model, optimizer, scaler)
    if resumed is not None and not resumed.iteration:
        resumed = None  # an epoch checkpoint: the next epoch starts from its beginning
    check_output_dir(cfg.OUTPUT_DIR, MIN_FREE_BYTES + _checkpoint_bytes(model))
    if du.is_master_proc():
        drop_json_stats_after(cfg.OUTPUT_DIR, start_epoch)

    step_module: nn.Module = TrainStep(model)
    if du.get_world_size() > 1:
        step_module = DistributedDataParallel(
            step_module, device_ids=[device] if device.type == "cuda" else None
        )
    train_loader = construct_loader(cfg, "train")
    val_loader = construct_loader(cfg, "val") if predicts_labels(model) else None
    knn = KnnMonitor(cfg) if cfg.STICA.KNN.ENABLE else None
    writer = TensorBoardWriter(cfg) if du.is_master_proc() and cfg.TENSORBOARD.ENABLE else None
    logger.info("Start epoch: %d of %d, %d iterations per epoch", start_epoch + 1, cfg.SOLVER.MAX_EPOCH, len(train_loader))

    metrics: Dict[str, float] = {}
    with StopSignals(cfg.TRAIN.PREEMPT_SIGNALS) as stop:
        checkpoints = Checkpoints(cfg, model, optimizer, scaler, device, stop)
        for epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
            _train_and_evaluate_epoch(cfg, epoch, step_module, model, train_loader, val_loader, knn,
                                      optimizer, scaler, device, writer, checkpoints, resumed, metrics)
            resumed = None
    if writer is not None:
        writer.close()
    if du.is_master_proc() and metrics:
        write_metrics(cfg.OUTPUT_DIR, metrics)
    return metrics


def _train_and_evaluate_epoch(cfg: CfgNode, epoch: int, step_module: nn.Module, model: nn.Module, train_loader,
                              val_loader, knn: Optional[KnnMonitor], optimizer, scaler, device: torch.device,
                              writer: Optional[TensorBoardWriter], checkpoints: Checkpoints,
                              resumed: Optional[Resumed], metrics: Dict[str, float]) -> None:
    """Epoch ``epoch`` of :func:`train`: its training (from ``resumed``'s iteration on, if given), records,
    evaluation and checkpoint; ``metrics`` gets the latest figures."""
    # The epoch's randomness (model, augmentation, clip sampling, order) depends on (RNG_SEED,
    # epoch, rank) only, so a run resumed from a checkpoint repeats the uninterrupted run.
    set_seed(derive_seed(cfg.RNG_SEED, epoch, du.get_rank(), 0))
    shuffle_dataset(train_loader, epoch, seed=cfg.RNG_SEED, start_batch=resumed.iteration if resumed else 0)
    contract(model).on_epoch_start(epoch)
    stats = train_epoch(cfg, step_module, model, train_loader, optimizer, scaler, epoch, device, writer,
                        checkpoints, resumed)
    log_json_stats(stats, cfg.OUTPUT_DIR, to_file=True)
    metrics["train_loss"] = stats["loss"]
    if writer is not None:
        writer.add_scalars({f"Train/epoch_{k}": v for k, v in stats.items() if isinstance(v, float)}, epoch)

    if val_loader is not None and _due(epoch, cfg.TRAIN.EVAL_PERIOD, cfg):
        val = evaluate(model, val_loader, cfg, device)
        log_json_stats({"_type": "val_epoch", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}", **val}, cfg.OUTPUT_DIR, to_file=True)
        metrics["val_top1_acc"] = val["top1_acc"]
        if writer is not None:
            writer.add_scalars({"Val/top1_acc": val["top1_acc"], "Val/top5_acc": val["top5_acc"]}, epoch)
    if knn is not None and _due(epoch, cfg.TRAIN.EVAL_PERIOD, cfg):
        last = epoch + 1 == cfg.SOLVER.MAX_EPOCH
        acc = knn.evaluate(model, device, ("val", "test") if last else ("val",))
        log_json_stats({"_type": "knn_val", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                        "knn_top1_acc": acc["val"]}, cfg.OUTPUT_DIR, to_file=True)
        metrics["val_knn_top1_acc"] = acc["val"]
        if last:
            log_json_stats({"_type": "knn_test", "epoch": f"{epoch + 1}/{cfg.SOLVER.MAX_EPOCH}",
                            "knn_top1_acc": acc["test"]}, cfg.OUTPUT_DIR, to_file=True)
            metrics["knn_top1_acc"] = acc["test"]
        if writer is not None:
            writer.add_scalars({"Val/knn_top1_acc": acc["val"]}, epoch)
    # Last, after the epoch's records: a checkpoint marks a complete epoch (see train()).
    signum = checkpoints.signal_received(epoch)
    if _due(epoch, cfg.TRAIN.CHECKPOINT_PERIOD, cfg) or signum:
        checkpoints.save(epoch)
    if signum:
        checkpoints.stop.leave(signum)
