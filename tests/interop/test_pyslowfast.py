"""The PySlowFast bridge (stica_slowfast.interop.pyslowfast).

The loss adapters and the config behaviour without PySlowFast are tested everywhere. The tests taking
the ``slowfast`` fixture need an importable PySlowFast (a checkout on PYTHONPATH, with pytorchvideo
main and detectron2, or a stand-in for ``detectron2.layers.ROIAlign``) and are skipped otherwise.
"""

import os
import textwrap

import pytest
import torch

from stica_slowfast.config import ConfigError, add_stica_config, load_config
from stica_slowfast.config import pyslowfast as config_pyslowfast
from stica_slowfast.data.datasets import Hmdb51, Kinetics, Ucf101
from stica_slowfast.losses import (
    byol_loss,
    crop_info_nce,
    cross_modal_info_nce,
    info_nce,
    nt_xent,
    pairwise_info_nce,
    swav_loss,
)
from stica_slowfast.interop import pyslowfast
from stica_slowfast.checkpoint.layouts import from_our_layout
from stica_slowfast.interop.convert import convert_checkpoint
from stica_slowfast.registry import LOSS, get_dataset_class
from stica_slowfast.utils import optional

# A PySlowFast-style YAML: PySlowFast-only keys (RESNET.*, BN.USE_PRECISE_STATS), yacs idioms
# (1e-4 is a string to PyYAML; a tuple written as a string) and our STICA.* keys.
PYSLOWFAST_YAML = textwrap.dedent("""\
    TRAIN:
      BATCH_SIZE: 8
    RESNET:
      DEPTH: 50
      ZERO_INIT_FINAL_BN: True
    BN:
      USE_PRECISE_STATS: True
    SOLVER:
      WEIGHT_DECAY: 1e-4
      BETAS: (0.9, 0.95)
    MODEL:
      MODEL_NAME: RhoBYOL
      ARCH: slow_tiny
    STICA:
      FEATURE_CROP:
        ENABLE: True
    """)


@pytest.fixture(scope="module")
def slowfast():
    """PySlowFast's modules used here; skips the test when PySlowFast cannot be imported."""
    pytest.importorskip("slowfast")
    modules = {name: pytest.importorskip(f"slowfast.{name}") for name in
               ("config.defaults", "models", "models.losses", "datasets.build", "utils.checkpoint")}
    assert pyslowfast.register()
    return modules


def pyslowfast_cfg(slowfast, **overrides):
    """PySlowFast's get_cfg() + add_stica_config, on CPU, with one pathway and a tiny Slow ResNet."""
    cfg = slowfast["config.defaults"].get_cfg()
    add_stica_config(cfg)
    cfg.NUM_GPUS = 0
    cfg.DATA.INPUT_CHANNEL_NUM = [3]
    cfg.MODEL.ARCH = "slow_tiny"
    cfg.STICA.AUDIO.ARCH = "resnet9_audio_tiny"
    # PySlowFast's BYOL config (configs/contrastive_ssl/BYOL_SlowR50_8x8.yaml); its default is [].
    cfg.CONTRASTIVE.PREDICTOR_DEPTHS = [2]
    cfg.CONTRASTIVE.MLP_DIM, cfg.CONTRASTIVE.DIM = 64, 16
    for key, value in overrides.items():
        node, *path = key.split("__")
        target = cfg[node]
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
    return cfg


# ---------------------------------------------------------------------------------------------------- #
# Without PySlowFast
# ---------------------------------------------------------------------------------------------------- #
def test_every_loss_has_an_adapter_or_is_listed_as_not_a_loss():
    names = {name for name, _ in LOSS}
    assert names == set(pyslowfast.LOSS_MODULES) | set(pyslowfast.NOT_LOSSES)


def test_loss_adapters_compute_the_pure_functions():
    q, k, n = torch.randn(6, 8), torch.randn(6, 8), torch.randn(5, 8)
    large, small = torch.randn(2, 2, 6, 8), torch.randn(3, 2, 6, 8)
    cases = {
        "info_nce": ((q, k), {"negatives": n}, info_nce(q, k, temperature=0.1, negatives=n)),
        "nt_xent": (([q, k],), {}, nt_xent([q, k], 0.1)),
        "byol_loss": ((q, k), {}, byol_loss(q, k)),
        "swav_loss": ((q, k.softmax(dim=1)), {}, swav_loss(q, k.softmax(dim=1), temperature=0.1)),
        "cross_modal_info_nce": ((q, k), {}, cross_modal_info_nce(q, k, temperature=0.1)),
        "crop_info_nce": ((large, small), {}, crop_info_nce(large, small, temperature=0.5)),
        "pairwise_info_nce": ((large[0], small[0]), {}, pairwise_info_nce(large[0], small[0], temperature=0.5)),
    }
    assert set(cases) == set(pyslowfast.LOSS_MODULES)
    for name, (tensors, kwargs, expected) in cases.items():
        loss = pyslowfast.LOSS_MODULES[name](reduction="mean")  # how PySlowFast constructs losses
        assert isinstance(loss, torch.nn.Module)
        assert torch.equal(loss(*tensors, **kwargs), expected), name
    assert torch.equal(pyslowfast.InfoNCELoss(temperature=0.3)(q, k), info_nce(q, k, temperature=0.3))
    with pytest.raises(ValueError, match="reduction='mean' only"):
        pyslowfast.InfoNCELoss(reduction="none")


def test_stica_dataset_aliases_resolve_in_our_registry():
    assert get_dataset_class("sticakinetics") is Kinetics is get_dataset_class("Kinetics")
    assert get_dataset_class("Sticaucf101") is Ucf101
    assert pyslowfast.pyslowfast_dataset_names("hmdb51") == ["Hmdb51", "Sticahmdb51"]
    with pytest.raises(KeyError):
        get_dataset_class("stica")


def test_pyslowfast_yaml_idioms_load(tmp_path):
    path = tmp_path / "ours.yaml"
    path.write_text("SOLVER:\n  WEIGHT_DECAY: 1e-4\n  BETAS: (0.9, 0.95)\nTRAIN:\n  BATCH_SIZE: 8\n")
    cfg = load_config([str(path)])
    assert cfg.SOLVER.WEIGHT_DECAY == 1e-4 and cfg.SOLVER.BETAS == (0.9, 0.95)
    path.write_text("SOLVER:\n  WEIGHT_DECAY: abc\n")
    with pytest.raises(ConfigError, match=r"SOLVER\.WEIGHT_DECAY expects float"):
        load_config([str(path)])


def test_without_pyslowfast_its_keys_are_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(optional, "import_optional", lambda module: None)  # as if not installed
    assert pyslowfast.register() is False
    assert config_pyslowfast.add_pyslowfast_keys(load_config().clone()) == []
    path = tmp_path / "sf.yaml"
    path.write_text(PYSLOWFAST_YAML)
    with pytest.raises(ConfigError, match="unknown config key RESNET"):
        load_config([str(path)])


# ---------------------------------------------------------------------------------------------------- #
# With PySlowFast
# ---------------------------------------------------------------------------------------------------- #
def test_register_is_idempotent_and_keeps_pyslowfast_names(slowfast):
    models = slowfast["models"].MODEL_REGISTRY
    datasets = slowfast["datasets.build"].DATASET_REGISTRY
    table = slowfast["models.losses"]._LOSSES
    before = (dict(models), dict(datasets), dict(table))
    assert pyslowfast.register() is True
    assert (dict(models), dict(datasets), dict(table)) == before
    assert {"RhoSimCLR", "RhoMoCo", "RhoBYOL", "RhoSwAV", "STiCA", "VideoClassifier"} <= set(before[0])
    assert datasets.get("Kinetics") is not Kinetics  # PySlowFast's own stays
    assert table["cross_entropy"] is torch.nn.CrossEntropyLoss


def test_build_model_builds_our_models_on_cpu(slowfast):
    build_model = slowfast["models"].build_model
    stica = build_model(pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="STiCA"))
    byol = build_model(pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="RhoBYOL"))
    assert type(stica).__name__ == "STiCA" and type(byol).__name__ == "RhoBYOL"
    assert next(byol.parameters()).device.type == "cpu"
    clips = [torch.randn(2, 3, 4, 32, 32) for _ in range(2)]
    out = byol.forward_train({"video": clips})
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    # A classifier also follows PySlowFast's calling convention: a list of pathways -> logits.
    classifier = build_model(pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="VideoClassifier", MODEL__NUM_CLASSES=7))
    assert classifier([clips[0]]).shape == (2, 7)


def test_get_loss_func_gives_our_losses(slowfast):
    get_loss_func = slowfast["models.losses"].get_loss_func
    q, k = torch.randn(4, 8), torch.randn(4, 8)
    for name, module in pyslowfast.LOSS_MODULES.items():
        assert get_loss_func(name) is module
    assert torch.equal(get_loss_func("byol_loss")(reduction="mean")(q, k), byol_loss(q, k))
    with pytest.raises(NotImplementedError):
        get_loss_func("sinkhorn_knopp")


def test_build_dataset_builds_ours_in_pyslowfast_format(slowfast, tmp_path):
    from stica_slowfast.synthetic import generate_dataset

    data = str(tmp_path / "data")
    generate_dataset(data, num_classes=2, train_per_class=2, val_per_class=1, test_per_class=1,
                     width=48, height=32, fps=10, duration=1.5, audio_rate=8000, seed=0)
    cfg = pyslowfast_cfg(slowfast, DATA__PATH_TO_DATA_DIR=data, MODEL__NUM_CLASSES=2, DATA__NUM_FRAMES=4,
                         DATA__SAMPLING_RATE=2, DATA__TRAIN_CROP_SIZE=32, DATA__TEST_CROP_SIZE=32,
                         DATA__TRAIN_JITTER_SCALES=[32, 40])
    build_dataset = slowfast["datasets.build"].build_dataset
    # The split lists of UCF-101 / HMDB-51 name videos relative to videos/, the csv files to data/.
    ucf_cfg = cfg.clone()
    ucf_cfg.DATA.PATH_PREFIX = os.path.join(data, "videos")
    hmdb_cfg = ucf_cfg.clone()
    hmdb_cfg.DATA.PATH_TO_DATA_DIR = os.path.join(data, "hmdb51_splits")
    for name, cls, c in (("ucf101", Ucf101, ucf_cfg), ("hmdb51", Hmdb51, hmdb_cfg),
                         ("sticakinetics", Kinetics, cfg), ("sticaucf101", Ucf101, ucf_cfg)):
        dataset = build_dataset(name, c, "train")
        # Ours, in PySlowFast's (frames, label, index, time, extra_data) format.
        assert type(dataset.dataset) is cls and len(dataset) == 4
        frames, label, index, _, meta = dataset[0]
        assert frames[0].shape == (3, 4, 32, 32) and index == 0 and meta == {}, name


def test_run_net_config_accepts_a_pyslowfast_yaml(slowfast, tmp_path, caplog):
    path = tmp_path / "sf.yaml"
    path.write_text(PYSLOWFAST_YAML)
    cfg = load_config([str(path)], ["RESNET.DEPTH", "101"])
    assert cfg.RESNET.DEPTH == 101 and cfg.BN.USE_PRECISE_STATS is True
    assert cfg.SOLVER.WEIGHT_DECAY == 1e-4 and cfg.STICA.FEATURE_CROP.ENABLE is True
    assert cfg.DATA.DECODING_BACKEND == "pyav"  # shared keys keep our defaults, not PySlowFast's
    assert "RESNET.DEPTH" in caplog.text and "no effect" in caplog.text
    with pytest.raises(ConfigError, match="did you mean RESNET.DEPTH"):
        load_config([str(path)], ["RESNET.DEPHT", "101"])


def test_converted_checkpoint_loads_into_pyslowfast_ptvresnet(slowfast, tmp_path):
    from stica_slowfast.models import build_model as build_ours

    # PySlowFast's configs/Kinetics/pytorchvideo/SLOW_8x8_R50.yaml, on CPU.
    sf_cfg = pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="PTVResNet", MODEL__ARCH="slow", MODEL__NUM_CLASSES=400,
                            RESNET__DEPTH=50, RESNET__WIDTH_PER_GROUP=64, DATA__NUM_FRAMES=8)
    ptv = slowfast["models"].build_model(sf_cfg)
    ours_cfg = pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="VideoClassifier", MODEL__ARCH="slow_r50",
                              MODEL__NUM_CLASSES=400)
    ours = build_ours(ours_cfg)
    assert set(from_our_layout(ours.state_dict(), "pyslowfast_ptvresnet").state) == set(ptv.state_dict())

    src = str(tmp_path / "ours.pyth")
    torch.save({"epoch": 3, "model_state": ours.state_dict()}, src)
    dst = str(tmp_path / "ptv.pyth")
    convert_checkpoint(src, dst, to="pyslowfast_ptvresnet")
    epoch = slowfast["utils.checkpoint"].load_checkpoint(dst, ptv, data_parallel=False)
    assert epoch == 3
    expected = from_our_layout(ours.state_dict(), "pyslowfast_ptvresnet").state
    for key, value in ptv.state_dict().items():
        assert torch.equal(value, expected[key]), key

    # And back: PySlowFast's own save_checkpoint output converts to ours.
    optimizer = torch.optim.SGD(ptv.parameters(), lr=0.1)
    saved = slowfast["utils.checkpoint"].save_checkpoint(str(tmp_path / "job"), ptv, optimizer, 5, sf_cfg)
    assert set(torch.load(saved, weights_only=True)) >= {"epoch", "model_state", "optimizer_state", "cfg"}
    back = str(tmp_path / "back.pyth")
    convert_checkpoint(saved, back, to="stica")
    stored = torch.load(back, weights_only=True)
    assert stored["epoch"] == 5
    fresh = build_ours(ours_cfg)
    fresh.load_state_dict(stored["model_state"], strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_converted_weights_predict_the_same_in_pyslowfast(slowfast):
    from stica_slowfast.models import build_model as build_ours

    # RESNET.WIDTH_PER_GROUP 8 is our slow_tiny; crop 64 makes PySlowFast's head pool (8, 2, 2).
    sf_cfg = pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="PTVResNet", MODEL__ARCH="slow", MODEL__NUM_CLASSES=5,
                            RESNET__WIDTH_PER_GROUP=8, DATA__NUM_FRAMES=8, DATA__TRAIN_CROP_SIZE=64)
    ptv = slowfast["models"].build_model(sf_cfg).eval()
    ours = build_ours(pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="VideoClassifier", MODEL__NUM_CLASSES=5)).eval()
    gen = torch.Generator().manual_seed(0)
    for m in ours.modules():  # BatchNorm statistics that matter in eval mode
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    ptv.load_state_dict(from_our_layout(ours.state_dict(), "pyslowfast_ptvresnet").state, strict=True)
    video = torch.randn(2, 3, 8, 64, 64, generator=gen)
    with torch.no_grad():
        # PTVResNet in eval mode: softmax (MODEL.HEAD_ACT) of the logits, averaged over positions.
        torch.testing.assert_close(ptv([video]), ours(video).softmax(dim=1), rtol=1e-4, atol=1e-6)


# The rho-SSL zoo's configs (PySlowFast's configs/contrastive_ssl), one per method.
ZOO_CONFIGS = {"BYOL": "BYOL_SlowR50_8x8.yaml", "MoCo": "MoCo_SlowR50_8x8.yaml",
               "SimCLR": "SimCLR_SlowR50_8x8.yaml", "SwAV": "SwAV_Slow_R50_8x8.yaml"}


def _perturb_batch_norms(model, gen):
    """Give every BatchNorm statistics and an affine map of its own, so that eval-mode features depend
    on all of them (and the online and momentum encoders differ)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
            if m.affine:
                m.weight.data.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.data.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


@pytest.mark.parametrize("method", sorted(ZOO_CONFIGS))
def test_a_zoo_checkpoint_gives_our_linear_probe_pyslowfast_native_features(slowfast, tmp_path, method):
    """PySlowFast's own ContrastiveModel, built from the zoo's config (RESNET.WIDTH_PER_GROUP 8: our
    slow_tiny) and saved by its save_checkpoint, initialises our LinearProbe through
    TRAIN.CHECKPOINT_FILE_PATH alone; the features equal those of PySlowFast's native ResNet loaded as its
    linear evaluation does (CHECKPOINT_CLEAR_NAME_PATTERN backbone., or backbone_hist. for the momentum
    encoder)."""
    import slowfast as slowfast_package
    from stica_slowfast.engine.trainer import resume_point
    from stica_slowfast.models import build_model as build_ours

    config = os.path.join(os.path.dirname(os.path.dirname(slowfast_package.__file__)),
                          "configs", "contrastive_ssl", ZOO_CONFIGS[method])
    if not os.path.isfile(config):
        pytest.skip(f"this PySlowFast checkout has no {config}")
    cfg = slowfast["config.defaults"].get_cfg()
    cfg.merge_from_file(config)
    # On CPU, one process; a kNN memory of 1000 videos instead of Kinetics' 240k keeps the file small.
    cfg.merge_from_list(["NUM_GPUS", 0, "BN.NORM_TYPE", "batchnorm", "CONTRASTIVE.BN_SYNC_MLP", False,
                         "CONTRASTIVE.LENGTH", 1000, "RESNET.WIDTH_PER_GROUP", 8, "OUTPUT_DIR", str(tmp_path)])
    assert cfg.MODEL.MODEL_NAME == "ContrastiveModel" and cfg.MODEL.ARCH == "slow"
    zoo = slowfast["models"].build_model(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        _perturb_batch_norms(zoo, gen)
    optimizer = torch.optim.SGD(zoo.parameters(), lr=0.1)
    path = slowfast["utils.checkpoint"].save_checkpoint(str(tmp_path), zoo, optimizer, 199, cfg)
    encoders = ["online", "momentum"] if hasattr(zoo, "backbone_hist") else ["online"]
    assert (len(encoders) == 2) == (method in ("BYOL", "MoCo"))

    native_cfg = pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="ResNet", MODEL__ARCH="slow", MODEL__NUM_CLASSES=5,
                                RESNET__DEPTH=50, RESNET__WIDTH_PER_GROUP=8, DATA__NUM_FRAMES=8,
                                DATA__TRAIN_CROP_SIZE=64,  # head pool (8, 2, 2): global
                                CONTRASTIVE__PREDICTOR_DEPTHS=[])  # a plain classification head
    video = torch.randn(2, 3, 8, 64, 64, generator=gen)
    features = {}
    for encoder in encoders:
        ours_cfg = pyslowfast_cfg(slowfast, MODEL__MODEL_NAME="LinearProbe", MODEL__NUM_CLASSES=5)
        ours_cfg.TRAIN.AUTO_RESUME, ours_cfg.TRAIN.CHECKPOINT_FILE_PATH = False, path
        ours_cfg.TRAIN.CHECKPOINT_EPOCH_RESET = True  # PySlowFast's default is False
        ours_cfg.TRAIN.CHECKPOINT_ENCODER = encoder
        probe = build_ours(ours_cfg)
        assert resume_point(ours_cfg, probe, None, None) == (0, None)
        native = slowfast["models"].build_model(native_cfg)
        prefix = "backbone_hist." if encoder == "momentum" else "backbone."
        slowfast["utils.checkpoint"].load_checkpoint(path, native, data_parallel=False, epoch_reset=True,
                                                     clear_name_pattern=(prefix,))
        native.head.projection, native.head.act = torch.nn.Identity(), torch.nn.Identity()
        with torch.no_grad():
            features[encoder] = probe.eval().forward_features(video)
            assert features[encoder].isfinite().all() and features[encoder].std() > 0
            torch.testing.assert_close(features[encoder], native.eval()([video]), rtol=1e-5, atol=1e-6)
    if len(encoders) == 2:
        assert not torch.allclose(features["online"], features["momentum"])
    else:
        ours_cfg.TRAIN.CHECKPOINT_ENCODER = "momentum"
        with pytest.raises(ValueError, match="has no momentum encoder"):
            resume_point(ours_cfg, build_ours(ours_cfg), None, None)
