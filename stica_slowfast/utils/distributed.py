"""torch.distributed helpers that also work in a plain single process (no process group)."""

import os
import warnings
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


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all processes along dim 0, keeping the autograd graph.

    Unlike ``dist.all_gather``, gradients flow back (``torch.distributed.nn.functional.all_gather``):
    the backward pass sums the gradient of the gathered tensor over processes and returns this
    process's slice, so with each process's loss computed on the gathered tensor, every input receives
    the gradient of the *sum* of all processes' losses (divide by the world size, as DDP's gradient
    averaging does, to match one process computing the mean loss on all data). Every process must pass
    the same shape, and every process must run the backward pass (it is a collective). The identity
    when not distributed (or with one process).

    Args:
        tensor: ``(N, ...)`` this process's rows.

    Returns:
        ``(world_size * N, ...)`` rows of rank 0, then rank 1, ... on ``tensor``'s device.
    """
    if get_world_size() == 1:
        return tensor
    import torch.distributed.nn.functional as dist_nn  # here: a process group exists, so it imports

    with warnings.catch_warnings():
        # Deprecated in recent torch in favour of torch.distributed._functional_collectives, a private
        # module whose autograd gather older torch (setup.py: >= 2.1) does not have.
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        parts = dist_nn.all_gather(tensor.to(comm_device()))  # world_size x (N, ...)
    # On gloo, torch's backward scatters the gradients into buffers laid out like them and reads those
    # as contiguous: a gradient that arrives through a transpose (gather_batch's movedim) is summed in
    # the wrong order. Through 1-D and back, every gradient reaching it is contiguous.
    parts = [p.reshape(-1).view(p.shape) for p in parts]
    return torch.cat(parts, dim=0).to(tensor.device)


def gather_batch(x: torch.Tensor, *, enabled: bool) -> torch.Tensor:
    """``x (..., B, E)`` with the batch rows of all processes, rank-major along dim -2 (with gradient:
    :func:`all_gather_with_grad`); ``x`` itself when not ``enabled`` or not distributed."""
    if not enabled or get_world_size() == 1:
        return x
    # (..., B, E) -> (B, ..., E) -> gather dim 0 -> (W*B, ..., E) -> (..., W*B, E)
    return all_gather_with_grad(x.movedim(-2, 0).contiguous()).movedim(0, -2)
