"""VideoClassifier: the two construction paths, shapes, loss values, rho clips, and that training on a
fixed tiny batch lowers the loss."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from stica_slowfast.config import get_cfg
from stica_slowfast.models import VideoClassifier, build_backbone, build_model, configurable
from stica_slowfast.models.heads import ClassifierHead

NUM_CLASSES = 4


@pytest.fixture
def cfg():
    cfg = get_cfg()
    cfg.MODEL.ARCH = "r2plus1d_tiny"
    cfg.MODEL.NUM_CLASSES = NUM_CLASSES
    cfg.MODEL.DROPOUT_RATE = 0.0
    cfg.MODEL.FC_INIT_STD = 0.01
    return cfg


def _batch(batch_size=4, rho=1, size=32):
    clips = [torch.randn(batch_size, 3, 8, size, size) for _ in range(rho)]
    return {"video": clips, "label": torch.arange(batch_size) % NUM_CLASSES}


def test_cfg_and_kwargs_construction_give_the_same_model(cfg):
    torch.manual_seed(0)
    from_cfg = VideoClassifier(cfg)
    torch.manual_seed(0)
    from_kwargs = VideoClassifier(
        backbone=build_backbone(cfg),
        num_classes=NUM_CLASSES,
        dropout_rate=0.0,
        fc_init_std=0.01,
        loss_func="cross_entropy",
        video_pool=None,
        head_act="softmax",
        encoder_lr_scale=1.0,
    )
    assert str(from_cfg) == str(from_kwargs)
    state_a, state_b = from_cfg.state_dict(), from_kwargs.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key])
    assert isinstance(build_model(cfg), VideoClassifier)


def test_cfg_construction_with_keyword_override(cfg):
    model = VideoClassifier(cfg, num_classes=7)
    assert model.head.fc.out_features == 7
    with pytest.raises(TypeError, match="keyword overrides only"):
        VideoClassifier(cfg, 7)


def test_configurable_needs_from_config(cfg):
    class NoFromConfig(nn.Module):
        @configurable
        def __init__(self, *, width: int) -> None:
            super().__init__()
            self.width = width

    assert NoFromConfig(width=3).width == 3
    with pytest.raises(AttributeError, match="from_config"):
        NoFromConfig(cfg)


def test_forward_shapes(cfg):
    model = VideoClassifier(cfg).eval()
    video = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        logits = model(video)
        features = model.forward_features(video)
        # PySlowFast's one-pathway list, in eval mode: MODEL.HEAD_ACT (softmax) of the logits
        torch.testing.assert_close(model([video]), logits.softmax(dim=1))
    assert logits.shape == (2, NUM_CLASSES)
    assert features.shape == (2, model.backbone.out_dim)
    torch.testing.assert_close(logits, model.head(features))


def test_classifier_head_init_and_dropout():
    head = ClassifierHead(in_dim=512, num_classes=200, dropout_rate=0.5, init_std=0.02)
    assert torch.all(head.fc.bias == 0)
    assert abs(head.fc.weight.std().item() - 0.02) < 0.001
    features = torch.randn(8, 512)
    head.eval()
    torch.testing.assert_close(head(features), features @ head.fc.weight.T)  # no dropout in eval
    head.train()
    assert not torch.allclose(head(features), features @ head.fc.weight.T)
    with pytest.raises(ValueError, match="dropout_rate"):
        ClassifierHead(in_dim=4, num_classes=2, dropout_rate=1.0, init_std=0.01)


def test_forward_train_value(cfg):
    model = VideoClassifier(cfg).eval()  # eval: batch norm does not depend on the batch make-up
    batch = _batch(rho=1)
    out = model.forward_train(batch)
    logits = model(batch["video"][0])
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, batch["label"]))
    expected_acc = (logits.argmax(1) == batch["label"]).float().mean().item() * 100
    # A log is a 0-dim tensor (the engine reads it back once per LOG_PERIOD, not every step).
    assert out["top1_acc"].dim() == 0 and float(out["top1_acc"]) == pytest.approx(expected_acc)
    assert out["loss"].dim() == 0 and out["loss"].requires_grad


def test_forward_train_rho_clips_share_the_label(cfg):
    model = VideoClassifier(cfg).eval()
    batch = _batch(rho=2)
    clip_a, clip_b = batch["video"]
    out = model.forward_train(batch)
    # Every clip is a sample with its video's label: the loss is the mean over rho * B samples.
    expected = (
        F.cross_entropy(model(clip_a), batch["label"]) + F.cross_entropy(model(clip_b), batch["label"])
    ) / 2
    torch.testing.assert_close(out["loss"], expected)
    # rho copies of the same clip give the rho = 1 loss.
    twice = model.forward_train({"video": [clip_a, clip_a], "label": batch["label"]})
    once = model.forward_train({"video": [clip_a], "label": batch["label"]})
    torch.testing.assert_close(twice["loss"], once["loss"])


def test_forward_train_rejects_mismatched_labels(cfg):
    model = VideoClassifier(cfg)
    batch = _batch(batch_size=4)
    batch["label"] = batch["label"][:3]
    with pytest.raises(ValueError, match="label"):
        model.forward_train(batch)


def test_loss_decreases_on_a_fixed_batch(cfg):
    model = VideoClassifier(cfg).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batch = _batch(batch_size=4, rho=2, size=64)
    losses = []
    for _ in range(6):
        loss = model.forward_train(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_bad_loss_func(cfg):
    cfg.MODEL.LOSS_FUNC = "mse"
    with pytest.raises(ValueError, match=r"MODEL\.LOSS_FUNC.*'mse'"):
        build_model(cfg)
    with pytest.raises(ValueError, match="loss_func"):
        VideoClassifier(backbone=build_backbone(cfg), num_classes=2, dropout_rate=0.0, fc_init_std=0.01,
                        loss_func="focal", video_pool=None, head_act="softmax",
                        encoder_lr_scale=1.0)


def test_encoder_lr_scale_trains_the_pretrained_encoder_slower(cfg):
    from stica_slowfast.engine.optim import construct_optimizer, set_lr

    cfg.STICA.POOL.TYPE = "transformer"
    cfg.STICA.SOLVER.ENCODER_LR_SCALE = 0.1  # GDT's / STiCA's fine-tuning: the backbone at a tenth
    model = build_model(cfg)
    assert model.lr_scales == {"backbone": 0.1, "video_pool": 0.1}
    optimizer = construct_optimizer(model, cfg, model.lr_scales)
    set_lr(optimizer, 0.02)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())
    for name, p in model.named_parameters():
        expected = 0.002 if name.startswith(("backbone.", "video_pool.")) else 0.02
        assert lr_of[id(p)] == pytest.approx(expected), name
    cfg.STICA.SOLVER.ENCODER_LR_SCALE = 1.0
    assert build_model(cfg).lr_scales == {}
