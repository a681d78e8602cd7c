"""Per-clip appearance augmentation: drawn in the data-loader worker, applied there or on the device.

Every clip gets one random draw of flip, colour jitter (its four factors and their order), grayscale
and Gaussian blur, shared by all its frames, then normalisation (the SSL augmentation of rho-clip SSL,
Feichtenhofer et al., arXiv 2104.14558; as in PySlowFast, on float [0, 1] frames). The draw is
:meth:`ClipAppearance.draw`, in the worker, from the sample's own seed; the same parameters can then
be applied in two places that give the same pixels (within float rounding):

* **worker** (:meth:`ClipAppearance.apply`): torchvision's own transforms, one clip at a time;
* **device** (:func:`augment_views`): the worker returns the cropped clip as uint8 with its
  parameters, and the training device (a GPU, or the CPU main process) applies them to the whole batch
  at once with kornia's per-sample-factor ops: 4x less to copy and pin than float, and the float work
  runs batched where the model runs. :func:`prepare_batch` is the engine's one call for this.

::

    worker:  uint8 (T, C, h, w) --draw--> params --apply--> float (C, T, h, w)
    device:  uint8 (T, C, h, w) --draw--> (uint8 (C, T, h, w), params) --collate-->
             uint8 (B, C, T, h, w) + params (B, ...) --augment_views on the device--> float (B, C, T, h, w)

Parameters of one clip (a dict of tensors, so the default collate batches them; :data:`PARAM_KEYS`):
``flip`` bool, ``jitter`` bool, ``order`` int64 (4,) (the order of brightness, contrast, saturation, hue),
``factors`` float32 (4,) (brightness, contrast, saturation factors and the hue shift in turns; 1, 1, 1, 0
when not drawn), ``gray`` bool, ``blur`` bool, ``sigma`` float32 (2,) ([temporal frames, spatial
pixels], 0 = no blur along it), ``mean`` / ``std`` float32 (C,) of the normalisation.

Symbols: B clips in a batch, T frames, C channels, h, w the crop size.
"""

import math
from typing import Any, Dict, List, Optional, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from stica_slowfast.utils.misc import move_to_device

__all__ = [
    "PARAM_KEY",
    "PARAM_KEYS",
    "ClipAppearance",
    "GaussianBlurVideo",
    "RandomGrayscaleVideo",
    "apply_batch",
    "augment_views",
    "blur_radius",
    "prepare_batch",
]

#: The sample entry holding the V views' parameters when the device augments ("video" holds uint8).
PARAM_KEY = "video_aug"
PARAM_KEYS = ("flip", "jitter", "order", "factors", "gray", "blur", "sigma", "mean", "std")
# Colour jitter's operations, in the numbering of torchvision's ColorJitter (its ``fn_idx``).
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
_IDENTITY_FACTORS = (1.0, 1.0, 1.0, 0.0)
#: Float bytes of the clips the CPU augments together (a few MB: they stay in the cache between steps).
CPU_GROUP_BYTES = 4 << 20
_JITTER_NAMES = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")


def blur_radius(sigma: float, size: int) -> int:
    """Kernel radius of a Gaussian of ``sigma`` over ``size`` samples: ``round(4 sigma)`` (scipy's
    ``gaussian_filter`` default), less than ``size`` so that reflecting at the borders stays defined."""
    return min(round(4 * sigma), size - 1)


class GaussianBlurVideo(v2.Transform):
    """Gaussian blur of a clip with one random sigma per clip, in space and optionally in time.

    PySlowFast's ``GaussianBlurVideo`` convention: index 0 of ``sigma_min``/``sigma_max`` is the
    temporal sigma (in frames), index 1 the spatial sigma (in pixels, the same along H and W). Each
    sigma is drawn uniformly in [min, max] per call; a dimension whose max is 0 is left alone. The
    kernel radius is :func:`blur_radius`; borders are reflected in space and the edge frames repeated
    in time.

    Args:
        sigma_min: [temporal, spatial] lower bounds, >= 0.
        sigma_max: [temporal, spatial] upper bounds, >= the matching lower bound.
    """

    def __init__(self, *, sigma_min: Sequence[float], sigma_max: Sequence[float]):
        super().__init__()
        if len(sigma_min) != 2 or len(sigma_max) != 2:
            raise ValueError(f"sigma_min/sigma_max must be [temporal, spatial], got "
                             f"{list(sigma_min)}, {list(sigma_max)}")
        if any(not 0 <= lo <= hi for lo, hi in zip(sigma_min, sigma_max)):
            raise ValueError(f"need 0 <= sigma_min <= sigma_max, got {list(sigma_min)}, {list(sigma_max)}")
        self.sigma_min = [float(v) for v in sigma_min]
        self.sigma_max = [float(v) for v in sigma_max]

    def make_params(self, flat_inputs: List[Any]) -> Dict[str, Any]:
        sigmas = [lo + (hi - lo) * float(torch.rand(1)) if hi > 0 else 0.0
                  for lo, hi in zip(self.sigma_min, self.sigma_max)]
        return dict(sigma_t=sigmas[0], sigma_s=sigmas[1])

    def transform(self, inpt: Any, params: Dict[str, Any]) -> Any:
        out = inpt
        radius = blur_radius(params["sigma_s"], min(out.shape[-2:]))
        if params["sigma_s"] > 0 and radius > 0:
            out = self._call_kernel(F.gaussian_blur, out, kernel_size=[2 * radius + 1] * 2,
                                    sigma=[params["sigma_s"]] * 2)
        if params["sigma_t"] > 0:
            out = _temporal_blur(out, params["sigma_t"])
        return out


class RandomGrayscaleVideo(v2.RandomGrayscale):
    """``v2.RandomGrayscale`` that also converts ``tv_tensors.Video``.

    torchvision 0.29 registers no video kernel for ``rgb_to_grayscale``, so ``v2.RandomGrayscale``
    and ``v2.Grayscale`` silently pass a Video through unchanged. The image kernel works on any
    ``(..., 3, H, W)`` tensor, so it is applied to the (T, C, H, W) clip as a plain tensor: ITU-R 601
    luma, copied to every input channel.

    Args:
        p: probability in [0, 1] that a clip is converted.
    """

    def transform(self, inpt: Any, params: Dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Video):
            return super().transform(inpt, params)
        out = F.rgb_to_grayscale_image(inpt.as_subclass(torch.Tensor),
                                       num_output_channels=params["num_input_channels"])
        return tv_tensors.wrap(out, like=inpt)


def _temporal_taps(sigma: float, num_frames: int) -> torch.Tensor:
    """Normalised 1-D Gaussian weights of ``sigma`` frames, ``2 r + 1`` taps (``r`` of :func:`blur_radius`)."""
    radius = blur_radius(sigma, num_frames)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    return weights / weights.sum()


def _temporal_blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """1-D Gaussian along dim 0 of a (T, C, H, W) clip, edge frames repeated; keeps type and dtype."""
    num_frames = video.shape[0]
    weights = _temporal_taps(sigma, num_frames)
    radius = (len(weights) - 1) // 2
    if radius == 0:
        return video
    x = video.as_subclass(torch.Tensor)
    xf = x if x.is_floating_point() else x.float()
    out = torch.zeros_like(xf)
    for tap, w in zip(range(-radius, radius + 1), weights.tolist()):  # one tap at a time: O(T C H W) memory
        src = (torch.arange(num_frames) + tap).clamp(0, num_frames - 1)
        out += w * xf[src]
    if not x.is_floating_point():
        out = out.round_().clamp_(0, torch.iinfo(x.dtype).max).to(x.dtype)
    return tv_tensors.wrap(out, like=video) if isinstance(video, tv_tensors.TVTensor) else out


class ClipAppearance:
    """One clip's appearance augmentation: :meth:`draw` its parameters, :meth:`apply` them.

    Order: flip (p 0.5) -> float [0, 1] -> colour jitter (p ``color_jitter_prob``; brightness, contrast,
    saturation, hue in a random order) -> grayscale (p ``grayscale_prob``) -> Gaussian blur (p
    ``blur_prob``) -> normalise. A step whose probability is 0 draws no random numbers; with every
    probability 0 this is the float conversion and normalisation alone (the deterministic test views).
    The draws are those torchvision's ``RandomHorizontalFlip``, ``RandomApply`` and ``ColorJitter``
    make, in the same order, so a clip is the same whether these transforms or :meth:`apply` run.

    Args:
        random_flip: horizontal flip with probability 0.5.
        color_jitter_prob: probability in [0, 1] of colour jitter (0 = off).
        bri_con_sat: [brightness, contrast, saturation] strengths s >= 0; each factor is drawn from
            [max(0, 1 - s), 1 + s] (0 = that adjustment off).
        hue: hue strength in [0, 0.5]; the shift is drawn from [-hue, hue] turns (0 = off).
        grayscale_prob: probability in [0, 1] of converting the clip to 3-channel grayscale.
        blur_prob: probability in [0, 1] of a Gaussian blur (0 = off; also off when both maxima of
            ``blur_sigma_max`` are 0).
        blur_sigma_min: [temporal (frames), spatial (pixels)] sigma lower bounds, see
            :class:`GaussianBlurVideo`.
        blur_sigma_max: [temporal, spatial] sigma upper bounds.
        mean: per-channel mean of [0, 1] input.
        std: per-channel std of [0, 1] input.
    """

    def __init__(self, *, random_flip: bool, color_jitter_prob: float, bri_con_sat: Sequence[float],
                 hue: float, grayscale_prob: float, blur_prob: float, blur_sigma_min: Sequence[float],
                 blur_sigma_max: Sequence[float], mean: Sequence[float], std: Sequence[float]):
        for name, p in (("color_jitter_prob", color_jitter_prob), ("grayscale_prob", grayscale_prob),
                        ("blur_prob", blur_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {p}")
        if len(bri_con_sat) != 3:
            raise ValueError(f"bri_con_sat must be [brightness, contrast, saturation], got {list(bri_con_sat)}")
        if len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got {list(mean)}, {list(std)}")
        self.random_flip = bool(random_flip)
        self.color_jitter_prob = float(color_jitter_prob)
        brightness, contrast, saturation = (float(v) for v in bri_con_sat)
        self.jitter = v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation,
                                     hue=float(hue))
        self.grayscale_prob = float(grayscale_prob)
        self.blur_prob = float(blur_prob) if max(blur_sigma_max) > 0 else 0.0
        self.blur = GaussianBlurVideo(sigma_min=blur_sigma_min, sigma_max=blur_sigma_max)
        self.mean = torch.tensor([float(v) for v in mean])
        self.std = torch.tensor([float(v) for v in std])
        self._gray = RandomGrayscaleVideo(p=1.0)

    @staticmethod
    def _applied(p: float) -> bool:
        """Whether a step of probability ``p`` runs, drawn as torchvision's ``RandomApply`` draws it
        (no draw at p 0 or 1; this class leaves a step of p 0 out and runs one of p 1 always)."""
        if p <= 0:
            return False
        return p >= 1 or bool(torch.rand(1) < p)

    def draw(self) -> Dict[str, torch.Tensor]:
        """The parameters of one clip, from torch's global generator (see the module docstring)."""
        flip = self.random_flip and bool(torch.rand(1) < 0.5)  # v2.RandomHorizontalFlip(p=0.5)
        order, factors = torch.arange(4), torch.tensor(_IDENTITY_FACTORS)
        jitter = self._applied(self.color_jitter_prob)
        if jitter:
            drawn = self.jitter.make_params([])
            order = drawn["fn_idx"]
            factors = torch.tensor([_IDENTITY_FACTORS[i] if drawn[n] is None else drawn[n]
                                    for i, n in enumerate(_JITTER_NAMES)])
        # v2.RandomGrayscale draws even at p 1.
        gray = self.grayscale_prob > 0 and bool(torch.rand(1) < self.grayscale_prob)
        blur = self._applied(self.blur_prob)
        sigma = torch.zeros(2)
        if blur:
            drawn = self.blur.make_params([])
            sigma = torch.tensor([drawn["sigma_t"], drawn["sigma_s"]])
        return {"flip": torch.tensor(flip), "jitter": torch.tensor(jitter), "order": order.long(),
                "factors": factors.float(), "gray": torch.tensor(gray), "blur": torch.tensor(blur),
                "sigma": sigma.float(), "mean": self.mean.clone(), "std": self.std.clone()}

    def identity(self) -> Dict[str, torch.Tensor]:
        """Parameters that only normalise (no flip, jitter, grayscale or blur), drawing nothing."""
        return {"flip": torch.tensor(False), "jitter": torch.tensor(False), "order": torch.arange(4),
                "factors": torch.tensor(_IDENTITY_FACTORS), "gray": torch.tensor(False),
                "blur": torch.tensor(False), "sigma": torch.zeros(2), "mean": self.mean.clone(),
                "std": self.std.clone()}

    def apply(self, video: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``params`` applied to one clip with torchvision's transforms (the worker's path).

        Args:
            video: uint8 (T, C, h, w) clip (a plain tensor or a ``tv_tensors.Video``).
            params: one clip's parameters (:meth:`draw`).

        Returns:
            float32 (T, C, h, w), normalised.
        """
        x = tv_tensors.Video(video) if not isinstance(video, tv_tensors.Video) else video
        if params["flip"]:
            x = F.horizontal_flip(x)
        x = F.to_dtype(x, torch.float32, scale=True)
        if params["jitter"]:
            factors = params["factors"].tolist()
            ranges = (self.jitter.brightness, self.jitter.contrast, self.jitter.saturation, self.jitter.hue)
            x = self.jitter.transform(x, dict(fn_idx=params["order"].tolist(), **{
                name: None if ranges[i] is None else factors[i] for i, name in enumerate(_JITTER_NAMES)}))
        if params["gray"]:
            x = self._gray.transform(x, dict(num_input_channels=x.shape[-3]))
        if params["blur"]:
            sigma_t, sigma_s = params["sigma"].tolist()
            x = self.blur.transform(x, dict(sigma_t=sigma_t, sigma_s=sigma_s))
        x = F.normalize(x, mean=params["mean"].tolist(), std=params["std"].tolist())
        return x.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return (f"ClipAppearance(flip={self.random_flip}, color_jitter_prob={self.color_jitter_prob}, "
                f"jitter={self.jitter}, grayscale_prob={self.grayscale_prob}, blur_prob={self.blur_prob}, "
                f"blur={self.blur.sigma_min}..{self.blur.sigma_max}, mean={self.mean.tolist()}, "
                f"std={self.std.tolist()})")


# ---------------------------------------------------------------------------------------------------- #
# The device's side: a batch of uint8 clips and their parameters
# ---------------------------------------------------------------------------------------------------- #
def _on_rows(x: torch.Tensor, mask: torch.Tensor, fn, *per_clip: torch.Tensor) -> torch.Tensor:
    """``fn(x[rows], *(p[rows] for p in per_clip))`` written back to the rows of ``x`` where ``mask``
    (B,) holds, or ``fn`` on all of ``x`` when every row does. ``mask`` and ``per_clip`` live on the
    host, so choosing the rows never waits for the device; ``per_clip`` is moved to ``x``'s device."""
    if bool(mask.all()):
        return fn(x, *(p.to(x.device, non_blocking=True) for p in per_clip))
    rows = mask.nonzero().reshape(-1)
    if rows.numel() == 0:
        return x
    on_device = rows.to(x.device, non_blocking=True)
    x[on_device] = fn(x[on_device], *(p[rows].to(x.device, non_blocking=True) for p in per_clip))
    return x


def _per_frame(fn):
    """A kornia image op (on (N, C, h, w) with per-image factors) applied to (b, T, C, h, w) clips with
    one factor per clip."""

    def apply(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        # (b, T, C, h, w) -> (b T, C, h, w); every frame of a clip takes the clip's factor.
        out = fn(x.reshape(b * t, *x.shape[2:]), factor.to(x.dtype).repeat_interleave(t))
        return out.reshape(x.shape)

    return apply


def _spatial_blur(radius: int):
    """Gaussian blur of (b, T, C, h, w) clips with sigma (b,) pixels per clip, borders reflected, all
    with one kernel of ``radius`` (that of the largest sigma; a Gaussian's mass beyond 4 sigma is 6e-5)."""
    from kornia.filters import gaussian_blur2d

    def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        sigmas = sigma.to(x.dtype).repeat_interleave(t)[:, None].expand(-1, 2)  # (b T, 2): y and x
        out = gaussian_blur2d(x.reshape(b * t, *x.shape[2:]), (2 * radius + 1,) * 2, sigmas,
                              border_type="reflect")
        return out.reshape(x.shape)

    return blur


def _temporal_blur_batch(sigma: torch.Tensor, num_frames: int):
    """Gaussian blur along time of (b, T, C, h, w) clips with the host's sigma (b,) frames per clip, edge
    frames repeated: one per-clip 1-D kernel (zero beyond its own radius) for kornia's ``filter3d``."""
    from kornia.filters import filter3d

    kernels = [_temporal_taps(s, num_frames) for s in sigma.tolist()]
    width = max(len(k) for k in kernels)
    padded = torch.zeros(len(kernels), width)
    for i, k in enumerate(kernels):  # centred
        start = (width - len(k)) // 2
        padded[i, start:start + len(k)] = k

    def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        # (b, T, C, h, w) -> (b, C, T, h, w) for filter3d, and back; kernel (b, kT) -> (b, kT, 1, 1).
        out = filter3d(x.transpose(1, 2), kernel.to(x.dtype)[:, :, None, None], border_type="replicate",
                       normalized=False)
        return out.transpose(1, 2)

    return blur, padded


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of (b, T, 3, h, w) clips, copied to the 3 channels (torchvision's weights)."""
    weights = torch.tensor([0.2989, 0.587, 0.114], device=x.device, dtype=x.dtype)
    luma = torch.einsum("btchw,c->bthw", x, weights).unsqueeze(2)
    return luma.expand_as(x).contiguous()


def _jitter_ops():
    from kornia import enhance

    def hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
        return enhance.adjust_hue(x, turns * (2 * math.pi))  # kornia's hue shift is in radians

    return {BRIGHTNESS: _per_frame(enhance.adjust_brightness_accumulative),
            CONTRAST: _per_frame(enhance.adjust_contrast_with_mean_subtraction),
            SATURATION: _per_frame(enhance.adjust_saturation_with_gray_subtraction),
            HUE: _per_frame(hue)}


def apply_batch(video: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The clips' parameters applied to a batch of uint8 clips at once, on the clips' device.

    Equals :meth:`ClipAppearance.apply` clip by clip, within float rounding and the blur's one kernel
    size per batch. Masks, orders and blur kernels are read on the host: keep ``params`` there (as the
    loader delivers them) and nothing waits for the device. A jitter factor at its identity (1, 1, 1, 0:
    that adjustment off) is skipped. On the CPU the clips go through in groups of at most
    :data:`CPU_GROUP_BYTES` of float pixels, which stay in the cache from one operation to the next
    (one whole-batch pass per operation runs at memory speed there: several times slower).

    Args:
        video: uint8 (B, C, T, h, w) on the training device.
        params: the clips' parameters, batched (each of :data:`PARAM_KEYS` with a leading B).

    Returns:
        float32 (B, C, T, h, w), normalised, contiguous.
    """
    p = {k: params[k].cpu() for k in PARAM_KEYS}
    # One spatial blur kernel for the batch, whatever the groups: that of its largest sigma.
    sigma_s = p["sigma"][:, 1][p["blur"]]
    radius = blur_radius(float(sigma_s.max()), min(video.shape[-2:])) if len(sigma_s) else 0
    group = max(1, CPU_GROUP_BYTES // (4 * video[0].numel())) if video.device.type == "cpu" else len(video)
    if group >= len(video):
        return _apply_group(video, p, radius)
    out = torch.empty(video.shape, dtype=torch.float32)
    for i in range(0, len(video), group):
        out[i:i + group] = _apply_group(video[i:i + group], {k: v[i:i + group] for k, v in p.items()}, radius)
    return out


def _apply_group(video: torch.Tensor, p: Dict[str, torch.Tensor], blur_radius_px: int) -> torch.Tensor:
    """:func:`apply_batch` of one group of clips, ``p`` on the host, the spatial blur's kernel radius
    given."""
    # (B, C, T, h, w) -> (B, T, C, h, w): frames as images for the 2-D ops; the copy is of uint8.
    x = video.transpose(1, 2).contiguous().float().div_(255)
    x = _on_rows(x, p["flip"], lambda v: v.flip(-1))
    if bool(p["jitter"].any()):
        identity = torch.tensor(_IDENTITY_FACTORS)
        for step in range(4):  # each clip's step-th adjustment, one call per kind of adjustment
            for op, fn in _jitter_ops().items():
                mask = p["jitter"] & (p["order"][:, step] == op) & (p["factors"][:, op] != identity[op])
                x = _on_rows(x, mask, fn, p["factors"][:, op])
    x = _on_rows(x, p["gray"], _grayscale)
    sigma_t, sigma_s = p["sigma"].unbind(1)
    spatial = p["blur"] & (sigma_s > 0)
    if blur_radius_px > 0 and bool(spatial.any()):
        x = _on_rows(x, spatial, _spatial_blur(blur_radius_px), sigma_s)
    temporal = p["blur"] & (sigma_t > 0)
    if bool(temporal.any()):
        blur, kernels = _temporal_blur_batch(sigma_t[temporal], x.shape[1])
        x = _on_rows(x, temporal, blur, _scatter_rows(kernels, temporal))
    mean = p["mean"].to(x.device, non_blocking=True)[:, None, :, None, None]  # (B, 1, C, 1, 1)
    std = p["std"].to(x.device, non_blocking=True)[:, None, :, None, None]
    x = (x - mean) / std
    return x.transpose(1, 2).contiguous()  # (B, T, C, h, w) -> (B, C, T, h, w)


def _scatter_rows(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n, ...) values of the n True rows of ``mask`` (B,) placed in a (B, ...) tensor of zeros."""
    out = rows.new_zeros((len(mask), *rows.shape[1:]))
    out[mask] = rows
    return out


def augment_views(views: Sequence[torch.Tensor], params: Sequence[Dict[str, torch.Tensor]]) -> List[torch.Tensor]:
    """:func:`apply_batch` of V views in one call when they have the same shape (their clips
    concatenated), else one call each.

    Args:
        views: V uint8 (B, C, T, h, w), on the device.
        params: the V views' batched parameters (on the host).

    Returns:
        V float32 (B, C, T, h, w).
    """
    if len({tuple(v.shape) for v in views}) > 1:
        return [apply_batch(v, p) for v, p in zip(views, params)]
    merged = {k: torch.cat([p[k] for p in params]) for k in PARAM_KEYS}
    out = apply_batch(torch.cat(list(views)), merged)  # (V B, C, T, h, w)
    return list(out.split(views[0].shape[0]))


def prepare_batch(batch: Dict[str, Any], device: torch.device,
                  keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """A loader's batch on the training device, ready for the model.

    Every tensor is moved (non-blocking: pinned batches overlap the copy). When the workers left the
    video views as uint8 with their parameters (``STICA.AUG.DEVICE device``), the views are augmented
    and normalised there, all V at once, and the parameters dropped.

    Args:
        batch: a collated batch (``"video"``: V (B, C, T, h, w) views, uint8 with ``"video_aug"`` or
            float without).
        device: the training device.
        keys: the entries to prepare (default: all).

    Returns:
        The batch (its ``keys``) with float (B, C, T, h, w) views on ``device``.
    """
    keys = [k for k in batch if k != PARAM_KEY] if keys is None else list(keys)
    out = move_to_device({k: batch[k] for k in keys}, device, non_blocking=True)
    if "video" in out and PARAM_KEY in batch:
        out["video"] = augment_views(out["video"], batch[PARAM_KEY])
    return out
