"""all_gather_with_grad and gather_batch: identity in one process; with 2 gloo processes the values are
the concatenation and each rank's gradient equals (world x) the gradient a single process computing on
all data gets, also when the gradient reaches the gather through a transpose (gather_batch)."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from stica_slowfast.utils.distributed import all_gather_with_grad, gather_batch

from gloo import run_gloo  # tests/gloo.py

WORLD = 2
N, D, T = 3, 4, 0.5


def _data():
    gen = torch.Generator().manual_seed(11)
    queries = torch.randn(WORLD * N, D, generator=gen, dtype=torch.float64)
    keys = torch.randn(WORLD * N, D, generator=gen, dtype=torch.float64)
    return queries, keys


def _local_loss(q_local, k_all, rank):
    """Cross-rank InfoNCE: local queries against the keys of all ranks (positive = same global row)."""
    logits = F.normalize(q_local, dim=1) @ F.normalize(k_all, dim=1).t() / T
    return F.cross_entropy(logits, torch.arange(N) + rank * N)


def _views():
    return torch.randn(3, WORLD * N, D, generator=torch.Generator().manual_seed(12), dtype=torch.float64)


def _weights():
    return torch.arange(3 * WORLD * N * D, dtype=torch.float64).reshape(3, WORLD * N, D)


def test_identity_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    y = all_gather_with_grad(x)
    assert y is x


def _worker(rank: int, out_dir: str) -> None:
    q_all, k_all = _data()
    q = q_all[rank * N : (rank + 1) * N].clone().requires_grad_()
    k = k_all[rank * N : (rank + 1) * N].clone().requires_grad_()
    gathered = all_gather_with_grad(k)
    loss = _local_loss(q, gathered, rank)
    loss.backward()
    # Second case: every rank computes the same loss on the gathered tensor.
    x = (k_all[rank * N : (rank + 1) * N] * 2).clone().requires_grad_()
    (all_gather_with_grad(x) ** 3).sum().backward()
    # Third case: views (V, B, D) gathered along the batch, weighted per position so that a gradient
    # summed in the wrong order shows.
    v = _views()[:, rank * N : (rank + 1) * N].clone().requires_grad_()
    (gather_batch(v, enabled=True) * _weights()).sum().backward()
    torch.save(
        {"gathered": gathered.detach(), "loss": loss.detach(), "q_grad": q.grad, "k_grad": k.grad,
         "x_grad": x.grad, "v_grad": v.grad},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_match_single_process(tmp_path):
    run_gloo(_worker, WORLD, str(tmp_path))
    res = [torch.load(os.path.join(tmp_path, f"rank{r}.pt")) for r in range(WORLD)]

    # Single process on all data: the mean over all queries = the mean of the per-rank losses.
    q_all, k_all = _data()
    q_all.requires_grad_()
    k_all.requires_grad_()
    logits = F.normalize(q_all, dim=1) @ F.normalize(k_all, dim=1).t() / T
    full = F.cross_entropy(logits, torch.arange(WORLD * N))
    full.backward()
    torch.testing.assert_close(sum(r["loss"] for r in res) / WORLD, full.detach())

    for rank, r in enumerate(res):
        torch.testing.assert_close(r["gathered"], k_all.detach())
        rows = slice(rank * N, (rank + 1) * N)
        # Summed over ranks by the backward all-reduce; DDP's averaging divides by the world size.
        torch.testing.assert_close(r["k_grad"] / WORLD, k_all.grad[rows])
        torch.testing.assert_close(r["q_grad"] / WORLD, q_all.grad[rows])
        # Same loss on every rank: each slice gets WORLD x the single-process gradient 3 x^2.
        x = (k_all.detach() * 2)[rows]
        torch.testing.assert_close(r["x_grad"], WORLD * 3 * x ** 2)
        # d/dv of sum(weights * gathered) on every rank: WORLD x this rank's columns of the weights.
        torch.testing.assert_close(r["v_grad"], WORLD * _weights()[:, rows])
