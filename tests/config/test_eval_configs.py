"""The paper configs (configs/ssl, configs/eval; arXiv 2104.14558): they load, their models build (on the
meta device, full size), the leaves differ from each other only where they should, and an evaluation
model initialises from an SSL checkpoint through the engine's own path."""

import glob
import os

import pytest
import torch
from fvcore.common.config import CfgNode

from stica_slowfast.config import load_config
from stica_slowfast.checkpoint import save_checkpoint
from stica_slowfast.engine.optim import get_lr_at_epoch
from stica_slowfast.engine.trainer import resume_or_initialise
from stica_slowfast.models import build_model

from recorded_layouts import ZOO, recorded_state  # tests/recorded_layouts.py

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METHODS = {"simclr": "RhoSimCLR", "moco": "RhoMoCo", "byol": "RhoBYOL", "swav": "RhoSwAV"}
PAPER_CONFIGS = sorted(
    os.path.relpath(p, REPO)
    for d in ("ssl", "eval")
    for p in glob.glob(os.path.join(REPO, "configs", d, "*.yaml"))
)
# Small enough to build and run on the CPU in well under a second.
TINY = ["NUM_GPUS", "0", "MODEL.ARCH", "slow_tiny", "BN.NORM_TYPE", "batchnorm"]


def _load(rel: str, *opts: str) -> CfgNode:
    return load_config([os.path.join(REPO, rel)], list(opts))


def _flat(cfg: CfgNode, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, CfgNode):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = tuple(value) if isinstance(value, list) else value
    return out


def _differing_keys(a: CfgNode, b: CfgNode) -> set:
    fa, fb = _flat(a), _flat(b)
    return {k for k in fa if fa[k] != fb[k]}


def test_the_expected_configs_exist():
    expected = {f"configs/ssl/{m}_slow_r50_8x8_rho{r}.yaml" for m in METHODS for r in (2, 4)}
    expected |= {f"configs/eval/finetune_{d}_split{s}.yaml" for d in ("ucf101", "hmdb51") for s in (1, 2, 3)}
    expected |= {"configs/eval/linear_k400_slow_r50_8x8.yaml", "configs/ssl/slow_r50_8x8_base.yaml"}
    assert expected <= set(PAPER_CONFIGS)


@pytest.mark.parametrize("rel", PAPER_CONFIGS)
def test_config_loads_and_its_model_builds_full_size(rel):
    cfg = _load(rel)
    assert cfg.NUM_GPUS == 8 and cfg.MODEL.ARCH == "slow_r50"
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.MODEL_NAME
    assert model.backbone.out_dim == 2048
    # Slow-R50 has ~31.6M backbone parameters (PySlowFast SLOW_8x8_R50: 32.5M with its 400-way head).
    assert 31e6 < sum(p.numel() for p in model.backbone.parameters()) < 32e6
    with open(os.path.join(REPO, rel)) as f:
        text = f.read()
    assert text.startswith("# ") and "tools/run_net.py --cfg configs/" in text  # header with the command


@pytest.mark.parametrize("method", sorted(METHODS))
def test_ssl_leaves(method):
    rho2 = _load(f"configs/ssl/{method}_slow_r50_8x8_rho2.yaml")
    rho4 = _load(f"configs/ssl/{method}_slow_r50_8x8_rho4.yaml")
    for cfg, rho in ((rho2, 2), (rho4, 4)):
        assert cfg.MODEL.MODEL_NAME == METHODS[method]
        assert cfg.DATA.TRAIN_CROP_NUM_TEMPORAL == rho and cfg.DATA.TRAIN_CROP_NUM_SPATIAL == 1
        assert cfg.OUTPUT_DIR.endswith(f"{method}_slow_r50_8x8_rho{rho}")
        assert (cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.LR_POLICY, cfg.SOLVER.WARMUP_EPOCHS) == (200, "cosine", 35.0)
        assert cfg.TRAIN.BATCH_SIZE == 64 and cfg.STICA.SOLVER.REFERENCE_BATCH_SIZE == 64
        assert cfg.SOLVER.OPTIMIZING_METHOD == ("sgd" if method == "moco" else "lars")
        assert not cfg.TEST.ENABLE
        assert cfg.STICA.KNN.ENABLE and 0 < cfg.STICA.KNN.NUM_TRAIN < 240_000
        assert cfg.DATA.SSL_COLOR_JITTER and cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE == [0.2, 0.766]
    # rho 4 changes the clip count, the output and, where upstream does (SimCLR, BYOL), the LR.
    changed = {"DATA.TRAIN_CROP_NUM_TEMPORAL", "OUTPUT_DIR"}
    if method in ("simclr", "byol"):
        changed.add("SOLVER.BASE_LR")
        assert (rho2.SOLVER.BASE_LR, rho4.SOLVER.BASE_LR) == (0.6, 1.2)
    assert _differing_keys(rho2, rho4) == changed


def test_swav_and_byol_method_settings():
    swav = _load("configs/ssl/swav_slow_r50_8x8_rho2.yaml")
    s = swav.STICA.SWAV
    assert (s.NUM_PROTOTYPES, s.EPSILON, s.SINKHORN_ITERS, swav.CONTRASTIVE.T) == (1000, 0.05, 3, 0.1)
    assert s.FREEZE_PROTOTYPES_ITERS > 0 and swav.CONTRASTIVE.SWAV_QEUE_LEN > 0
    byol = _load("configs/ssl/byol_slow_r50_8x8_rho2.yaml")
    c = byol.CONTRASTIVE
    assert (c.DIM, c.MLP_DIM, c.NUM_MLP_LAYERS, c.PREDICTOR_DEPTHS, c.MOMENTUM) == (256, 4096, 2, [2], 0.996)


@pytest.mark.parametrize("dataset, num_classes", [("ucf101", 101), ("hmdb51", 51)])
def test_finetune_split_leaves_differ_only_in_split_and_output(dataset, num_classes):
    cfgs = [_load(f"configs/eval/finetune_{dataset}_split{s}.yaml") for s in (1, 2, 3)]
    for split, cfg in enumerate(cfgs, start=1):
        assert cfg.STICA.DATA.SPLIT == split and cfg.OUTPUT_DIR.endswith(f"{dataset}_split{split}")
        assert cfg.TRAIN.DATASET == cfg.TEST.DATASET == dataset and cfg.MODEL.NUM_CLASSES == num_classes
        assert _differing_keys(cfgs[0], cfg) == (set() if split == 1 else {"STICA.DATA.SPLIT", "OUTPUT_DIR"})
    cfg = cfgs[0]
    assert cfg.MODEL.MODEL_NAME == "VideoClassifier" and cfg.MODEL.DROPOUT_RATE == 0.8
    assert (cfg.SOLVER.MAX_EPOCH, cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS) == (200, 10, 3)
    assert cfg.TRAIN.CHECKPOINT_FILE_PATH == ""
    # 0.025, divided by 10 at epochs 60, 120 and 180 (schedule as the engine computes it).
    lrs = [get_lr_at_epoch(cfg, epoch, cfg.TRAIN.BATCH_SIZE) for epoch in (0, 59.9, 60, 120, 180, 199.9)]
    assert lrs == pytest.approx([0.025, 0.025, 0.0025, 0.00025, 0.000025, 0.000025])


def test_linear_probe_configs():
    k400 = _load("configs/eval/linear_k400_slow_r50_8x8.yaml")
    assert k400.MODEL.MODEL_NAME == "LinearProbe" and k400.TRAIN.CHECKPOINT_FILE_PATH == ""
    assert (k400.SOLVER.MAX_EPOCH, k400.SOLVER.LR_POLICY) == (60, "cosine")
    assert k400.TEST.NUM_ENSEMBLE_VIEWS * k400.TEST.NUM_SPATIAL_CROPS == 30
    assert get_lr_at_epoch(k400, 60, 64) == pytest.approx(0.0, abs=1e-12)
    ucf = _load("configs/eval/linear_ucf101_slow_r50_8x8.yaml")
    assert _differing_keys(k400, ucf) == {"TRAIN.DATASET", "TEST.DATASET", "MODEL.NUM_CLASSES", "OUTPUT_DIR"}


@pytest.mark.parametrize("rel", ["configs/eval/finetune_ucf101_split2.yaml", "configs/eval/linear_k400_slow_r50_8x8.yaml"])
def test_eval_model_initialises_from_an_ssl_checkpoint(tmp_path, rel):
    ssl_cfg = _load("configs/ssl/byol_slow_r50_8x8_rho2.yaml", *TINY, "CONTRASTIVE.MLP_DIM", "32",
                    "OUTPUT_DIR", str(tmp_path / "ssl"))
    ssl_model = build_model(ssl_cfg)
    path = save_checkpoint(ssl_cfg.OUTPUT_DIR, 199, ssl_model, None, ssl_cfg)
    cfg = _load(rel, *TINY, "OUTPUT_DIR", str(tmp_path / "eval"), "TRAIN.CHECKPOINT_FILE_PATH", path)
    model = build_model(cfg)
    # The trainer's own start-up path: no checkpoint of this run yet, so TRAIN.CHECKPOINT_FILE_PATH.
    assert resume_or_initialise(cfg, model, None, None) == 0  # CHECKPOINT_EPOCH_RESET
    expected = ssl_model.backbone.state_dict()
    loaded = model.backbone.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


@pytest.mark.parametrize("rel", ["configs/eval/linear_k400_slow_r50_8x8.yaml", "configs/eval/finetune_ucf101_split1.yaml"])
def test_eval_configs_take_a_published_zoo_checkpoint_as_it_is(tmp_path, rel):
    # A rho-SSL zoo BYOL file (ContrastiveModel layout, full Slow-R50 shapes), no conversion step.
    zoo = recorded_state(ZOO)
    path = str(tmp_path / "BYOL_SlowR50_8x8_T4_epoch_00200.pyth")
    torch.save({"epoch": 199, "model_state": zoo}, path)
    cfg = _load(rel, "NUM_GPUS", "0", "BN.NORM_TYPE", "batchnorm", "OUTPUT_DIR", str(tmp_path / "eval"),
                "TRAIN.CHECKPOINT_FILE_PATH", path)
    model = build_model(cfg)
    assert resume_or_initialise(cfg, model, None, None) == 0
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded["blocks.0.conv.weight"], zoo["backbone.s1.pathway0_stem.conv.weight"])
    assert torch.equal(loaded["blocks.4.res_blocks.2.branch2.norm_c.running_var"],
                       zoo["backbone.s5.pathway0_res2.branch2.c_bn.running_var"])


def test_pyslowfast_recipe_leaves_differ_from_ours_only_where_its_released_configs_do():
    # PySlowFast 287ec00 configs/contrastive_ssl/{linear_k400_Slow_8x8_R50,finetune_ucf_Slow_R50}_syn8.yaml
    linear, theirs = _load("configs/eval/linear_k400_slow_r50_8x8.yaml"), \
        _load("configs/eval/linear_k400_slow_r50_8x8_pyslowfast.yaml")
    assert _differing_keys(linear, theirs) == {"OUTPUT_DIR", "BN.NORM_TYPE", "STICA.PROBE.FEATURE_NORM",
                                              "STICA.PROBE.BN_STATS"}
    assert (theirs.BN.NORM_TYPE, theirs.STICA.PROBE.BN_STATS, theirs.STICA.PROBE.FEATURE_NORM) == \
        ("sync_batchnorm", "adapt", False)
    assert (theirs.SOLVER.BASE_LR, theirs.SOLVER.MAX_EPOCH, theirs.SOLVER.WARMUP_EPOCHS, theirs.MODEL.DROPOUT_RATE) == \
        (0.5, 60, 8.0, 0.0)
    finetune, theirs = _load("configs/eval/finetune_ucf101_split1.yaml"), \
        _load("configs/eval/finetune_ucf101_split1_pyslowfast.yaml")
    assert _differing_keys(finetune, theirs) == {"OUTPUT_DIR", "SOLVER.BASE_LR", "SOLVER.LR_POLICY"}
    assert (theirs.MODEL.DROPOUT_RATE, theirs.SOLVER.WEIGHT_DECAY, theirs.SOLVER.MAX_EPOCH) == (0.8, 0.0, 200)
    lrs = [get_lr_at_epoch(theirs, epoch, theirs.TRAIN.BATCH_SIZE) for epoch in (0, 100, 200)]
    assert lrs == pytest.approx([0.01, 0.005, 0.0])


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51"])
def test_stica_finetune_follows_the_authors_script(dataset):
    cfg = _load(f"configs/stica/finetune_{dataset}_split1.yaml")
    with torch.device("meta"):
        model = build_model(cfg)
    # The pretrained encoder and pooling at a tenth of the head's LR; no dropout; 32 frames at 128².
    assert model.lr_scales == {"backbone": 0.1, "video_pool": 0.1} and cfg.MODEL.DROPOUT_RATE == 0.0
    assert (cfg.TRAIN.BATCH_SIZE, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE) == (32, 32, 128)
    assert cfg.SOLVER.WEIGHT_DECAY == cfg.BN.WEIGHT_DECAY == 0.005
    # Head LR 0.0025 -> 0.02 over 2 epochs, x0.05 after epochs 7 and 11 of 12.
    lrs = [get_lr_at_epoch(cfg, epoch, cfg.TRAIN.BATCH_SIZE) for epoch in (0, 2, 6.99, 7, 10.99, 11, 11.99)]
    assert lrs == pytest.approx([0.0025, 0.02, 0.02, 0.001, 0.001, 0.00005, 0.00005])
