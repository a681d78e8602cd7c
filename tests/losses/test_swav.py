"""sinkhorn_knopp (marginals, numpy golden, 2-rank gloo == concatenated) and swav_loss."""

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist

from stica_slowfast.losses import sinkhorn_knopp, swav_loss
from stica_slowfast.registry import LOSS

from gloo import run_gloo  # tests/gloo.py

WORLD = 2


def _np_sinkhorn(scores, eps, iters):
    """SwAV's Algorithm: Q = exp(S / eps)^T (K x N), alternate row / column normalisation, loops."""
    q = np.exp(scores / eps).T
    k, n = q.shape
    q = q / q.sum()
    for _ in range(iters):
        for r in range(k):
            q[r, :] = q[r, :] / q[r, :].sum() / k
        for c in range(n):
            q[:, c] = q[:, c] / q[:, c].sum() / n
    return (q * n).T


def _np_swav(scores, codes, t):
    total = 0.0
    for i in range(scores.shape[0]):
        logits = scores[i] / t
        log_p = logits - np.log(np.sum(np.exp(logits)))
        total += -np.sum(codes[i] * log_p)
    return total / scores.shape[0]


def test_registered():
    assert LOSS.get("sinkhorn_knopp") is sinkhorn_knopp and LOSS.get("swav_loss") is swav_loss


def test_sinkhorn_golden():
    scores = torch.nn.functional.normalize(torch.randn(12, 5), dim=1)  # cosine scores, as in SwAV
    got = sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    want = _np_sinkhorn(scores.double().numpy(), 0.05, 3)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-6)


def test_sinkhorn_marginals():
    scores = torch.randn(20, 4, dtype=torch.float64)
    few = sinkhorn_knopp(scores, epsilon=0.5, iterations=3)
    many = sinkhorn_knopp(scores, epsilon=0.5, iterations=200)
    # Rows (samples) sum to 1 exactly: the last step normalises them.
    torch.testing.assert_close(few.sum(dim=1), torch.ones(20, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(many.sum(dim=1), torch.ones(20, dtype=torch.float64), rtol=0, atol=1e-12)
    # Columns (prototypes) sum to N / K = 5 at convergence (|error| < 1e-8 after 200 iterations); with
    # few iterations the error only shrinks (seed 0: 2.13, 0.56, 0.006 after 1, 3, 10 iterations).
    torch.testing.assert_close(many.sum(dim=0), torch.full((4,), 5.0, dtype=torch.float64), rtol=0, atol=1e-8)
    errors = [
        (sinkhorn_knopp(scores, epsilon=0.5, iterations=it).sum(dim=0) - 5.0).abs().max().item()
        for it in (1, 3, 10)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[1] < 0.6 * 5.0 / 4 and errors[2] < 0.01
    assert (few >= 0).all() and not few.requires_grad


def test_sinkhorn_stable_for_large_scores_and_no_grad():
    scores = (0.5 + 0.5 * torch.rand(8, 3)).requires_grad_()  # cosine-like scores in [0.5, 1]
    codes = sinkhorn_knopp(scores, epsilon=0.01)  # exp(100) overflows float32 without the shift
    assert torch.isfinite(codes).all() and not codes.requires_grad
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(8))


def test_swav_loss_golden_and_grad():
    s_a, s_b = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4)
    codes = sinkhorn_knopp(s_b)
    loss = swav_loss(s_a, codes, temperature=0.1)
    want = _np_swav(s_a.detach().double().numpy(), codes.double().numpy(), 0.1)
    np.testing.assert_allclose(loss.item(), want, rtol=1e-5, atol=1e-5)
    loss.backward()
    assert torch.isfinite(s_a.grad).all() and s_a.grad.abs().sum() > 0


def test_swav_loss_codes_detached_and_gradcheck():
    codes = torch.softmax(torch.randn(3, 4, dtype=torch.float64), dim=1).requires_grad_()
    scores = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    swav_loss(scores, codes, temperature=0.5).backward()
    assert codes.grad is None
    assert torch.autograd.gradcheck(lambda s: swav_loss(s, codes.detach(), temperature=0.5), (scores,))


def _worker(rank: int, out_dir: str) -> None:
    scores = torch.randn(WORLD * 5, 4, generator=torch.Generator().manual_seed(7))
    local = scores[rank * 5 : (rank + 1) * 5]
    torch.save(sinkhorn_knopp(local, epsilon=0.1, iterations=3), os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_sinkhorn_two_gloo_ranks_equals_concatenated(tmp_path):
    run_gloo(_worker, WORLD, str(tmp_path))
    scores = torch.randn(WORLD * 5, 4, generator=torch.Generator().manual_seed(7))
    want = sinkhorn_knopp(scores, epsilon=0.1, iterations=3)
    got = torch.cat([torch.load(os.path.join(tmp_path, f"rank{r}.pt")) for r in range(WORLD)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # ...and differs from running each half on its own (the marginals really are global).
    halves = torch.cat([sinkhorn_knopp(part, epsilon=0.1, iterations=3) for part in scores.chunk(WORLD)])
    assert not torch.allclose(halves, want, atol=1e-4)
