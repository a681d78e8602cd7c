"""Data loaders: a registered dataset, a per-process batch and a DistributedSampler when distributed.

A batch is the default collate of the dataset's sample dicts::

    "video": [ (B, C, T, H, W) ] * V     "audio": [ (B, 1, F, Ta) ] * V   (with STICA.AUDIO.ENABLE;
    log spectrograms, or (B, S) waveforms with STICA.AUDIO.FEATURE "waveform")
    "label", "index", "skipped": (B,) int64     "valid": (B,) bool
    "skip_reasons": (B, R) int64, R = len(bad_input.SKIP_REASONS) (a fixed length, so the default
    collate stacks it in any worker)

Randomness of the train loader is a function of (RNG_SEED, epoch, rank) alone, so that a run resumed
from a checkpoint draws the same data as an uninterrupted one: :func:`shuffle_dataset` reseeds the
loader's own generator every epoch, and that generator gives both the shuffle order and the DataLoader
workers' base seed (worker ``i`` seeds torch, numpy and python with base + ``i``; the dataset's clip
sampler and transforms draw from those). Train workers are therefore not persistent: a persistent
worker draws its seed once, on the first epoch of the process, and carries its stream on.
"""

from typing import Optional, Sequence

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from stica_slowfast.registry import get_dataset_class
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.misc import derive_seed

__all__ = ["build_dataset", "construct_loader", "shuffle_dataset", "per_process_batch_size"]

SPLITS = ("train", "val", "test")


def per_process_batch_size(global_batch: int, world_size: int) -> int:
    """Split a global batch evenly over ``world_size`` processes.

    Raises:
        ValueError: when it does not divide evenly or leaves a process with an empty batch.
    """
    if global_batch <= 0 or global_batch % world_size or global_batch // world_size == 0:
        raise ValueError(
            f"global batch size {global_batch} must be a positive multiple of the number of "
            f"processes ({world_size})")
    return global_batch // world_size


def build_dataset(cfg: CfgNode, split: str, sampling: Optional[str] = None) -> Dataset:
    """The dataset of ``split``: TRAIN.DATASET for train and val (as PySlowFast), TEST.DATASET for test.

    ``sampling`` ("train", "val" or "test"; default: ``split``) picks how clips and crops are drawn.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    name = cfg.TEST.DATASET if split == "test" else cfg.TRAIN.DATASET
    return get_dataset_class(name)(cfg, split, sampling=sampling)


def construct_loader(
    cfg: CfgNode, split: str, sampling: Optional[str] = None, subset: Optional[Sequence[int]] = None
) -> DataLoader:
    """Build the data loader of ``split`` for this process.

    Args:
        cfg: full config (TRAIN.*, TEST.*, DATA.*, DATA_LOADER.*, NUM_GPUS).
        split: "train", "val" or "test": which videos.
        sampling: "train", "val" or "test": how they are read (default: as ``split``). Only "train"
            sampling shuffles, drops the last incomplete batch and uses TRAIN.BATCH_SIZE.
        subset: indices of the split's videos to keep (all when None); samples keep their index in
            the full split.

    Returns:
        A DataLoader with batch TRAIN.BATCH_SIZE (train) or TEST.BATCH_SIZE (val/test) divided by the
        world size. Train shuffles and drops the last incomplete batch; val/test keep order and every
        video. With more than one process a DistributedSampler (seeded with RNG_SEED) shards the
        videos. Train loaders carry a generator seeded for epoch 0; call :func:`shuffle_dataset`
        before every epoch.
    """
    dataset = build_dataset(cfg, split, sampling)
    if subset is not None:
        dataset = Subset(dataset, list(subset))
    is_train = (split if sampling is None else sampling) == "train"
    world = du.get_world_size()
    batch = per_process_batch_size(cfg.TRAIN.BATCH_SIZE if is_train else cfg.TEST.BATCH_SIZE, world)
    sampler: Optional[DistributedSampler] = None
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=du.get_rank(), shuffle=is_train,
                                     drop_last=is_train, seed=int(cfg.RNG_SEED))
    workers = int(cfg.DATA_LOADER.NUM_WORKERS)
    generator = torch.Generator().manual_seed(_epoch_seed(cfg.RNG_SEED, 0)) if is_train else None
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=is_train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        # Pinned memory only helps host-to-GPU copies.
        pin_memory=bool(cfg.DATA_LOADER.PIN_MEMORY) and cfg.NUM_GPUS > 0,
        drop_last=is_train,
        generator=generator,
        # Evaluation draws nothing at random: keep its workers (and opened libraries) across passes.
        # Train workers restart every epoch to take that epoch's seed (see the module docstring).
        persistent_workers=workers > 0 and not is_train,
    )


def _epoch_seed(seed: int, epoch: int) -> int:
    # Stream 1 of (seed, epoch, rank): the trainer seeds the process's own RNGs from stream 0.
    return derive_seed(seed, epoch, du.get_rank(), 1)


def shuffle_dataset(loader: DataLoader, epoch: int, seed: Optional[int] = None) -> None:
    """Prepare ``loader`` for epoch ``epoch`` (0-based).

    Gives a DistributedSampler the epoch, so each epoch shuffles differently, and with ``seed``
    reseeds the loader's generator from (``seed``, ``epoch``, rank), so that the shuffle order of one
    process and the workers' seeds of this epoch do not depend on earlier epochs.

    Args:
        loader: a loader from :func:`construct_loader`.
        epoch: the epoch about to start.
        seed: the run's RNG_SEED; None leaves the loader's generator as it is.
    """
    if seed is not None and loader.generator is not None:
        loader.generator.manual_seed(_epoch_seed(seed, epoch))
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    if inner is not sampler and isinstance(inner, DistributedSampler):
        inner.set_epoch(epoch)
