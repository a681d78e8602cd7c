"""Other code bases' checkpoints (checkpoint/layouts.py), on key names and shapes recorded from their own
classes (tests/interop/layouts/*.json, see each "source": PySlowFast 287ec00, GDT 873e630) filled with
random tensors (tests/recorded_layouts.py): recognised, read into our models by
TRAIN/TEST.CHECKPOINT_FILE_PATH, and converted both ways where the other side is PySlowFast."""

import argparse
import json
import os
import runpy
import subprocess
import warnings
import sys

import pytest
import torch

from stica_slowfast.checkpoint import CheckpointFileError, CheckpointMismatchError, load_checkpoint
from stica_slowfast.checkpoint.layouts import AUTO, LAYOUTS, detect_layout, from_our_layout, to_our_layout
from stica_slowfast.config import get_cfg
from stica_slowfast.config.validation import CHECKPOINT_TYPES
from stica_slowfast.engine.trainer import resume_point
from stica_slowfast.models import build_model

from recorded_layouts import GDT, NATIVE, ZOO, recorded_state  # tests/recorded_layouts.py

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONVERTER = os.path.join(REPO, "tools", "convert_checkpoint.py")


def _cfg(model_name="VideoClassifier", arch="slow_r50", num_classes=400):
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = model_name, arch, num_classes
    return cfg


def _model(model_name="VideoClassifier", arch="slow_r50", num_classes=400):
    return build_model(_cfg(model_name, arch, num_classes))


def _same_tensors(got, expected):
    assert list(got) == list(expected)
    assert all(got[k] is expected[k] for k in expected)  # renamed, not copied


def test_checkpoint_types_of_the_config_are_the_layouts_read():
    # config/ is free of torch, so it names them itself
    assert set(CHECKPOINT_TYPES) == {AUTO, *LAYOUTS}


def test_native_resnet_maps_one_to_one_onto_our_slow_r50_and_back():
    native = recorded_state(NATIVE)
    ours = to_our_layout(native)
    assert ours.layout == "pyslowfast_resnet" and ours.dropped == ()
    model = _model().state_dict()
    assert [(k, v.shape) for k, v in ours.state.items()] == [(k, v.shape) for k, v in model.items()]
    _model().load_state_dict(ours.state)  # strict
    back = from_our_layout(ours.state, "pyslowfast_resnet")
    _same_tensors(back.state, native)  # every key, in PySlowFast's order
    assert back.dropped == ()


def test_zoo_contrastive_model_round_trips_through_ours_to_its_native_trunk():
    zoo = recorded_state(ZOO)
    for encoder, prefix in (("online", "backbone."), ("momentum", "backbone_hist.")):
        ours = to_our_layout(zoo, encoder=encoder)
        assert ours.layout == "pyslowfast_contrastive"
        trunk = {k[len(prefix):]: v for k, v in zoo.items()
                 if k.startswith(prefix) and not k.startswith(prefix + "head.")}
        _same_tensors(from_our_layout(ours.state, "pyslowfast_resnet").state, trunk)
        # Everything else is reported: projector / predictors, queue, pointer, kNN memory, the other encoder.
        assert {k.split(".")[0] for k in ours.dropped} >= {"ptr", "queue_x", "iter", "knn_mem"}
        assert all(k.startswith(prefix + "head.") or not k.startswith(prefix) for k in ours.dropped)


@pytest.mark.parametrize("encoder", ["online", "momentum"])
def test_a_zoo_byol_checkpoint_initialises_our_linear_probe_from_the_config_alone(tmp_path, encoder):
    zoo = recorded_state(ZOO)
    path = str(tmp_path / "BYOL_SlowR50_8x8.pyth")
    torch.save({"epoch": 199, "model_state": zoo}, path)  # PySlowFast's save_checkpoint shape
    cfg = _cfg("LinearProbe")
    cfg.TRAIN.AUTO_RESUME, cfg.TRAIN.CHECKPOINT_FILE_PATH, cfg.TRAIN.CHECKPOINT_ENCODER = False, path, encoder
    probe = build_model(cfg)
    assert resume_point(cfg, probe, None, None) == (0, None)  # as the trainer starts; epoch reset
    prefix = "backbone_hist." if encoder == "momentum" else "backbone."
    state = probe.state_dict()
    assert torch.equal(state["backbone.blocks.0.conv.weight"], zoo[prefix + "s1.pathway0_stem.conv.weight"])
    assert torch.equal(state["backbone.blocks.4.res_blocks.2.branch2.norm_c.running_var"],
                       zoo[prefix + "s5.pathway0_res2.branch2.c_bn.running_var"])
    # Features equal those of a copy renamed by hand, key by key in order.
    by_hand = _model("LinearProbe")
    by_hand.backbone.load_state_dict(dict(zip(
        by_hand.backbone.state_dict(),
        [v for k, v in zoo.items() if k.startswith(prefix + "s")])))
    video = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        features = probe.eval().forward_features(video)
        assert features.isfinite().all() and torch.equal(features, by_hand.eval().forward_features(video))


def _gdt_file(tmp_path, wrap):
    gdt = recorded_state(GDT)
    path = str(tmp_path / f"gdt_{wrap}.pth")
    if wrap == "model":  # what GDT's save_checkpoint writes, its argparse arguments included
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.01, momentum=0.9)
        # Its warm-up scheduler's state_dict() holds the MultiStepLR it hands over to, whole.
        warmup = {"multiplier": 1, "total_epoch": 10, "finished": False, "last_epoch": 100,
                  "after_scheduler": torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[30, 60])}
        torch.save({"model": gdt, "optimizer": optimizer.state_dict(), "lr_scheduler": warmup, "epoch": 100,
                    "args": argparse.Namespace(lr=0.01)}, path)
    else:  # {"epoch", "state_dict"} of a DDP model
        torch.save({"epoch": 100, "state_dict": {"module." + k: v for k, v in gdt.items()}}, path)
    return gdt, path


@pytest.mark.parametrize("wrap", ["model", "state_dict"])
def test_gdt_video_and_audio_trunks_load_into_our_probes(tmp_path, wrap):
    gdt, path = _gdt_file(tmp_path, wrap)
    video_probe = _model("LinearProbe", arch="r2plus1d_18", num_classes=5)
    video_probe.load_pretrained(path)
    audio_probe = _model("AudioLinearProbe", arch="r2plus1d_18", num_classes=5)
    audio_probe.load_pretrained(path)
    # Renamed by hand: GDT's trunks are torchvision's layouts, as ours.
    video_by_hand = _model("LinearProbe", arch="r2plus1d_18", num_classes=5)
    video_by_hand.backbone.load_state_dict(
        {k[len("video_network.base."):]: v for k, v in gdt.items() if k.startswith("video_network.base.")})
    audio_by_hand = _model("AudioLinearProbe", arch="r2plus1d_18", num_classes=5)
    audio_by_hand.backbone.load_state_dict(
        {k[len("audio_network.base."):]: v for k, v in gdt.items()
         if k.startswith("audio_network.base.") and ".fc." not in k})
    video, spec = torch.randn(2, 3, 4, 32, 32), torch.randn(2, 1, 40, 64)
    with torch.no_grad():
        for probe, by_hand, x in ((video_probe, video_by_hand, video), (audio_probe, audio_by_hand, spec)):
            features = probe.eval().forward_features(x)
            assert features.isfinite().all() and torch.equal(features, by_hand.eval().forward_features(x))
    dropped = to_our_layout(gdt).dropped
    assert {k.split(".")[0] for k in dropped} == {"mlp_v", "mlp_a", "audio_network"}
    assert all(".fc." in k for k in dropped if k.startswith("audio_network"))


def test_a_native_classifier_is_tested_by_test_checkpoint_file_path(tmp_path):
    native = recorded_state(NATIVE)
    path = str(tmp_path / "SLOW_8x8_R50.pyth")
    torch.save({"epoch": 195, "model_state": native, "optimizer_state": {"state": {}}}, path)
    model = _model()
    assert load_checkpoint(path, model, layout=AUTO) == 195
    assert torch.equal(model.state_dict()["head.fc.weight"], native["head.projection.weight"])
    # The same file resumed as ours (no layout) is a mismatch, as before.
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(path, _model())


def test_foreign_errors_name_the_layout_seen_and_what_reads_it(tmp_path):
    zoo_path, native_path = str(tmp_path / "zoo.pyth"), str(tmp_path / "native.pyth")
    torch.save({"model_state": recorded_state(ZOO)}, zoo_path)
    torch.save({"model_state": recorded_state(NATIVE)}, native_path)
    _, gdt_path = _gdt_file(tmp_path, "model")
    # A zoo SSL model has no classifier: testing it as one names the layout and TRAIN.CHECKPOINT_FILE_PATH.
    with pytest.raises(CheckpointMismatchError, match=r"ContrastiveModel.*read by: TRAIN.CHECKPOINT_FILE_PATH "
                                                      r"of a LinearProbe.*missing keys \(2\): head.fc.weight"):
        load_checkpoint(zoo_path, _model(), layout=AUTO)
    # GDT's R(2+1)D into a Slow-R50 probe.
    with pytest.raises(CheckpointMismatchError, match=r"GDT.*MODEL.ARCH r2plus1d_18.*does not match"):
        _model("LinearProbe").load_pretrained(gdt_path)
    # A layout insisted on that the file is not.
    with pytest.raises(CheckpointFileError, match=r"holds PySlowFast's native ResNet.*not GDT's.*"
                                                  r"CHECKPOINT_TYPE pytorch recognises it"):
        _model("LinearProbe").load_pretrained(native_path, layout="gdt")
    with pytest.raises(CheckpointFileError, match="GDT's audio-visual model.*has no momentum encoder"):
        _model("LinearProbe", arch="r2plus1d_18").load_pretrained(gdt_path, encoder="momentum")
    with pytest.raises(CheckpointFileError, match="cannot give RhoBYOL its momentum encoder"):
        _model("RhoBYOL", arch="slow_tiny").load_pretrained(zoo_path, encoder="momentum")
    unknown = str(tmp_path / "other.pyth")
    torch.save({"model_state": {"encoder.conv.weight": torch.zeros(1)}}, unknown)
    with pytest.raises(CheckpointFileError, match=r"no 'backbone\.\*' tensors.*an unknown layout \(read here: "
                                                  r".*ContrastiveModel.*GDT"):
        _model("LinearProbe").load_pretrained(unknown)


def test_a_file_of_no_layout_read_here_is_named_as_such(tmp_path):
    # PySlowFast's MViT: a head.* key is anyone's, not a sign of ours.
    mvit = {"patch_embed.proj.weight": torch.zeros(96, 3, 3, 7, 7), "head.projection.weight": torch.zeros(400, 768)}
    assert detect_layout(mvit) == "unknown"
    path = str(tmp_path / "MVIT_B_16x4.pyth")
    torch.save({"model_state": mvit}, path)
    for load in (lambda: load_checkpoint(path, _model(), layout=AUTO),
                 lambda: _model("LinearProbe").load_pretrained(path)):
        with pytest.raises((CheckpointMismatchError, CheckpointFileError), match=r"an unknown layout \(read here: "):
            load()


def test_a_layout_insisted_on_reads_its_online_encoder_or_says_what_is_missing():
    simclr = {k: v for k, v in recorded_state(ZOO).items() if not k.startswith("backbone_hist.")}
    assert to_our_layout(simclr, layout="pyslowfast_contrastive").state.keys() == \
        to_our_layout(simclr).state.keys()
    with pytest.raises(ValueError, match="has no momentum encoder"):
        to_our_layout(simclr, layout="pyslowfast_contrastive", encoder="momentum")
    with pytest.raises(ValueError, match="has no tensor of PySlowFast's ContrastiveModel"):
        to_our_layout({"encoder.weight": torch.zeros(1)}, layout="pyslowfast_contrastive")


def test_keys_of_no_one_pathway_slow_resnet_are_errors_not_dropped():
    native = recorded_state(NATIVE)
    native["s1.pathway1_stem.conv.weight"] = torch.zeros(8, 3, 5, 7, 7)  # a SlowFast model's fast pathway
    with pytest.raises(ValueError, match="s1.pathway1_stem.conv.weight: not a key of a one-pathway Slow ResNet"):
        to_our_layout(native)
    assert detect_layout({"module.s1.pathway0_stem.conv.weight": 0}) == "unknown"  # callers strip DDP first


def _convert(*args):
    return subprocess.run([sys.executable, CONVERTER, *args], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_converter_reads_the_zoo_and_gdt_and_writes_pyslowfast(tmp_path, capsys):
    convert = runpy.run_path(CONVERTER)["main"]  # in this process: the CLI's own exit code and JSON line

    def report(*args):
        assert convert(list(args)) == 0
        return json.loads(capsys.readouterr().out)

    zoo = recorded_state(ZOO)
    zoo_path = str(tmp_path / "zoo.pyth")
    torch.save({"epoch": 199, "model_state": zoo}, zoo_path)
    ours_path, native_path = str(tmp_path / "ours.pyth"), str(tmp_path / "native.pyth")
    converted = report("--to", "stica", "--momentum", zoo_path, ours_path)
    assert converted["from"] == "pyslowfast_contrastive" and "knn_mem" in converted["dropped_modules"]
    stored = torch.load(ours_path, weights_only=True)
    assert stored["epoch"] == 199 and all(k.startswith("backbone.blocks.") for k in stored["model_state"])
    assert torch.equal(stored["model_state"]["backbone.blocks.0.conv.weight"],
                       zoo["backbone_hist.s1.pathway0_stem.conv.weight"])
    # ... and into PySlowFast's native ResNet: its linear evaluation's input, trunk for trunk.
    assert report("--to", "pyslowfast_resnet", ours_path, native_path)["from"] == "stica"
    native = torch.load(native_path, weights_only=True)["model_state"]
    trunk = {k[len("backbone_hist."):]: v for k, v in zoo.items()
             if k.startswith("backbone_hist.") and not k.startswith("backbone_hist.head.")}
    assert list(native) == list(trunk) and all(torch.equal(native[k], trunk[k]) for k in trunk)
    # GDT, checked against the networks we build (R(2+1)D-18 and the audio ResNet-9).
    _, gdt_path = _gdt_file(tmp_path, "state_dict")
    assert report("--to", "stica", gdt_path, str(tmp_path / "gdt_ours.pyth"))["from"] == "gdt"
    # A foreign file asked into PySlowFast's layout, from the shell: one line naming what it is and
    # what reads it, exit status 2, nothing written.
    proc = _convert("--to", "pyslowfast_resnet", zoo_path, str(tmp_path / "x.pyth"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "is PySlowFast's ContrastiveModel" in proc.stderr and "--to stica reads this one" in proc.stderr
    assert not os.path.exists(tmp_path / "x.pyth")


def test_pytorchvideo_hub_slow_r50_reads_as_ours_and_predicts_the_same(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models.hub import slow_r50  # the torch.hub model, built here without its weights

    hub = slow_r50(pretrained=False).eval()
    path = str(tmp_path / "SLOW_8x8_R50.pyth")
    torch.save({"model_state": hub.state_dict()}, path)  # the hub files' shape
    model = _model().eval()
    assert load_checkpoint(path, model, layout=AUTO) == -1  # TEST.CHECKPOINT_FILE_PATH
    assert detect_layout(hub.state_dict()) == "pytorchvideo"
    back, theirs = from_our_layout(model.state_dict(), "pytorchvideo").state, hub.state_dict()
    assert list(back) == list(theirs) and all(torch.equal(back[k], theirs[k]) for k in theirs)
    video = torch.randn(1, 3, 8, 224, 224)  # its head pools the whole 8 x 7 x 7 map at this size
    with torch.no_grad():
        torch.testing.assert_close(model(video), hub(video), rtol=1e-4, atol=1e-5)
