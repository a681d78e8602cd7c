"""Feature crops: STiCA's "cheap multi-crop" taken on the backbone's last feature map.

Patrick et al., "Space-Time Crop & Attend: Improving Cross-modal Video Representation Learning"
(ICCV 2021, arXiv 2103.10211) crop the *feature map* of one forward pass instead of re-encoding many
input crops: a few large and small spatial crops (all time steps, part of the frame) and a few large
and small temporal crops (the whole frame, part of the time steps). Every crop is then pooled and
projected like a full clip.

Upstream draws crop offsets with an exclusive upper bound, so the last row, column and time step are
never cropped. Here every valid position is reachable (see :class:`FeatureCrop`).
"""

import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from torchvision.ops import roi_align

__all__ = ["FeatureCrop", "FeatureCrops", "CROP_SCALES"]

# Scale names, in the order they appear in every output dict.
CROP_SCALES = ("spatial_large", "spatial_small", "temporal_large", "temporal_small")

# fraction * L closer than this to an integer counts as integral (0.6 * 5 = 3.0000000000000004).
_INTEGRAL_TOL = 1e-6


@dataclass
class FeatureCrops:
    """Crops of one feature map ``(B, C, T, h, w)``, per scale (keys :data:`CROP_SCALES`).

    Every key is always present; a scale with 0 crops holds tensors with an n axis of size 0.

    Attributes:
        crops: ``name -> (B, n, C, t, s_y, s_x)``. Spatial scales have ``t = T`` and the scale's crop
            side ``s_y, s_x``; temporal scales have the crop length ``t`` and ``s_y, s_x = h, w``.
        boxes: ``name -> (B, n, 6)`` float boxes ``(t0, y0, x0, t1, y1, x1)`` in feature-map cells,
            end-exclusive: cell ``i`` spans ``[i, i + 1)``, so an integral box selects
            ``fmap[..., t0:t1, y0:y1, x0:x1]``.
    """

    crops: Dict[str, torch.Tensor]
    boxes: Dict[str, torch.Tensor]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a fraction in (0, 1], got {value!r}")


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _round_half_up(x: float) -> int:
    # Python's round() rounds 2.5 to 2 (to even); a crop size should not depend on parity.
    return int(math.floor(x + 0.5))


class FeatureCrop(nn.Module):
    """Sample spatial and temporal crops of a feature map, with per-sample boxes.

    Symbols: B batch, C channels, T time steps, h w feature-map size, N spatial crops of a scale,
    M temporal crops of a scale; s_y s_x a spatial crop's side, t a temporal crop's length::

        fmap (B, C, T, h, w)
          |-- spatial_large:  N_l boxes of (T, s_y, s_x) = (T, f_l*h, f_l*w) -> (B, N_l, C, T, s_y, s_x)
          |-- spatial_small:  N_s boxes of (T, f_s*h, f_s*w)                 -> (B, N_s, C, T, s_y, s_x)
          |-- temporal_large: M_l boxes of (g_l*T, h, w)                     -> (B, M_l, C, t, h, w)
          `-- temporal_small: M_s boxes of (g_s*T, h, w)                     -> (B, M_s, C, t, h, w)

    Every crop of a scale has the same size, so each scale is one stacked tensor; each sample of the
    batch gets its own independently drawn boxes.

    Crop size on an axis of length L with fraction f:

    * ``snap_to_grid=True``: ``s = max(1, round_half_up(f * L))`` cells. The box is integral
      and the crop is an exact sub-tensor, gathered by indexing (no interpolation).
    * ``snap_to_grid=False``: ``s = f * L`` exactly. If that is integral (up to 1e-6) the crop is still
      an exact slice; otherwise the box is continuous and is resampled with
      ``torchvision.ops.roi_align(aligned=True, sampling_ratio=-1)`` to ``max(1, round_half_up(f * L))``
      output cells (for spatial crops: per time step, on the ``(h, w)`` plane, whenever either side is
      not integral; for temporal crops: along T). On an integral box this roi_align reproduces slicing
      exactly (one sample at each cell centre), so the two paths agree where they overlap.

    Box starts are uniform over *every* valid position, inclusive: an integral crop of size s starts
    at one of ``{0, 1, ..., L - s}`` (so the last row / column / time step is reachable, which the
    upstream code's exclusive bound missed); a continuous one starts uniformly in ``[0, L - s]``.

    The crops are differentiable with respect to ``fmap`` (indexing and roi_align both have exact
    backward passes); the boxes carry no gradient.

    Every argument is required: their defaults live in ``STICA.FEATURE_CROP.*`` alone, so a
    FeatureCrop built by hand and one built from the config cannot silently differ.

    Args:
        num_large_spatial: number N_l of large spatial crops, >= 0.
        num_small_spatial: number N_s of small spatial crops, >= 0.
        num_large_temporal: number M_l of large temporal crops, >= 0.
        num_small_temporal: number M_s of small temporal crops, >= 0.
        large_spatial_size: side f_l of the large spatial crops as a fraction of h and of w, in (0, 1].
        small_spatial_size: side f_s of the small spatial crops as a fraction of h and of w, in (0, 1].
        large_temporal_size: length g_l of the large temporal crops as a fraction of T, in (0, 1].
        small_temporal_size: length g_s of the small temporal crops as a fraction of T, in (0, 1].
        snap_to_grid: round crop sizes to whole cells (exact slicing only), or keep ``f * L`` and use
            roi_align when it is not integral; see above.
    """

    def __init__(
        self,
        *,
        num_large_spatial: int,
        num_small_spatial: int,
        num_large_temporal: int,
        num_small_temporal: int,
        large_spatial_size: float,
        small_spatial_size: float,
        large_temporal_size: float,
        small_temporal_size: float,
        snap_to_grid: bool,
    ) -> None:
        super().__init__()
        counts = {
            "num_large_spatial": num_large_spatial,
            "num_small_spatial": num_small_spatial,
            "num_large_temporal": num_large_temporal,
            "num_small_temporal": num_small_temporal,
        }
        sizes = {
            "large_spatial_size": large_spatial_size,
            "small_spatial_size": small_spatial_size,
            "large_temporal_size": large_temporal_size,
            "small_temporal_size": small_temporal_size,
        }
        for name, value in counts.items():
            _check_count(name, value)
        for name, value in sizes.items():
            _check_fraction(name, value)
        # scale name -> (number of crops, fraction along T, fraction along h, fraction along w).
        self.scales: Dict[str, Tuple[int, float, float, float]] = {
            "spatial_large": (num_large_spatial, 1.0, large_spatial_size, large_spatial_size),
            "spatial_small": (num_small_spatial, 1.0, small_spatial_size, small_spatial_size),
            "temporal_large": (num_large_temporal, large_temporal_size, 1.0, 1.0),
            "temporal_small": (num_small_temporal, small_temporal_size, 1.0, 1.0),
        }
        self.snap_to_grid = snap_to_grid

    def num_crops(self, *scales: str) -> int:
        """Crops per view over the named scales (of :data:`CROP_SCALES`), or over every scale."""
        return sum(self.scales[k][0] for k in (scales or CROP_SCALES))

    def extra_repr(self) -> str:
        parts = [f"{k}=(n={n}, t={ft}, h={fy}, w={fx})" for k, (n, ft, fy, fx) in self.scales.items()]
        return ", ".join(parts) + f", snap_to_grid={self.snap_to_grid}"

    def _axis_size(self, fraction: float, length: int) -> Tuple[float, int, bool]:
        """Crop extent on one axis: (box size in cells, output cells, whether the box is integral)."""
        out = max(1, _round_half_up(fraction * length))
        if self.snap_to_grid:
            return float(out), out, True
        size = fraction * length
        if abs(size - round(size)) < _INTEGRAL_TOL:
            return float(round(size)), int(round(size)), True
        return size, out, False

    def crop_sizes(self, t: int, h: int, w: int) -> Dict[str, Tuple[Tuple[float, int, bool], ...]]:
        """Per scale, ``(size, output cells, integral)`` along (T, h, w) for a ``(t, h, w)`` map."""
        return {
            name: tuple(self._axis_size(f, L) for f, L in zip((ft, fy, fx), (t, h, w)))
            for name, (_, ft, fy, fx) in self.scales.items()
        }

    def sample_boxes(
        self,
        batch_size: int,
        t: int,
        h: int,
        w: int,
        *,
        generator: Optional[torch.Generator] = None,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device] = None,
    ) -> Dict[str, torch.Tensor]:
        """Draw the boxes of every scale without cropping anything.

        Args:
            batch_size: B, one independent set of boxes per sample.
            t, h, w: feature-map size T, h, w.
            generator: CPU generator for reproducible draws (the global RNG if None). Draws happen on
                the CPU and are then moved to ``device``, so one generator serves any device.
            dtype: float dtype of the returned boxes.
            device: device of the returned boxes.

        Returns:
            ``name -> (B, n, 6)`` boxes ``(t0, y0, x0, t1, y1, x1)``, as in :class:`FeatureCrops`.
        """
        sizes_per_scale = self.crop_sizes(t, h, w)
        boxes = {}
        for name, (n, *_) in self.scales.items():
            sizes = sizes_per_scale[name]
            starts = []
            for (size, _, integral), length in zip(sizes, (t, h, w)):
                if integral:
                    # Inclusive: randint's high is exclusive, so L - s + 1 makes L - s reachable.
                    start = torch.randint(0, length - int(size) + 1, (batch_size, n), generator=generator)
                    start = start.to(torch.float64)
                else:
                    start = torch.rand(batch_size, n, generator=generator, dtype=torch.float64)
                    start = start * (length - size)  # uniform in [0, L - s]
                starts.append(start)
            start = torch.stack(starts, dim=-1)  # (B, n, 3) as (t0, y0, x0)
            extent = torch.tensor([s[0] for s in sizes], dtype=torch.float64)  # (3,)
            boxes[name] = torch.cat([start, start + extent], dim=-1).to(dtype=dtype, device=device)
        return boxes

    def forward(self, fmap: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> FeatureCrops:
        """Crop ``fmap (B, C, T, h, w)`` at freshly sampled boxes.

        Args:
            fmap: the backbone's last feature map.
            generator: CPU generator for the box draws; see :meth:`sample_boxes`.

        Returns:
            :class:`FeatureCrops` with the crops and the boxes used.
        """
        if fmap.dim() != 5:
            raise ValueError(f"fmap must be (B, C, T, h, w), got shape {tuple(fmap.shape)}")
        b, _, t, h, w = fmap.shape
        boxes = self.sample_boxes(b, t, h, w, generator=generator, dtype=fmap.dtype, device=fmap.device)
        return FeatureCrops(crops=self.crop(fmap, boxes), boxes=boxes)

    def crop(self, fmap: torch.Tensor, boxes: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Crop ``fmap (B, C, T, h, w)`` at given boxes (as returned by :meth:`sample_boxes`).

        Returns:
            ``name -> (B, n, C, t, s_y, s_x)`` crops, as in :class:`FeatureCrops`.
        """
        _, _, t, h, w = fmap.shape
        crops = {}
        for name, sizes in self.crop_sizes(t, h, w).items():
            box = boxes[name]
            if all(integral for _, _, integral in sizes):
                starts = box[..., :3].round().long()  # (B, n, 3) integral starts (t0, y0, x0)
                crops[name] = _gather_crops(fmap, starts, tuple(out for _, out, _ in sizes))
            elif name.startswith("spatial"):
                crops[name] = _roi_align_spatial(fmap, box, (sizes[1][1], sizes[2][1]))
            else:
                crops[name] = _roi_align_temporal(fmap, box, sizes[0][1])
        return crops


def _gather_crops(fmap: torch.Tensor, starts: torch.Tensor, size: Tuple[int, int, int]) -> torch.Tensor:
    """Exact crops ``(B, n, C, s_t, s_y, s_x)`` of ``fmap (B, C, T, h, w)`` at per-sample integer starts."""
    b = starts.shape[0]
    s_t, s_y, s_x = size
    device = fmap.device
    starts = starts.to(device)
    t_idx = starts[..., 0, None] + torch.arange(s_t, device=device)  # (B, n, s_t)
    y_idx = starts[..., 1, None] + torch.arange(s_y, device=device)  # (B, n, s_y)
    x_idx = starts[..., 2, None] + torch.arange(s_x, device=device)  # (B, n, s_x)
    b_idx = torch.arange(b, device=device).view(b, 1, 1, 1, 1)
    # (B, C, T, h, w) -> (B, T, h, w, C): put the indexed axes next to each other.
    channels_last = fmap.permute(0, 2, 3, 4, 1)
    out = channels_last[
        b_idx,
        t_idx[:, :, :, None, None],
        y_idx[:, :, None, :, None],
        x_idx[:, :, None, None, :],
    ]  # (B, n, s_t, s_y, s_x, C)
    return out.permute(0, 1, 5, 2, 3, 4)  # (B, n, s_t, s_y, s_x, C) -> (B, n, C, s_t, s_y, s_x)


def _roi_align_spatial(fmap: torch.Tensor, boxes: torch.Tensor, out_size: Tuple[int, int]) -> torch.Tensor:
    """Resampled spatial crops ``(B, n, C, T, o_y, o_x)``: every time step with the sample's box."""
    b, c, t, h, w = fmap.shape
    n = boxes.shape[1]
    # (B, C, T, h, w) -> (B, T, C, h, w) -> (B*T, C, h, w): each time step is one image.
    frames = fmap.transpose(1, 2).reshape(b * t, c, h, w)
    # Image index of (sample b, crop k, step s) is b*T + s; rows ordered (b, k, s).
    image = (torch.arange(b, device=fmap.device).view(b, 1, 1) * t
             + torch.arange(t, device=fmap.device).view(1, 1, t)).expand(b, n, t)
    box = boxes.to(device=fmap.device, dtype=fmap.dtype)[:, :, None, :].expand(b, n, t, 6)
    # roi_align wants (index, x1, y1, x2, y2) rows; (B, n, T, 6) -> (B*n*T, 5).
    rois = torch.stack(
        [image.to(fmap.dtype), box[..., 2], box[..., 1], box[..., 5], box[..., 4]], dim=-1
    ).reshape(-1, 5)
    out = roi_align(frames, rois, output_size=out_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    # (B*n*T, C, o_y, o_x) -> (B, n, T, C, o_y, o_x) -> (B, n, C, T, o_y, o_x)
    return out.view(b, n, t, c, *out_size).transpose(2, 3)


def _roi_align_temporal(fmap: torch.Tensor, boxes: torch.Tensor, out_len: int) -> torch.Tensor:
    """Resampled temporal crops ``(B, n, C, o_t, h, w)``: the whole frame, part of the time axis."""
    b, c, t, h, w = fmap.shape
    n = boxes.shape[1]
    # (B, C, T, h, w) -> (B, C, h, w, T) -> (B, C*h*w, T, 1): time is the image height, every
    # (channel, y, x) is a channel, and the width-1 axis is a dummy that roi_align samples exactly.
    seq = fmap.permute(0, 1, 3, 4, 2).reshape(b, c * h * w, t, 1)
    box = boxes.to(device=fmap.device, dtype=fmap.dtype)
    sample = torch.arange(b, device=fmap.device, dtype=fmap.dtype).view(b, 1).expand(b, n)
    zero, one = torch.zeros_like(sample), torch.ones_like(sample)
    # (index, x1=0, y1=t0, x2=1, y2=t1) rows; (B, n) -> (B*n, 5).
    rois = torch.stack([sample, zero, box[..., 0], one, box[..., 3]], dim=-1).reshape(-1, 5)
    out = roi_align(seq, rois, output_size=(out_len, 1), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    # (B*n, C*h*w, o_t, 1) -> (B, n, C, h, w, o_t) -> (B, n, C, o_t, h, w)
    return out.view(b, n, c, h, w, out_len).permute(0, 1, 2, 5, 3, 4)
