"""Slow-ResNet checkpoint conversion between our layout and PySlowFast's PTVResNet, on real state
dicts: ours from our registered models, theirs from pytorchvideo's ``create_resnet`` called with the
arguments PySlowFast's ``PTVResNet`` passes for ``SLOW_8x8_R50`` (PySlowFast itself is not needed)."""

import os
import subprocess
import sys
import warnings
from functools import partial

import pytest
import torch
import torch.nn as nn

from stica_slowfast.config import get_cfg
from stica_slowfast.checkpoint import read_checkpoint, save_checkpoint
from stica_slowfast.models import build_model
from stica_slowfast.checkpoint.layouts import from_our_layout, to_our_layout
from stica_slowfast.interop.convert import check_slow_resnet, slow_resnet_size
from stica_slowfast.checkpoint.pretrained import load_backbone_from_ssl_checkpoint

def to_ptv(state, **kwargs):
    return from_our_layout(state, "pyslowfast_ptvresnet", **kwargs)


def from_ptv(state):
    return to_our_layout(state, layout="pyslowfast_ptvresnet")


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PTVResNetLike(nn.Module):
    """PySlowFast's ``PTVResNet`` holds the pytorchvideo Net as ``self.model``: keys ``model.*``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.model = net

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video)


def ptv_slow_resnet(*, stem_dim_out=64, num_classes=400, head_pool_kernel_size=(8, 7, 7)) -> nn.Module:
    """pytorchvideo's Net exactly as PySlowFast's ``PTVResNet._construct_network`` builds it for
    ``configs/Kinetics/pytorchvideo/SLOW_8x8_R50.yaml`` (MODEL.ARCH slow, RESNET.DEPTH 50, 8 frames,
    224 crop; DETECTION off), with the stem width free for the tiny variant, under ``model``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models.head import create_res_basic_head
        from pytorchvideo.models.resnet import create_bottleneck_block, create_resnet

    return PTVResNetLike(create_resnet(
        input_channel=3,
        model_depth=50,
        model_num_class=num_classes,
        dropout_rate=0.5,
        norm=nn.BatchNorm3d,
        activation=partial(nn.ReLU, inplace=True),
        stem_dim_out=stem_dim_out,
        stem_conv_kernel_size=(1, 7, 7),
        stem_conv_stride=(1, 2, 2),
        stem_pool=nn.MaxPool3d,
        stem_pool_kernel_size=(1, 3, 3),
        stem_pool_stride=(1, 2, 2),
        stage1_pool=None,
        stage1_pool_kernel_size=(1, 1, 1),
        stage_conv_a_kernel_size=((1, 1, 1), (1, 1, 1), (3, 1, 1), (3, 1, 1)),
        stage_conv_b_kernel_size=((1, 3, 3),) * 4,
        stage_conv_b_num_groups=(1, 1, 1, 1),
        stage_conv_b_dilation=((1, 1, 1),) * 4,
        stage_spatial_h_stride=(1, 2, 2, 2),
        stage_spatial_w_stride=(1, 2, 2, 2),
        stage_temporal_stride=(1, 1, 1, 1),
        bottleneck=create_bottleneck_block,
        head=create_res_basic_head,
        head_pool=nn.AvgPool3d,
        head_pool_kernel_size=head_pool_kernel_size,
        head_activation=None,
        head_output_with_global_average=False,
    ))


def our_model(name="VideoClassifier", arch="slow_r50", num_classes=400) -> nn.Module:
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = name, arch, num_classes
    cfg.CONTRASTIVE.MLP_DIM, cfg.CONTRASTIVE.DIM, cfg.CONTRASTIVE.QUEUE_LEN = 32, 16, 8
    return build_model(cfg)


@pytest.fixture(scope="module")
def ours_r50():
    return our_model().state_dict()


@pytest.fixture(scope="module")
def theirs_r50():
    return ptv_slow_resnet().state_dict()


def assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_ptv_to_ours_maps_every_key_and_round_trips_exactly(ours_r50, theirs_r50):
    ours = from_ptv(theirs_r50)
    assert ours.dropped == ()
    # Exactly the keys and shapes of our VideoClassifier(slow_r50, 400 classes): nothing left over.
    assert set(ours.state) == set(ours_r50)
    assert all(ours.state[k].shape == ours_r50[k].shape for k in ours_r50)
    back = to_ptv(ours.state)
    assert back.dropped == ()
    assert_same_state(back.state, theirs_r50)


def test_ours_to_ptv_maps_every_key_and_round_trips_exactly(ours_r50, theirs_r50):
    theirs = to_ptv(ours_r50)
    assert theirs.dropped == ()
    assert set(theirs.state) == set(theirs_r50)
    assert all(theirs.state[k].shape == theirs_r50[k].shape for k in theirs_r50)
    assert theirs.state["model.blocks.5.proj.weight"] is ours_r50["head.fc.weight"]  # tensors not copied
    assert_same_state(from_ptv(theirs.state).state, ours_r50)


def test_size_and_layout_check(ours_r50):
    backbone = {k[len("backbone."):]: v for k, v in ours_r50.items() if k.startswith("backbone.")}
    assert slow_resnet_size(backbone) == {"in_channels": 3, "stem_dim_out": 64, "model_depth": 50}
    assert check_slow_resnet(ours_r50)["num_classes"] == 400
    # A C2D-style res4 (no temporal kernel in conv_a) is not a Slow ResNet.
    c2d = dict(ours_r50)
    key = "backbone.blocks.3.res_blocks.0.branch2.conv_a.weight"
    c2d[key] = c2d[key][:, :, :1]
    with pytest.raises(ValueError, match="not a Slow ResNet-50"):
        check_slow_resnet(c2d)


def _randomise_bn_(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so eval-mode outputs depend on them."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
            m.weight.data.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def test_converted_weights_give_the_same_logits_both_ways():
    # Tiny width (stem 8) for speed: same builder and key layout as Slow-R50.
    ours = our_model(arch="slow_tiny", num_classes=5).eval()
    _randomise_bn_(ours)
    video = torch.randn(2, 3, 8, 64, 64)
    # PySlowFast's head pools the whole (t, h, w) = (8, 2, 2) map at this crop size.
    theirs = ptv_slow_resnet(stem_dim_out=8, num_classes=5, head_pool_kernel_size=(8, 2, 2)).eval()
    theirs.load_state_dict(to_ptv(ours.state_dict()).state, strict=True)
    with torch.no_grad():
        expected = ours(video)  # (B, K)
        # PTVResNet's training-mode output: (B, K, 1, 1, 1) -> (B, K)
        torch.testing.assert_close(theirs(video).flatten(1), expected, rtol=1e-4, atol=1e-5)
    back = our_model(arch="slow_tiny", num_classes=5).eval()
    back.load_state_dict(from_ptv(theirs.state_dict()).state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(back(video), expected, rtol=0, atol=0)


def test_ssl_checkpoint_gives_its_backbone_and_reports_the_rest():
    state = our_model("RhoBYOL", arch="slow_tiny").state_dict()
    result = to_ptv(state)
    backbone = [k for k in state if k.startswith("backbone.")]
    assert list(result.state) == ["model." + k[len("backbone."):] for k in backbone]
    assert set(result.dropped) == set(state) - set(backbone)
    assert any(k.startswith("target.backbone.") for k in result.dropped)  # the momentum encoder
    assert_same_state(from_ptv(result.state).state, {k: state[k] for k in backbone})


def test_our_momentum_encoder_converts_to_pyslowfast(tmp_path):
    from stica_slowfast.interop.convert import convert_checkpoint

    byol = our_model("RhoBYOL", arch="slow_tiny")
    with torch.no_grad():
        for p in byol.target.parameters():  # an EMA copy that has moved away from the online encoder
            p.add_(torch.randn_like(p))
    src = save_checkpoint(str(tmp_path / "run"), 9, byol, None, get_cfg())
    dst = str(tmp_path / "target_native.pyth")
    result = convert_checkpoint(src, dst, to="pyslowfast_resnet", encoder="momentum")
    _, native, epoch = read_checkpoint(dst)
    assert epoch == 9 and native["s1.pathway0_stem.conv.weight"].shape[0] == 8
    target = {k: v for k, v in byol.state_dict().items() if k.startswith("target.backbone.")}
    assert_same_state(to_our_layout(native).state, {k[len("target."):]: v for k, v in target.items()})
    assert any(k.startswith("projector.") for k in result.dropped)  # the target's projector


def test_keys_outside_the_layout_are_errors_not_dropped():
    r2plus1d = our_model(arch="r2plus1d_tiny", num_classes=3).state_dict()
    with pytest.raises(ValueError, match="backbone.stem.*not a key of a pytorchvideo Slow ResNet"):
        to_ptv(r2plus1d)
    theirs = ptv_slow_resnet(stem_dim_out=8, num_classes=3).state_dict()
    theirs["model.blocks.6.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="model.blocks.6.extra.weight"):
        from_ptv(theirs)
    with pytest.raises(ValueError, match="holds PyTorchVideo's model zoo.*not PySlowFast's PTVResNet"):
        from_ptv({"blocks.0.conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="stem.conv.weight: not a key of PySlowFast's PTVResNet"):
        from_ptv({"model.blocks.0.conv.weight": torch.zeros(1), "stem.conv.weight": torch.zeros(1)})


def test_head_behind_a_feature_transform_needs_no_head():
    state = our_model(arch="slow_tiny", num_classes=3).state_dict()
    state["video_pool.cls_token"] = torch.zeros(1, 1, 256)  # as a transformer-pooled classifier
    with pytest.raises(ValueError, match="video_pool"):
        to_ptv(state)
    result = to_ptv(state, with_head=False)
    assert set(result.dropped) == {"head.fc.weight", "head.fc.bias", "video_pool.cls_token"}
    assert not any(k.startswith("model.blocks.5") for k in result.state)


def _convert(*args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "convert_checkpoint.py"), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    return proc


def test_cli_round_trip_through_files(tmp_path):
    model = our_model(arch="slow_tiny", num_classes=5)
    src = save_checkpoint(str(tmp_path / "run"), 4, model, None, get_cfg())
    theirs_path, back_path = str(tmp_path / "ptv" / "slow.pyth"), str(tmp_path / "back.pyth")
    proc = _convert("--to", "pyslowfast_ptvresnet", src, theirs_path)
    assert proc.returncode == 0, proc.stderr
    assert '"converted": ' in proc.stdout and '"dropped": 0' in proc.stdout
    raw = torch.load(theirs_path, map_location="cpu", weights_only=True)
    assert set(raw) == {"epoch", "model_state"} and raw["epoch"] == 4
    assert all(k.startswith("model.blocks.") for k in raw["model_state"])
    proc = _convert("--to", "stica", theirs_path, back_path)
    assert proc.returncode == 0, proc.stderr
    _, state, epoch = read_checkpoint(back_path)
    assert epoch == 4
    assert_same_state(state, model.state_dict())
    # The result initialises a fresh model through the usual fine-tuning path, head included.
    fresh = our_model(arch="slow_tiny", num_classes=5)
    assert load_backbone_from_ssl_checkpoint(back_path, fresh, with_head=True) == 4
    assert_same_state(fresh.state_dict(), model.state_dict())


def test_cli_reports_errors_without_a_traceback(tmp_path):
    path = str(tmp_path / "r2.pyth")
    torch.save({"epoch": 0, "model_state": our_model(arch="r2plus1d_tiny", num_classes=3).state_dict()}, path)
    proc = _convert("--to", "pyslowfast_ptvresnet", path, str(tmp_path / "out.pyth"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: checkpoint file") and "backbone.stem" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not os.path.exists(tmp_path / "out.pyth")
