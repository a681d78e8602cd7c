import random

import pytest
import torch
import torch.nn.functional as F

from stica_slowfast.layers import FeatureQueue


class RingReference:
    """Python-list ring buffer: keys written one at a time."""

    def __init__(self, length):
        self.slots = [None] * length
        self.ptr = 0

    def push_all(self, rows):
        for row in rows:
            self.slots[self.ptr] = row
            self.ptr = (self.ptr + 1) % len(self.slots)


@pytest.mark.parametrize("length", [1, 5, 7])
def test_wrap_around_matches_python_reference(length):
    rng = random.Random(length)
    q = FeatureQueue(length=length, dim=3, init="empty")
    ref = RingReference(length)
    total = 0
    for _ in range(12):
        n = rng.randint(0, 2 * length + 1)  # includes 0, N not dividing L, and N > L
        keys = torch.randn(n, 3)
        q.enqueue(keys)
        ref.push_all(list(F.normalize(keys, dim=1)))
        total += n
        filled = min(total, length)
        assert len(q) == filled and q.is_full == (total >= length)
        assert int(q.ptr) == ref.ptr
        expected = torch.stack(ref.slots[:filled]) if filled else torch.zeros(0, 3)
        torch.testing.assert_close(q.features, expected)


def test_keys_are_normalised_and_detached():
    q = FeatureQueue(length=4, dim=3, init="empty")
    keys = torch.randn(3, 3, requires_grad=True) * 5
    q.enqueue(keys)
    assert not q.features.requires_grad and q.features.grad_fn is None
    torch.testing.assert_close(q.features.norm(dim=1), torch.ones(3))


def test_features_before_and_after_full():
    q = FeatureQueue(length=4, dim=2, init="empty")
    assert q.features.shape == (0, 2) and not q.is_full
    q.enqueue(torch.randn(3, 2))
    assert q.features.shape == (3, 2) and not q.is_full
    q.enqueue(torch.randn(3, 2))
    assert q.features.shape == (4, 2) and q.is_full


def test_random_init_is_full_and_unit_norm():
    q = FeatureQueue(length=6, dim=4)
    assert q.is_full and q.features.shape == (6, 4)
    torch.testing.assert_close(q.features.norm(dim=1), torch.ones(6))


def test_state_dict_round_trip():
    q = FeatureQueue(length=5, dim=3, init="empty")
    q.enqueue(torch.randn(7, 3))
    sd = q.state_dict()
    assert set(sd) == {"queue", "ptr", "filled"}
    r = FeatureQueue(length=5, dim=3, init="empty")
    r.load_state_dict(sd)
    assert torch.equal(r.features, q.features) and int(r.ptr) == int(q.ptr) and r.is_full
    keys = torch.randn(2, 3)
    q.enqueue(keys)
    r.enqueue(keys)
    assert torch.equal(r.queue, q.queue)


def test_bad_shapes_rejected():
    q = FeatureQueue(length=3, dim=2)
    with pytest.raises(ValueError):
        q.enqueue(torch.randn(2, 3))
    with pytest.raises(ValueError):
        FeatureQueue(length=3, dim=2, init="zeros")
