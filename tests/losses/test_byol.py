"""byol_loss = mean(2 - 2 cos) against numpy; target detached."""

import numpy as np
import torch

from stica_slowfast.losses import byol_loss
from stica_slowfast.registry import LOSS


def _np_byol(p, z):
    total = 0.0
    for i in range(p.shape[0]):
        pi, zi = p[i] / np.linalg.norm(p[i]), z[i] / np.linalg.norm(z[i])
        total += np.sum((pi - zi) ** 2)  # = 2 - 2 cos for unit vectors
    return total / p.shape[0]


def test_registered():
    assert LOSS.get("byol_loss") is byol_loss


def test_golden():
    p, z = torch.randn(6, 10), torch.randn(6, 10)
    want = _np_byol(p.double().numpy(), z.double().numpy())
    np.testing.assert_allclose(byol_loss(p, z).item(), want, rtol=1e-5, atol=1e-6)


def test_equals_two_minus_two_cos():
    p, z = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    cos = torch.nn.functional.cosine_similarity(p, z, dim=1)
    torch.testing.assert_close(byol_loss(p, z), (2 - 2 * cos).mean(), rtol=1e-12, atol=1e-12)


def test_extremes():
    x = torch.randn(4, 8)
    assert byol_loss(x, x).abs().item() < 1e-6
    assert abs(byol_loss(x, 5.0 * x).item()) < 1e-6  # scale-invariant
    torch.testing.assert_close(byol_loss(x, -x), torch.tensor(4.0))
    orth_p, orth_z = torch.eye(4)[:2], torch.eye(4)[2:]
    torch.testing.assert_close(byol_loss(orth_p, orth_z), torch.tensor(2.0))


def test_target_detached():
    p = torch.randn(3, 4, requires_grad=True)
    z = torch.randn(3, 4, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    assert z.grad is None


def test_gradcheck():
    p = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    z = torch.randn(4, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: byol_loss(a, z), (p,))
