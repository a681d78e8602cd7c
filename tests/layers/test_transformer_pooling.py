import inspect

import pytest
import torch

from stica_slowfast.layers import GlobalAveragePooling, TransformerPooling, build_temporal_pooling


def _pool(**kwargs):
    args = dict(in_dim=6, width=8, depth=2, num_heads=2, mlp_ratio=2.0, dropout=0.0, max_len=4,
                gap_init=True)
    args.update(kwargs)
    return TransformerPooling(**args)


@pytest.mark.parametrize("width, out_dim", [(8, 8), (None, 6)])
@pytest.mark.parametrize("t", [1, 3, 4, 9])  # shorter, equal to and longer than max_len=4
def test_output_shape_for_any_number_of_steps(width, out_dim, t):
    pool = _pool(width=width)
    assert pool.out_dim == out_dim
    assert isinstance(pool.proj, torch.nn.Linear) == (width is not None)
    out = pool(torch.randn(5, t, 6))
    assert out.shape == (5, out_dim) and torch.isfinite(out).all()


def test_positional_embedding_interpolation():
    pool = _pool()
    assert pool.positional_embedding(4) is pool.pos_embed
    with torch.no_grad():
        pool.pos_embed.copy_(torch.arange(4.0).view(1, 4, 1).expand(1, 4, 8))
    # Cell-centred linear interpolation: 8 steps halve the spacing, clamped at the ends.
    pos = pool.positional_embedding(8)[0, :, 0]
    torch.testing.assert_close(pos, torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]))
    torch.testing.assert_close(pool.positional_embedding(2)[0, :, 0], torch.tensor([0.5, 2.5]))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_batch_independence(mode):
    pool = _pool(dropout=0.0).train(mode == "train")
    x = torch.randn(4, 5, 6)
    out = pool(x)
    y = x.clone()
    y[1:] = torch.randn(3, 5, 6) * 10
    torch.testing.assert_close(pool(y)[0], out[0])
    torch.testing.assert_close(pool(x[:1])[0], out[0])
    torch.testing.assert_close(pool(x[2:])[0], out[2])


def test_gap_init_starts_as_the_mean_and_learns_a_readout():
    pool = _pool(width=None)
    x = torch.randn(3, 4, 6)
    torch.testing.assert_close(pool(x), x.mean(1))  # zero-initialised readout: exactly GAP
    optimizer = torch.optim.SGD(pool.parameters(), lr=0.1)
    target = torch.randn(3, 6)
    for _ in range(3):
        loss = (pool(x) - target).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert pool.readout.weight.abs().sum() > 0
    assert not torch.allclose(pool(x), x.mean(1), atol=1e-3)  # the attention path now contributes
    assert pool.cls_token.grad.abs().sum() > 0 and pool.pos_embed.grad.abs().sum() > 0


def test_cls_readout_is_learned_and_position_aware():
    pool = _pool(width=None, gap_init=False)
    x = torch.randn(3, 4, 6, requires_grad=True)
    out = pool(x)
    assert not torch.allclose(out, x.mean(1), atol=1e-3)
    # Positional embeddings make the output depend on the order of the steps (a mean would not).
    assert not torch.allclose(pool(x.flip(1)), out, atol=1e-4)
    (out * torch.randn_like(out)).sum().backward()
    for name in ["pos_embed", "cls_token"]:
        grad = getattr(pool, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_interpolated_positions_receive_gradients():
    pool = _pool(gap_init=False)
    out = pool(torch.randn(2, 7, 6))
    (out * torch.randn_like(out)).sum().backward()  # a plain sum of a LayerNorm output has no gradient
    assert (pool.pos_embed.grad.abs().sum(-1) > 0).all()


def test_deterministic_in_eval_dropout_in_train():
    pool = _pool(dropout=0.5, gap_init=False)
    x = torch.randn(3, 4, 6)
    pool.eval()
    torch.testing.assert_close(pool(x), pool(x), rtol=0, atol=0)
    pool.train()
    assert not torch.allclose(pool(x), pool(x))


def test_gap_equals_mean():
    gap = GlobalAveragePooling(in_dim=6)
    x = torch.randn(3, 5, 6)
    assert gap.out_dim == 6
    torch.testing.assert_close(gap(x), x.mean(1))
    torch.testing.assert_close(gap(x.flip(1)), gap(x))


@pytest.mark.parametrize("module", [_pool(), GlobalAveragePooling(in_dim=6)], ids=["transformer", "gap"])
@pytest.mark.parametrize("shape", [(3, 6), (3, 4, 5), (3, 4, 6, 1), (3, 0, 6)])
def test_bad_shapes_raise(module, shape):
    with pytest.raises(ValueError, match=r"\(B, T, C\)|time step"):
        module(torch.randn(shape))


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads"):
        _pool(num_heads=3)
    with pytest.raises(ValueError, match="depth"):
        _pool(depth=0)
    with pytest.raises(ValueError, match="max_len"):
        _pool(max_len=0)


def test_factory():
    args = dict(in_dim=6, width=8, depth=1, num_heads=2, mlp_ratio=4.0, dropout=0.0, max_len=4,
                gap_init=True)
    pool = build_temporal_pooling("transformer", **args)
    assert isinstance(pool, TransformerPooling) and pool.out_dim == 8 and pool.max_len == 4
    gap = build_temporal_pooling("GAP", **args)
    assert isinstance(gap, GlobalAveragePooling) and gap.out_dim == 6
    with pytest.raises(ValueError, match=r"'transfomer'; choose one of \['gap', 'transformer'\]; did you mean 'transformer'\?"):
        build_temporal_pooling("transfomer", **args)
    # "gap" ignores the transformer's arguments, not a misspelt one.
    with pytest.raises(TypeError, match="widht"):
        build_temporal_pooling("gap", in_dim=6, widht=8)


def test_every_argument_is_required():
    # The defaults live in STICA.POOL.* alone: a hand-built pooling cannot silently differ.
    params = inspect.signature(TransformerPooling).parameters.values()
    assert [p.name for p in params if p.default is not p.empty] == []
    with pytest.raises(TypeError, match="gap_init"):
        build_temporal_pooling("transformer", in_dim=6, width=8, depth=1, num_heads=2, mlp_ratio=4.0,
                               dropout=0.0, max_len=4)
