"""Data loaders: a registered dataset, a per-process batch and a DistributedSampler when distributed.

A batch is the default collate of the dataset's sample dicts::

    "video": [ (B, C, T, H, W) ] * V     "audio": [ (B, 1, F, Ta) ] * V   (with STICA.AUDIO.ENABLE;
    log spectrograms, or (B, S) waveforms with STICA.AUDIO.FEATURE "waveform")
    "label", "index", "skipped": (B,) int64     "valid": (B,) bool
    "skip_reasons": (B, R) int64, R = len(bad_input.SKIP_REASONS) (a fixed length, so the default
    collate stacks it in any worker)

Randomness of the train loader is a function of (RNG_SEED, epoch, rank, position in the epoch) alone:
a :class:`SeededSampler` pairs every index it yields with a seed derived from those, and the dataset
draws that sample's clip starts, substitutes for bad videos and augmentation from generators seeded
with it (:class:`~stica_slowfast.data.datasets.SeededIndex`). So a sample does not depend on the
number of workers, on which worker loads it, nor on what that worker loaded before, and a run resumed
from a checkpoint draws the same data as an uninterrupted one while the workers stay alive across
epochs (persistent). :func:`shuffle_dataset` gives the sampler its epoch, which reseeds the shuffle
order. The DataLoader's own generator only draws the workers' base seed, which no sample uses. A
registered dataset that is not a :class:`~stica_slowfast.data.datasets.VideoDataset` gets plain int
indices (with a warning): its draws then come from the workers' generators.
"""

import functools
import itertools
import logging
import multiprocessing.util
import os
import signal
import threading
from typing import Iterator, List, Optional, Sequence, Union

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from stica_slowfast.data.datasets import SeededIndex, VideoDataset
from stica_slowfast.registry import get_dataset_class
from stica_slowfast.utils import distributed as du
from stica_slowfast.utils.misc import derive_seed, derive_seeds
from stica_slowfast.utils.signals import signal_number

logger = logging.getLogger(__name__)

__all__ = [
    "SeededSampler",
    "build_dataset",
    "construct_loader",
    "shuffle_dataset",
    "per_process_batch_size",
]

SPLITS = ("train", "val", "test")
# Streams of derive_seed(RNG_SEED, epoch, rank, stream): the trainer seeds the process's own RNGs from
# stream 0.
_SHUFFLE_STREAM, _SAMPLE_STREAM, _WORKER_STREAM = 1, 2, 3


class SeededSampler(Sampler[SeededIndex]):
    """Pairs each index of ``sampler`` with the seed of that sample's random draws.

    The ``p``-th index of epoch ``e`` on rank ``r`` gets ``derive_seeds(seed, e, r, 2, count=n)[p]``
    (``n`` indices an epoch; seed ``p`` does not depend on ``n``), so the samples of an epoch depend on
    (seed, epoch, rank, position) only.

    Args:
        sampler: the order: a RandomSampler with a generator of its own (reseeded by
            :meth:`set_epoch` from (seed, epoch, rank)), a DistributedSampler (given the epoch and
            the seed), or any other sampler (used as it is).
        seed: the run's RNG_SEED.
        rank: this process's rank.
        with_seeds: False yields the plain indices (still reshuffled by :meth:`set_epoch`), for a
            dataset that only takes ints.
    """

    def __init__(self, sampler: Sampler[int], *, seed: int, rank: int, with_seeds: bool = True):
        self.sampler, self.seed, self.rank, self.epoch, self.start = sampler, int(seed), int(rank), 0, 0
        self.with_seeds = bool(with_seeds)
        self.set_epoch(0)

    def set_epoch(self, epoch: int, seed: Optional[int] = None, start: int = 0) -> None:
        """Draw epoch ``epoch`` (0-based) next, from ``seed`` (default: the one given before), from
        position ``start`` on (a resumed epoch: the first ``start`` samples were used before; the
        others are the same as in the whole epoch). ``len()`` stays the whole epoch's."""
        self.epoch, self.start = int(epoch), int(start)
        if seed is not None:
            self.seed = int(seed)
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.seed = self.seed
            self.sampler.set_epoch(self.epoch)
        elif getattr(self.sampler, "generator", None) is not None:
            self.sampler.generator.manual_seed(derive_seed(self.seed, self.epoch, self.rank, _SHUFFLE_STREAM))

    def __iter__(self) -> Iterator[Union[SeededIndex, int]]:
        if not self.with_seeds:
            yield from (int(index) for index in itertools.islice(self.sampler, self.start, None))
            return
        seeds = derive_seeds(self.seed, self.epoch, self.rank, _SAMPLE_STREAM, count=len(self.sampler))
        pairs = itertools.islice(zip(self.sampler, seeds, strict=True), self.start, None)
        for index, seed in pairs:
            yield SeededIndex(int(index), int(seed))

    def __len__(self) -> int:
        return len(self.sampler)


class _Subset(Subset):
    """A Subset that also maps the index of a :class:`SeededIndex` (and keeps its seed)."""

    def __getitem__(self, idx: Union[int, SeededIndex]):
        if isinstance(idx, tuple):
            return self.dataset[SeededIndex(self.indices[idx[0]], idx[1])]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices: List[Union[int, SeededIndex]]) -> list:
        return [self[i] for i in indices]


def _ignore_signals(worker_id: int, names: Sequence[str] = ()) -> None:
    """A DataLoader worker leaves the stop signals (``TRAIN.PREEMPT_SIGNALS``) to its training process:
    SLURM signals every process of a job, and a worker that died of the signal would end the training
    before the checkpoint it writes. The workers end with their process (:func:`_kill_workers_at_exit`)."""
    for name in names:
        signal.signal(signal_number(name), signal.SIG_IGN)


_REAPING: set = set()  # processes whose workers are killed at exit


def _kill_workers_at_exit() -> None:
    """When this process exits, kill (SIGKILL) its daemonic children, the DataLoader workers: they
    ignore SIGTERM (:func:`_ignore_signals`), which is how multiprocessing ends them at exit, before it
    waits for them (it would wait forever when an error left an iterator alive). Runs also at the end
    of a multiprocessing child (a spawned training process), where ``atexit`` does not."""
    if os.getpid() in _REAPING:
        return
    _REAPING.add(os.getpid())
    multiprocessing.util.Finalize(None, _kill_daemonic_children, exitpriority=100)


def _kill_daemonic_children() -> None:
    if threading.current_thread() is threading.main_thread():
        # torch's handler would report the killed workers as failed: this process is exiting anyway.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
            child.join(timeout=10)


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
        world size, and persistent workers. Train shuffles, drops the last incomplete batch and seeds
        every sample (a :class:`SeededSampler`, set for epoch 0: call :func:`shuffle_dataset` before
        every epoch); val/test keep order and every video. With more than one process a
        DistributedSampler (seeded with RNG_SEED) shards the videos.
    """
    dataset = build_dataset(cfg, split, sampling)
    if subset is not None:
        dataset = _Subset(dataset, list(subset))
    is_train = (split if sampling is None else sampling) == "train"
    world, rank = du.get_world_size(), du.get_rank()
    batch = per_process_batch_size(cfg.TRAIN.BATCH_SIZE if is_train else cfg.TEST.BATCH_SIZE, world)
    sampler: Optional[Sampler] = None
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=is_train,
                                     drop_last=is_train, seed=int(cfg.RNG_SEED))
    generator = None
    if is_train:
        order = sampler if sampler is not None else RandomSampler(dataset, generator=torch.Generator())
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        with_seeds = isinstance(base, VideoDataset)
        if not with_seeds:
            logger.warning("%s is not a VideoDataset: its train samples are indexed by int and draw from "
                           "the DataLoader workers' generators, which persistent workers carry across "
                           "epochs, so a resumed run may draw other samples", type(base).__name__)
        sampler = SeededSampler(order, seed=cfg.RNG_SEED, rank=rank, with_seeds=with_seeds)
        # It only draws the workers' base seed, on each new iterator (once per process with persistent
        # workers). From torch's global generator that draw would shift the model's draws in the
        # process's first epoch only, and so differ between a resumed and an uninterrupted run.
        generator = torch.Generator().manual_seed(derive_seed(cfg.RNG_SEED, 0, rank, _WORKER_STREAM))
    workers = int(cfg.DATA_LOADER.NUM_WORKERS)
    if workers > 0 and cfg.TRAIN.PREEMPT_SIGNALS:
        _kill_workers_at_exit()
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        # Pinned memory only helps host-to-GPU copies.
        pin_memory=bool(cfg.DATA_LOADER.PIN_MEMORY) and cfg.NUM_GPUS > 0,
        drop_last=is_train,
        generator=generator,
        worker_init_fn=functools.partial(_ignore_signals, names=tuple(cfg.TRAIN.PREEMPT_SIGNALS)),
        # Workers (and the libraries they opened) live across epochs: no sample depends on them.
        persistent_workers=workers > 0,
    )


def shuffle_dataset(loader: DataLoader, epoch: int, seed: Optional[int] = None, start_batch: int = 0) -> None:
    """Prepare ``loader`` for epoch ``epoch`` (0-based).

    Gives its sampler the epoch: a train loader's :class:`SeededSampler` then draws the shuffle order
    and the samples' seeds of (seed, ``epoch``, rank), whatever ran before; a DistributedSampler
    shuffles differently each epoch.

    Args:
        loader: a loader from :func:`construct_loader`.
        epoch: the epoch about to start.
        seed: the run's RNG_SEED; None keeps the seed the loader was built with.
        start_batch: batches of the epoch already trained on (a run resumed mid-epoch): the loader
            yields the epoch's later batches, the same as in the whole epoch.

    Raises:
        ValueError: ``start_batch`` > 0 for a loader whose sampler cannot start mid-epoch.
    """
    samplers = [loader.sampler, getattr(loader.batch_sampler, "sampler", None)]
    seeded = [s for s in dict.fromkeys(s for s in samplers if s is not None) if isinstance(s, SeededSampler)]
    if start_batch and not seeded:
        raise ValueError("this loader cannot start mid-epoch: its sampler is not a SeededSampler")
    for sampler in dict.fromkeys(s for s in samplers if s is not None):  # each once, in order
        if isinstance(sampler, SeededSampler):
            sampler.set_epoch(epoch, seed, start=start_batch * loader.batch_size)
        elif isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
