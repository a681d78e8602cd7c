"""info_nce (MoCo) and nt_xent (SimCLR, rho views) against independent numpy loops."""

import numpy as np
import pytest
import torch

from stica_slowfast.losses import info_nce, nt_xent
from stica_slowfast.registry import LOSS


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_info_nce(q, k, t, neg=None):
    q, k = _unit(q), _unit(k)
    neg = np.zeros((0, q.shape[1])) if neg is None else _unit(neg)
    total = 0.0
    for i in range(q.shape[0]):
        pos = np.exp(q[i] @ k[i] / t)
        denom = sum(np.exp(q[i] @ k[j] / t) for j in range(k.shape[0]))
        denom += sum(np.exp(q[i] @ neg[m] / t) for m in range(neg.shape[0]))
        total += -np.log(pos / denom)
    return total / q.shape[0]


def _np_multi_view(views, t):
    """rho views: every (anchor, other view of the same video) pair, denominator over all other clips."""
    rho, b = len(views), views[0].shape[0]
    clips = [(v, i, _unit(views[v])[i]) for v in range(rho) for i in range(b)]
    total, count = 0.0, 0
    for va, ia, za in clips:
        denom = sum(np.exp(za @ zc / t) for vc, ic, zc in clips if (vc, ic) != (va, ia))
        for vp, ip, zp in clips:
            if ip == ia and vp != va:
                total += -np.log(np.exp(za @ zp / t) / denom)
                count += 1
    assert count == rho * (rho - 1) * b
    return total / count


def _np_simclr(z1, z2, t):
    """The standard NT-Xent of SimCLR (2B anchors, positive = the other view, k != i in the denominator)."""
    z = _unit(np.concatenate([z1, z2]))
    n, b = z.shape[0], z1.shape[0]
    sim = z @ z.T / t
    losses = []
    for i in range(n):
        j = (i + b) % n
        losses.append(-sim[i, j] + np.log(sum(np.exp(sim[i, k]) for k in range(n) if k != i)))
    return float(np.mean(losses))


def test_registered():
    assert LOSS.get("info_nce") is info_nce and LOSS.get("nt_xent") is nt_xent


@pytest.mark.parametrize("with_queue", [False, True])
def test_info_nce_golden(with_queue):
    q, k, neg = torch.randn(5, 8), torch.randn(5, 8), torch.randn(7, 8)
    negatives = neg if with_queue else None
    got = info_nce(q, k, temperature=0.2, negatives=negatives)
    want = _np_info_nce(q.double().numpy(), k.double().numpy(), 0.2, neg.double().numpy() if with_queue else None)
    assert got.dim() == 0
    np.testing.assert_allclose(got.item(), want, rtol=1e-5, atol=1e-6)


def test_info_nce_scale_invariant_and_aligned_lower():
    q = torch.randn(16, 32)
    aligned = info_nce(q, 3.0 * q + 0.01 * torch.randn(16, 32), temperature=0.1)
    random = info_nce(q, torch.randn(16, 32), temperature=0.1)
    assert aligned < random
    assert aligned < 0.05  # near-perfect positives dominate at T = 0.1
    torch.testing.assert_close(info_nce(2.0 * q, q, temperature=0.1), info_nce(q, q, temperature=0.1))


def test_info_nce_queue_raises_loss():
    q, k = torch.randn(6, 8), torch.randn(6, 8)
    assert info_nce(q, k, temperature=0.5, negatives=torch.randn(20, 8)) > info_nce(q, k, temperature=0.5)


def test_info_nce_gradcheck():
    q = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    neg = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: info_nce(a, b, temperature=0.3, negatives=c), (q, k, neg))


def test_info_nce_rejects_bad_shapes():
    with pytest.raises(ValueError):
        info_nce(torch.randn(4, 5), torch.randn(3, 5), temperature=0.1)
    with pytest.raises(ValueError):
        info_nce(torch.randn(4, 5), torch.randn(4, 5), temperature=0.1, negatives=torch.randn(3, 6))


@pytest.mark.parametrize("rho", [2, 3, 4])
def test_nt_xent_golden_multi_view(rho):
    views = [torch.randn(3, 6) for _ in range(rho)]
    want = _np_multi_view([v.double().numpy() for v in views], 0.5)
    got_list = nt_xent(views, 0.5)
    got_stacked = nt_xent(torch.cat(views), 0.5, num_views=rho)
    np.testing.assert_allclose(got_list.item(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_list, got_stacked)


def test_nt_xent_rho2_is_standard_simclr():
    z1, z2 = torch.randn(8, 16), torch.randn(8, 16)
    want = _np_simclr(z1.double().numpy(), z2.double().numpy(), 0.1)
    np.testing.assert_allclose(nt_xent([z1, z2], 0.1).item(), want, rtol=1e-5, atol=1e-6)


def test_nt_xent_aligned_views_lower():
    base = torch.randn(8, 16)
    aligned = nt_xent([base + 0.01 * torch.randn(8, 16) for _ in range(3)], 0.1)
    random = nt_xent([torch.randn(8, 16) for _ in range(3)], 0.1)
    assert aligned < random


def test_nt_xent_gradcheck():
    z = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)  # rho = 3 views of 2 videos
    assert torch.autograd.gradcheck(lambda x: nt_xent(x, 0.4, num_views=3), (z,))


def test_nt_xent_argument_checks():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(6, 4), 0.1)  # num_views missing
    with pytest.raises(ValueError):
        nt_xent(torch.randn(7, 4), 0.1, num_views=2)
    with pytest.raises(ValueError):
        nt_xent([torch.randn(3, 4)], 0.1)
