"""Our models and losses called the way PySlowFast's train/test loops call them (``model([inputs])``,
``loss_fun(preds, labels)``, PySlowFast's ``MODEL.ARCH`` names), without PySlowFast installed: the
classifiers answer as PySlowFast's heads do, the SSL methods and losses refuse with one line."""

import pytest
import torch
from fvcore.common.config import CfgNode

from stica_slowfast import registry
from stica_slowfast.config import get_cfg
from stica_slowfast.engine.meters import aggregate_views
from stica_slowfast.interop.pyslowfast import LOSS_MODULES
from stica_slowfast.models import build_model
from stica_slowfast.models.build import build_backbone

NUM_CLASSES = 5
CLASSIFIERS = ("VideoClassifier", "LinearProbe")


def _cfg(model_name: str, **values):
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = model_name, "r2plus1d_tiny", NUM_CLASSES
    cfg.CONTRASTIVE.DIM, cfg.CONTRASTIVE.MLP_DIM, cfg.CONTRASTIVE.QUEUE_LEN = 16, 32, 64
    cfg.STICA.SWAV.NUM_PROTOTYPES = 12
    cfg.STICA.AUDIO.ENABLE, cfg.STICA.AUDIO.ARCH = True, "resnet9_audio_tiny"
    for key, value in values.items():
        group, name = key.split(".")
        cfg[group][name] = value
    return cfg


def _video(b=3, seed=0):
    return torch.randn(b, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_answer_pyslowfast_as_its_heads_do(name):
    torch.manual_seed(0)
    model = build_model(_cfg(name)).eval()
    video = _video()
    with torch.no_grad():
        logits = model(video)  # our engine: a tensor, logits
        scores = model([video])  # PySlowFast's loops: a list of pathways
    torch.testing.assert_close(scores, logits.softmax(dim=1))  # MODEL.HEAD_ACT softmax, in eval mode
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model([video]).sum(dim=1), torch.ones(3))  # training: logits
    for act, expect in (("sigmoid", logits.sigmoid()), ("none", logits)):
        torch.manual_seed(0)
        other = build_model(_cfg(name, **{"MODEL.HEAD_ACT": act})).eval()
        with torch.no_grad():
            torch.testing.assert_close(other([video]), expect)


def test_pyslowfast_test_ensemble_equals_ours():
    # PySlowFast's TestMeter adds the scores the model returns for each view of a video; our engine
    # averages the views' softmax: the same ranking, the same top-1 (the sum is V times the mean).
    torch.manual_seed(0)
    model = build_model(_cfg("VideoClassifier")).eval()
    views = [_video(seed=s) for s in range(4)]
    with torch.no_grad():
        pyslowfast = sum(model([v]) for v in views)
        ours = aggregate_views(torch.stack([model(v) for v in views], dim=1))
    torch.testing.assert_close(pyslowfast / len(views), ours)
    assert torch.equal(pyslowfast.argmax(dim=1), ours.argmax(dim=1))


def test_audio_probe_takes_pyslowfast_list_input():
    model = build_model(_cfg("AudioLinearProbe")).eval()
    audio = torch.randn(2, 1, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(model([audio]), model(audio).softmax(dim=1))


@pytest.mark.parametrize("name", sorted(n for n, cls in registry.MODEL if not getattr(cls, "predicts_labels", False)))
def test_ssl_methods_refuse_pyslowfast_loops_in_one_line(name):
    model = build_model(_cfg(name))
    with pytest.raises(TypeError) as err:
        model([_video()])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name} is a self-supervised method")
    assert "tools/run_net.py" in message and "LinearProbe" in message


@pytest.mark.parametrize("name", sorted(LOSS_MODULES))
def test_our_losses_refuse_predictions_and_labels_in_one_line(name):
    loss = LOSS_MODULES[name](reduction="mean")
    with pytest.raises(TypeError) as err:
        loss(torch.randn(4, NUM_CLASSES), torch.tensor([0, 1, 2, 3]))  # PySlowFast: loss_fun(preds, labels)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{LOSS_MODULES[name].fn.__name__} is a self-supervised loss")


def test_pyslowfast_arch_names():
    slow = _cfg("VideoClassifier", **{"MODEL.ARCH": "slow"})
    ours = _cfg("VideoClassifier", **{"MODEL.ARCH": "slow_r50"})
    a, b = build_backbone(slow).state_dict(), build_backbone(ours).state_dict()
    assert [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()]  # the same network
    slow.RESNET = CfgNode({"DEPTH": 101})
    with pytest.raises(KeyError, match=r"MODEL.ARCH 'slow' with RESNET.DEPTH 101 is PySlowFast's own network"):
        build_backbone(slow)
    with pytest.raises(KeyError, match=r"'slowfast' is PySlowFast's own network.*'slow_r50'"):
        build_backbone(_cfg("VideoClassifier", **{"MODEL.ARCH": "slowfast"}))
