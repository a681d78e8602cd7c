"""STiCA's crop loss (crop_info_nce, pairwise_info_nce) against an independent numpy loop over pairs."""

import math

import numpy as np
import pytest
import torch

from stica_slowfast.losses import crop_info_nce, info_nce, pairwise_info_nce
from stica_slowfast.registry import LOSS


def _np_info_nce(q: np.ndarray, k: np.ndarray, t: float) -> float:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    total = 0.0
    for n in range(q.shape[0]):
        logits = [q[n] @ k[m] / t for m in range(k.shape[0])]
        total += -logits[n] + math.log(sum(math.exp(s) for s in logits))
    return total / q.shape[0]


def _np_crop_loss(large: np.ndarray, small, t: float) -> float:
    n_l, views = large.shape[:2]
    ll = [_np_info_nce(large[i, a], large[j, b], t)
          for i in range(n_l) for a in range(views) for j in range(n_l) for b in range(views) if a != b]
    loss = float(np.mean(ll))
    if small is None:
        return loss
    sl = [_np_info_nce(small[k, a], large[i, b], t)
          for k in range(small.shape[0]) for a in range(views) for i in range(n_l) for b in range(views) if a != b]
    return 0.5 * (loss + float(np.mean(sl)))


def test_registered():
    assert LOSS.get("crop_info_nce") is crop_info_nce
    assert LOSS.get("pairwise_info_nce") is pairwise_info_nce


@pytest.mark.parametrize("with_small", [False, True])
def test_golden(with_small):
    large = torch.randn(3, 2, 5, 8, dtype=torch.float64)
    small = torch.randn(4, 2, 5, 8, dtype=torch.float64) if with_small else None
    got = crop_info_nce(large, small, temperature=0.5)
    want = _np_crop_loss(large.numpy(), None if small is None else small.numpy(), 0.5)
    np.testing.assert_allclose(got.item(), want, rtol=1e-10)


def test_pairwise_equals_info_nce_per_pair():
    q, k = torch.randn(3, 6, 4), torch.randn(2, 6, 4)
    mask = torch.tensor([[True, False], [False, True], [True, True]])
    want = torch.stack([info_nce(q[p], k[r], temperature=0.2)
                        for p in range(3) for r in range(2) if mask[p, r]]).mean()
    torch.testing.assert_close(pairwise_info_nce(q, k, temperature=0.2, pair_mask=mask), want)


def test_small_crops_do_not_move_large_ones_through_their_term():
    """The small -> large term stops the gradient at the large crops: with it alone (large-large
    term's gradient subtracted), the large embeddings get no gradient."""
    large = torch.randn(2, 2, 4, 8, requires_grad=True)
    small = torch.randn(3, 2, 4, 8, requires_grad=True)
    (g_with,) = torch.autograd.grad(crop_info_nce(large, small, temperature=0.5), large)
    (g_alone,) = torch.autograd.grad(0.5 * crop_info_nce(large, None, temperature=0.5), large)
    torch.testing.assert_close(g_with, g_alone)
    (g_small,) = torch.autograd.grad(crop_info_nce(large, small, temperature=0.5), small)
    assert g_small.abs().sum() > 0


def test_gradcheck():
    """float64 gradcheck of the large-large loss, and of the small crops' side (the large side of the
    small -> large term is stopped, so finite differences there would not match by design)."""
    large = torch.randn(2, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    small = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: crop_info_nce(x, temperature=0.5), (large,))
    fixed = large.detach()
    assert torch.autograd.gradcheck(lambda s: crop_info_nce(fixed, s, temperature=0.5), (small,))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="V >= 2"):
        crop_info_nce(torch.randn(2, 1, 4, 8), temperature=0.5)
    with pytest.raises(ValueError, match="small"):
        crop_info_nce(torch.randn(2, 2, 4, 8), torch.randn(2, 3, 4, 8), temperature=0.5)
    with pytest.raises(ValueError, match="temperature"):
        pairwise_info_nce(torch.randn(1, 2, 3), torch.randn(1, 2, 3), temperature=0.0)


def test_crops_of_one_view_are_never_a_positive_pair():
    """Crops of one view share its clip's moment and augmentation: the small crops' term does not
    depend on the large crops of their own view (only the other views' crops are their positives)."""
    large, small = torch.randn(2, 2, 4, 8), torch.randn(3, 2, 4, 8, requires_grad=True)
    other = large.clone()
    other[:, 0] = torch.randn(2, 4, 8)  # view 0's large crops replaced
    (g,) = torch.autograd.grad(crop_info_nce(large, small, temperature=0.5), small)
    (g_other,) = torch.autograd.grad(crop_info_nce(other, small, temperature=0.5), small)
    torch.testing.assert_close(g[:, 0], g_other[:, 0])  # view 0's small crops: only view 1 counts
    assert not torch.allclose(g[:, 1], g_other[:, 1])  # view 1's small crops see view 0's change
