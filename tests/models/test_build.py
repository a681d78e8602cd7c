"""build_model / build_backbone: registry contents, names that cannot collide with PySlowFast's, and
did-you-mean errors for unknown names."""

import pytest
import torch

import stica_slowfast.models as models
from stica_slowfast.config import get_cfg
from stica_slowfast.registry import BACKBONE, HEAD, MODEL

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
    assert "ClassifierHead" in {n for n, _ in HEAD}
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
