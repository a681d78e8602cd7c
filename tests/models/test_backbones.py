"""Backbones: every registered name builds, shapes and pooling are right, and the full-size models
keep their source library's parameter names (so its checkpoints load)."""

import pytest
import torch
import torch.nn as nn
import torchvision

from stica_slowfast.config import get_cfg
from stica_slowfast.models import backbones
from stica_slowfast.registry import BACKBONE

ALL_BACKBONES = ("r2plus1d_18", "r2plus1d_tiny", "slow_r50", "slow_tiny")
OUT_DIMS = {"r2plus1d_18": 512, "r2plus1d_tiny": 128, "slow_r50": 2048, "slow_tiny": 256}


def _build(name, in_channels=3):
    cfg = get_cfg()
    cfg.DATA.INPUT_CHANNEL_NUM = [in_channels]
    return BACKBONE.get(name)(cfg)


def test_registered_names():
    assert set(ALL_BACKBONES) <= {name for name, _ in BACKBONE}


# Audio ones: test_audio_backbones.py; colour_stats (no feature map, no parameters): test_colour_stats.py.
@pytest.mark.parametrize("name", sorted(n for n, _ in BACKBONE if "audio" not in n and n != "colour_stats"))
def test_every_registered_backbone_builds_and_pools(name):
    model = _build(name).eval()
    # Full-size models at a small input keep the test fast; 32x32 is the smallest side Slow-R50's
    # five spatial halvings leave at 1x1.
    video = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        fmap = model.forward_feature_map(video)
        pooled = model(video)
    assert isinstance(model.out_dim, int)
    assert fmap.dim() == 5 and fmap.shape[:2] == (2, model.out_dim)
    assert pooled.shape == (2, model.out_dim)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3, 4)))
    if name in OUT_DIMS:
        assert model.out_dim == OUT_DIMS[name]


@pytest.mark.parametrize(
    "name, expected_fmap",
    [
        # R(2+1)D: T, H, W halved in layer2..layer4; the stem halves H, W.
        ("r2plus1d_tiny", (2, 128, 2, 4, 4)),
        # Slow: no temporal stride anywhere; H, W / 32.
        ("slow_tiny", (2, 256, 16, 2, 2)),
    ],
)
def test_tiny_feature_map_shape(name, expected_fmap):
    model = _build(name)
    fmap = model.forward_feature_map(torch.randn(2, 3, 16, 64, 64))
    assert tuple(fmap.shape) == expected_fmap


@pytest.mark.parametrize("name", ["r2plus1d_tiny", "slow_tiny"])
def test_tiny_backbones_train(name):
    """The tiny variants backpropagate at the demo input size, 8x64x64, with gradients everywhere."""
    model = _build(name).train()
    model(torch.randn(2, 3, 8, 64, 64)).pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_r2plus1d_18_matches_torchvision():
    ours = _build("r2plus1d_18").eval()
    tv = torchvision.models.video.r2plus1d_18(weights=None).eval()
    tv_state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    ours_state = ours.state_dict()
    assert list(ours_state) == list(tv_state)
    assert all(ours_state[k].shape == v.shape for k, v in tv_state.items())

    # torchvision's weights load strictly and give torchvision's pooled features.
    ours.load_state_dict(tv_state, strict=True)
    tv.fc = nn.Identity()
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(video), tv(video))


def test_generic_r2plus1d_builder_reproduces_r2plus1d_18_layout():
    """r2plus1d_tiny's builder is the same family: at R(2+1)D-18 settings it has its exact layout."""
    big = backbones.build_r2plus1d(
        stem_mid_dim=45, stage_dims=(64, 128, 256, 512), blocks_per_stage=(2, 2, 2, 2)
    )
    ref = backbones.build_r2plus1d_18()
    assert {k: v.shape for k, v in big.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }


def test_slow_r50_matches_pytorchvideo_layout():
    from pytorchvideo.models.resnet import create_resnet

    ours = _build("slow_r50")
    # pytorchvideo hub's slow_r50 recipe; its head is blocks.5.
    ref = create_resnet(stem_conv_kernel_size=(1, 7, 7), head_pool_kernel_size=(8, 7, 7))
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items() if not k.startswith("blocks.5.")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref_shapes

    # Slow 8x8: 1x7x7 stem; temporal kernel 3 in conv_a only in res4 and res5.
    assert ours.blocks[0].conv.kernel_size == (1, 7, 7)
    for stage_idx, t_kernel in ((1, 1), (2, 1), (3, 3), (4, 3)):
        for block in ours.blocks[stage_idx].res_blocks:
            assert block.branch2.conv_a.kernel_size == (t_kernel, 1, 1)
            assert block.branch2.conv_b.kernel_size == (1, 3, 3)


@pytest.mark.parametrize("name", ["r2plus1d_tiny", "slow_tiny", "r2plus1d_18"])
def test_input_channels_from_config(name):
    model = _build(name, in_channels=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 8, 32, 32)).shape == (1, model.out_dim)
    with pytest.raises(ValueError, match=r"\(B, 2, T, H, W\)"):
        model(torch.randn(1, 3, 8, 32, 32))


def test_rejects_non_video_input():
    model = _build("r2plus1d_tiny")
    with pytest.raises(ValueError, match="expected video"):
        model(torch.randn(3, 8, 32, 32))
