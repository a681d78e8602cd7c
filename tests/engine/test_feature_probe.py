"""The L-BFGS feature probe: it reaches the optimum, chooses lambda on held-out videos, and its
representation diagnostics tell a collapse apart."""

import math

import pytest
import torch
import torch.nn.functional as F

from stica_slowfast.engine.feature_probe import (
    fit_logistic_regression,
    holdout_split,
    probe_features,
    representation_diagnostics,
)


def _blobs(num_classes: int, per_class: int, dim: int, spread: float, seed: int):
    """Gaussian blobs around random unit centres: (N, D) features, (N,) labels."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_classes, dim, generator=g), dim=1) * 3
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_linearly_separable_features_reach_full_train_accuracy():
    # 10 classes in 64 dimensions, 20 samples each: separable, though the blobs overlap in places
    # a nearest-centre rule gets wrong (spread 1.2 against centres 3 apart at most ~4.2).
    x, y = _blobs(10, 20, 64, spread=1.2, seed=0)
    model = fit_logistic_regression(x * 50 + 7, y, 10, l2=1e-6, max_iter=500)  # scale and shift do not matter
    accuracy = (model.logits(x * 50 + 7).argmax(1) == y).double().mean()
    assert accuracy == 1.0


def test_the_fit_is_the_optimum_of_its_objective():
    x, y = _blobs(4, 30, 8, spread=2.0, seed=1)
    l2 = 0.05
    model = fit_logistic_regression(x, y, 4, l2=l2)
    weight = model.weight.clone().requires_grad_(True)
    bias = model.bias.clone().requires_grad_(True)
    z = (x.double() - model.mean) / model.scale
    loss = F.cross_entropy(z @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
    grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
    assert grad_w.abs().max() < 1e-5 and grad_b.abs().max() < 1e-5  # stationary: the convex optimum
    # Standardised with the training samples' statistics.
    torch.testing.assert_close(model.mean, x.double().mean(0))


def test_holdout_split_is_stratified_disjoint_and_seeded():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    fit, held = holdout_split(labels, 0.2, seed=3)
    assert sorted(fit.tolist() + held.tolist()) == list(range(16))
    assert torch.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]  # one-video classes stay in fit
    again = holdout_split(labels, 0.2, seed=3)
    assert torch.equal(again[1], held) and not torch.equal(holdout_split(labels, 0.2, seed=4)[1], held)


def test_probe_takes_the_lambda_best_on_held_out_videos_and_refits_on_all():
    # 2 informative dimensions among 100 noisy ones, 20 videos per class, 2 views each.
    g = torch.Generator().manual_seed(0)
    y_train, y_test = torch.arange(3).repeat_interleave(20), torch.arange(3).repeat_interleave(40)

    def views(y):  # (N, V=2, D)
        signal = F.one_hot(y, 3).double()[:, None, :2] * 2.0
        return F.pad(signal.expand(-1, 2, -1), (0, 98)) + torch.randn(len(y), 2, 100, generator=g, dtype=torch.float64)

    train, test = views(y_train), views(y_test)
    grid = [10.0, 1e-4, 0.1]
    out = probe_features(train, y_train, test, y_test, 3, l2_grid=grid, holdout_fraction=0.25, seed=1)
    assert set(out) == {"top1_acc", "train_top1_acc", "l2", "holdout_top1_acc"}
    # The held-out score of each lambda, from a fit on the other train videos' views.
    fit_rows, held_rows = holdout_split(y_train, 0.25, seed=1)
    held = {}
    for l2 in grid:
        model = fit_logistic_regression(train[fit_rows].flatten(0, 1), y_train[fit_rows].repeat_interleave(2),
                                        3, l2=l2)
        probs = model.logits(train[held_rows]).softmax(-1).mean(1)
        held[l2] = float((probs.argmax(1) == y_train[held_rows]).double().mean()) * 100
    assert out["holdout_top1_acc"] == max(held.values()) and held[out["l2"]] == max(held.values())
    assert out == probe_features(train, y_train, test, y_test, 3, l2_grid=[out["l2"]], seed=1) | {
        "holdout_top1_acc": out["holdout_top1_acc"]}
    single = probe_features(train, y_train, test, y_test, 3, l2_grid=[1e-4])
    assert "holdout_top1_acc" not in single and single["train_top1_acc"] == 100.0  # it fits the noise
    with pytest.raises(ValueError, match="per-view"):
        probe_features(train[:, 0], y_train, test, y_test, 3, l2_grid=grid)


def test_diagnostics_tell_a_collapse_from_a_spread_representation():
    g = torch.Generator().manual_seed(0)
    spread = torch.randn(200, 2, 32, generator=g)
    collapsed = torch.ones(200, 2, 32) + 1e-4 * torch.randn(200, 2, 32, generator=g)
    line = torch.randn(200, 1, 1, generator=g) * torch.ones(1, 2, 32) + torch.randn(1, 1, 32, generator=g)
    d_spread, d_collapsed, d_line = (representation_diagnostics(v) for v in (spread, collapsed, line))
    assert d_spread["effective_rank"] > 20 and d_line["effective_rank"] == pytest.approx(1.0, abs=0.01)
    assert d_spread["uniformity"] < -3 and d_collapsed["uniformity"] > -1e-3
    assert d_collapsed["alignment"] < 1e-6 and d_spread["alignment"] == pytest.approx(2.0, abs=0.3)
    assert -4.0 <= d_spread["uniformity"] <= 0.0
    same_views = representation_diagnostics(spread[:, :1].expand(-1, 2, -1))
    assert same_views["alignment"] == pytest.approx(0.0, abs=1e-12)
    assert not math.isnan(d_collapsed["effective_rank"])
