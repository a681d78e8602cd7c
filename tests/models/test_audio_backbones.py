"""Audio ResNet-9: registered names build, shapes for paper-size and tiny spectrograms, pooling, the
time axis of the tokens, and torchvision's ResNet parameter names (so GDT-style checkpoints load)."""

import pytest
import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, ResNet

from stica_slowfast.config import get_cfg
from stica_slowfast.models.audio_backbones import AudioBackbone, build_audio_resnet, feature_map_size
from stica_slowfast.registry import BACKBONE

OUT_DIMS = {"resnet9_audio": 512, "resnet9_audio_tiny": 128}


def _build(name):
    return BACKBONE.get(name)(get_cfg())


@pytest.mark.parametrize("name", sorted(OUT_DIMS))
def test_registered_names_build(name):
    model = _build(name)
    assert isinstance(model, AudioBackbone)
    assert model.out_dim == OUT_DIMS[name] and model.in_channels == 1


@pytest.mark.parametrize(
    "name, spec_shape, fmap_shape",
    [
        # Paper size: 257 frequency bins x 200 time frames; each side / 32, rounded up.
        ("resnet9_audio", (1, 1, 257, 200), (1, 512, 9, 7)),
        ("resnet9_audio_tiny", (2, 1, 40, 100), (2, 128, 2, 4)),
        ("resnet9_audio_tiny", (2, 1, 16, 16), (2, 128, 1, 1)),
    ],
)
def test_shapes_and_pooling(name, spec_shape, fmap_shape):
    model = _build(name).eval()
    spec = torch.randn(spec_shape)
    with torch.no_grad():
        fmap = model.forward_feature_map(spec)
        pooled = model(spec)
        tokens = model.forward_tokens(spec)
    assert tuple(fmap.shape) == fmap_shape
    assert fmap.shape[2:] == (feature_map_size(spec_shape[2]), feature_map_size(spec_shape[3]))
    assert pooled.shape == (spec_shape[0], model.out_dim)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))
    # One token per time step of the feature map, averaged over frequency.
    assert tokens.shape == (spec_shape[0], fmap_shape[3], model.out_dim)
    torch.testing.assert_close(tokens, fmap.mean(dim=2).transpose(1, 2))
    torch.testing.assert_close(tokens.mean(dim=1), pooled)


def test_tokens_follow_input_time():
    """Time is the last input axis and tokens are in time order: in eval mode (batch norm per
    element) token 0 sees input frames 0..97 only (receptive field 195 centred on frame 0), so a
    change confined to frames >= 98 leaves it unchanged and moves the last token."""
    model = _build("resnet9_audio_tiny").eval()
    spec = torch.randn(1, 1, 32, 160)
    late = spec.clone()
    late[..., 98:] += torch.randn(1, 1, 32, 62)
    early = spec.clone()
    early[..., :10] += torch.randn(1, 1, 32, 10)
    with torch.no_grad():
        base, after_late, after_early = (model.forward_tokens(x) for x in (spec, late, early))
    assert base.shape == (1, 5, 128)
    torch.testing.assert_close(after_late[:, 0], base[:, 0])
    assert not torch.allclose(after_late[:, -1], base[:, -1])
    # and a change to the first frames moves token 0 but not the last one (frames 34..159)
    assert not torch.allclose(after_early[:, 0], base[:, 0])
    torch.testing.assert_close(after_early[:, -1], base[:, -1])


def test_rejects_wrong_rank_or_channels():
    model = _build("resnet9_audio_tiny")
    with pytest.raises(ValueError, match=r"\(B, 1, F, Ta\)"):
        model(torch.randn(2, 40, 100))  # channel axis missing
    with pytest.raises(ValueError, match=r"\(B, 1, F, Ta\)"):
        model(torch.randn(2, 3, 40, 100))


def test_tiny_trains():
    model = _build("resnet9_audio_tiny").train()
    model(torch.randn(2, 1, 40, 64)).pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_resnet9_audio_matches_torchvision_layout():
    """Same parameter names/shapes as torchvision's ResNet(BasicBlock, [1, 1, 1, 1]) with a 1-channel
    conv1 (GDT's audio resnet9) minus fc; its weights load strictly and give its pooled features."""
    ours = _build("resnet9_audio").eval()
    tv = ResNet(BasicBlock, [1, 1, 1, 1])
    tv.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    tv.fc = nn.Identity()
    tv.eval()
    tv_state = tv.state_dict()
    assert list(ours.state_dict()) == list(tv_state)
    assert sum(p.numel() for p in ours.parameters()) == 4_899_520  # the docstring's 4.90 M
    ours.load_state_dict(tv_state, strict=True)
    spec = torch.randn(1, 1, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(spec), tv(spec))


def test_kaiming_init_and_free_stem_width():
    model = build_audio_resnet(stem_dim=8, stage_dims=(16, 32, 64, 128))
    assert model.conv1.out_channels == 8
    assert model.layer1[0].downsample is not None  # 8 -> 16 needs a projection shortcut
    fan_out = 128 * 3 * 3  # kaiming_normal_(mode='fan_out'): std = sqrt(2 / fan_out)
    assert abs(model.layer4[0].conv2.weight.std().item() - (2.0 / fan_out) ** 0.5) < 0.01
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    with pytest.raises(ValueError):
        build_audio_resnet(stage_dims=(16, 32, 64))
