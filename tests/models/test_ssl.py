"""rho-clip SSL methods (RhoSimCLR, RhoMoCo, RhoBYOL, RhoSwAV): build from cfg, finite losses for rho 2
and 3, loss decreases on a fixed batch, EMA target update, MoCo queue, SwAV prototype freeze."""

import copy

import pytest
import torch

from stica_slowfast.config import get_cfg
from stica_slowfast.layers import cosine_momentum
from stica_slowfast.models import build_model
from stica_slowfast.models import encoder as encoder_module
from stica_slowfast.models.ssl import RhoSimCLR, ordered_pairs

METHODS = ["RhoSimCLR", "RhoMoCo", "RhoBYOL", "RhoSwAV"]
B = 4


def _cfg(name, **contrastive):
    cfg = get_cfg()
    cfg.MODEL.ARCH = "r2plus1d_tiny"
    cfg.MODEL.MODEL_NAME = name
    cfg.CONTRASTIVE.DIM = 16
    cfg.CONTRASTIVE.MLP_DIM = 32
    cfg.CONTRASTIVE.QUEUE_LEN = 256
    cfg.STICA.SWAV.NUM_PROTOTYPES = 12
    for key, value in contrastive.items():
        cfg.CONTRASTIVE[key] = value
    return cfg


def _batch(rho, seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    return {"video": [torch.randn(B, 3, 4, size, size, generator=g) for _ in range(rho)]}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_ordered_pairs():
    assert ordered_pairs(2) == [(0, 1), (1, 0)]
    assert len(ordered_pairs(3)) == 6 and all(a != b for a, b in ordered_pairs(3))


@pytest.mark.parametrize("name", METHODS)
def test_builds_and_forward_train_rho_2_and_3(name):
    model = build_model(_cfg(name))
    assert type(model).__name__ == name
    assert model.predicts_labels is False
    assert model.backbone.out_dim == 128
    feats = model.forward_features(torch.randn(B, 3, 4, 32, 32))
    assert feats.shape == (B, model.backbone.out_dim)
    for rho in (2, 3):
        out = model.forward_train(_batch(rho))
        loss = out["loss"]
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
        # Logs: detached 0-dim tensors (read back by the engine once per LOG_PERIOD) or host numbers.
        logs = {k: v for k, v in out.items() if k != "loss"}
        assert logs and all(isinstance(v, float) or (v.dim() == 0 and not v.requires_grad)
                            for v in logs.values()), logs
        assert all(torch.isfinite(torch.as_tensor(v)) for v in logs.values()), logs
        loss.backward()
        assert model.backbone.parameters().__next__().grad is not None
        model.zero_grad(set_to_none=True)


def test_one_clip_is_an_error():
    model = build_model(_cfg("RhoSimCLR"))
    with pytest.raises(ValueError, match="TRAIN_CROP_NUM_TEMPORAL"):
        model.forward_train(_batch(1))


def test_sequential_mode_runs():
    for name in ("RhoMoCo", "RhoBYOL"):
        model = build_model(_cfg(name, SEQUENTIAL=True))
        assert model.encoder.sequential
        assert torch.isfinite(model.forward_train(_batch(3))["loss"])


@pytest.mark.parametrize("name", METHODS)
def test_loss_decreases_on_a_fixed_batch(name):
    # Honest claim: after 4 AdamW steps on one fixed rho=2 batch of (4, 3, 4, 16, 16) clips, the training loss is lower than at
    # the first step (no claim about representation quality). The momentum target and the MoCo queue
    # move as in training (the queue is long enough that its random keys dominate).
    cfg = _cfg(name, QUEUE_LEN=2048)
    cfg.STICA.SWAV.FREEZE_PROTOTYPES_ITERS = 0
    model = build_model(cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = _batch(2, seed=1, size=16)  # smaller frames: 5 forward/backward passes per method
    losses = []
    for step in range(5):
        loss = model.forward_train(batch)["loss"]
        losses.append(loss.item())
        if step == 4:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.on_step_end(step + 1, 100)
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", ["RhoMoCo", "RhoBYOL"])
def test_momentum_target_ema_and_no_grads(name):
    model = build_model(_cfg(name, MOMENTUM=0.9))
    assert all(not p.requires_grad for p in model.target.parameters())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.forward_train(_batch(2))["loss"].backward()
    assert all(p.grad is None for p in model.target.parameters())
    optimizer.step()
    online = {f"backbone.{k}": v.detach().clone() for k, v in model.backbone.named_parameters()}
    online.update({f"projector.{k}": v.detach().clone() for k, v in model.projector.named_parameters()})
    before = {k: v.detach().clone() for k, v in model.target.named_parameters()}
    assert any(not torch.equal(online[k], before[k]) for k in before)
    model.on_step_end(30, 100)
    m = cosine_momentum(0.9, 30, 100)
    assert model.momentum == pytest.approx(m) and 0.9 < m < 1.0
    for k, t in model.target.named_parameters():
        torch.testing.assert_close(t, m * before[k] + (1 - m) * online[k])
    # Without annealing the base momentum is used.
    model.momentum_annealing = False
    model.on_step_end(50, 100)
    assert model.momentum == 0.9


def test_moco_queue_pointer_advances_by_all_clip_keys():
    model = build_model(_cfg("RhoMoCo", QUEUE_LEN=256))
    for rho in (2, 3):
        ptr = int(model.queue.ptr)
        model.forward_train(_batch(rho))
        # Each clip's key is enqueued once per step (not once per pair: no duplicate negatives).
        assert int(model.queue.ptr) == (ptr + B * rho) % 256
    assert torch.allclose(model.queue.queue.norm(dim=1), torch.ones(256))


def test_swav_prototypes_frozen_then_trained():
    cfg = _cfg("RhoSwAV")
    cfg.STICA.SWAV.FREEZE_PROTOTYPES_ITERS = 2
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    start = model.prototypes.weight.detach().clone()
    torch.testing.assert_close(start.norm(dim=1), torch.ones(12))
    for step in range(2):  # steps 0 and 1 are frozen
        loss = model.forward_train(_batch(2, seed=step))["loss"]
        optimizer.zero_grad()
        loss.backward()
        assert torch.count_nonzero(model.prototypes.weight.grad) == 0
        assert model.backbone.parameters().__next__().grad.abs().sum() > 0
        optimizer.step()
        model.on_step_end(step + 1, 10)
    model.normalize_prototypes()  # weight decay only rescales rows; directions are unchanged
    torch.testing.assert_close(model.prototypes.weight, start)
    assert not model.prototypes_frozen
    loss = model.forward_train(_batch(2, seed=5))["loss"]
    optimizer.zero_grad()
    loss.backward()
    assert torch.count_nonzero(model.prototypes.weight.grad) > 0


def test_swav_queue_fills():
    model = build_model(_cfg("RhoSwAV", SWAV_QEUE_LEN=32))
    model.forward_train(_batch(2))
    assert len(model.queue) == 2 * B
    assert torch.isfinite(model.forward_train(_batch(3))["loss"])
    assert len(model.queue) == 5 * B


def test_cfg_free_construction():
    backbone = build_model(_cfg("RhoSimCLR")).backbone
    model = RhoSimCLR(backbone=backbone, dim=8, mlp_dim=16, num_mlp_layers=2, bn_mlp=True, bn_sync_mlp=False,
                      temperature=0.2, sequential=False, video_pool=None, feature_crop=None,
                      crop_space="feature", dist_on=False)
    assert model.projector.out_dim == 8 and torch.isfinite(model.forward_train(_batch(2))["loss"])


@pytest.mark.parametrize("name", METHODS)
def test_sequential_gives_the_gradients_of_per_clip_encoding(name, monkeypatch):
    """Checkpointed sequential encoding = encoding clip by clip with the graph kept: same loss, same
    gradients, and running BN statistics updated once per clip (not again by the recompute)."""
    torch.manual_seed(0)
    seq = build_model(_cfg(name, SEQUENTIAL=True))
    plain = copy.deepcopy(seq)
    batch = _batch(3)
    losses = []
    for model in (seq, plain):
        torch.manual_seed(1)
        if model is plain:  # per clip, graph kept: no activation checkpointing
            monkeypatch.setattr(encoder_module, "checkpoint", lambda fn, *args, **kwargs: fn(*args))
        loss = model.forward_train(batch)["loss"]
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1])
    for (n, a), b in zip(seq.named_parameters(), plain.parameters()):
        if a.grad is not None or b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=n, rtol=1e-4, atol=1e-6)
    for (n, a), b in zip(seq.named_buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, msg=n)


def test_byol_predictor_lr_mult_gives_the_predictor_its_own_lr():
    from stica_slowfast.engine.optim import construct_optimizer

    cfg = _cfg("RhoBYOL")
    cfg.STICA.BYOL.PREDICTOR_LR_MULT = 10.0
    model = build_model(cfg)
    optimizer = construct_optimizer(model, cfg, model.lr_scales)
    predictor = {id(p) for p in model.predictor.parameters()}
    for group in optimizer.param_groups:
        in_predictor = {id(p) in predictor for p in group["params"]}
        assert len(in_predictor) == 1  # a group is all predictor or all the rest
        assert group.get("lr_scale", 1.0) == (10.0 if in_predictor.pop() else 1.0)


def test_the_encoders_follow_the_model_through_copies_and_conversions():
    """The encoders hold no modules of their own: after a deep copy or a SyncBatchNorm conversion they
    run the modules the state dict holds."""
    model = build_model(_cfg("RhoBYOL"))
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    for m in (copy.deepcopy(model), synced):
        assert m.encoder.backbone is m.backbone and m.encoder.projector is m.projector
        assert m.target_encoder.backbone is m.target["backbone"] and m.target_encoder.projector is m.target["projector"]
    assert any(isinstance(layer, torch.nn.SyncBatchNorm) for layer in synced.encoder.projector.modules())
    assert not any(k.startswith(("encoder.", "target_encoder.")) for k in model.state_dict())
