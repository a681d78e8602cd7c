"""STiCA's transformer pooling and Feature Crop in the rho-clip SSL methods: every method with crops as
extra queries (loss = half global, half crop term; trains), RhoBYOL's crop term by hand (feature and
input space, sequential), the pool in the EMA target and in a fine-tuning checkpoint, every method with
the pool, and the unchanged state dict keys of a plain model."""

import copy

import pytest
import torch

from stica_slowfast.config import get_cfg
from stica_slowfast.checkpoint import save_checkpoint
from stica_slowfast.layers import cosine_momentum
from stica_slowfast.models import build_model
from stica_slowfast.models import encoder as encoder_module
from stica_slowfast.models.ssl import RhoBYOL, ordered_pairs

METHODS = ["RhoSimCLR", "RhoMoCo", "RhoBYOL", "RhoSwAV"]
B, POOL_WIDTH = 2, 32
# slow_tiny on 4 x 64 x 64 clips: feature map (256, 4, 2, 2). Default crop counts: 2 + 4 spatial,
# 2 + 1 temporal crops per clip.
NUM_CROPS = 2 + 4 + 2 + 1


@pytest.fixture(autouse=True)
def _one_thread():
    # The suite shares 2 cores with training jobs: two intra-op threads contending for them make these
    # tiny convolutions tens of times slower than one thread does.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(name="RhoBYOL", pool="transformer", crop=False, **contrastive):
    cfg = get_cfg()
    cfg.MODEL.ARCH = "slow_tiny"
    cfg.MODEL.MODEL_NAME = name
    cfg.MODEL.NUM_CLASSES = 5
    cfg.CONTRASTIVE.DIM = 16
    cfg.CONTRASTIVE.MLP_DIM = 32
    cfg.CONTRASTIVE.QUEUE_LEN = 256
    cfg.STICA.SWAV.NUM_PROTOTYPES = 12
    cfg.STICA.POOL.TYPE, cfg.STICA.POOL.WIDTH, cfg.STICA.POOL.MAX_LEN = pool, POOL_WIDTH, 4
    cfg.STICA.FEATURE_CROP.ENABLE = crop
    for key, value in contrastive.items():
        cfg.CONTRASTIVE[key] = value
    return cfg


def _batch(rho=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"video": [torch.randn(B, 3, 4, 64, 64, generator=g) for _ in range(rho)]}


def _byol(p, z):  # 2 - 2 cos, per row, written out
    p, z = p.double(), z.double()
    return 2 - 2 * (p * z).sum(1) / (p.norm(dim=1) * z.norm(dim=1))


def test_byol_feature_crop_loss_is_global_and_crop_terms():
    model = build_model(_cfg(crop=True))
    assert isinstance(model, RhoBYOL) and model.encoder.crop_space == "feature"
    assert type(model.video_pool).__name__ == "TransformerPooling"
    assert model.projector.in_dim == POOL_WIDTH and "video_pool" in model.target
    calls = []
    feature_map = model.backbone.forward_feature_map
    model.backbone.forward_feature_map = lambda x: calls.append(x.shape[0]) or feature_map(x)
    clips = _batch()["video"]
    torch.manual_seed(3)
    out = model.forward_train({"video": clips})
    # One online backbone pass for the full clips and all their crops (the target has its own copy).
    assert calls == [2 * B]
    loss = out["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and out["loss_crop"].dim() == 0

    # The same draws again, then the loss from the views by hand.
    torch.manual_seed(3)
    encoded = model.encoder(clips, head=model.predictor)
    p, crops = encoded.views, encoded.crops_of()  # (rho, B, D), (N, rho, B, D)
    assert crops.shape == (NUM_CROPS, 2, B, 16)
    z = model.target_encoder(clips).views  # one batch, as in training (BatchNorm)
    pairs = ordered_pairs(2)
    global_term = torch.stack([_byol(p[a], z[b]).mean() for a, b in pairs]).mean()
    crop_term = torch.stack([_byol(crops[k, a], z[b]).mean() for a, b in pairs for k in range(NUM_CROPS)]).mean()
    assert float(out["loss_crop"]) == pytest.approx(crop_term.item(), rel=1e-5)
    torch.testing.assert_close(loss.double(), (global_term + crop_term) / 2)
    loss.backward()
    assert all(p.grad is not None for p in model.video_pool.parameters())
    # Linear probes and kNN still read the backbone's own global average pool.
    video = clips[0]
    torch.testing.assert_close(model.forward_features(video), model.backbone(video))
    assert model.forward_features(video).shape == (B, 256)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_with_feature_crop_is_half_global_half_crop_term(name):
    """loss = (the method's loss without crops + loss_crop) / 2, the crop term a true query term: it
    moves the backbone through the crops alone."""
    model = build_model(_cfg(name, pool="gap", crop=True))
    twin = copy.deepcopy(model)  # the same weights and queue, without crops
    twin.encoder.feature_crop = None
    batch = _batch(seed=2)
    torch.manual_seed(3)
    out = model.forward_train(batch)
    loss_global = twin.forward_train(batch)["loss"]
    assert out["loss_crop"].dim() == 0 and not out["loss_crop"].requires_grad
    torch.testing.assert_close(out["loss"].detach(), (loss_global.detach() + out["loss_crop"]) / 2,
                               rtol=1e-5, atol=1e-6)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    model.forward_train(batch)["loss"].backward()
    with_crops = next(model.backbone.parameters()).grad.clone()
    twin.zero_grad(set_to_none=True)
    twin.forward_train(batch)["loss"].backward()
    assert not torch.allclose(with_crops, next(twin.backbone.parameters()).grad / 2)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_with_feature_crop(name):
    # After 4 AdamW steps on one fixed rho=2 batch (same crop boxes every step: reseeded), the
    # training loss is lower than at the first step.
    cfg = _cfg(name, pool="gap", crop=True, QUEUE_LEN=2048)
    cfg.STICA.SWAV.FREEZE_PROTOTYPES_ITERS = 0
    model = build_model(cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = _batch(seed=1)
    losses = []
    for step in range(5):
        torch.manual_seed(7)
        loss = model.forward_train(batch)["loss"]
        losses.append(loss.item())
        if step == 4:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.on_step_end(step + 1, 100)
    assert losses[-1] < losses[0], losses


def test_byol_input_space_crops_run():
    cfg = _cfg(crop=True)
    cfg.STICA.FEATURE_CROP.SPACE = "input"
    cfg.STICA.FEATURE_CROP.NUM_SMALL_SPATIAL = 1
    model = build_model(cfg)
    assert model.encoder.crop_space == "input"
    out = model.forward_train(_batch())
    assert torch.isfinite(out["loss"]) and 0.0 <= float(out["loss_crop"]) <= 4.0
    out["loss"].backward()
    assert next(model.backbone.parameters()).grad.abs().sum() > 0


def test_byol_sequential_crops_give_the_gradients_of_per_clip_encoding(monkeypatch):
    """The checkpointed clip forward redraws the same crops in its recompute (RNG state restored)."""
    cfg = _cfg(crop=True, SEQUENTIAL=True)
    cfg.STICA.FEATURE_CROP.NUM_SMALL_SPATIAL = 1
    seq = build_model(cfg)
    plain = copy.deepcopy(seq)
    batch = _batch()
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


def test_target_pool_follows_the_ema():
    model = build_model(_cfg(MOMENTUM=0.9))
    assert all(not p.requires_grad for p in model.target["video_pool"].parameters())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.forward_train(_batch())["loss"].backward()
    optimizer.step()
    online = {k: v.detach().clone() for k, v in model.video_pool.named_parameters()}
    before = {k: v.detach().clone() for k, v in model.target["video_pool"].named_parameters()}
    assert any(not torch.equal(online[k], before[k]) for k in before)
    model.on_step_end(30, 100)
    m = cosine_momentum(0.9, 30, 100)
    for k, t in model.target["video_pool"].named_parameters():
        torch.testing.assert_close(t, m * before[k] + (1 - m) * online[k])
    assert any(not torch.equal(t, before[k]) for k, t in model.target["video_pool"].named_parameters())


@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_with_the_transformer_pool(name):
    model = build_model(_cfg(name))
    assert type(model.video_pool).__name__ == "TransformerPooling" and model.feature_crop is None
    assert model.projector.in_dim == POOL_WIDTH
    if model.target is not None:
        assert set(model.target) == {"backbone", "projector", "video_pool"}
    loss = model.forward_train(_batch())["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.video_pool.parameters())


def test_video_classifier_loads_the_byol_pool(tmp_path):
    cfg = _cfg()
    byol = build_model(cfg)
    path = save_checkpoint(str(tmp_path), 2, byol, None, cfg)
    clf_cfg = _cfg()
    clf_cfg.MODEL.MODEL_NAME = "VideoClassifier"
    clf = build_model(clf_cfg)
    clf.load_pretrained(path)
    torch.testing.assert_close(clf.backbone.state_dict(), byol.backbone.state_dict())
    torch.testing.assert_close(clf.video_pool.state_dict(), byol.video_pool.state_dict())
    assert clf.eval()(torch.randn(B, 3, 4, 64, 64)).shape == (B, 5)


@pytest.mark.parametrize("crop", [False, True])
def test_plain_byol_state_dict_keys_are_unchanged(crop):
    """Without a pool (Feature Crop has no tensors) the keys are those of the model before pools:
    the online encoder, the predictor, and the target's copy of {backbone, projector}."""
    model = build_model(_cfg(pool="gap", crop=crop))
    assert model.video_pool is None
    online = [f"{name}.{k}" for name in ("backbone", "projector")
              for k in getattr(model, name).state_dict()]
    expected = online + [f"predictor.{k}" for k in model.predictor.state_dict()] + [f"target.{k}" for k in online]
    assert sorted(model.state_dict()) == sorted(expected)
    prefixes = {k.split(".")[0] if not k.startswith("target.") else ".".join(k.split(".")[:2])
                for k in model.state_dict()}
    assert prefixes == {"backbone", "projector", "predictor", "target.backbone", "target.projector"}
