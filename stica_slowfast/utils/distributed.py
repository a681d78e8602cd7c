"""torch.distributed helpers that also work in a plain single process (no process group)."""

import os
from typing import List, Optional

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def is_master_proc() -> bool:
    """True on global rank 0 (the process that writes logs, checkpoints and metrics)."""
    return get_rank() == 0


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def synchronize() -> None:
    """Barrier across all processes (no-op when not distributed)."""
    if is_dist() and get_world_size() > 1:
        dist.barrier()


def get_device(num_gpus: int) -> torch.device:
    """The device of this process: its local GPU when ``num_gpus > 0``, else the CPU."""
    if num_gpus > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(f"NUM_GPUS {num_gpus} but CUDA is not available; use NUM_GPUS 0 for CPU")
        device = torch.device("cuda", get_local_rank())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def comm_device() -> torch.device:
    """Where tensors must live for collectives: NCCL moves only CUDA tensors, gloo takes CPU ones."""
    if is_dist() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_objects(obj) -> List:
    """Gather a picklable object from every process (a list of one when not distributed)."""
    if not is_dist() or get_world_size() == 1:
        return [obj]
    out: List[Optional[object]] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_tensor(tensor: torch.Tensor, average: bool = True) -> torch.Tensor:
    """Sum (or average) ``tensor`` over all processes, returning a new tensor."""
    out = tensor.detach().clone()
    if get_world_size() > 1:
        out = out.to(comm_device())
        dist.all_reduce(out)
        if average:
            out /= get_world_size()
        out = out.to(tensor.device)
    return out
