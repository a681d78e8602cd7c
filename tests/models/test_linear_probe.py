"""LinearProbe: frozen backbone (no grads, BN statistics unchanged), the head learns, SSL-checkpoint
loading maps backbone.* and ignores the rest, and mismatches are reported by key."""

import copy
import logging

import pytest
import torch
import torch.nn as nn

from stica_slowfast.config import get_cfg
from stica_slowfast.checkpoint import CheckpointMismatchError, save_checkpoint
from stica_slowfast.engine.evaluator import predicts_labels
from stica_slowfast.engine.optim import construct_optimizer
from stica_slowfast.models import build_backbone, build_model
from stica_slowfast.models.linear_probe import LinearProbe, load_backbone_from_ssl_checkpoint

NUM_CLASSES = 3


@pytest.fixture
def cfg():
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME = "LinearProbe"
    cfg.MODEL.ARCH = "r2plus1d_tiny"
    cfg.MODEL.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.DROPOUT_RATE = 0.0
    cfg.MODEL.FC_INIT_STD = 0.01
    return cfg


def _batch(batch_size=4, rho=1):
    clips = [torch.randn(batch_size, 3, 4, 32, 32) for _ in range(rho)]
    return {"video": clips, "label": torch.arange(batch_size) % NUM_CLASSES}


def _bn_stats(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


class _FakeSSL(nn.Module):
    """The parts of an SSL method a probe must tell apart: online backbone, projector, momentum target."""

    def __init__(self, cfg):
        super().__init__()
        self.backbone = build_backbone(cfg)
        self.projector = nn.Linear(self.backbone.out_dim, 8)
        self.target_backbone = copy.deepcopy(self.backbone)
        self.register_buffer("queue", torch.randn(8, 16))
        with torch.no_grad():  # make the weights distinguishable from a fresh build
            for p in self.backbone.parameters():
                p.add_(torch.randn_like(p))
            for name, b in self.backbone.named_buffers():
                if "running_mean" in name:
                    b.add_(1.0)


def test_registered_and_predicts_labels(cfg):
    model = build_model(cfg)
    assert isinstance(model, LinearProbe)
    assert model.predicts_labels and predicts_labels(model)
    assert model.head.fc.out_features == NUM_CLASSES


def test_backbone_frozen_and_bn_statistics_unchanged(cfg):
    model = LinearProbe(cfg)
    model.train()
    assert model.training and model.head.training
    assert not model.backbone.training
    assert not any(m.training for m in model.backbone.modules())
    assert not any(p.requires_grad for p in model.backbone.parameters())
    stats = _bn_stats(model.backbone)
    weights = {k: v.clone() for k, v in model.backbone.state_dict().items()}

    out = model.forward_train(_batch(rho=2))
    out["loss"].backward()
    assert set(out) == {"loss", "top1_acc"} and 0.0 <= out["top1_acc"] <= 100.0
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.fc.weight.grad is not None
    for key, value in _bn_stats(model.backbone).items():
        torch.testing.assert_close(value, stats[key], rtol=0, atol=0)
    assert model.forward_features(_batch()["video"][0]).requires_grad is False

    # the optimiser sees the head only, so a step leaves the backbone as it was
    optimizer = construct_optimizer(model, cfg)
    head_params = {id(p) for p in model.head.parameters()}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == head_params
    optimizer.step()
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0)


def test_adapting_bn_statistics_re_estimates_them_and_changes_no_weight(cfg):
    cfg.STICA.PROBE.BN_STATS = "adapt"  # PySlowFast's released linear protocol
    model = LinearProbe(cfg)
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.training for m in bns)
    # and only they: no dropout of the frozen encoder (a transformer pooling's) turns on
    assert not any(m.training for part in model.encoder() for m in part.modules() if m not in bns)
    stats = _bn_stats(model.backbone)
    weights = {k: v.clone() for k, v in model.backbone.named_parameters()}
    out = model.forward_train(_batch(rho=2))
    out["loss"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    changed = [k for k, v in _bn_stats(model.backbone).items() if not torch.equal(v, stats[k])]
    assert len(changed) == len(stats)  # every running mean / var and batch count moved
    construct_optimizer(model, cfg).step()
    assert all(torch.equal(p, weights[k]) for k, p in model.backbone.named_parameters())
    model.eval()
    assert not any(m.training for m in bns)  # tested with the re-estimated statistics


def test_eval_mode_gives_the_same_features_as_train_mode(cfg):
    model = LinearProbe(cfg)
    video = _batch()["video"][0]
    model.train()
    train_features = model.forward_features(video)
    model.eval()
    torch.testing.assert_close(model.forward_features(video), train_features)


def test_classifier_learns_on_a_fixed_batch(cfg):
    model = LinearProbe(cfg)
    model.train()
    batch = _batch(batch_size=6)
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for _ in range(15):
        out = model.forward_train(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.8 * losses[0]


def test_loads_backbone_from_ssl_checkpoint(cfg, tmp_path, caplog):
    ssl = _FakeSSL(cfg)
    path = save_checkpoint(str(tmp_path), 9, ssl, None, cfg)
    probe = LinearProbe(cfg)
    head_before = {k: v.clone() for k, v in probe.head.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="stica_slowfast.checkpoint.pretrained"):
        epoch = probe.load_pretrained(path)
    assert epoch == 9
    assert "projector" in caplog.text and "target_backbone" in caplog.text and "queue" in caplog.text
    expected = ssl.backbone.state_dict()
    loaded = probe.backbone.state_dict()
    assert list(loaded) == list(expected)
    for key in expected:
        torch.testing.assert_close(loaded[key], expected[key], rtol=0, atol=0)
    for key, value in probe.head.state_dict().items():
        torch.testing.assert_close(value, head_before[key], rtol=0, atol=0)
    # still frozen after loading
    assert not any(p.requires_grad for p in probe.backbone.parameters())


def test_loads_a_ddp_prefixed_bare_state_dict(cfg, tmp_path):
    ssl = _FakeSSL(cfg)
    path = tmp_path / "bare.pyth"
    torch.save({"module." + k: v for k, v in ssl.state_dict().items()}, path)
    probe = LinearProbe(cfg)
    assert load_backbone_from_ssl_checkpoint(str(path), probe) == -1
    torch.testing.assert_close(probe.backbone.state_dict(), ssl.backbone.state_dict())


def test_missing_backbone_key_is_named(cfg, tmp_path):
    ssl = _FakeSSL(cfg)
    state = ssl.state_dict()
    dropped = next(k for k in state if k.startswith("backbone.") and k.endswith(".weight"))
    del state[dropped]
    state["backbone.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pyth"
    torch.save({"epoch": 0, "model_state": state}, path)
    probe = LinearProbe(cfg)
    with pytest.raises(CheckpointMismatchError) as info:
        probe.load_pretrained(str(path))
    message = str(info.value)
    assert "missing keys (1)" in message and dropped in message
    assert "unexpected keys (1)" in message and "backbone.extra.weight" in message

    # strict=False loads what matches
    before = probe.backbone.state_dict()[dropped[len("backbone."):]].clone()
    probe.load_pretrained(str(path), strict=False)
    after = probe.backbone.state_dict()
    torch.testing.assert_close(after[dropped[len("backbone."):]], before)
    other = next(k for k in state if k.startswith("backbone.") and k != dropped and k != "backbone.extra.weight")
    torch.testing.assert_close(after[other[len("backbone."):]], state[other])


def test_checkpoint_without_backbone_is_rejected(cfg, tmp_path):
    path = tmp_path / "nobackbone.pyth"
    torch.save({"model_state": {"encoder.weight": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match="no 'backbone"):
        LinearProbe(cfg).load_pretrained(str(path))


def test_fine_tuned_classifier_takes_backbone_and_a_fitting_head(cfg, tmp_path):
    from stica_slowfast.models import VideoClassifier

    cfg.MODEL.MODEL_NAME = "VideoClassifier"
    ssl_path = save_checkpoint(str(tmp_path / "ssl"), 3, _FakeSSL(cfg), None, cfg)
    model = VideoClassifier(cfg)
    fresh_head = {k: v.clone() for k, v in model.head.state_dict().items()}
    assert model.load_pretrained(ssl_path) == 3  # SSL -> classifier: backbone only, the head is new
    torch.testing.assert_close(model.head.state_dict(), fresh_head, rtol=0, atol=0)

    donor = VideoClassifier(cfg)
    with torch.no_grad():
        donor.head.fc.weight.add_(1.0)
    same = save_checkpoint(str(tmp_path / "same"), 5, donor, None, cfg)
    model.load_pretrained(same)  # same classes: the head is taken too
    torch.testing.assert_close(model.state_dict(), donor.state_dict(), rtol=0, atol=0)

    cfg.MODEL.NUM_CLASSES = NUM_CLASSES + 2  # another label set: backbone only
    other = VideoClassifier(cfg)
    other_head = {k: v.clone() for k, v in other.head.state_dict().items()}
    other.load_pretrained(same)
    torch.testing.assert_close(other.backbone.state_dict(), donor.backbone.state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(other.head.state_dict(), other_head, rtol=0, atol=0)
