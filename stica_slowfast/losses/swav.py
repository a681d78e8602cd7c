"""SwAV: Sinkhorn-Knopp codes and the swapped-prediction loss.

Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
arXiv 2006.09882; used for rho clips per video in Feichtenhofer et al., arXiv 2104.14558 (the caller
predicts the codes of clip ``b`` from the scores of clip ``a`` for all ordered pairs ``a != b``).
"""

import torch
import torch.distributed as dist

from ..utils.distributed import comm_device, get_world_size

__all__ = ["sinkhorn_knopp", "swav_loss"]


def _all_reduce_(tensor: torch.Tensor, op=None) -> torch.Tensor:
    """All-reduce ``tensor`` in place across processes (no-op in a single process); returns it."""
    if get_world_size() > 1:
        buf = tensor.to(comm_device())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM if op is None else op)
        tensor.copy_(buf)
    return tensor


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, *, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft equipartitioned cluster assignments (codes) by Sinkhorn-Knopp iterations.

    Starting from ``Q = exp(scores / epsilon)`` (shifted by the global maximum for numerical safety, which
    cancels), each iteration first rescales every prototype (column of the ``(N, K)`` result) to total
    mass ``1 / K``, then every sample (row) to mass ``1 / N_total``; the result is multiplied by
    ``N_total``. Hence each row sums to 1 exactly, and each column sums to ``N_total / K`` (over all
    processes) up to the error left after ``iterations`` steps. When ``torch.distributed`` is initialised
    with several processes, the sums run over the samples of all processes (``N_total = world * N``), so
    the result equals Sinkhorn-Knopp on the concatenated scores.

    Args:
        scores: ``(N, K)`` sample-to-prototype scores (this process's samples). Not differentiated.
        epsilon: entropic regularisation; smaller gives sharper codes.
        iterations: number of Sinkhorn-Knopp iterations.

    Returns:
        ``(N, K)`` codes (no gradient), in float32 or float64 as ``scores`` (half precision is upcast).
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (N, K); got {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"need epsilon > 0 and iterations >= 1; got {epsilon}, {iterations}")
    dtype = scores.dtype if scores.dtype == torch.float64 else torch.float32
    logits = scores.detach().to(dtype) / epsilon
    shift = _all_reduce_(logits.max().reshape(1), op=dist.ReduceOp.MAX if get_world_size() > 1 else None)
    q = torch.exp(logits - shift)
    num_samples = scores.shape[0] * get_world_size()
    num_prototypes = scores.shape[1]
    q /= _all_reduce_(q.sum().reshape(1))
    for _ in range(iterations):
        q /= _all_reduce_(q.sum(dim=0, keepdim=True))  # prototypes: total 1 / K each
        q /= num_prototypes
        q /= q.sum(dim=1, keepdim=True)  # samples: total 1 / N_total each (local rows)
        q /= num_samples
    return q * num_samples


def swav_loss(scores: torch.Tensor, codes: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Swapped prediction: cross-entropy of the codes of one clip against the scores of another.

    ``loss = -1/N sum_i sum_k q_ik log softmax(s_i / T)_k``; ``codes`` are detached (targets).

    Args:
        scores: ``(N, K)`` prototype scores of clip ``a``.
        codes: ``(N, K)`` codes of clip ``b`` (e.g. from :func:`sinkhorn_knopp`); rows sum to 1.
        temperature: softmax temperature ``T > 0``.

    Returns:
        Scalar tensor: the mean over the ``N`` rows.
    """
    if scores.dim() != 2 or codes.shape != scores.shape:
        raise ValueError(f"scores and codes must both be (N, K); got {tuple(scores.shape)}, {tuple(codes.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    log_p = torch.log_softmax(scores / temperature, dim=1)
    return -(codes.detach().to(log_p.dtype) * log_p).sum(dim=1).mean()
