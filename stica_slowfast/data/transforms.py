"""Per-clip video transforms on ``torchvision.transforms.v2`` (cfg-free builders + a cfg helper).

A clip enters as the decoder's uint8 ``(T, H, W, C)`` tensor and leaves as normalised float
``(C, T, H, W)``. Inside, the clip is a ``tv_tensors.Video`` ``(T, C, H, W)``, so v2 draws ONE set of
random parameters per call and applies it to every frame of the clip; calling the transform once per
clip gives each clip its own augmentation.

::

    uint8 (T, H, W, C) -> Video (T, C, H, W) -> crop+resize (uint8) -> flip (uint8)
        -> float [0, 1] -> [colour jitter (p)] -> [grayscale (p)] -> [Gaussian blur (p)]
        -> normalise -> (C, T, h, w)

The bracketed steps are the per-clip SSL appearance augmentation of rho-clip SSL (Feichtenhofer et al.,
"A Large-Scale Study on Unsupervised Spatiotemporal Representation Learning", arXiv 2104.14558):
colour jitter (brightness/contrast/saturation 0.4, hue 0.1) with probability 0.8, grayscale with
probability 0.2 and an optional Gaussian blur. They run on float [0, 1] frames, as in PySlowFast.

Cropping happens before resizing and before the float conversion, so the expensive steps only touch
the pixels that are kept.

Symbols: T frames, C channels, H, W input size, h = w = crop size.
"""

from typing import Any, Dict, List, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = [
    "GaussianBlurVideo",
    "RandomGrayscaleVideo",
    "RandomShortSideScaleCrop",
    "ShortSideSpatialCrop",
    "VideoTransform",
    "build_train_transform",
    "build_test_transform",
    "build_transforms_from_cfg",
]


def _size(flat_inputs: List[Any]) -> Sequence[int]:
    """(H, W) of the (only) video among the inputs of a v2 transform."""
    return flat_inputs[0].shape[-2:]


class RandomShortSideScaleCrop(v2.Transform):
    """Scale the short side to a random size in [min_size, max_size], then take a random square crop.

    Computed as one ``resized_crop``: the crop box is drawn in input coordinates (``crop_size / scale``
    pixels wide) and only that box is resized, which equals resize-then-crop up to sub-pixel rounding
    while resizing ``crop_size**2`` instead of ``(scale * H) * (scale * W)`` pixels. When the scaled
    frame is smaller than the crop the box is clamped to the frame (the crop is then stretched).

    Args:
        min_size: smallest short side in pixels after scaling.
        max_size: largest short side in pixels after scaling.
        crop_size: side of the square output crop in pixels.
    """

    def __init__(self, *, min_size: int, max_size: int, crop_size: int):
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size, self.crop_size = min_size, max_size, crop_size

    def make_params(self, flat_inputs: List[Any]) -> Dict[str, Any]:
        height, width = _size(flat_inputs)
        short = int(torch.randint(self.min_size, self.max_size + 1, (1,)).item())
        scale = short / min(height, width)
        box = max(1, round(self.crop_size / scale))  # crop side in input pixels
        box_h, box_w = min(box, height), min(box, width)
        top = int(torch.randint(0, height - box_h + 1, (1,)).item())
        left = int(torch.randint(0, width - box_w + 1, (1,)).item())
        return dict(top=top, left=left, height=box_h, width=box_w)

    def transform(self, inpt: Any, params: Dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params,
                                 size=[self.crop_size, self.crop_size], antialias=True)


class ShortSideSpatialCrop(v2.Transform):
    """Deterministic test crop: short side scaled to ``crop_size``, square crop ``spatial_idx``.

    The ``num_crops`` crops are evenly spaced along the long side (1 crop: centre; 3 crops: start,
    centre, end). Computed as crop-then-resize of the ``short x short`` input square.

    Args:
        crop_size: output side in pixels (the scaled short side).
        spatial_idx: which crop, in [0, num_crops).
        num_crops: number of crops along the long side.
    """

    def __init__(self, *, crop_size: int, spatial_idx: int = 0, num_crops: int = 1):
        super().__init__()
        if num_crops < 1 or not 0 <= spatial_idx < num_crops:
            raise ValueError(f"need 0 <= spatial_idx < num_crops, got {spatial_idx}, {num_crops}")
        self.crop_size, self.spatial_idx, self.num_crops = crop_size, spatial_idx, num_crops

    def make_params(self, flat_inputs: List[Any]) -> Dict[str, Any]:
        height, width = _size(flat_inputs)
        side = min(height, width)
        slack = max(height, width) - side  # room along the long side
        if self.num_crops == 1:
            offset = slack // 2
        else:
            offset = round(self.spatial_idx * slack / (self.num_crops - 1))
        top, left = (offset, 0) if height > width else (0, offset)
        return dict(top=top, left=left, height=side, width=side)

    def transform(self, inpt: Any, params: Dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, **params,
                                 size=[self.crop_size, self.crop_size], antialias=True)


class GaussianBlurVideo(v2.Transform):
    """Gaussian blur of a clip with one random sigma per clip, in space and optionally in time.

    PySlowFast's ``GaussianBlurVideo`` convention: index 0 of ``sigma_min``/``sigma_max`` is the
    temporal sigma (in frames), index 1 the spatial sigma (in pixels, the same along H and W). Each
    sigma is drawn uniformly in [min, max] per call; a dimension whose max is 0 is left alone. The
    kernel radius is ``round(4 * sigma)`` (scipy's ``gaussian_filter`` default), capped by the frame
    size; borders are reflected in space and the edge frames repeated in time.

    Args:
        sigma_min: [temporal, spatial] lower bounds, >= 0.
        sigma_max: [temporal, spatial] upper bounds, >= the matching lower bound.
    """

    def __init__(self, *, sigma_min: Sequence[float] = (0.0, 0.1),
                 sigma_max: Sequence[float] = (0.0, 2.0)):
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
        height, width = out.shape[-2:]
        radius = min(round(4 * params["sigma_s"]), min(height, width) - 1)
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


def _temporal_blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """1-D Gaussian along dim 0 of a (T, C, H, W) clip, edge frames repeated; keeps type and dtype."""
    num_frames = video.shape[0]
    radius = min(round(4 * sigma), num_frames - 1)
    if radius == 0:
        return video
    taps = torch.arange(-radius, radius + 1)
    weights = torch.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()
    x = video.as_subclass(torch.Tensor)
    xf = x if x.is_floating_point() else x.float()
    out = torch.zeros_like(xf)
    for tap, w in zip(taps.tolist(), weights.tolist()):  # one tap at a time: O(T C H W) memory
        src = (torch.arange(num_frames) + tap).clamp(0, num_frames - 1)
        out += w * xf[src]
    if not x.is_floating_point():
        out = out.round_().clamp_(0, torch.iinfo(x.dtype).max).to(x.dtype)
    return tv_tensors.wrap(out, like=video) if isinstance(video, tv_tensors.TVTensor) else out


class VideoTransform:
    """Apply a v2 pipeline to a decoded clip: uint8 (T, H, W, C) -> float (C, T, h, w).

    Args:
        spatial: v2 transform on a ``tv_tensors.Video`` (T, C, H, W), uint8 in and float out.
    """

    def __init__(self, spatial: v2.Transform):
        self.spatial = spatial

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim != 4:
            raise ValueError(f"expected a (T, H, W, C) clip, got shape {tuple(frames.shape)}")
        video = tv_tensors.Video(frames.permute(0, 3, 1, 2))  # (T, H, W, C) -> (T, C, H, W), a view
        out = self.spatial(video)
        # (T, C, h, w) -> (C, T, h, w); contiguous so batches stack without strided copies later.
        return out.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()

    def __repr__(self) -> str:
        return f"VideoTransform({self.spatial})"


def _to_normalised_float(mean: Sequence[float], std: Sequence[float]) -> List[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def build_train_transform(
    *,
    crop_size: int,
    jitter_scales: Sequence[int] = (256, 320),
    scales_relative: Sequence[float] = (),
    aspect_relative: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    random_flip: bool = True,
    color_jitter_prob: float = 0.0,
    bri_con_sat: Sequence[float] = (0.4, 0.4, 0.4),
    hue: float = 0.1,
    grayscale_prob: float = 0.0,
    blur_prob: float = 0.0,
    blur_sigma_min: Sequence[float] = (0.0, 0.1),
    blur_sigma_max: Sequence[float] = (0.0, 2.0),
    mean: Sequence[float] = (0.45, 0.45, 0.45),
    std: Sequence[float] = (0.225, 0.225, 0.225),
) -> VideoTransform:
    """Training augmentation, one random draw per clip.

    Order: crop -> flip -> float [0, 1] -> colour jitter -> grayscale -> blur -> normalise. A step
    whose probability is 0 is left out of the pipeline (it draws no random numbers), so with all
    three probabilities 0 this is exactly the crop + flip transform.

    Args:
        crop_size: output side in pixels.
        jitter_scales: [min, max] short side in pixels for the scale jitter (used when
            ``scales_relative`` is empty).
        scales_relative: [min, max] area fraction for ``RandomResizedCrop`` (empty = scale jitter).
        aspect_relative: [min, max] aspect ratio for ``RandomResizedCrop`` (empty = [3/4, 4/3]).
        random_flip: horizontal flip with probability 0.5.
        color_jitter_prob: probability in [0, 1] of colour jitter (0 = off).
        bri_con_sat: [brightness, contrast, saturation] jitter strengths s >= 0; each factor is drawn
            from [max(0, 1 - s), 1 + s], in random order of the four adjustments.
        hue: hue jitter strength in [0, 0.5]; the shift is drawn from [-hue, hue].
        grayscale_prob: probability in [0, 1] of converting the clip to 3-channel grayscale.
        blur_prob: probability in [0, 1] of a Gaussian blur (0 = off; also off when both maxima
            of ``blur_sigma_max`` are 0).
        blur_sigma_min: [temporal (frames), spatial (pixels)] sigma lower bounds, see
            :class:`GaussianBlurVideo`.
        blur_sigma_max: [temporal, spatial] sigma upper bounds.
        mean: per-channel mean of [0, 1] input.
        std: per-channel std of [0, 1] input.

    Returns:
        A callable mapping uint8 (T, H, W, C) to float (C, T, crop_size, crop_size).
    """
    for name, p in (("color_jitter_prob", color_jitter_prob), ("grayscale_prob", grayscale_prob),
                    ("blur_prob", blur_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {p}")
    if len(bri_con_sat) != 3:
        raise ValueError(f"bri_con_sat must be [brightness, contrast, saturation], got {list(bri_con_sat)}")
    if len(scales_relative) > 0:
        if len(scales_relative) != 2:
            raise ValueError(f"scales_relative must be [min, max], got {list(scales_relative)}")
        ratio = tuple(aspect_relative) if len(aspect_relative) > 0 else (3.0 / 4.0, 4.0 / 3.0)
        if len(ratio) != 2:
            raise ValueError(f"aspect_relative must be [min, max], got {list(aspect_relative)}")
        crop: v2.Transform = v2.RandomResizedCrop(
            crop_size, scale=tuple(scales_relative), ratio=ratio, antialias=True)
    else:
        if len(jitter_scales) != 2:
            raise ValueError(f"jitter_scales must be [min, max], got {list(jitter_scales)}")
        crop = RandomShortSideScaleCrop(min_size=int(jitter_scales[0]),
                                        max_size=int(jitter_scales[1]), crop_size=crop_size)
    steps = [crop]
    if random_flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if color_jitter_prob > 0:
        brightness, contrast, saturation = (float(v) for v in bri_con_sat)
        jitter = v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation,
                                hue=float(hue))
        steps.append(jitter if color_jitter_prob >= 1 else v2.RandomApply([jitter], p=color_jitter_prob))
    if grayscale_prob > 0:
        steps.append(RandomGrayscaleVideo(p=grayscale_prob))
    if blur_prob > 0 and max(blur_sigma_max) > 0:
        blur = GaussianBlurVideo(sigma_min=blur_sigma_min, sigma_max=blur_sigma_max)
        steps.append(blur if blur_prob >= 1 else v2.RandomApply([blur], p=blur_prob))
    steps.append(v2.Normalize(mean=list(mean), std=list(std)))
    return VideoTransform(v2.Compose(steps))


def build_test_transform(
    *,
    crop_size: int,
    spatial_idx: int = 0,
    num_crops: int = 1,
    mean: Sequence[float] = (0.45, 0.45, 0.45),
    std: Sequence[float] = (0.225, 0.225, 0.225),
) -> VideoTransform:
    """Deterministic val/test transform: short side to ``crop_size``, crop ``spatial_idx`` of ``num_crops``.

    Args:
        crop_size: output side in pixels.
        spatial_idx: crop index along the long side, in [0, num_crops).
        num_crops: crops along the long side (1 = centre, 3 = start/centre/end).
        mean: per-channel mean of [0, 1] input.
        std: per-channel std of [0, 1] input.

    Returns:
        A callable mapping uint8 (T, H, W, C) to float (C, T, crop_size, crop_size).
    """
    crop = ShortSideSpatialCrop(crop_size=crop_size, spatial_idx=spatial_idx, num_crops=num_crops)
    return VideoTransform(v2.Compose([crop] + _to_normalised_float(mean, std)))


def _ssl_aug_kwargs(cfg) -> Dict[str, Any]:
    """``build_train_transform`` kwargs of the SSL appearance augmentation (all off unless
    ``DATA.SSL_COLOR_JITTER``)."""
    d = cfg.DATA
    if not d.get("SSL_COLOR_JITTER", False):
        return {}
    probs = cfg.STICA.get("SSL_AUG", {}) if "STICA" in cfg else {}
    return dict(
        color_jitter_prob=float(probs.get("COLOR_JITTER_PROB", 0.8)),
        bri_con_sat=d.SSL_COLOR_BRI_CON_SAT, hue=d.SSL_COLOR_HUE,
        grayscale_prob=float(d.COLOR_RND_GRAYSCALE),
        blur_prob=float(probs.get("BLUR_PROB", 0.5)),
        blur_sigma_min=d.SSL_BLUR_SIGMA_MIN, blur_sigma_max=d.SSL_BLUR_SIGMA_MAX)


def build_transforms_from_cfg(cfg, split: str) -> List[VideoTransform]:
    """Transforms for ``split`` from ``DATA.*`` / ``TEST.*`` keys.

    Args:
        cfg: config with ``DATA.TRAIN_JITTER_SCALES``, ``DATA.TRAIN_JITTER_SCALES_RELATIVE``,
            ``DATA.TRAIN_JITTER_ASPECT_RELATIVE``, ``DATA.TRAIN_CROP_SIZE``, ``DATA.TEST_CROP_SIZE``,
            ``DATA.RANDOM_FLIP``, ``DATA.MEAN``, ``DATA.STD`` and ``TEST.NUM_SPATIAL_CROPS``; for the
            train split also the SSL augmentation keys ``DATA.SSL_COLOR_JITTER`` (switches colour
            jitter, grayscale and blur on together, as in PySlowFast), ``DATA.SSL_COLOR_BRI_CON_SAT``,
            ``DATA.SSL_COLOR_HUE``, ``DATA.COLOR_RND_GRAYSCALE``, ``DATA.SSL_BLUR_SIGMA_MIN/MAX`` and
            ``STICA.SSL_AUG.COLOR_JITTER_PROB`` / ``BLUR_PROB``. A cfg without ``DATA.SSL_COLOR_JITTER``
            trains without them; one without ``STICA.SSL_AUG`` uses the paper's 0.8 / 0.5.
        split: "train", "val" or "test".

    Returns:
        train: ``[train transform]``; val: ``[centre crop]``; test: one transform per spatial crop,
        ``TEST.NUM_SPATIAL_CROPS`` of them in crop order.
    """
    d = cfg.DATA
    if split == "train":
        return [build_train_transform(
            crop_size=d.TRAIN_CROP_SIZE, jitter_scales=d.TRAIN_JITTER_SCALES,
            scales_relative=d.TRAIN_JITTER_SCALES_RELATIVE,
            aspect_relative=d.TRAIN_JITTER_ASPECT_RELATIVE, random_flip=d.RANDOM_FLIP,
            mean=d.MEAN, std=d.STD, **_ssl_aug_kwargs(cfg))]
    if split == "val":
        return [build_test_transform(crop_size=d.TEST_CROP_SIZE, spatial_idx=0, num_crops=1,
                                     mean=d.MEAN, std=d.STD)]
    if split == "test":
        n = cfg.TEST.NUM_SPATIAL_CROPS
        return [build_test_transform(crop_size=d.TEST_CROP_SIZE, spatial_idx=s, num_crops=n,
                                     mean=d.MEAN, std=d.STD) for s in range(n)]
    raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
