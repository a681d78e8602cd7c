"""Per-clip video transforms on ``torchvision.transforms.v2`` (cfg-free builders + a cfg helper).

A clip enters as the decoder's uint8 ``(T, H, W, C)`` tensor. Inside, it is a ``tv_tensors.Video``
``(T, C, H, W)``, so v2 draws ONE set of random parameters per call and applies it to every frame of
the clip; calling the transform once per clip gives each clip its own augmentation::

    uint8 (T, H, W, C) -> Video (T, C, H, W) -> crop+resize (uint8)              [geometry, worker]
        -> draw flip / colour jitter / grayscale / blur parameters                [worker]
        -> flip -> float [0, 1] -> [colour jitter] -> [grayscale] -> [blur] -> normalise
                                                                  [appearance: worker or device]
        -> (C, T, h, w)

The appearance step is :class:`~stica_slowfast.data.appearance.ClipAppearance` (the per-clip SSL
augmentation of rho-clip SSL, arXiv 2104.14558): :meth:`VideoTransform.__call__` runs it in the worker
and returns float; :meth:`VideoTransform.crop_and_draw` stops after the draw and returns the uint8 crop
with its parameters, for the training device to apply to the whole batch
(:func:`~stica_slowfast.data.appearance.prepare_batch`). Both draw the same random numbers in the same
order, so a sample is the same either way.

Cropping happens before resizing and before the float conversion, so the expensive steps only touch
the pixels that are kept.

Symbols: T frames, C channels, H, W input size, h = w = crop size.
"""

from typing import Any, Dict, List, Sequence, Tuple

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from stica_slowfast.data.appearance import ClipAppearance

__all__ = [
    "augments_on_device",
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


class VideoTransform:
    """A decoded clip through its crop and its appearance augmentation.

    Args:
        geometry: v2 transform of a ``tv_tensors.Video`` (T, C, H, W) uint8 to its crop (T, C, h, w),
            still uint8 (crop + resize).
        appearance: the clip's flip / colour / blur draw and normalisation.
    """

    def __init__(self, geometry: v2.Transform, appearance: ClipAppearance):
        self.geometry, self.appearance = geometry, appearance

    def _crop(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, C) -> its crop, uint8 (T, C, h, w)."""
        if frames.ndim != 4:
            raise ValueError(f"expected a (T, H, W, C) clip, got shape {tuple(frames.shape)}")
        video = tv_tensors.Video(frames.permute(0, 3, 1, 2))  # (T, H, W, C) -> (T, C, H, W), a view
        return self.geometry(video)

    def crop_and_draw(self, frames: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """uint8 (T, H, W, C) -> its crop, uint8 (C, T, h, w) contiguous, and its appearance parameters
        (drawn, not applied: the device applies them)."""
        crop = self._crop(frames).as_subclass(torch.Tensor)
        return crop.permute(1, 0, 2, 3).contiguous(), self.appearance.draw()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, H, W, C) -> normalised float (C, T, h, w), augmented here."""
        out = self.appearance.apply(self._crop(frames), self.appearance.draw())
        # (T, C, h, w) -> (C, T, h, w); contiguous so batches stack without strided copies later.
        return out.permute(1, 0, 2, 3).contiguous()

    def __repr__(self) -> str:
        return f"VideoTransform({self.geometry}, {self.appearance})"


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
            :class:`~stica_slowfast.data.appearance.GaussianBlurVideo`.
        blur_sigma_max: [temporal, spatial] sigma upper bounds.
        mean: per-channel mean of [0, 1] input.
        std: per-channel std of [0, 1] input.

    Returns:
        A :class:`VideoTransform`: called, uint8 (T, H, W, C) -> float (C, T, crop_size, crop_size);
        its ``crop_and_draw`` leaves the appearance to the device.
    """
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
    appearance = ClipAppearance(
        random_flip=random_flip, color_jitter_prob=color_jitter_prob, bri_con_sat=bri_con_sat, hue=hue,
        grayscale_prob=grayscale_prob, blur_prob=blur_prob, blur_sigma_min=blur_sigma_min,
        blur_sigma_max=blur_sigma_max, mean=mean, std=std)
    return VideoTransform(crop, appearance)


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
    return VideoTransform(crop, ClipAppearance(
        random_flip=False, color_jitter_prob=0.0, bri_con_sat=(0.0, 0.0, 0.0), hue=0.0, grayscale_prob=0.0,
        blur_prob=0.0, blur_sigma_min=(0.0, 0.0), blur_sigma_max=(0.0, 0.0), mean=mean, std=std))


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


def augments_on_device(cfg) -> bool:
    """Whether the training device applies the appearance augmentation (``STICA.AUG.DEVICE``; "auto"
    is "device" on GPUs and "worker" on the CPU). A cfg without the key augments in the worker."""
    where = cfg.STICA.AUG.DEVICE if "STICA" in cfg and "AUG" in cfg.STICA else "worker"
    if where == "auto":
        return cfg.NUM_GPUS > 0
    return where == "device"
