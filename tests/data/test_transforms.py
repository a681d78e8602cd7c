"""Video transforms: shapes, normalisation, one draw per clip, crop positions, cfg helper."""

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from stica_slowfast.config import get_cfg
from stica_slowfast.data.transforms import (
    RandomShortSideScaleCrop,
    ShortSideSpatialCrop,
    build_test_transform,
    build_train_transform,
    build_transforms_from_cfg,
)

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def column_clip(t=4, h=48, w=64) -> torch.Tensor:
    """uint8 (T, H, W, 3) whose pixel value is 3 * column + channel (the same in every frame)."""
    cols = 3 * torch.arange(w).view(1, 1, w, 1) + torch.arange(3).view(1, 1, 1, 3)
    return cols.expand(t, h, w, 3).to(torch.uint8).clone()


def row_clip(t=4, h=64, w=48) -> torch.Tensor:
    """uint8 (T, H, W, 3) whose pixel value is 3 * row (a tall frame)."""
    return (3 * torch.arange(h)).view(1, h, 1, 1).expand(t, h, w, 3).to(torch.uint8).clone()


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """(C, T, H, W) normalised float -> uint8-scale values."""
    mean, std = torch.tensor(MEAN).view(3, 1, 1, 1), torch.tensor(STD).view(3, 1, 1, 1)
    return (x * std + mean) * 255


def test_train_output_and_normalisation():
    torch.manual_seed(0)
    clip = torch.full((5, 40, 60, 3), 102, dtype=torch.uint8)
    out = build_train_transform(crop_size=32, jitter_scales=(40, 50), mean=MEAN, std=STD)(clip)
    assert out.shape == (3, 5, 32, 32) and out.dtype == torch.float32
    assert type(out) is torch.Tensor  # not a tv_tensors subclass leaking out
    expected = (102 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), expected, atol=1e-5)
    assert torch.allclose(out.std(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)


def test_one_draw_per_clip_applied_to_all_frames():
    torch.manual_seed(0)
    clip = column_clip()
    transform = build_train_transform(crop_size=24, jitter_scales=(30, 60), mean=MEAN, std=STD)
    outs = [transform(clip) for _ in range(6)]
    for out in outs:
        # Identical input frames -> identical output frames: one crop/flip for the whole clip.
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(1, out.shape[1]))
    # Each call (each clip) draws its own parameters.
    assert len({tuple(o[0, 0, 0, :3].tolist()) for o in outs}) > 1


def test_flip_happens_only_when_enabled():
    torch.manual_seed(0)
    clip = column_clip()

    def increasing(out):  # left-to-right order of the column pattern after the crop
        row = out[0, 0, 0]
        return bool(row[-1] > row[0])

    flipping = build_train_transform(crop_size=24, jitter_scales=(48, 48), mean=MEAN, std=STD)
    seen = {increasing(flipping(clip)) for _ in range(30)}
    assert seen == {True, False}
    fixed = build_train_transform(crop_size=24, jitter_scales=(48, 48), random_flip=False,
                                  mean=MEAN, std=STD)
    assert all(increasing(fixed(clip)) for _ in range(30))


def test_scale_jitter_without_resize_is_an_exact_window():
    # Short side 48 kept (jitter [48, 48]) and crop 48: a 48x48 window of the 48x64 frame.
    torch.manual_seed(0)
    clip = column_clip()
    transform = build_train_transform(crop_size=48, jitter_scales=(48, 48), random_flip=False,
                                      mean=MEAN, std=STD)
    lefts = set()
    for _ in range(20):
        out = denormalise(transform(clip)).round().to(torch.uint8)
        left = int(out[0, 0, 0, 0]) // 3
        window = clip[:, :, left:left + 48].permute(3, 0, 1, 2)  # (T, H, w, C) -> (C, T, H, w)
        assert torch.equal(out, window)
        lefts.add(left)
    assert min(lefts) >= 0 and max(lefts) <= 16 and len(lefts) > 1


def test_fused_scale_crop_matches_resize_then_crop():
    # A linear ramp survives bilinear resizing, so crop-then-resize and resize-then-crop agree.
    torch.manual_seed(3)
    clip = column_clip(t=2, h=60, w=80).permute(0, 3, 1, 2).float()  # (T, C, H, W)
    op = RandomShortSideScaleCrop(min_size=30, max_size=45, crop_size=24)
    for _ in range(10):
        p = op.make_params([clip])
        fused = F.resized_crop(clip, **p, size=[24, 24], antialias=False)
        scale = 24 / p["height"]
        full = F.resize(clip, [round(60 * scale), round(80 * scale)], antialias=False)
        ref = F.crop(full, round(p["top"] * scale), round(p["left"] * scale), 24, 24)
        assert (fused - ref).abs().mean() < 3 * 1.5  # within ~1.5 source columns


def test_random_resized_crop_path():
    torch.manual_seed(0)
    clip = column_clip(h=40, w=60)
    # Whole-frame area at the frame's own aspect ratio: the crop is the full frame resized.
    transform = build_train_transform(crop_size=32, scales_relative=(1.0, 1.0),
                                      aspect_relative=(1.5, 1.5), random_flip=False,
                                      mean=MEAN, std=STD)
    assert isinstance(transform.geometry, v2.RandomResizedCrop)
    out = denormalise(transform(clip))
    ref = F.resize(clip.permute(0, 3, 1, 2), [32, 32], antialias=True).permute(1, 0, 2, 3)
    assert out.shape == (3, 4, 32, 32)
    assert (out - ref.float()).abs().max() < 1.0


@pytest.mark.parametrize("num_crops,lefts", [(1, [8]), (3, [0, 8, 16])])
def test_test_crops_along_long_side(num_crops, lefts):
    clip = column_clip()  # 48 x 64: the long side is the width
    for idx, left in enumerate(lefts):
        t = build_test_transform(crop_size=48, spatial_idx=idx, num_crops=num_crops,
                                 mean=MEAN, std=STD)
        out = denormalise(t(clip)).round().to(torch.uint8)
        assert torch.equal(out, clip[:, :, left:left + 48].permute(3, 0, 1, 2))


def test_test_crops_on_tall_frames_and_resize():
    clip = row_clip()  # 64 x 48: crops move down the rows
    tops = []
    for idx in range(3):
        t = build_test_transform(crop_size=24, spatial_idx=idx, num_crops=3, mean=MEAN, std=STD)
        out = denormalise(t(clip))
        assert out.shape == (3, 4, 24, 24)
        # Short side 48 -> 24: each output row averages two input rows (3 * row levels).
        tops.append(round(float(out[0, 0, 0, 0]) / 3 - 0.5))
    assert tops == [0, 8, 16]
    with pytest.raises(ValueError):
        ShortSideSpatialCrop(crop_size=24, spatial_idx=3, num_crops=3)


def test_transforms_from_cfg():
    cfg = get_cfg()
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 32, 40
    cfg.DATA.TRAIN_JITTER_SCALES = [40, 48]
    cfg.TEST.NUM_SPATIAL_CROPS = 3
    clip = column_clip()
    (train,) = build_transforms_from_cfg(cfg, "train")
    assert isinstance(train.geometry, RandomShortSideScaleCrop)
    assert train(clip).shape == (3, 4, 32, 32)
    (val,) = build_transforms_from_cfg(cfg, "val")
    assert val.geometry.num_crops == 1
    tests = build_transforms_from_cfg(cfg, "test")
    assert [t.geometry.spatial_idx for t in tests] == [0, 1, 2]
    assert all(t(clip).shape == (3, 4, 40, 40) for t in tests)
    cfg.DATA.TRAIN_JITTER_SCALES_RELATIVE = [0.08, 1.0]
    cfg.DATA.TRAIN_JITTER_ASPECT_RELATIVE = [0.75, 1.3333]
    (train,) = build_transforms_from_cfg(cfg, "train")
    assert isinstance(train.geometry, v2.RandomResizedCrop)
    cfg.DATA.RANDOM_FLIP = False
    (train,) = build_transforms_from_cfg(cfg, "train")
    assert not train.appearance.random_flip
    with pytest.raises(ValueError):
        build_transforms_from_cfg(cfg, "eval")
