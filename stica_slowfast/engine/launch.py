"""Start a job on torch.distributed the way PySlowFast does, plus torchrun / SLURM environments.

Process layout (world size = NUM_SHARDS x max(1, NUM_GPUS)):

* ``NUM_GPUS > 0``: one process per local GPU, spawned with ``torch.multiprocessing``; NCCL.
* ``NUM_GPUS 0``: one CPU process per shard (``--num_shards N --shard_id i``, each started by hand or
  by a scheduler); gloo.
* Started by ``torchrun`` (or submitit's exported environment): ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
  come from the environment and nothing is spawned.
"""

import multiprocessing.connection
import os
import signal
import threading
from datetime import timedelta
from typing import Callable, Sequence
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fvcore.common.config import CfgNode

from stica_slowfast.utils.signals import signal_number

_TIMEOUT = timedelta(minutes=30)


def _backend(cfg: CfgNode) -> str:
    return cfg.DIST_BACKEND if cfg.NUM_GPUS > 0 else "gloo"


def _is_local_rendezvous(init_method: str) -> bool:
    host = urlparse(init_method).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or init_method.startswith("file://")


def limit_cpu_threads(cfg: CfgNode, init_method: str) -> None:
    """Share this machine's cores among the CPU processes running on it.

    Each process would otherwise start one compute thread per core, and N processes on one machine
    oversubscribe it N-fold (measured: a 2-process CPU run on 2 cores was 10x slower per epoch).
    Processes on this machine: LOCAL_WORLD_SIZE under torchrun, else all shards when the rendezvous
    address is local (they were started side by side), else one.
    """
    if cfg.NUM_GPUS > 0:
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 0))
    if not local:
        local = cfg.NUM_SHARDS if _is_local_rendezvous(init_method) else 1
    threads = max(1, (os.cpu_count() or 1) // local)
    if local > 1 and torch.get_num_threads() > threads:
        torch.set_num_threads(threads)


def launched_by_torchrun() -> bool:
    """True when a launcher (torchrun, submitit) exported the process-group environment."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _run_worker(
    local_rank: int,
    num_proc: int,
    func: Callable[[CfgNode], None],
    init_method: str,
    cfg: CfgNode,
) -> None:
    os.environ["LOCAL_RANK"] = str(local_rank)
    dist.init_process_group(
        backend=_backend(cfg),
        init_method=init_method,
        world_size=num_proc * cfg.NUM_SHARDS,
        rank=cfg.SHARD_ID * num_proc + local_rank,
        timeout=_TIMEOUT,
    )
    try:
        func(cfg)
    finally:
        dist.destroy_process_group()


def launch_job(cfg: CfgNode, init_method: str, func: Callable[[CfgNode], None]) -> None:
    """Run ``func(cfg)`` on every process of this machine's part of the job.

    Args:
        cfg: the run's config (NUM_GPUS, NUM_SHARDS, SHARD_ID, DIST_BACKEND).
        init_method: rendezvous URL shared by all shards, e.g. ``tcp://host:9999``.
        func: the per-process entry (train and/or test).
    """
    limit_cpu_threads(cfg, init_method if not launched_by_torchrun() else "env://")
    if launched_by_torchrun():
        dist.init_process_group(backend=_backend(cfg), init_method="env://", timeout=_TIMEOUT)
        try:
            func(cfg)
        finally:
            dist.destroy_process_group()
        return
    num_proc = max(1, cfg.NUM_GPUS)
    if num_proc * cfg.NUM_SHARDS == 1:
        func(cfg)
    elif num_proc == 1:  # one process per shard: no need to spawn
        _run_worker(0, 1, func, init_method, cfg)
    else:
        context = mp.start_processes(_run_worker, nprocs=num_proc, args=(num_proc, func, init_method, cfg),
                                     join=False, start_method="spawn")
        join_forwarding_signals(context, cfg.TRAIN.PREEMPT_SIGNALS)


def join_forwarding_signals(context: mp.ProcessContext, names: Sequence[str]) -> None:
    """Wait for spawned training processes, handing them the stop signals this process receives.

    The launcher lives until its processes have written their checkpoint and left (a scheduler
    that saw it end would kill them). When they leave for a signal (exit status 128 + its number,
    :class:`~stica_slowfast.engine.preemption.Preempted`), the launcher waits for all of them and exits
    with that status; when one fails otherwise, torch's report is raised and the others are ended.

    Args:
        context: from ``torch.multiprocessing.start_processes(..., join=False)``.
        names: the stop signals (``TRAIN.PREEMPT_SIGNALS``).
    """
    numbers = [signal_number(name) for name in names]

    def forward(signum, frame):
        for proc in context.processes:
            if proc.is_alive():
                os.kill(proc.pid, signum)

    stopped = {128 + n for n in numbers}
    in_main = threading.current_thread() is threading.main_thread()
    previous = {n: signal.signal(n, forward) for n in numbers} if in_main else {}
    try:
        while True:
            alive = [proc for proc in context.processes if proc.is_alive()]
            if not alive:
                break
            multiprocessing.connection.wait([proc.sentinel for proc in alive])
            if any(proc.exitcode not in (None, 0, *stopped) for proc in context.processes):
                context.join()  # raises torch's report of the failed process, and ends the others
        codes = [proc.exitcode for proc in context.processes]
        if any(code in stopped for code in codes):
            raise SystemExit(max(codes))
        context.join()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
