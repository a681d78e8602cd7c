"""CUDA paths: mixed precision steps of the SSL models, Feature Crop on the GPU, and a real run_net
training on one GPU whose checkpoint loads on the CPU. Skipped where no GPU is visible (CI)."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from stica_slowfast.config import get_cfg
from stica_slowfast.engine.optim import construct_optimizer
from stica_slowfast.engine.trainer import autocast
from stica_slowfast.layers.feature_crop import FeatureCrop
from stica_slowfast.models import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA = torch.device("cuda")


def _cfg(name: str, amp_dtype: str):
    cfg = get_cfg()
    cfg.NUM_GPUS = 1
    cfg.MODEL.MODEL_NAME = name
    cfg.MODEL.ARCH = "r2plus1d_tiny"
    cfg.CONTRASTIVE.DIM = 16
    cfg.CONTRASTIVE.MLP_DIM = 32
    cfg.TRAIN.MIXED_PRECISION = True
    cfg.STICA.SOLVER.AMP_DTYPE = amp_dtype
    cfg.SOLVER.OPTIMIZING_METHOD, cfg.SOLVER.BASE_LR, cfg.SOLVER.WARMUP_EPOCHS = "sgd", 0.05, 0.0
    cfg.STICA.FEATURE_CROP.ENABLE = True
    cfg.STICA.POOL.TYPE = "transformer"
    cfg.STICA.POOL.MAX_LEN = 4
    if name == "STiCA":
        cfg.STICA.AUDIO.ENABLE = True
        cfg.STICA.AUDIO.ARCH = "resnet9_audio_tiny"
    return cfg


def _batch(name: str):
    g = torch.Generator().manual_seed(0)
    batch = {"video": [torch.randn(4, 3, 4, 48, 48, generator=g) for _ in range(2)]}
    if name == "STiCA":
        batch["audio"] = [torch.randn(4, 1, 64, 96, generator=g) for _ in range(2)]
    return {k: [v.to(CUDA) for v in vs] for k, vs in batch.items()}


@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["STiCA", "RhoBYOL"])
def test_mixed_precision_steps_lower_the_loss_on_a_fixed_batch(name, amp_dtype):
    torch.manual_seed(0)
    cfg = _cfg(name, amp_dtype)
    model = build_model(cfg).to(CUDA).train()
    optimizer = construct_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == "float16")
    batch, losses = _batch(name), []
    for step in range(12):
        with autocast(cfg, CUDA):
            loss = model.forward_train(batch)["loss"]
        assert loss.dtype == torch.float32  # losses are computed in float32 under autocast
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if hasattr(model, "on_step_end"):
            model.on_step_end(step + 1, 12)
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    # float16 skips its first steps while the GradScaler finds its scale; both then descend.
    assert min(losses[-3:]) < 0.8 * losses[0], losses
    assert all(p.device.type == "cuda" for p in model.parameters())


def test_feature_crop_on_cuda_equals_cpu():
    fmap = torch.randn(3, 8, 4, 6, 6)
    for snap in (True, False):
        crop = FeatureCrop(num_large_spatial=2, num_small_spatial=2, num_large_temporal=1,
                           num_small_temporal=1, large_spatial_size=0.6, small_spatial_size=0.3,
                           large_temporal_size=0.5, small_temporal_size=0.25, snap_to_grid=snap)
        torch.manual_seed(1)
        on_cpu = crop(fmap).crops
        torch.manual_seed(1)
        on_gpu = crop(fmap.to(CUDA)).crops
        for key in on_cpu:
            torch.testing.assert_close(on_gpu[key].cpu(), on_cpu[key], rtol=1e-4, atol=1e-5)


def test_run_net_trains_on_one_gpu_with_bf16_and_the_checkpoint_loads_on_cpu(tmp_path):
    from stica_slowfast.config import load_config
    from stica_slowfast.checkpoint import load_checkpoint
    from stica_slowfast.synthetic import generate_dataset

    data = str(tmp_path / "data")
    generate_dataset(data, num_classes=3, train_per_class=8, val_per_class=1, test_per_class=2, width=64,
                     height=48, fps=15, duration=1.6, audio_rate=8000, seed=3)
    out = str(tmp_path / "run")
    opts = {"NUM_GPUS": 1, "OUTPUT_DIR": out, "DATA.PATH_TO_DATA_DIR": data, "MODEL.NUM_CLASSES": 3,
            "MODEL.MODEL_NAME": "RhoBYOL", "DATA.TRAIN_CROP_NUM_TEMPORAL": 2, "TRAIN.BATCH_SIZE": 8,
            "TRAIN.MIXED_PRECISION": True, "SOLVER.MAX_EPOCH": 2, "TRAIN.CHECKPOINT_PERIOD": 1,
            "TEST.ENABLE": False, "DATA.TRAIN_CROP_SIZE": 48, "DATA.TRAIN_JITTER_SCALES": "[48, 56]",
            "DATA_LOADER.NUM_WORKERS": 2}
    args = [str(x) for kv in opts.items() for x in kv]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg",
                           os.path.join(REPO, "configs", "demo", "supervised_tiny.yaml"), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    epochs = [r for r in map(json.loads, open(os.path.join(out, "json_stats.log"))) if r["_type"] == "train_epoch"]
    assert len(epochs) == 2 and all(math.isfinite(r["loss"]) for r in epochs)
    # The GPU run's checkpoint into the same model built on the CPU (strict keys).
    cfg = load_config([os.path.join(REPO, "configs", "demo", "supervised_tiny.yaml")], [*args, "NUM_GPUS", "0"])
    model = build_model(cfg)
    assert load_checkpoint(os.path.join(out, "checkpoints", "checkpoint_epoch_00002.pyth"), model) == 1
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_device_augmentation_on_cuda_equals_the_worker_path_on_cpu():
    """STICA.AUG.DEVICE device on a GPU: a pinned uint8 batch with the paper's draws, augmented by
    prepare_batch on the GPU, equals the per-clip torchvision path in the worker within 2/255."""
    from stica_slowfast.data import prepare_batch
    from stica_slowfast.data.appearance import PARAM_KEY, PARAM_KEYS, ClipAppearance

    aug = ClipAppearance(random_flip=True, color_jitter_prob=0.8, bri_con_sat=(0.6, 0.6, 0.6), hue=0.15,
                         grayscale_prob=0.2, blur_prob=0.5, blur_sigma_min=(0.0, 0.1),
                         blur_sigma_max=(0.0, 2.0), mean=(0.45,) * 3, std=(0.225,) * 3)
    g = torch.Generator().manual_seed(0)
    # Smooth coloured clips with some texture: uint8 (n, T, C, h, w), as a worker crops them.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 40), indexing="ij")
    clips = []
    for _ in range(16):
        phase = torch.rand(3, 1, 1, generator=g) * 6
        frames = [0.5 + 0.4 * torch.sin(3 * xx + 2 * yy + phase + 0.3 * f) for f in range(8)]
        clip = torch.stack(frames) + 0.05 * torch.rand(8, 3, 32, 40, generator=g)
        clips.append((clip.clamp(0, 1) * 255).round().to(torch.uint8))
    torch.manual_seed(4)
    params = [aug.draw() for _ in clips]
    worker = torch.stack([aug.apply(c, p).permute(1, 0, 2, 3) for c, p in zip(clips, params)])
    video = torch.stack(clips).transpose(1, 2).contiguous().pin_memory()  # (n, C, T, h, w)
    batch = {"video": [video], PARAM_KEY: [{k: torch.stack([p[k] for p in params]) for k in PARAM_KEYS}]}
    on_gpu = prepare_batch(batch, CUDA)["video"][0]
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    assert float((on_gpu.cpu() - worker).abs().max()) * 0.225 <= 2 / 255
