"""Tests for stica_slowfast.engine.optim: LR golden values, scaling, param groups, optimisers."""

import math

import pytest
import torch
from torch import nn

from stica_slowfast.config import get_cfg
from stica_slowfast.engine.optim import (
    build_param_groups,
    clip_gradients,
    construct_optimizer,
    get_lr_at_epoch,
    get_param_groups,
    lr_scale_factor,
    set_lr,
)


def _cosine_cfg(after_warmup: bool = False):
    cfg = get_cfg()
    cfg.SOLVER.LR_POLICY = "cosine"
    cfg.SOLVER.BASE_LR = 0.4
    cfg.SOLVER.WARMUP_START_LR = 0.04
    cfg.SOLVER.WARMUP_EPOCHS = 5.0
    cfg.SOLVER.MAX_EPOCH = 50
    cfg.SOLVER.COSINE_END_LR = 0.001
    cfg.SOLVER.COSINE_AFTER_WARMUP = after_warmup
    return cfg


def _steps_cfg():
    cfg = get_cfg()
    cfg.SOLVER.LR_POLICY = "steps_with_relative_lrs"
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.STEPS = [0, 10, 20]
    cfg.SOLVER.LRS = [1.0, 0.1, 0.01]
    cfg.SOLVER.MAX_EPOCH = 30
    cfg.SOLVER.WARMUP_EPOCHS = 2.0
    cfg.SOLVER.WARMUP_START_LR = 0.01
    return cfg


# ---------------------------------------------------------------------------------------------- #
# Schedule
# ---------------------------------------------------------------------------------------------- #
def test_warmup_cosine_golden_values():
    cfg = _cosine_cfg(after_warmup=False)
    # Cosine counted from epoch 0 (PySlowFast default): value at the end of warmup, by hand.
    at_warmup_end = 0.001 + 0.399 * 0.5 * (1 + math.cos(math.pi * 5 / 50))  # 0.39024...
    golden = {
        0.0: 0.04,
        2.5: 0.04 + (at_warmup_end - 0.04) * 0.5,
        5.0: at_warmup_end,
        25.0: 0.2005,  # half way: (0.4 + 0.001) / 2
        50.0: 0.001,
    }
    for epoch, expected in golden.items():
        assert get_lr_at_epoch(cfg, epoch, 64) == pytest.approx(expected, rel=1e-9), epoch
    assert at_warmup_end == pytest.approx(0.3902358, abs=1e-6)


def test_cosine_after_warmup_starts_at_peak():
    cfg = _cosine_cfg(after_warmup=True)
    golden = {
        0.0: 0.04,
        1.0: 0.04 + (0.4 - 0.04) / 5,  # 0.112
        5.0: 0.4,  # the peak is reached exactly
        27.5: 0.2005,  # half way through the 45 cosine epochs
        50.0: 0.001,
    }
    for epoch, expected in golden.items():
        assert get_lr_at_epoch(cfg, epoch, 64) == pytest.approx(expected, rel=1e-9), epoch
    # Monotone decay after warmup.
    lrs = [get_lr_at_epoch(cfg, 5 + i * 0.5, 64) for i in range(91)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_steps_with_relative_lrs_golden_values():
    cfg = _steps_cfg()
    golden = {
        0.0: 0.01,
        1.0: 0.055,  # half way from 0.01 to 0.1
        2.0: 0.1,
        9.99: 0.1,
        10.0: 0.01,
        19.5: 0.01,
        20.0: 0.001,
        29.9: 0.001,
    }
    for epoch, expected in golden.items():
        assert get_lr_at_epoch(cfg, epoch, 64) == pytest.approx(expected, rel=1e-9), epoch


def test_no_warmup():
    cfg = _cosine_cfg()
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    assert get_lr_at_epoch(cfg, 0.0, 64) == pytest.approx(0.4)


@pytest.mark.parametrize("make_cfg", [_cosine_cfg, _steps_cfg])
def test_batch_size_scaling(make_cfg):
    plain = make_cfg()
    scaled = make_cfg()
    scaled.STICA.SOLVER.REFERENCE_BATCH_SIZE = 256
    # Warmup start, warmup middle, peak region, late (cosine end / last step) all scale by 512/256.
    for epoch in (0.0, 1.0, 3.0, 12.0, 25.0, 50.0):
        assert get_lr_at_epoch(scaled, epoch, 512) == pytest.approx(
            2.0 * get_lr_at_epoch(plain, epoch, 512), rel=1e-9
        )
        assert get_lr_at_epoch(scaled, epoch, 64) == pytest.approx(
            0.25 * get_lr_at_epoch(plain, epoch, 64), rel=1e-9
        )
    # REFERENCE_BATCH_SIZE 0 (default): the batch size is ignored.
    assert get_lr_at_epoch(plain, 3.0, 64) == get_lr_at_epoch(plain, 3.0, 4096)


def test_num_shards_scaling_combines_with_batch_scaling():
    cfg = _cosine_cfg()
    cfg.NUM_SHARDS = 4
    assert lr_scale_factor(cfg, 64) == 1.0
    cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = True
    assert lr_scale_factor(cfg, 64) == 4.0
    cfg.STICA.SOLVER.REFERENCE_BATCH_SIZE = 128
    assert lr_scale_factor(cfg, 64) == pytest.approx(2.0)
    assert get_lr_at_epoch(cfg, 50.0, 64) == pytest.approx(0.002)  # cosine end scaled too
    assert get_lr_at_epoch(cfg, 0.0, 64) == pytest.approx(0.08)  # warmup start scaled too


def test_bad_schedule_config_errors_name_the_key():
    cfg = _cosine_cfg()
    cfg.SOLVER.LR_POLICY = "linear"
    with pytest.raises(ValueError, match="SOLVER.LR_POLICY"):
        get_lr_at_epoch(cfg, 1.0, 64)
    cfg = _steps_cfg()
    cfg.SOLVER.LRS = [1.0, 0.1]
    with pytest.raises(ValueError, match="SOLVER.STEPS"):
        get_lr_at_epoch(cfg, 3.0, 64)


# ---------------------------------------------------------------------------------------------- #
# Param groups and optimisers
# ---------------------------------------------------------------------------------------------- #
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, bias=True)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 5)
        self.ln = nn.LayerNorm(5)
        self.frozen = nn.Linear(5, 5)
        for p in self.frozen.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        x = self.bn(self.conv(x)).mean(dim=(2, 3, 4))
        return self.frozen(self.ln(self.fc(x)))


def _group_of(groups, param):
    matches = [g for g in groups if any(p is param for p in g["params"])]
    assert len(matches) <= 1
    return matches[0] if matches else None


def test_param_groups_weight_decay_and_lars_flags():
    net = _Net()
    cfg = get_cfg()
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.BN.WEIGHT_DECAY = 1e-5
    cfg.SOLVER.ZERO_WD_1D_PARAM = False
    groups = get_param_groups(net, cfg)
    expect = {
        net.conv.weight: ("decay", 1e-4, False),
        net.fc.weight: ("decay", 1e-4, False),
        net.conv.bias: ("decay_1d", 1e-4, True),
        net.fc.bias: ("decay_1d", 1e-4, True),
        net.bn.weight: ("norm", 1e-5, True),
        net.bn.bias: ("norm", 1e-5, True),
        net.ln.weight: ("norm", 1e-5, True),
        net.ln.bias: ("norm", 1e-5, True),
    }
    for param, (name, wd, lars_exclude) in expect.items():
        group = _group_of(groups, param)
        assert (group["name"], group["weight_decay"], group["lars_exclude"]) == (name, wd, lars_exclude)
    # Frozen params are left out, everything trainable is placed exactly once.
    assert _group_of(groups, net.frozen.weight) is None and _group_of(groups, net.frozen.bias) is None
    placed = [p for g in groups for p in g["params"]]
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(placed) == len(trainable) == len({id(p) for p in placed})


def test_zero_wd_1d_param_puts_all_1d_params_at_zero():
    net = _Net()
    groups = build_param_groups(net, weight_decay=1e-4, norm_weight_decay=1e-5, zero_wd_1d=True)
    for param in net.parameters():
        group = _group_of(groups, param)
        if not param.requires_grad:
            assert group is None
        elif param.ndim <= 1:
            assert group["weight_decay"] == 0.0 and group["lars_exclude"]
        else:
            assert group["weight_decay"] == 1e-4 and not group["lars_exclude"]


def test_shared_parameter_placed_once():
    lin = nn.Linear(3, 3)
    net = nn.Sequential(lin, nn.ReLU(), lin)
    groups = build_param_groups(net, weight_decay=0.1, norm_weight_decay=0.0, zero_wd_1d=False)
    assert sum(len(g["params"]) for g in groups) == 2


def test_sgd_builds_with_cfg_settings_and_steps():
    net = _Net()
    cfg = _cosine_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "sgd"
    cfg.SOLVER.MOMENTUM = 0.8
    cfg.SOLVER.NESTEROV = True
    cfg.SOLVER.WEIGHT_DECAY = 1e-3
    opt = construct_optimizer(net, cfg)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.8 and opt.defaults["nesterov"]
    # Starts at the schedule's epoch-0 LR.
    start_lr = get_lr_at_epoch(cfg, 0.0, cfg.TRAIN.BATCH_SIZE)
    assert all(g["lr"] == pytest.approx(start_lr) for g in opt.param_groups)
    frozen_ids = {id(p) for p in net.frozen.parameters()}
    assert not frozen_ids & {id(p) for g in opt.param_groups for p in g["params"]}

    before = net.fc.weight.detach().clone()
    net(torch.randn(2, 3, 4, 5, 5)).sum().backward()
    opt.step()
    assert not torch.equal(before, net.fc.weight)


def test_adamw_builds():
    net = _Net()
    cfg = _cosine_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "adamw"
    cfg.SOLVER.BETAS = [0.9, 0.95]  # as a YAML merge would leave it
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    opt = construct_optimizer(net, cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups}["decay"] == 0.05
    net(torch.randn(2, 3, 4, 5, 5)).sum().backward()
    opt.step()


def test_unknown_method_names_the_key():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "rmsprop"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZING_METHOD"):
        construct_optimizer(_Net(), cfg)


def test_set_lr_honours_lr_scale():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_scale": 0.1}], lr=1.0)
    set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])


def test_model_lr_scales_give_scaled_groups_with_the_same_decay_rules():
    net = _Net()
    cfg = _cosine_cfg()
    cfg.SOLVER.OPTIMIZING_METHOD = "sgd"
    cfg.SOLVER.ZERO_WD_1D_PARAM = False
    opt = construct_optimizer(net, cfg, {"fc": 10.0})
    start_lr = get_lr_at_epoch(cfg, 0.0, cfg.TRAIN.BATCH_SIZE)
    for param, (name, lr) in {
        net.fc.weight: ("decay@fc", 10 * start_lr),
        net.fc.bias: ("decay_1d@fc", 10 * start_lr),
        net.conv.weight: ("decay", start_lr),
        net.bn.weight: ("norm", start_lr),
    }.items():
        group = _group_of(opt.param_groups, param)
        assert (group["name"], group["lr"]) == (name, pytest.approx(lr))
    set_lr(opt, 0.5)
    assert _group_of(opt.param_groups, net.fc.weight)["lr"] == pytest.approx(5.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="no_such_module"):
        construct_optimizer(net, cfg, {"no_such_module": 2.0})


def test_clip_gradients():
    cfg = get_cfg()
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, -4.0, 0.5, 0.0])
    assert clip_gradients([p], cfg) is None  # both off by default
    assert torch.equal(p.grad, torch.tensor([3.0, -4.0, 0.5, 0.0]))

    cfg.SOLVER.CLIP_GRAD_VAL = 1.0
    clip_gradients([p], cfg)
    assert torch.equal(p.grad, torch.tensor([1.0, -1.0, 0.5, 0.0]))

    cfg.SOLVER.CLIP_GRAD_VAL = None
    cfg.SOLVER.CLIP_GRAD_L2NORM = 1.0
    p.grad = torch.tensor([3.0, -4.0, 0.0, 0.0])
    opt = torch.optim.SGD([p], lr=0.1)
    norm = clip_gradients(opt.param_groups, cfg)  # param groups are accepted too
    assert norm == pytest.approx(5.0)
    assert float(p.grad.norm()) == pytest.approx(1.0, rel=1e-4)
