"""build_model / build_backbone: registry contents, names that cannot collide with PySlowFast's, and
did-you-mean errors for unknown names; the channels-last layout."""

import copy

import pytest
import torch

import stica_slowfast.models as models
from stica_slowfast.config import get_cfg
from stica_slowfast.registry import BACKBONE, MODEL

# Names PySlowFast registers itself (slowfast/models/*.py); ours must differ.
PYSLOWFAST_MODEL_NAMES = {"ContrastiveModel", "ResNet", "SlowFast", "X3D", "MViT", "MaskMViT"}


@pytest.fixture
def cfg():
    cfg = get_cfg()
    cfg.MODEL.ARCH = "r2plus1d_tiny"
    cfg.MODEL.NUM_CLASSES = 3
    return cfg


def test_registry_contents():
    assert "VideoClassifier" in {n for n, _ in MODEL}
    assert {"r2plus1d_18", "r2plus1d_tiny", "slow_r50", "slow_tiny"} <= {n for n, _ in BACKBONE}
    assert models.build_model is not None and models.build_backbone is not None


def test_model_names_do_not_collide_with_pyslowfast():
    for name, _ in MODEL:
        assert name not in PYSLOWFAST_MODEL_NAMES and not name.startswith("PTV"), name


@pytest.mark.parametrize("name", sorted(n for n, _ in MODEL))
def test_every_registered_model_builds(cfg, name):
    cfg.MODEL.MODEL_NAME = name
    model = models.build_model(cfg)
    assert isinstance(model, torch.nn.Module)
    assert callable(model.forward_train) and callable(model.forward_features)
    assert all(p.device.type == "cpu" for p in model.parameters())  # placement is the engine's job


def test_build_backbone_follows_model_arch(cfg):
    for arch in ("r2plus1d_tiny", "slow_tiny"):
        cfg.MODEL.ARCH = arch
        backbone = models.build_backbone(cfg)
        assert backbone.out_dim == {"r2plus1d_tiny": 128, "slow_tiny": 256}[arch]


def test_unknown_model_name_error(cfg):
    cfg.MODEL.MODEL_NAME = "VideoClasifier"
    with pytest.raises(KeyError) as excinfo:
        models.build_model(cfg)
    message = str(excinfo.value)
    assert "MODEL.MODEL_NAME" in message
    assert "'VideoClasifier'" in message
    assert "did you mean 'VideoClassifier'?" in message
    assert str(sorted(n for n, _ in MODEL)) in message


def test_unknown_arch_error(cfg):
    cfg.MODEL.ARCH = "r2plus1d_tyni"
    with pytest.raises(KeyError) as excinfo:
        models.build_backbone(cfg)
    message = str(excinfo.value)
    assert "MODEL.ARCH" in message and "'r2plus1d_tyni'" in message
    assert "did you mean 'r2plus1d_tiny'?" in message
    # The classifier reports the same error through its from_config.
    cfg.MODEL.MODEL_NAME = "VideoClassifier"
    with pytest.raises(KeyError, match="MODEL.ARCH"):
        models.build_model(cfg)


@pytest.mark.parametrize("arch, input_shape", [
    ("slow_tiny", (8, 3, 2, 32, 32)), ("r2plus1d_tiny", (8, 3, 4, 16, 16)), ("resnet9_audio_tiny", (8, 1, 16, 24)),
])
def test_channels_last_changes_the_layout_and_nothing_else(arch, input_shape):
    torch.manual_seed(0)
    plain = BACKBONE.get(arch)(get_cfg()).train()
    fast = models.to_channels_last(copy.deepcopy(plain))
    convs = [m for m in fast.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert convs and all(
        m.weight.is_contiguous(memory_format=torch.channels_last_3d if m.weight.dim() == 5 else torch.channels_last)
        for m in convs)
    # (A 1x1 kernel, or one input channel, has the same strides in both layouts.)
    assert any(not m.weight.is_contiguous() for m in convs)
    state, fast_state = plain.state_dict(), fast.state_dict()
    assert fast_state.keys() == state.keys() and all(torch.equal(fast_state[k], v) for k, v in state.items())
    # Float32 results depend on the summation order: each layout is compared with the float64 result,
    # channels-last no further off. 8 samples per train-mode BatchNorm: over 2, the statistics of a
    # small map amplify rounding by orders of magnitude, and which layout lands closer is chance.
    ref = copy.deepcopy(plain).double()
    x = torch.randn(input_shape)
    outs = [m(x.to(dtype)) for m, dtype in ((plain, torch.float32), (fast, torch.float32), (ref, torch.float64))]
    for out in outs:
        out.pow(2).sum().backward()

    def no_further_off(plain32, fast32, exact, what):
        err_plain, err_fast = ((t.double() - exact).abs().max().item() for t in (plain32, fast32))
        assert err_fast <= 2 * err_plain + 1e-4 * exact.abs().max().item(), (what, err_fast, err_plain)

    no_further_off(*outs, "output")
    for (name, p), q, r in zip(plain.named_parameters(), fast.parameters(), ref.parameters()):
        no_further_off(p.grad, q.grad, r.grad, name)


@pytest.mark.parametrize("choice, device, mixed_precision, expected", [
    ("auto", "cpu", False, True), ("auto", "cuda", True, True), ("auto", "cuda", False, False),
    ("contiguous", "cpu", False, False), ("channels_last", "cuda", False, True),
])
def test_memory_format_choice(cfg, choice, device, mixed_precision, expected):
    cfg.STICA.MEMORY_FORMAT, cfg.TRAIN.MIXED_PRECISION = choice, mixed_precision
    assert models.uses_channels_last(cfg, torch.device(device)) is expected
