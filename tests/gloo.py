"""Run a test function in N real processes joined by a gloo process group (CPU)."""

import datetime
import socket
from typing import Callable

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn: Callable, args: tuple) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        fn(rank, *args)
        # Both ranks leave together: gloo's threads of a pair torn down while the other rank still
        # sends can abort the process ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_gloo(fn: Callable, world: int, *args, start_method: str = "spawn") -> None:
    """Call ``fn(rank, *args)`` in ``world`` new processes inside one gloo group.

    ``fn`` must be a module-level function (spawned processes import it by name). ``"fork"`` starts
    in a fraction of the time (nothing is imported again); use it for tests that run little compute.
    """
    mp.start_processes(_entry, args=(world, free_port(), fn, args), nprocs=world, join=True,
                       start_method=start_method)
