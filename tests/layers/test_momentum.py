import math

import pytest
import torch
import torch.nn as nn

from stica_slowfast.layers import cosine_momentum, make_target, momentum_update


def _net():
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_make_target_copies_without_grad():
    online = _net()
    target = make_target(online)
    assert target is not online
    for (n, p), (_, q) in zip(online.named_parameters(), target.named_parameters()):
        assert torch.equal(p, q) and p.data_ptr() != q.data_ptr(), n
        assert p.requires_grad and not q.requires_grad


def test_ema_golden_values_after_two_updates():
    online, target = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        target.weight.fill_(1.0), target.bias.fill_(-2.0)
        online.weight.fill_(3.0), online.bias.fill_(4.0)
    momentum_update(online, target, 0.9)
    # weight: 0.9 * 1 + 0.1 * 3 = 1.2 ; bias: 0.9 * -2 + 0.1 * 4 = -1.4
    with torch.no_grad():
        online.weight.fill_(-1.0), online.bias.fill_(0.0)
    momentum_update(online, target, 0.5)
    # weight: 0.5 * 1.2 + 0.5 * -1 = 0.1 ; bias: 0.5 * -1.4 + 0.5 * 0 = -0.7
    torch.testing.assert_close(target.weight, torch.tensor([[0.1]]))
    torch.testing.assert_close(target.bias, torch.tensor([-0.7]))


def test_momentum_one_keeps_target_and_zero_copies():
    online, target = _net(), _net()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    momentum_update(online, target, 1.0)
    for n, p in target.named_parameters():
        assert torch.equal(p, before[n]), n
    momentum_update(online, target, 0.0)
    for (n, p), (_, q) in zip(online.named_parameters(), target.named_parameters()):
        assert torch.equal(p, q), n


def test_buffers_are_copied():
    online, target = _net(), _net()
    online.train()(torch.randn(8, 3))  # moves online's running stats
    momentum_update(online, target, 0.99)
    for (n, b), (_, c) in zip(online.named_buffers(), target.named_buffers()):
        assert torch.equal(b, c), n
    assert int(target[1].num_batches_tracked) == 1


def test_target_gets_no_grad_and_online_unchanged():
    online = _net()
    target = make_target(online)
    ref = {k: v.clone() for k, v in online.state_dict().items()}
    # Online and target share one graph, as in BYOL's loss: only the online side may get gradients.
    x = torch.randn(4, 3)
    (online(x) * target(x)).sum().backward()
    momentum_update(online, target, 0.5)
    assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    assert all(p.grad is not None for p in online.parameters())
    for k, v in online.named_parameters():
        assert torch.equal(v, ref[k])


def test_ddp_style_wrapper_is_unwrapped():
    # A real DDP needs a process group; DataParallel on CPU is the same kind of wrapper (``.module``).
    online, target = _net(), _net()
    momentum_update(nn.DataParallel(online), nn.DataParallel(target), 0.0)
    for p, q in zip(online.parameters(), target.parameters()):
        assert torch.equal(p, q)
    assert isinstance(make_target(nn.DataParallel(online)), nn.Sequential)


def test_cosine_schedule():
    base = 0.99
    assert cosine_momentum(base, 0, 100) == pytest.approx(base)
    assert cosine_momentum(base, 100, 100) == pytest.approx(1.0)
    assert cosine_momentum(base, 50, 100) == pytest.approx(1 - (1 - base) / 2)
    assert cosine_momentum(base, 25, 100) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    values = [cosine_momentum(base, s, 10) for s in range(11)]
    assert values == sorted(values)
    assert cosine_momentum(base, 500, 100) == pytest.approx(1.0)  # clamped
