"""Per-clip SSL appearance augmentation (rho-clip SSL, arXiv 2104.14558): colour jitter, grayscale,
Gaussian blur -- one draw per clip, shared by its frames, wired from cfg for the train split only."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from stica_slowfast.config import get_cfg, merge_from_list
from stica_slowfast.data.datasets import Kinetics
from stica_slowfast.data.appearance import GaussianBlurVideo, RandomGrayscaleVideo
from stica_slowfast.data.transforms import RandomShortSideScaleCrop, ShortSideSpatialCrop, build_train_transform, build_transforms_from_cfg
from stica_slowfast.synthetic import write_video

# Identity normalisation: outputs are the [0, 1] pixels just before normalisation.
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
# Crop that keeps a 24 x 32 frame's 24 x 24 window unresized and never flips.
EXACT = dict(crop_size=24, jitter_scales=(24, 24), random_flip=False)
COLOUR = (200, 120, 40)


def constant_clip(t=4, h=24, w=32, colour=COLOUR) -> torch.Tensor:
    """uint8 (T, H, W, 3) of one colour."""
    return torch.tensor(colour, dtype=torch.uint8).expand(t, h, w, 3).clone()


def checker_clip(t=4, h=24, w=32) -> torch.Tensor:
    """uint8 (T, H, W, 3) 1-pixel checkerboard of 40 / 215, the same in every frame."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = torch.where((yy + xx) % 2 == 0, 40, 215).to(torch.uint8)
    return frame.view(1, h, w, 1).expand(t, h, w, 3).clone()


def spatial_hf_energy(x: torch.Tensor) -> float:
    """Mean squared difference of horizontal and vertical neighbours of a (C, T, H, W) clip."""
    return float((x.diff(dim=-1) ** 2).mean() + (x.diff(dim=-2) ** 2).mean())


def test_colour_jitter_changes_colour_per_clip_and_not_per_frame():
    transform = build_train_transform(**EXACT, color_jitter_prob=1.0, **RAW)
    clip = constant_clip()
    original = torch.tensor(COLOUR, dtype=torch.float32) / 255
    outs = [transform(clip) for _ in range(2)]
    colours = []
    for out in outs:
        # Constant video in -> constant video out: one parameter set for all frames (and pixels).
        assert torch.allclose(out.diff(dim=1), torch.zeros(()), atol=1e-6)
        assert torch.allclose(out - out[:, :1, :1, :1], torch.zeros(()), atol=1e-6)
        colour = out[:, 0, 0, 0]
        assert (colour - original).abs().max() > 0.01  # the colour changed
        colours.append(colour)
    assert (colours[0] - colours[1]).abs().max() > 0.01  # each clip has its own draw


def test_all_steps_share_parameters_across_frames():
    transform = build_train_transform(
        crop_size=16, jitter_scales=(20, 30), color_jitter_prob=1.0, grayscale_prob=0.5,
        blur_prob=1.0, blur_sigma_min=(0.5, 0.5), blur_sigma_max=(1.5, 1.5), **RAW)
    for clip in (constant_clip(t=5), checker_clip(t=5)):
        for _ in range(5):
            out = transform(clip)
            # Identical input frames -> identical output frames (frame differences stay 0).
            assert torch.allclose(out.diff(dim=1), torch.zeros(()), atol=1e-6)


def test_grayscale_gives_equal_channels():
    transform = build_train_transform(**EXACT, grayscale_prob=1.0, **RAW)
    out = transform(constant_clip())
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert not torch.allclose(out[0], torch.full_like(out[0], COLOUR[0] / 255))  # really converted
    # torchvision's own v2.RandomGrayscale passes a Video through unchanged; ours converts it.
    video = tv_tensors.Video(torch.rand(2, 3, 5, 5))
    expected = F.rgb_to_grayscale(video.as_subclass(torch.Tensor), num_output_channels=3)
    converted = RandomGrayscaleVideo(p=1.0)(video)
    assert isinstance(converted, tv_tensors.Video) and torch.allclose(converted, expected)
    # With p 0.5 some clips stay in colour and some do not.
    half = build_train_transform(**EXACT, grayscale_prob=0.5, **RAW)
    grey = {bool(torch.equal((o := half(constant_clip()))[0], o[1])) for _ in range(20)}
    assert grey == {True, False}


def test_spatial_blur_reduces_high_frequencies():
    clip = checker_clip()
    plain = build_train_transform(**EXACT, **RAW)(clip)
    blurred = build_train_transform(**EXACT, blur_prob=1.0, blur_sigma_min=(0.0, 1.0),
                                    blur_sigma_max=(0.0, 1.5), **RAW)(clip)
    assert spatial_hf_energy(blurred) < 0.1 * spatial_hf_energy(plain)
    assert torch.allclose(blurred.mean(), plain.mean(), atol=0.01)  # blur keeps the mean level


def test_temporal_blur_smooths_time_only():
    # Frames alternate between two grey levels: a pure temporal high frequency.
    levels = torch.tensor([40, 215] * 4, dtype=torch.uint8)
    clip = levels.view(8, 1, 1, 1).expand(8, 24, 32, 3).clone()
    blur = build_train_transform(**EXACT, blur_prob=1.0, blur_sigma_min=(1.0, 0.0),
                                 blur_sigma_max=(1.0, 0.0), **RAW)
    plain = build_train_transform(**EXACT, **RAW)(clip)
    out = blur(clip)
    assert float((out.diff(dim=1) ** 2).mean()) < 0.1 * float((plain.diff(dim=1) ** 2).mean())
    assert spatial_hf_energy(out) == 0  # frames stay flat: no spatial blur was asked for


def test_blur_sigma_is_drawn_in_range():
    blur = GaussianBlurVideo(sigma_min=(0.2, 0.5), sigma_max=(0.4, 1.5))
    for _ in range(20):
        p = blur.make_params([torch.zeros(2, 3, 8, 8)])
        assert 0.2 <= p["sigma_t"] <= 0.4 and 0.5 <= p["sigma_s"] <= 1.5
    off = GaussianBlurVideo(sigma_min=(0.0, 0.0), sigma_max=(0.0, 0.0))
    clip = torch.rand(3, 3, 8, 8)
    assert torch.equal(off(clip), clip)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        GaussianBlurVideo(sigma_min=(0.0, 2.0), sigma_max=(0.0, 1.0))


def test_probability_zero_is_exactly_the_plain_transform():
    clip = checker_clip() + constant_clip() // 4
    kwargs = dict(crop_size=16, jitter_scales=(20, 30))
    off = build_train_transform(**kwargs, color_jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0,
                                bri_con_sat=(0.8, 0.8, 0.8), hue=0.3, blur_sigma_max=(1.0, 3.0))
    plain = build_train_transform(**kwargs)
    # Blur with zero sigma maxima is off too, whatever its probability.
    no_sigma = build_train_transform(**kwargs, blur_prob=1.0, blur_sigma_min=(0.0, 0.0),
                                     blur_sigma_max=(0.0, 0.0))
    results = []
    for transform in (plain, off, no_sigma):
        torch.manual_seed(7)
        results.append([transform(clip) for _ in range(4)])  # same random stream over several clips
    for outs in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], outs))


def test_bad_arguments():
    with pytest.raises(ValueError, match="color_jitter_prob"):
        build_train_transform(crop_size=8, color_jitter_prob=1.5)
    with pytest.raises(ValueError, match="bri_con_sat"):
        build_train_transform(crop_size=8, color_jitter_prob=1.0, bri_con_sat=(0.4, 0.4))


def test_cfg_wiring_train_only():
    cfg = get_cfg()
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 16, 16
    cfg.DATA.TRAIN_JITTER_SCALES = [20, 24]
    assert cfg.DATA.SSL_COLOR_JITTER is False
    assert cfg.DATA.SSL_COLOR_BRI_CON_SAT == [0.4, 0.4, 0.4] and cfg.DATA.SSL_COLOR_HUE == 0.1
    assert cfg.DATA.COLOR_RND_GRAYSCALE == 0.0
    assert cfg.DATA.SSL_BLUR_SIGMA_MIN == [0.0, 0.1] and cfg.DATA.SSL_BLUR_SIGMA_MAX == [0.0, 2.0]
    assert cfg.STICA.SSL_AUG.COLOR_JITTER_PROB == 0.8 and cfg.STICA.SSL_AUG.BLUR_PROB == 0.5
    (train,) = build_transforms_from_cfg(cfg, "train")
    a = train.appearance  # crop and flip only: the SSL augmentation is off by default
    assert isinstance(train.geometry, RandomShortSideScaleCrop) and a.random_flip
    assert (a.color_jitter_prob, a.grayscale_prob, a.blur_prob) == (0.0, 0.0, 0.0)

    merge_from_list(cfg, ["DATA.SSL_COLOR_JITTER", True, "DATA.COLOR_RND_GRAYSCALE", 0.2])
    (train,) = build_transforms_from_cfg(cfg, "train")
    a = train.appearance
    assert (a.color_jitter_prob, a.grayscale_prob, a.blur_prob) == (0.8, 0.2, 0.5)
    assert isinstance(a.jitter, v2.ColorJitter) and a.jitter.hue == (-0.1, 0.1)
    assert a.jitter.brightness == (0.6, 1.4)
    assert a.blur.sigma_min == [0.0, 0.1] and a.blur.sigma_max == [0.0, 2.0]
    for split in ("val", "test"):  # evaluation never sees the SSL augmentation
        for t in build_transforms_from_cfg(cfg, split):
            a = t.appearance
            assert isinstance(t.geometry, ShortSideSpatialCrop) and not a.random_flip
            assert (a.color_jitter_prob, a.grayscale_prob, a.blur_prob) == (0.0, 0.0, 0.0)

    merge_from_list(cfg, ["STICA.SSL_AUG.COLOR_JITTER_PROB", 1.0, "STICA.SSL_AUG.BLUR_PROB", 0.0])
    (train,) = build_transforms_from_cfg(cfg, "train")
    assert (train.appearance.color_jitter_prob, train.appearance.blur_prob) == (1.0, 0.0)


def test_dataset_clips_of_one_sample_get_their_own_colours(tmp_path):
    frames = np.broadcast_to(np.array(COLOUR, np.uint8), (40, 48, 64, 3)).copy()
    write_video(str(tmp_path / "c.mp4"), frames, fps=25)
    (tmp_path / "train.csv").write_text("c.mp4 0\n")
    cfg = get_cfg()
    merge_from_list(cfg, [
        "DATA.PATH_TO_DATA_DIR", str(tmp_path), "DATA.PATH_PREFIX", str(tmp_path),
        "DATA.NUM_FRAMES", 4, "DATA.SAMPLING_RATE", 3, "DATA.TRAIN_JITTER_SCALES", [32, 40],
        "DATA.TRAIN_CROP_SIZE", 24, "DATA.TRAIN_CROP_NUM_TEMPORAL", 2, "MODEL.NUM_CLASSES", 1])

    def clip_colours(cfg):
        clips = Kinetics(cfg, "train")[0]["video"]
        assert len(clips) == 2
        return [c.mean(dim=(1, 2, 3)) for c in clips]  # per-channel mean of each (C, T, h, w) clip

    a, b = clip_colours(cfg)  # control: without jitter both clips have the video's colour
    assert torch.allclose(a, b, atol=0.05)
    merge_from_list(cfg, ["DATA.SSL_COLOR_JITTER", True, "STICA.SSL_AUG.COLOR_JITTER_PROB", 1.0])
    for _ in range(3):
        a, b = clip_colours(cfg)
        assert (a - b).abs().max() > 0.1  # normalised units: the two clips differ in colour
