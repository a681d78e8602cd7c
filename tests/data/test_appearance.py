"""Appearance augmentation drawn in the worker and applied there (torchvision, per clip) or on the device
(kornia, per batch): the same draws as torchvision's own transforms, the same pixels on both sides."""

import collections
import itertools

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from stica_slowfast.config import get_cfg, merge_from_list
from stica_slowfast.data import construct_loader, prepare_batch
from stica_slowfast.data.appearance import (
    PARAM_KEY,
    PARAM_KEYS,
    ClipAppearance,
    GaussianBlurVideo,
    RandomGrayscaleVideo,
    apply_batch,
    augment_views,
)
from stica_slowfast.data.transforms import RandomShortSideScaleCrop, build_train_transform
from stica_slowfast.synthetic import write_video

# The tolerance the device path must meet, in [0, 1] pixel units.
TOLERANCE = 2 / 255
SSL = dict(color_jitter_prob=0.8, bri_con_sat=(0.6, 0.6, 0.6), hue=0.15, grayscale_prob=0.2, blur_prob=0.5,
           blur_sigma_min=(0.0, 0.1), blur_sigma_max=(0.0, 2.0))
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def appearance(**kwargs) -> ClipAppearance:
    args = dict(random_flip=True, **SSL, mean=(0.45, 0.4, 0.35), std=(0.225, 0.2, 0.25))
    args.update(kwargs)
    return ClipAppearance(**args)


def natural_clips(n, t=4, h=20, w=24) -> torch.Tensor:
    """uint8 (n, T, C, h, w) clips with smooth colour gradients, texture and motion (not uniform noise,
    whose hue is ill-defined almost everywhere)."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    clips = []
    for _ in range(n):
        phase, tint = torch.rand(3, generator=g) * 6, torch.rand(3, generator=g)
        frames = []
        for f in range(t):
            channels = [0.5 + 0.4 * tint[c] * torch.sin(3 * xx + 2 * yy + phase[c] + 0.3 * f) for c in range(3)]
            frames.append(torch.stack(channels))
        clip = torch.stack(frames) + 0.05 * torch.rand(t, 3, h, w, generator=g)
        clips.append((clip.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.stack(clips)


def batched(params):
    return {k: torch.stack([p[k] for p in params]) for k in PARAM_KEYS}


def worker_side(aug: ClipAppearance, clips: torch.Tensor, params) -> torch.Tensor:
    """(n, T, C, h, w) clips through the worker's path -> float (n, C, T, h, w)."""
    return torch.stack([aug.apply(c, p).permute(1, 0, 2, 3) for c, p in zip(clips, params)])


def device_side(clips: torch.Tensor, params) -> torch.Tensor:
    """The same clips as the device gets them, uint8 (n, C, T, h, w), through the batched path."""
    return apply_batch(clips.transpose(1, 2).contiguous(), batched(params))


def pixel_error(aug: ClipAppearance, a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference of two normalised (n, C, T, h, w) batches, in [0, 1] pixel units."""
    return float(((a - b).abs() * aug.std.view(1, -1, 1, 1, 1)).max())


def old_worker_pipeline(aug_kwargs, crop) -> v2.Compose:
    """The per-clip v2 pipeline the worker ran before parameters were drawn apart (the reference
    for the draws): crop, flip, float, RandomApply(jitter), grayscale, RandomApply(blur), normalise."""
    jitter = v2.ColorJitter(*[float(v) for v in aug_kwargs["bri_con_sat"]], hue=aug_kwargs["hue"])
    blur = GaussianBlurVideo(sigma_min=aug_kwargs["blur_sigma_min"], sigma_max=aug_kwargs["blur_sigma_max"])
    steps = [crop, v2.RandomHorizontalFlip(p=0.5), v2.ToDtype(torch.float32, scale=True)]
    p = aug_kwargs["color_jitter_prob"]
    steps.append(jitter if p >= 1 else v2.RandomApply([jitter], p=p))
    steps.append(RandomGrayscaleVideo(p=aug_kwargs["grayscale_prob"]))
    p = aug_kwargs["blur_prob"]
    steps.append(blur if p >= 1 else v2.RandomApply([blur], p=p))
    steps.append(v2.Normalize(mean=[0.45] * 3, std=[0.225] * 3))
    return v2.Compose(steps)


@pytest.mark.parametrize("probs", [dict(), dict(color_jitter_prob=1.0, grayscale_prob=1.0, blur_prob=1.0)],
                         ids=["paper", "always"])
def test_worker_path_draws_and_applies_as_torchvision_did(probs):
    # Same seed, same clips: the old v2 pipeline and the new draw + apply give identical tensors, so the
    # draws are torchvision's own, in the same order, from the same distributions.
    kwargs = {**SSL, **probs}
    crop = dict(min_size=24, max_size=30, crop_size=16)
    new = build_train_transform(crop_size=16, jitter_scales=(24, 30), **kwargs)
    old = old_worker_pipeline(kwargs, RandomShortSideScaleCrop(**crop))
    clips = natural_clips(12, h=24, w=32).permute(0, 1, 3, 4, 2)  # (n, T, H, W, C), as decoded
    torch.manual_seed(5)
    got = [new(c) for c in clips]
    torch.manual_seed(5)
    want = [old(tv_tensors.Video(c.permute(0, 3, 1, 2))).as_subclass(torch.Tensor).permute(1, 0, 2, 3)
            for c in clips]
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert len({round(float(g.mean()), 4) for g in got}) == len(got)  # the clips really differ


def test_draws_follow_their_distributions():
    aug = appearance()
    n = 4000
    draws = batched([aug.draw() for _ in range(n)])
    # Bernoulli steps: within 4 standard errors of their probabilities.
    for key, p in (("flip", 0.5), ("jitter", 0.8), ("gray", 0.2), ("blur", 0.5)):
        rate = draws[key].float().mean().item()
        assert abs(rate - p) < 4 * (p * (1 - p) / n) ** 0.5, key
    jit, blur = draws["jitter"], draws["blur"]
    # Jitter factors uniform on [0.4, 1.6] (brightness, contrast, saturation) and [-0.15, 0.15] (hue).
    for i, (lo, hi) in enumerate([(0.4, 1.6)] * 3 + [(-0.15, 0.15)]):
        f = draws["factors"][jit, i]
        assert lo <= f.min() and f.max() <= hi
        quartiles = torch.quantile(f, torch.tensor([0.25, 0.5, 0.75]))
        assert torch.allclose(quartiles, lo + (hi - lo) * torch.tensor([0.25, 0.5, 0.75]), atol=0.04 * (hi - lo))
    # Orders: every permutation of the four adjustments, about equally often.
    counts = collections.Counter(tuple(o) for o in draws["order"][jit].tolist())
    assert set(counts) == set(itertools.permutations(range(4)))
    assert max(counts.values()) < 2 * min(counts.values())
    # Undrawn steps keep identity values; blur sigma uniform on [0.1, 2] pixels, none in time.
    assert torch.equal(draws["factors"][~jit], torch.tensor([[1.0, 1.0, 1.0, 0.0]]).expand(int((~jit).sum()), 4))
    sigma = draws["sigma"][blur, 1]
    assert 0.1 <= sigma.min() and sigma.max() <= 2.0 and abs(float(sigma.median()) - 1.05) < 0.08
    assert torch.all(draws["sigma"][:, 0] == 0) and torch.all(draws["sigma"][~blur] == 0)


def params_with(aug, n, **values):
    """n identity parameter sets with ``values`` (key -> per-clip list) written in."""
    params = [aug.identity() for _ in range(n)]
    for key, per_clip in values.items():
        for p, v in zip(params, per_clip):
            p[key] = torch.as_tensor(v, dtype=p[key].dtype)
    return params


OPS = {
    "flip": lambda n, g: dict(flip=[i % 2 == 0 for i in range(n)]),
    "brightness": lambda n, g: dict(jitter=[True] * n, factors=[[0.4 + 1.2 * float(torch.rand(1, generator=g)),
                                                              1, 1, 0] for _ in range(n)]),
    "contrast": lambda n, g: dict(jitter=[True] * n, factors=[[1, 0.4 + 1.2 * float(torch.rand(1, generator=g)),
                                                            1, 0] for _ in range(n)]),
    "saturation": lambda n, g: dict(jitter=[True] * n, factors=[[1, 1, 0.4 + 1.2 * float(torch.rand(1, generator=g)),
                                                              0] for _ in range(n)]),
    "hue": lambda n, g: dict(jitter=[True] * n, factors=[[1, 1, 1, 0.3 * float(torch.rand(1, generator=g)) - 0.15]
                                                         for _ in range(n)]),
    "grayscale": lambda n, g: dict(gray=[i % 3 != 0 for i in range(n)]),
    "spatial blur": lambda n, g: dict(blur=[i % 4 != 0 for i in range(n)],
                                      sigma=[[0.0, 0.1 + 1.9 * float(torch.rand(1, generator=g))] for _ in range(n)]),
    "temporal blur": lambda n, g: dict(blur=[True] * n, sigma=[[0.3 + 0.9 * i / n, 0.0] for i in range(n)]),
}


@pytest.mark.parametrize("op", list(OPS))
def test_each_op_on_the_device_equals_the_worker(op):
    aug = appearance()
    clips = natural_clips(8, t=6)
    params = params_with(aug, 8, **OPS[op](8, torch.Generator().manual_seed(2)))
    worker, device = worker_side(aug, clips, params), device_side(clips, params)
    assert pixel_error(aug, worker, device) <= TOLERANCE
    plain = worker_side(aug, clips, params_with(aug, 8))
    assert pixel_error(aug, worker, plain) > 4 / 255  # the op did change the pixels


def test_normalisation_and_orders_on_the_device_equal_the_worker():
    aug = appearance(color_jitter_prob=1.0)
    clips = natural_clips(24)
    torch.manual_seed(3)
    params = [aug.draw() for _ in range(24)]
    assert len({tuple(p["order"].tolist()) for p in params}) > 6  # many orders in one batch
    worker, device = worker_side(aug, clips, params), device_side(clips, params)
    assert pixel_error(aug, worker, device) <= TOLERANCE
    assert device.shape == (24, 3, 4, 20, 24) and device.dtype == torch.float32 and device.is_contiguous()
    # Identity parameters only normalise.
    ident = device_side(clips, params_with(aug, 24))
    want = (clips.float() / 255 - aug.mean.view(1, 1, 3, 1, 1)) / aug.std.view(1, 1, 3, 1, 1)
    assert torch.allclose(ident, want.transpose(1, 2), atol=1e-5)


def test_a_batch_of_paper_draws_on_the_device_equals_the_worker():
    aug = appearance(mean=(0.45,) * 3, std=(0.225,) * 3)
    clips = natural_clips(32, t=8)
    torch.manual_seed(4)
    params = [aug.draw() for _ in range(32)]
    worker, device = worker_side(aug, clips, params), device_side(clips, params)
    assert pixel_error(aug, worker, device) <= TOLERANCE


def test_views_of_different_sizes_and_prepare_batch():
    aug = appearance()
    small, large = natural_clips(2, h=12, w=12), natural_clips(2, h=16, w=16)
    torch.manual_seed(0)
    p_small, p_large = [aug.draw() for _ in range(2)], [aug.draw() for _ in range(2)]
    views = [c.transpose(1, 2).contiguous() for c in (small, large)]
    out = augment_views(views, [batched(p_small), batched(p_large)])
    assert [tuple(o.shape) for o in out] == [(2, 3, 4, 12, 12), (2, 3, 4, 16, 16)]
    assert pixel_error(aug, out[1], worker_side(aug, large, p_large)) <= TOLERANCE
    batch = {"video": views, PARAM_KEY: [batched(p_small), batched(p_large)], "label": torch.tensor([0, 1])}
    ready = prepare_batch(batch, torch.device("cpu"))
    assert PARAM_KEY not in ready and all(torch.equal(a, b) for a, b in zip(ready["video"], out))
    assert torch.equal(ready["label"], batch["label"])
    float_batch = {"video": [torch.rand(2, 3, 4, 8, 8)], "label": torch.tensor([0, 1])}
    assert torch.equal(prepare_batch(float_batch, torch.device("cpu"))["video"][0], float_batch["video"][0])
    assert set(prepare_batch(batch, torch.device("cpu"), keys=["label"])) == {"label"}


# ---------------------------------------------------------------------------------------------------- #
# Datasets and loaders: STICA.AUG.DEVICE
# ---------------------------------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("appearance")
    clips = natural_clips(1, t=30, h=40, w=56)[0].permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
    write_video(str(d / "v.mp4"), np.ascontiguousarray(clips), fps=25)
    for split in ("train", "val", "test"):
        (d / f"{split}.csv").write_text("".join(f"v.mp4 {i % 2}\n" for i in range(4)))
    return d


def make_cfg(data_dir, where, **overrides):
    cfg = get_cfg()
    merge_from_list(cfg, [
        "DATA.PATH_TO_DATA_DIR", str(data_dir), "DATA.NUM_FRAMES", 4, "DATA.SAMPLING_RATE", 2,
        "DATA.TRAIN_JITTER_SCALES", [32, 40], "DATA.TRAIN_CROP_SIZE", 24, "DATA.TEST_CROP_SIZE", 32,
        "DATA.TRAIN_CROP_NUM_TEMPORAL", 2, "DATA.SSL_COLOR_JITTER", True, "DATA.COLOR_RND_GRAYSCALE", 0.3,
        "MODEL.NUM_CLASSES", 2, "TRAIN.BATCH_SIZE", 4, "TEST.BATCH_SIZE", 4, "TEST.NUM_SPATIAL_CROPS", 3,
        "DATA_LOADER.NUM_WORKERS", 0, "STICA.AUG.DEVICE", where,
        *[x for item in overrides.items() for x in item]])
    return cfg


@pytest.mark.parametrize("split", ["train", "test"])
def test_device_mode_batches_equal_worker_mode_batches(data_dir, split):
    got = {}
    for where in ("worker", "device"):
        loader = construct_loader(make_cfg(data_dir, where), split)
        got[where] = [prepare_batch(b, torch.device("cpu")) for b in loader]
    raw = list(construct_loader(make_cfg(data_dir, "device"), split))[0]
    assert all(v.dtype == torch.uint8 for v in raw["video"]) and len(raw[PARAM_KEY]) == len(raw["video"])
    for a, b in zip(got["worker"], got["device"]):
        assert a.keys() == b.keys() and torch.equal(a["index"], b["index"])
        for x, y in zip(a["video"], b["video"]):
            assert x.shape == y.shape and float((x - y).abs().max()) * 0.225 <= TOLERANCE


def test_auto_means_device_on_gpus_only(data_dir):
    from stica_slowfast.data import augments_on_device

    cfg = make_cfg(data_dir, "auto")
    assert not augments_on_device(cfg)
    cfg.NUM_GPUS = 1
    assert augments_on_device(cfg)
    cfg.STICA.AUG.DEVICE = "worker"
    assert not augments_on_device(cfg)


def test_cpu_groups_give_the_batch_result(monkeypatch):
    from stica_slowfast.data import appearance as module

    aug = appearance()
    clips = natural_clips(10)
    torch.manual_seed(6)
    params = [aug.draw() for _ in range(10)]
    whole = device_side(clips, params)
    monkeypatch.setattr(module, "CPU_GROUP_BYTES", 3 * 4 * clips[0].numel())  # groups of 3 clips
    grouped = device_side(clips, params)
    torch.testing.assert_close(grouped, whole, rtol=0, atol=1e-6)
