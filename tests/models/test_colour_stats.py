"""The colour-statistics backbone of the colour-only probe: values, normalisation, registry."""

import pytest
import torch

from stica_slowfast.config import get_cfg
from stica_slowfast.models import build_model
from stica_slowfast.models.colour_stats import ColourStatistics

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def _normalised(rgb01: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [0, 1] -> normalised as the data pipeline does."""
    return (rgb01 - torch.tensor(MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1, 1)


def test_a_uniform_clip_gives_its_colour_and_one_histogram_cell():
    stats = ColourStatistics(mean=MEAN, std=STD, bins=4)
    colour = torch.tensor([0.9, 0.3, 0.1])
    clip = colour.view(1, 3, 1, 1, 1).expand(1, 3, 2, 4, 4)
    out = stats(_normalised(clip))[0]
    assert out.shape == (stats.out_dim,) == (12 + 64,)
    torch.testing.assert_close(out[0:3], colour)  # mean
    torch.testing.assert_close(out[3:6], torch.zeros(3), atol=1e-6, rtol=0)  # std
    torch.testing.assert_close(out[6:9], colour)  # most saturated pixels: the same colour
    hist = out[12:]
    # levels (3, 1, 0) of 4 -> cell (3 * 4 + 1) * 4 + 0 = 52
    assert hist[52] == pytest.approx(1.0) and hist.sum() == pytest.approx(1.0)


def test_saturated_pixels_are_those_of_the_coloured_object():
    stats = ColourStatistics(mean=MEAN, std=STD, saturated_fraction=0.25)
    clip = torch.full((1, 3, 1, 4, 4), 0.5)  # grey background
    clip[0, :, 0, :2, :2] = torch.tensor([0.0, 0.8, 0.2]).view(3, 1, 1)  # a green quarter
    out = stats(_normalised(clip))[0]
    torch.testing.assert_close(out[6:9], torch.tensor([0.0, 0.8, 0.2]))
    torch.testing.assert_close(out[0:3], 0.75 * torch.full((3,), 0.5) + 0.25 * torch.tensor([0.0, 0.8, 0.2]))


def test_features_differ_by_colour_not_by_where_it_is():
    stats = ColourStatistics(mean=MEAN, std=STD)
    clip = torch.full((1, 3, 2, 8, 8), 0.2)
    left, right = clip.clone(), clip.clone()
    red = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1, 1)
    left[..., :, :3] = red
    right[..., :, 5:] = red
    torch.testing.assert_close(stats(_normalised(left)), stats(_normalised(right)))
    assert not torch.allclose(stats(_normalised(left)), stats(_normalised(clip)))


def test_rejects_other_inputs():
    stats = ColourStatistics(mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="RGB clips"):
        stats(torch.zeros(1, 1, 2, 4, 4))
    with pytest.raises(ValueError, match="3-channel"):
        ColourStatistics(mean=(0.5,), std=(0.2,))


def test_linear_probe_on_colour_stats_has_only_a_head_to_train():
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME, cfg.MODEL.ARCH, cfg.MODEL.NUM_CLASSES = "LinearProbe", "colour_stats", 5
    model = build_model(cfg)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["head.fc.weight", "head.fc.bias"]
    assert model(torch.randn(2, 3, 4, 16, 16)).shape == (2, 5)
