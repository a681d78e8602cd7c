"""Checkpoints in PySlowFast's layouts (checkpoint/layouts.py), on key names and shapes recorded from
PySlowFast's own classes (tests/interop/layouts/*.json, see their "source"), filled with random tensors."""

import json
import os

import pytest
import torch

from stica_slowfast.checkpoint import CheckpointFileError
from stica_slowfast.checkpoint.layouts import detect_layout, to_our_layout
from stica_slowfast.config import get_cfg
from stica_slowfast.models import build_model

LAYOUTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layouts")


def _recorded(name, seed=0):
    with open(os.path.join(LAYOUTS, name)) as f:
        layout = json.load(f)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in layout["tensors"]:
        if dtype.startswith("float"):
            state[key] = torch.randn(shape, generator=g)
        else:
            state[key] = torch.randint(0, 100, shape, generator=g, dtype=getattr(torch, dtype))
    return state


def _slow_r50(model_name="VideoClassifier"):
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = model_name, "slow_r50", 400
    return build_model(cfg)


def test_native_resnet_maps_one_to_one_onto_our_slow_r50():
    native = _recorded("pyslowfast_resnet_slow_8x8_r50.json")
    layout, ours, dropped = to_our_layout(native)
    assert layout == "pyslowfast_resnet" and dropped == []
    model = _slow_r50().state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [(k, tuple(v.shape)) for k, v in model.items()]
    assert all(a is b for a, b in zip(native.values(), ours.values()))  # the same tensors, in order
    _slow_r50().load_state_dict(ours)  # strict


@pytest.mark.parametrize("momentum", [False, True])
def test_a_zoo_contrastive_checkpoint_loads_into_our_linear_probe(tmp_path, momentum):
    zoo = _recorded("pyslowfast_contrastive_byol_slow_r50.json")
    assert detect_layout(zoo) == "pyslowfast_contrastive"
    path = str(tmp_path / "byol.pyth")
    torch.save({"epoch": 199, "model_state": zoo}, path)
    probe = _slow_r50("LinearProbe")
    if momentum:
        _, ours, _ = to_our_layout(zoo, momentum=True)
        assert torch.equal(ours["backbone.blocks.0.conv.weight"], zoo["backbone_hist.s1.pathway0_stem.conv.weight"])
        return
    assert probe.load_pretrained(path) == 199  # TRAIN.CHECKPOINT_FILE_PATH: no conversion step
    state = probe.state_dict()
    assert torch.equal(state["backbone.blocks.0.conv.weight"], zoo["backbone.s1.pathway0_stem.conv.weight"])
    assert torch.equal(state["backbone.blocks.4.res_blocks.2.branch2.norm_c.running_var"],
                       zoo["backbone.s5.pathway0_res2.branch2.c_bn.running_var"])


def test_an_unknown_checkpoint_names_the_layouts_it_could_read(tmp_path):
    path = str(tmp_path / "other.pyth")
    torch.save({"model_state": {"video_network.base.stem.0.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointFileError, match="is an unknown layout with no 'backbone.\\*' tensors.*known "
                                                  "layouts: .*ContrastiveModel"):
        _slow_r50("LinearProbe").load_pretrained(path)
