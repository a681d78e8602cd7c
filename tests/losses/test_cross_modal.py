"""cross_modal_info_nce (GDT / STiCA video <-> audio) against an independent numpy loop, plus invariants."""

import math

import numpy as np
import pytest
import torch

from stica_slowfast.losses import cross_modal_info_nce
from stica_slowfast.registry import LOSS


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_direction(q, k, t, neg):
    """Mean over queries of -log softmax of the paired key among all keys and the extra negatives."""
    total = 0.0
    for i in range(q.shape[0]):
        logits = [q[i] @ k[j] / t for j in range(k.shape[0])] + [q[i] @ n / t for n in neg]
        total += -logits[i] + math.log(sum(math.exp(s) for s in logits))
    return total / q.shape[0]


def _np_cross_modal(v, a, t, v_neg=None, a_neg=None):
    v, a = _unit(v), _unit(a)
    v_neg = np.zeros((0, v.shape[1])) if v_neg is None else _unit(v_neg)
    a_neg = np.zeros((0, v.shape[1])) if a_neg is None else _unit(a_neg)
    return 0.5 * (_np_direction(v, a, t, a_neg) + _np_direction(a, v, t, v_neg))


def test_registered():
    assert LOSS.get("cross_modal_info_nce") is cross_modal_info_nce


@pytest.mark.parametrize("with_negatives", [False, True])
def test_golden(with_negatives):
    v, a = torch.randn(5, 8), torch.randn(5, 8)
    v_neg, a_neg = (torch.randn(3, 8), torch.randn(7, 8)) if with_negatives else (None, None)
    got = cross_modal_info_nce(v, a, temperature=0.2, video_negatives=v_neg, audio_negatives=a_neg)
    as_np = [None if x is None else x.double().numpy() for x in (v, a, v_neg, a_neg)]
    want = _np_cross_modal(as_np[0], as_np[1], 0.2, as_np[2], as_np[3])
    assert got.dim() == 0
    np.testing.assert_allclose(got.item(), want, rtol=1e-5, atol=1e-6)


def test_negatives_go_to_the_other_modality():
    """audio_negatives enter only the video-query direction, so they are compared with video rows."""
    v, a, neg = torch.randn(4, 6), torch.randn(4, 6), torch.randn(5, 6)
    as_np = [x.double().numpy() for x in (v, a, neg)]
    got = cross_modal_info_nce(v, a, temperature=0.3, audio_negatives=neg)
    np.testing.assert_allclose(got.item(), _np_cross_modal(*as_np[:2], 0.3, a_neg=as_np[2]), rtol=1e-5)
    assert not np.isclose(got.item(), _np_cross_modal(*as_np[:2], 0.3, v_neg=as_np[2]), rtol=1e-4)


def test_symmetric_in_modalities():
    v, a, nv, na = torch.randn(6, 8), torch.randn(6, 8), torch.randn(4, 8), torch.randn(3, 8)
    torch.testing.assert_close(
        cross_modal_info_nce(v, a, temperature=0.1, video_negatives=nv, audio_negatives=na),
        cross_modal_info_nce(a, v, temperature=0.1, video_negatives=na, audio_negatives=nv),
    )


def test_aligned_distinct_embeddings_near_zero():
    # 8 orthogonal directions, scaled differently per modality: normalisation makes them identical.
    v = torch.eye(8, 16)
    loss = cross_modal_info_nce(3.0 * v, 0.5 * v, temperature=0.01)
    assert loss.item() < 1e-6


def test_identical_embeddings_give_log_n():
    n = 7
    same = torch.randn(1, 5).expand(n, 5)
    loss = cross_modal_info_nce(same, 2.0 * same, temperature=0.07)
    np.testing.assert_allclose(loss.item(), math.log(n), rtol=1e-6)


def test_gradcheck():
    v = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    a = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    nv = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    na = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)

    def loss(v, a, nv, na):
        return cross_modal_info_nce(v, a, temperature=0.3, video_negatives=nv, audio_negatives=na)

    assert torch.autograd.gradcheck(loss, (v, a, nv, na))


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="video and audio"):
        cross_modal_info_nce(torch.randn(4, 5), torch.randn(3, 5), temperature=0.1)
    v, a = torch.randn(4, 5), torch.randn(4, 5)
    with pytest.raises(ValueError):
        cross_modal_info_nce(v, a, temperature=0.1, audio_negatives=torch.randn(2, 6))
    with pytest.raises(ValueError):
        cross_modal_info_nce(v, a, temperature=0.0)
