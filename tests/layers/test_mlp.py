import inspect

import pytest
import torch
import torch.nn as nn

from stica_slowfast.layers import MLP


def _types(mlp):
    return [type(m) for m in mlp.layers]


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("use_norm", [True, False])
def test_layer_counts_and_shapes(num_layers, use_norm):
    mlp = MLP(in_dim=6, hidden_dim=10, out_dim=4, num_layers=num_layers,
              norm=nn.BatchNorm1d if use_norm else None)
    linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
    assert len(linears) == num_layers
    expected = [(6, 10)] + [(10, 10)] * (num_layers - 2) + [(10, 4)] if num_layers > 1 else [(6, 4)]
    assert [(l.in_features, l.out_features) for l in linears] == expected
    hidden = num_layers - 1
    assert sum(isinstance(m, nn.BatchNorm1d) for m in mlp.layers) == (hidden if use_norm else 0)
    assert sum(isinstance(m, nn.ReLU) for m in mlp.layers) == hidden
    # Nothing after the last linear layer by default.
    assert isinstance(mlp.layers[-1], nn.Linear)
    # Bias only where no norm follows (the output layer always has one here).
    assert linears[-1].bias is not None
    for l in linears[:-1]:
        assert (l.bias is None) == use_norm
    assert mlp(torch.randn(5, 6)).shape == (5, 4)


def test_single_layer_is_one_linear():
    mlp = MLP(in_dim=3, hidden_dim=99, out_dim=2, num_layers=1, norm=nn.BatchNorm1d)
    assert _types(mlp) == [nn.Linear]


def test_order_norm_then_activation():
    mlp = MLP(in_dim=3, hidden_dim=5, out_dim=2, num_layers=2, norm=nn.BatchNorm1d, activation=nn.GELU)
    assert _types(mlp) == [nn.Linear, nn.BatchNorm1d, nn.GELU, nn.Linear]


def test_last_norm_has_no_affine_and_standardises():
    mlp = MLP(in_dim=6, hidden_dim=8, out_dim=4, num_layers=3, norm=nn.BatchNorm1d, last_norm=True)
    last = mlp.layers[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    assert last.weight is None and last.bias is None
    assert mlp.layers[-2].bias is None  # the BN would cancel it
    out = mlp.train()(torch.randn(32, 6))
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_last_norm_needs_norm():
    with pytest.raises(ValueError):
        MLP(in_dim=3, hidden_dim=4, out_dim=2, num_layers=2, norm=None, last_norm=True)
    with pytest.raises(ValueError):
        MLP(in_dim=3, hidden_dim=4, out_dim=2, num_layers=0, norm=None)


def test_gradcheck_float64_without_norm():
    mlp = MLP(in_dim=4, hidden_dim=5, out_dim=3, num_layers=3, norm=None, activation=nn.Tanh).double()
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mlp, (x,))


@pytest.mark.parametrize("last_norm", [False, True])
def test_backward_reaches_all_params(last_norm):
    mlp = MLP(in_dim=6, hidden_dim=8, out_dim=4, num_layers=3, norm=nn.BatchNorm1d, last_norm=last_norm)
    # Weight the outputs so that a batch-normalised output still has a non-trivial loss.
    (mlp(torch.randn(7, 6)) * torch.randn(7, 4)).sum().backward()
    for name, p in mlp.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_keyword_only():
    with pytest.raises(TypeError):
        MLP(4, 8, 2, 2)


def test_norm_is_required():
    # The config owns it (CONTRASTIVE.BN_MLP / BN_SYNC_MLP); last_norm and activation, which no key
    # sets, keep their defaults.
    params = inspect.signature(MLP).parameters
    assert params["norm"].default is inspect.Parameter.empty
    assert [n for n, p in params.items() if p.default is not p.empty] == ["last_norm", "activation"]
