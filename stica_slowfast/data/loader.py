"""Data loaders: a registered dataset, a per-process batch and a DistributedSampler when distributed.

A batch is the default collate of the dataset's sample dicts::

    "video": [ (B, C, T, H, W) ] * V     "audio": [ (B, 1, F, Ta) ] * V   (with STICA.AUDIO.ENABLE;
    log spectrograms, or (B, S) waveforms with STICA.AUDIO.FEATURE "waveform")
    "label", "index", "skipped": (B,) int64     "valid": (B,) bool
"""

from typing import Optional, Sequence

from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from stica_slowfast.registry import get_dataset_class
from stica_slowfast.utils import distributed as du

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
        video. With more than one process a DistributedSampler shards the videos.
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
                                     drop_last=is_train)
    workers = int(cfg.DATA_LOADER.NUM_WORKERS)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=is_train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        # Pinned memory only helps host-to-GPU copies.
        pin_memory=bool(cfg.DATA_LOADER.PIN_MEMORY) and cfg.NUM_GPUS > 0,
        drop_last=is_train,
        # Keep workers (and their RNG streams and opened libraries) alive across epochs.
        persistent_workers=workers > 0,
    )


def shuffle_dataset(loader: DataLoader, epoch: int) -> None:
    """Give the loader's DistributedSampler the epoch, so each epoch shuffles differently.

    Without a DistributedSampler (one process) the DataLoader reshuffles by itself; nothing to do.
    """
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    if inner is not sampler and isinstance(inner, DistributedSampler):
        inner.set_epoch(epoch)
