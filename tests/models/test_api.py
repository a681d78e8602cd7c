"""The model <-> engine contract (models/api.py): every registered MODEL implements it, a module that does
not is named with what it lacks, the audio-visual part is recognised; and detectron2's rule for
defaults: no constructor argument that ``from_config`` fills has a default of its own."""

import inspect

import pytest
import torch
from torch import nn

from stica_slowfast.config import get_cfg
from stica_slowfast.models import build_model
from stica_slowfast.models.api import AudioVisualModel, Model, ModelBase, audio_visual, contract
from stica_slowfast.registry import MODEL

# What each registered model needs beyond the default config to build on CPU in a second. A model
# registered without an entry here fails test_every_registered_model_is_covered.
_SETTINGS = {
    "VideoClassifier": {},
    "LinearProbe": {},
    "AudioLinearProbe": {"STICA.AUDIO.ENABLE": True, "STICA.AUDIO.ARCH": "resnet9_audio_tiny"},
    "RhoSimCLR": {},
    "RhoMoCo": {"CONTRASTIVE.QUEUE_LEN": 64},
    "RhoBYOL": {},
    "RhoSwAV": {"STICA.SWAV.NUM_PROTOTYPES": 8},
    "STiCA": {"STICA.AUDIO.ENABLE": True, "STICA.AUDIO.ARCH": "resnet9_audio_tiny",
              "STICA.POOL.TYPE": "transformer", "STICA.POOL.MAX_LEN": 4, "STICA.FEATURE_CROP.ENABLE": True},
}


def _cfg(name):
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = name, "slow_tiny", 3
    cfg.CONTRASTIVE.DIM, cfg.CONTRASTIVE.MLP_DIM = 8, 16
    for key, value in _SETTINGS[name].items():
        node = cfg
        *path, leaf = key.split(".")
        for part in path:
            node = node[part]
        node[leaf] = value
    return cfg


def test_every_registered_model_is_covered():
    assert sorted(_SETTINGS) == sorted(name for name, _ in MODEL)


@pytest.mark.parametrize("name", sorted(_SETTINGS))
def test_every_registered_model_satisfies_the_contract(name):
    model = build_model(_cfg(name))
    assert contract(model) is model and isinstance(model, Model)
    assert isinstance(model.predicts_labels, bool) and model.input_key in ("video", "audio")
    assert all(hasattr(model, k) for k in model.lr_scales)
    assert (audio_visual(model) is not None) == (name == "STiCA")
    x = torch.randn(2, 3, 4, 32, 32) if model.input_key == "video" else torch.randn(2, 1, 40, 64)
    with torch.no_grad():
        out = model.eval()(x)
    assert out.shape == ((2, 3) if model.predicts_labels else model.forward_features(x).shape)


def test_contract_names_what_a_module_lacks():
    class Half(ModelBase):
        def forward_features(self, x):
            return x

    with pytest.raises(TypeError, match=r"Half does not implement .*Model: missing forward_train"):
        contract(Half())
    with pytest.raises(TypeError, match=r"missing .*forward_train.*lr_scales.*on_step_end"):
        contract(nn.Linear(2, 2))
    assert audio_visual(nn.Linear(2, 2)) is None
    assert not isinstance(Half(), AudioVisualModel)


def _constructor_defaults(cls) -> dict:
    """``{argument: default}`` of ``cls``'s constructor and of the bases its ``**kwargs`` reach."""
    defaults = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass in (nn.Module, object):
            continue
        for param in inspect.signature(init).parameters.values():
            if param.default is not inspect.Parameter.empty:
                defaults.setdefault(param.name, param.default)
    return defaults


@pytest.mark.parametrize("name", sorted(_SETTINGS))
def test_no_default_for_what_the_config_sets(name):
    cls = MODEL.get(name)
    from_config = cls.from_config(_cfg(name))
    assert set(from_config) & set(_constructor_defaults(cls)) == set()
