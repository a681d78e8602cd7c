"""LARS (stica_slowfast.engine.lars): golden steps against numpy, zero-norm edge cases, momentum
state, the construct_optimizer wiring and that it minimises a quadratic."""

import numpy as np
import pytest
import torch
from torch import nn

from stica_slowfast.config import get_cfg
from stica_slowfast.config.validation import assert_and_infer_cfg
from stica_slowfast.engine.lars import LARS
from stica_slowfast.engine.optim import construct_optimizer

LR, MOMENTUM, WD, ETA = 0.5, 0.9, 0.01, 0.02


def _two_param_problem():
    """An adapted weight (2, 3) and an excluded bias (2,), each with a fixed gradient."""
    weight = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    grads = {
        "weight": np.array([[0.2, 0.1, -0.4], [0.5, -0.3, 0.05]]),
        "bias": np.array([1.5, -0.25]),
    }
    groups = [
        {"params": [weight], "lars_exclude": False},
        {"params": [bias], "lars_exclude": True},
    ]
    return weight, bias, grads, groups


def _numpy_lars(w, g, buf, *, adapt):
    """One LARS step written out: returns (new w, new momentum buffer)."""
    d = g + WD * w
    if adapt:
        w_norm, g_norm = np.sqrt((w**2).sum()), np.sqrt((g**2).sum())
        d = d * (ETA * w_norm / (g_norm + WD * w_norm))
    buf = d if buf is None else MOMENTUM * buf + d
    return w - LR * buf, buf


def test_two_steps_match_numpy_for_adapted_and_excluded_groups():
    weight, bias, grads, groups = _two_param_problem()
    opt = LARS(groups, lr=LR, momentum=MOMENTUM, weight_decay=WD, eta=ETA)
    w_np, b_np = weight.detach().numpy().copy(), bias.detach().numpy().copy()
    w_buf = b_buf = None
    for _ in range(2):
        weight.grad = torch.from_numpy(grads["weight"].copy())
        bias.grad = torch.from_numpy(grads["bias"].copy())
        opt.step()
        w_np, w_buf = _numpy_lars(w_np, grads["weight"], w_buf, adapt=True)
        b_np, b_buf = _numpy_lars(b_np, grads["bias"], b_buf, adapt=False)
        np.testing.assert_allclose(weight.detach().numpy(), w_np, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(bias.detach().numpy(), b_np, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(opt.state[weight]["momentum_buffer"].numpy(), w_buf, rtol=1e-12)
        np.testing.assert_allclose(opt.state[bias]["momentum_buffer"].numpy(), b_buf, rtol=1e-12)


def test_first_step_golden_value_by_hand():
    # w = [3, 4] (||w|| = 5), g = [0, 1] (||g|| = 1), wd = 0.1, eta = 0.2:
    # trust = 0.2 * 5 / (1 + 0.1 * 5) = 2/3; d = (g + 0.1 w) * 2/3 = [0.2, 0.9333...]; w -= 0.1 * d
    w = torch.tensor([3.0, 4.0], dtype=torch.float64, requires_grad=True)
    w.grad = torch.tensor([0.0, 1.0], dtype=torch.float64)
    LARS([w], lr=0.1, momentum=0.9, weight_decay=0.1, eta=0.2).step()
    torch.testing.assert_close(w.detach(), torch.tensor([3.0 - 0.02, 4.0 - 0.1 * 1.4 * 2 / 3], dtype=torch.float64))


def test_excluded_group_is_plain_sgd():
    weight, bias, _, _ = _two_param_problem()
    ref_w, ref_b = weight.detach().clone().requires_grad_(), bias.detach().clone().requires_grad_()
    lars = LARS([{"params": [weight, bias], "lars_exclude": True}], lr=LR, momentum=MOMENTUM, weight_decay=WD)
    sgd = torch.optim.SGD([ref_w, ref_b], lr=LR, momentum=MOMENTUM, weight_decay=WD)
    for step in range(3):
        for p, q in ((weight, ref_w), (bias, ref_b)):
            g = torch.full_like(p, 0.1 * (step + 1))
            p.grad, q.grad = g.clone(), g.clone()
        lars.step()
        sgd.step()
    torch.testing.assert_close(weight, ref_w)
    torch.testing.assert_close(bias, ref_b)


@pytest.mark.parametrize("case", ["zero_weight", "zero_grad"])
def test_zero_norm_gives_trust_ratio_one(case):
    w0 = torch.zeros(3) if case == "zero_weight" else torch.tensor([1.0, 2.0, 2.0])
    g = torch.tensor([0.5, -1.0, 0.25]) if case == "zero_weight" else torch.zeros(3)
    assert LARS.trust_ratio(w0, g, eta=0.001, weight_decay=0.1).item() == 1.0
    w = w0.clone().requires_grad_()
    w.grad = g.clone()
    LARS([w], lr=0.1, momentum=0.0, weight_decay=0.1, eta=0.001).step()
    # trust 1: the update is the plain SGD one, and nothing is NaN (0/0 never reaches the weights)
    torch.testing.assert_close(w.detach(), w0 - 0.1 * (g + 0.1 * w0))


def test_momentum_state_and_no_momentum():
    w = torch.tensor([1.0, 0.0], requires_grad=True)
    opt = LARS([w], lr=0.1, momentum=0.0, weight_decay=0.0, eta=0.5)
    w.grad = torch.tensor([0.0, 2.0])
    opt.step()
    assert "momentum_buffer" not in opt.state[w]
    # trust = 0.5 * 1 / 2 = 0.25 -> d = [0, 0.5]
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, -0.05]))

    w = torch.tensor([1.0, 0.0], requires_grad=True)
    opt = LARS([w], lr=0.1, momentum=0.9, weight_decay=0.0, eta=0.5)
    w.grad = torch.tensor([0.0, 2.0])
    opt.step()
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], torch.tensor([0.0, 0.5]))
    state = opt.state_dict()
    restored = LARS([w], lr=0.1, momentum=0.9, weight_decay=0.0, eta=0.5)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.state[w]["momentum_buffer"], torch.tensor([0.0, 0.5]))


def test_nesterov_step():
    w = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    opt = LARS([{"params": [w], "lars_exclude": True}], lr=0.1, momentum=0.5, nesterov=True)
    w.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()  # buf = 1, d = 1 + 0.5 * 1
    torch.testing.assert_close(w.detach(), torch.tensor([2.0 - 0.15], dtype=torch.float64))


def test_rejects_bad_hyper_parameters():
    p = [torch.zeros(1, requires_grad=True)]
    for kwargs in ({"lr": -1}, {"lr": 0.1, "eta": 0}, {"lr": 0.1, "momentum": 0, "nesterov": True},
                   {"lr": 0.1, "weight_decay": -1}):
        with pytest.raises(ValueError):
            LARS(p, **kwargs)


class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 2)


def test_construct_optimizer_builds_lars_with_norm_and_bias_excluded():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "lars"
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.BN.WEIGHT_DECAY = 0.0
    cfg.STICA.SOLVER.LARS_ETA = 0.02
    assert_and_infer_cfg(cfg)  # "lars" is an accepted choice
    model = _ConvBN()
    opt = construct_optimizer(model, cfg)
    assert isinstance(opt, LARS)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert not by_name["decay"]["lars_exclude"]
    assert {id(p) for p in by_name["decay"]["params"]} == {id(model.conv.weight), id(model.fc.weight)}
    assert by_name["decay_1d"]["lars_exclude"]
    assert {id(p) for p in by_name["decay_1d"]["params"]} == {id(model.conv.bias), id(model.fc.bias)}
    assert by_name["norm"]["lars_exclude"] and by_name["norm"]["weight_decay"] == 0.0
    assert {id(p) for p in by_name["norm"]["params"]} == {id(model.bn.weight), id(model.bn.bias)}
    assert all(g["eta"] == 0.02 and g["momentum"] == 0.9 for g in opt.param_groups)
    assert by_name["decay"]["weight_decay"] == 1e-4


def test_construct_optimizer_lars_rejects_dampening():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "lars"
    cfg.SOLVER.DAMPENING = 0.1
    with pytest.raises(ValueError, match="DAMPENING"):
        construct_optimizer(_ConvBN(), cfg)


def test_lars_reduces_a_quadratic_loss():
    torch.manual_seed(0)
    target = torch.randn(8, 4)
    weight = nn.Parameter(torch.randn(8, 4))
    bias = nn.Parameter(torch.randn(8))
    opt = LARS(
        [{"params": [weight], "lars_exclude": False}, {"params": [bias], "lars_exclude": True}],
        lr=1.0, momentum=0.9, weight_decay=0.0, eta=0.01,
    )

    def loss_fn():
        return ((weight - target) ** 2).sum() + (bias**2).sum()

    start = loss_fn().item()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.01 * start
