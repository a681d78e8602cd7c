"""Ring buffer of past keys, used as negatives by MoCo (arXiv 1911.05722) and as SwAV's feature queue."""

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FeatureQueue"]


class FeatureQueue(nn.Module):
    """Fixed-size FIFO of L2-normalised keys, stored as buffers so checkpoints carry it.

    Symbols: L queue length, D key size, N keys enqueued at once::

        keys (N, D) -> detach -> L2-normalise -> written at rows ptr, ptr+1, ... (mod L)
        features -> (min(filled, L), D), rows in slot order (not age order)

    Row ``i`` of :attr:`features` is storage slot ``i``; the order of negatives does not matter to
    the losses, and returning the storage itself avoids a copy of the whole queue every step.

    Keys are only enqueued from this process: under DDP gather them across ranks first (as MoCo does)
    so all ranks hold the same queue.

    Args:
        length: number of keys L held.
        dim: key size D.
        init: ``"random"`` fills the queue with random unit vectors and counts it as full (MoCo's
            choice: the loss has its full set of negatives from step 0); ``"empty"`` starts with no
            keys, and :attr:`features` holds only the rows enqueued so far.
    """

    def __init__(self, *, length: int, dim: int, init: str = "random") -> None:
        super().__init__()
        if length < 1 or dim < 1:
            raise ValueError(f"length and dim must be >= 1, got {length}, {dim}")
        if init == "random":
            queue = F.normalize(torch.randn(length, dim), dim=1)
            filled = length
        elif init == "empty":
            queue = torch.zeros(length, dim)
            filled = 0
        else:
            raise ValueError(f"init must be 'random' or 'empty', got {init!r}")
        self.length = length
        self.dim = dim
        self.register_buffer("queue", queue)
        # Scalars as buffers rather than python ints so that they follow state_dict and .to().
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.tensor(filled, dtype=torch.long))

    @property
    def is_full(self) -> bool:
        """Whether every one of the L rows holds a key."""
        return int(self.filled) >= self.length

    def __len__(self) -> int:
        return int(self.filled)

    @property
    def features(self) -> torch.Tensor:
        """The filled rows ``(min(filled, L), D)``: all L once full (or random-initialised)."""
        # Before the queue is full the rows written so far are exactly 0 .. filled-1: writing starts at
        # slot 0 and only wraps once all L slots are used.
        return self.queue if self.is_full else self.queue[: int(self.filled)]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys (N, D)`` after the newest row, overwriting the oldest ones.

        Any N works: the write wraps around the end, and for N > L only the last L keys survive, as if
        they had been enqueued one at a time.

        Args:
            keys: ``(N, D)`` keys; detached, cast to the queue's dtype and L2-normalised here.
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be (N, {self.dim}), got {tuple(keys.shape)}")
        n = keys.shape[0]
        if n == 0:
            return
        keys = F.normalize(keys.detach().to(self.queue.dtype), dim=1)
        ptr = int(self.ptr)
        slots = (ptr + torch.arange(n, device=self.queue.device)) % self.length
        if n > self.length:
            # Earlier keys would be overwritten within this same call; keep the survivors only so the
            # index has no duplicates (index_copy_ with repeated indices has no defined winner).
            slots, keys = slots[-self.length:], keys[-self.length:]
        self.queue.index_copy_(0, slots, keys)
        self.ptr.fill_((ptr + n) % self.length)
        self.filled.fill_(min(int(self.filled) + n, self.length))
