import inspect

import pytest
import torch

from stica_slowfast.layers import CROP_SCALES, FeatureCrop, FeatureCrops
from stica_slowfast.layers.feature_crop import _gather_crops, _roi_align_spatial, _roi_align_temporal


def _crop(**kwargs):
    args = dict(num_large_spatial=2, num_small_spatial=3, num_large_temporal=2, num_small_temporal=1,
                large_spatial_size=0.6, small_spatial_size=0.4, large_temporal_size=0.5,
                small_temporal_size=0.25, snap_to_grid=True)
    args.update(kwargs)
    return FeatureCrop(**args)


@pytest.mark.parametrize(
    "kwargs, shape, expected",
    [
        # 5 * 0.6 = 3, 5 * 0.4 = 2, 8 * 0.5 = 4, 8 * 0.25 = 2: all integral.
        ({}, (2, 3, 8, 5, 5), {"spatial_large": (2, 2, 3, 8, 3, 3), "spatial_small": (2, 3, 3, 8, 2, 2),
                               "temporal_large": (2, 2, 3, 4, 5, 5), "temporal_small": (2, 1, 3, 2, 5, 5)}),
        # Non-square map, snapped sizes: 7 * 0.6 = 4.2 -> 4, 4 * 0.6 = 2.4 -> 2; 6 * 0.25 = 1.5 -> 2.
        ({"num_small_spatial": 0, "num_large_temporal": 0}, (1, 2, 6, 7, 4),
         {"spatial_large": (1, 2, 2, 6, 4, 2), "spatial_small": (1, 0, 2, 6, 3, 2),
          "temporal_large": (1, 0, 2, 3, 7, 4), "temporal_small": (1, 1, 2, 2, 7, 4)}),
        # Continuous sizes resampled by roi_align to round_half_up(f * L) cells.
        ({"snap_to_grid": False}, (2, 1, 6, 7, 4),
         {"spatial_large": (2, 2, 1, 6, 4, 2), "spatial_small": (2, 3, 1, 6, 3, 2),
          "temporal_large": (2, 2, 1, 3, 7, 4), "temporal_small": (2, 1, 1, 2, 7, 4)}),
        # Audio-like map (B, C, T, F, 1); tiny fractions still give at least one cell.
        ({"small_spatial_size": 0.01, "small_temporal_size": 0.01}, (2, 2, 4, 10, 1),
         {"spatial_large": (2, 2, 2, 4, 6, 1), "spatial_small": (2, 3, 2, 4, 1, 1),
          "temporal_large": (2, 2, 2, 2, 10, 1), "temporal_small": (2, 1, 2, 1, 10, 1)}),
        # No crops at all.
        ({"num_large_spatial": 0, "num_small_spatial": 0, "num_large_temporal": 0, "num_small_temporal": 0},
         (3, 2, 4, 5, 5), {"spatial_large": (3, 0, 2, 4, 3, 3), "spatial_small": (3, 0, 2, 4, 2, 2),
                           "temporal_large": (3, 0, 2, 2, 5, 5), "temporal_small": (3, 0, 2, 1, 5, 5)}),
    ],
)
def test_output_shapes(kwargs, shape, expected):
    out = _crop(**kwargs)(torch.randn(shape))
    assert isinstance(out, FeatureCrops)
    assert tuple(out.crops) == CROP_SCALES and tuple(out.boxes) == CROP_SCALES
    assert {k: tuple(v.shape) for k, v in out.crops.items()} == expected
    for name, boxes in out.boxes.items():
        assert boxes.shape == (shape[0], expected[name][1], 6)


def _assert_covers_every_cell(boxes, t, h, w):
    """Every cell centre (t + .5, y + .5, x + .5) lies in some box, over all samples and crops."""
    boxes = boxes.reshape(-1, 6).double()
    grids = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.stack(grids, dim=-1).reshape(-1, 3).double() + 0.5  # (cells, 3)
    inside = ((centres[:, None] >= boxes[None, :, :3]) & (centres[:, None] < boxes[None, :, 3:])).all(-1)
    assert inside.any(1).all(), centres[~inside.any(1)]


@pytest.mark.parametrize("snap_to_grid", [True, False])
def test_coverage_and_last_position_reachable(snap_to_grid):
    t, h, w = 8, 5, 7
    fc = _crop(snap_to_grid=snap_to_grid, small_temporal_size=0.3)
    # 400 samples x a few crops each are 400 independent draws per crop slot.
    boxes = fc.sample_boxes(400, t, h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for name, (size_t, size_y, size_x) in fc.crop_sizes(t, h, w).items():
        box = boxes[name]
        _assert_covers_every_cell(box, t, h, w)
        for axis, ((size, _, integral), length) in enumerate(zip((size_t, size_y, size_x), (t, h, w))):
            start, end = box[..., axis], box[..., axis + 3]
            torch.testing.assert_close(end - start, torch.full_like(start, size))
            assert start.min() >= 0 and end.max() <= length
            if integral:
                assert torch.equal(start, start.round())
                # Inclusive: every start in {0, ..., L - s} occurs, in particular L - s.
                assert set(start.long().unique().tolist()) == set(range(length - int(size) + 1)), (name, axis)
            else:
                assert start.max() > length - size - 0.1 and start.min() < 0.1, (name, axis)


def test_sliced_crops_are_exact_subtensors():
    fmap = torch.randn(3, 2, 8, 5, 5)
    out = _crop()(fmap, generator=torch.Generator().manual_seed(0))
    for name, crops in out.crops.items():
        boxes = out.boxes[name].long()
        for b in range(fmap.shape[0]):
            for k in range(crops.shape[1]):
                t0, y0, x0, t1, y1, x1 = boxes[b, k].tolist()
                assert torch.equal(crops[b, k], fmap[b, :, t0:t1, y0:y1, x0:x1]), (name, b, k)


def test_boxes_differ_per_sample_and_follow_the_generator():
    fc = _crop()
    fmap = torch.randn(16, 2, 8, 5, 5)
    a = fc(fmap, generator=torch.Generator().manual_seed(3))
    b = fc(fmap, generator=torch.Generator().manual_seed(3))
    for name in CROP_SCALES:
        assert torch.equal(a.boxes[name], b.boxes[name]) and torch.equal(a.crops[name], b.crops[name])
    small = a.boxes["spatial_small"][:, 0]  # first small crop of each sample
    assert len({tuple(row.tolist()) for row in small}) > 1


def test_roi_align_equals_slicing_on_integral_boxes():
    fmap = torch.randn(2, 3, 6, 5, 7)
    starts = torch.tensor([[[0, 2, 4], [0, 0, 0]], [[0, 3, 1], [0, 1, 3]]])  # (B, n, 3)
    size = (6, 2, 3)
    boxes = torch.cat([starts, starts + torch.tensor(size)], dim=-1).float()
    sliced = _gather_crops(fmap, starts, size)
    torch.testing.assert_close(_roi_align_spatial(fmap, boxes, size[1:]), sliced)

    starts = torch.tensor([[[4, 0, 0]], [[1, 0, 0]]])
    size = (2, 5, 7)
    boxes = torch.cat([starts, starts + torch.tensor(size)], dim=-1).float()
    sliced = _gather_crops(fmap, starts, size)
    torch.testing.assert_close(_roi_align_temporal(fmap, boxes, 2), sliced)


def test_roi_align_matches_hand_computed_bilinear_values():
    # A map linear in (t, y, x): bilinear sampling returns the sample positions themselves, and with
    # aligned=True cell i's centre sits at coordinate i, so the crop is the affine map at bin centres.
    t, h, w = 10, 9, 8
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    fmap = (100 * tt + 10 * yy + xx).double()[None, None]  # (1, 1, T, h, w)

    # Temporal box [3.3, 5.8): 2.5 cells -> 3 output cells of 2.5 / 3 each.
    box = torch.tensor([[[3.3, 0, 0, 5.8, h, w]]], dtype=torch.float64)
    out = _roi_align_temporal(fmap, box, 3)
    centres = 3.3 - 0.5 + (torch.arange(3, dtype=torch.float64) + 0.5) * 2.5 / 3
    expected = 100 * centres[:, None, None] + 10 * yy[0] + xx[0]
    torch.testing.assert_close(out[0, 0, 0], expected)

    # Spatial box y in [1.2, 4.7), x in [2.5, 5.0): 3.5 x 2.5 cells -> 4 x 3 output cells.
    box = torch.tensor([[[0, 1.2, 2.5, t, 4.7, 5.0]]], dtype=torch.float64)
    out = _roi_align_spatial(fmap, box, (4, 3))
    cy = 1.2 - 0.5 + (torch.arange(4, dtype=torch.float64) + 0.5) * 3.5 / 4
    cx = 2.5 - 0.5 + (torch.arange(3, dtype=torch.float64) + 0.5) * 2.5 / 3
    expected = 100 * torch.arange(t).double()[:, None, None] + 10 * cy[:, None] + cx
    torch.testing.assert_close(out[0, 0, 0], expected)


@pytest.mark.parametrize("snap_to_grid", [True, False])
def test_gradcheck_float64(snap_to_grid):
    # 5 * 0.5 = 2.5 and 4 * 0.3 = 1.2 are not integral: roi_align when not snapped, slicing otherwise.
    fc = _crop(num_small_spatial=1, num_large_temporal=1, large_spatial_size=0.5,
               small_spatial_size=0.6, large_temporal_size=0.3, snap_to_grid=snap_to_grid)
    fmap = torch.randn(2, 2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    boxes = fc.sample_boxes(2, 4, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    integral = {name: all(s[2] for s in sizes) for name, sizes in fc.crop_sizes(4, 5, 5).items()}
    assert integral["spatial_large"] == integral["temporal_large"] == snap_to_grid

    def all_crops(x):
        return torch.cat([c.reshape(-1) for c in fc.crop(x, boxes).values()])

    assert torch.autograd.gradcheck(all_crops, (fmap,))


@pytest.mark.parametrize(
    "name", ["large_spatial_size", "small_spatial_size", "large_temporal_size", "small_temporal_size"]
)
@pytest.mark.parametrize("value", [0.0, -0.5, 1.01])
def test_bad_fraction_names_the_argument(name, value):
    with pytest.raises(ValueError, match=name):
        _crop(**{name: value})


@pytest.mark.parametrize(
    "name", ["num_large_spatial", "num_small_spatial", "num_large_temporal", "num_small_temporal"]
)
def test_bad_count_names_the_argument(name):
    with pytest.raises(ValueError, match=name):
        _crop(**{name: -1})


def test_wrong_fmap_rank():
    with pytest.raises(ValueError, match=r"\(B, C, T, h, w\)"):
        _crop()(torch.randn(2, 3, 5, 5))


def test_every_argument_is_required():
    # The defaults live in STICA.FEATURE_CROP.* alone: a hand-built FeatureCrop cannot silently differ.
    params = inspect.signature(FeatureCrop).parameters.values()
    assert [p.name for p in params if p.default is not p.empty] == []
    assert all(p.kind is p.KEYWORD_ONLY for p in params)


def test_num_crops_counts_the_named_scales_or_all():
    fc = _crop()  # 2 large spatial, 3 small spatial, 2 large temporal, 1 small temporal
    assert fc.num_crops() == 8
    assert fc.num_crops("spatial_large", "temporal_large") == 4
    assert fc.num_crops("spatial_small") == 3
