"""Our datasets in PySlowFast's sample format, for PySlowFast's own loaders and loops.

PySlowFast's ``train_epoch``, ``eval_epoch`` and ``perform_test`` unpack every batch as
``(inputs, labels, index, time, meta)``, and its ``TestMeter`` wants one item per (video, view), the
view's video being ``index // V``. :class:`PySlowFastDataset` gives those items from one of our
datasets (our decoder, sampling and transforms, the same clips our engine sees):

* ``"train"`` / ``"val"``: one item per video, ``([clip (C, T, H, W)], label, index, time, {})``: the
  training clip (one clip per sample: ``DATA.TRAIN_CROP_NUM_TEMPORAL`` x ``..._SPATIAL`` = 1), the
  first evaluation view for "val" (PySlowFast's val meter scores clips, not videos);
* ``"test"``: V = ``TEST.NUM_ENSEMBLE_VIEWS`` x ``TEST.NUM_SPATIAL_CROPS`` items per video, view v
  of video i at index ``i * V + v``; ``num_videos`` is PySlowFast's name for the item count. A video
  is decoded once for its V items (the last one is kept per worker process).

``time`` is a zero placeholder (PySlowFast's classification loops only move it) and ``meta`` empty.
The appearance augmentation runs in the worker (``STICA.AUG.DEVICE worker``: PySlowFast's loop has
no device step).

Bad input: a training video that cannot be used is replaced and counted as in our engine. A test
video that cannot be decoded stops the test with a :class:`~stica_slowfast.data.decoding.DecodeError`
naming it: PySlowFast's ``TestMeter`` has no way to leave a video out, and scoring the zeros our
dataset returns for it would count a made-up prediction (PySlowFast's own Kinetics also stops there).
"""

from typing import Dict, List, Tuple, Type

import torch
from fvcore.common.config import CfgNode

from stica_slowfast.data.bad_input import SKIP_REASONS
from stica_slowfast.data.decoding import DecodeError

__all__ = ["PySlowFastDataset", "pyslowfast_dataset"]

_Item = Tuple[List[torch.Tensor], int, int, torch.Tensor, Dict]


class PySlowFastDataset(torch.utils.data.Dataset):
    """One of our datasets as PySlowFast's loops read one (see the module docstring).

    Args:
        cfg: the run's config (PySlowFast's, with our keys).
        split: "train", "val" or "test".
    """

    #: Our dataset class this adapter reads (set by :func:`pyslowfast_dataset`).
    source: Type[torch.utils.data.Dataset]

    def __init__(self, cfg: CfgNode, split: str) -> None:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.STICA.AUG.DEVICE = "worker"
        cfg.freeze()
        self.dataset = self.source(cfg, split)
        self.split = split
        self.views = cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS if split == "test" else 1
        self._last: Tuple[int, Dict] = (-1, {})

    def __len__(self) -> int:
        return len(self.dataset) * self.views

    @property
    def num_videos(self) -> int:
        """PySlowFast's name for the number of items (videos x views in "test")."""
        return len(self)

    def _video(self, video: int) -> Dict:
        if self._last[0] != video:
            self._last = (video, self.dataset[video])
        return self._last[1]

    def __getitem__(self, index: int) -> _Item:
        video, view = divmod(int(index), self.views)
        sample = self._video(video)
        clips = sample["video"]
        if self.split == "train" and len(clips) != 1:
            raise ValueError(f"PySlowFast's train loop takes one clip per sample, our training sampling gives "
                             f"{len(clips)}: set DATA.TRAIN_CROP_NUM_TEMPORAL and DATA.TRAIN_CROP_NUM_SPATIAL to 1")
        if not sample.get("valid", True):
            reasons = sample["skip_reasons"].tolist()
            reason = next((r for r, n in zip(SKIP_REASONS, reasons) if n), "undecodable")
            path = self.dataset.items[video][0]
            raise DecodeError(f"{path} cannot be used ({reason}); PySlowFast's test has no way to leave a video "
                              f"out: fix or remove it from the {self.split} split (our tools/run_net.py "
                              f"skips and counts it)", reason)
        return [clips[view]], int(sample["label"]), int(index), torch.zeros(1), {}


def pyslowfast_dataset(source: Type[torch.utils.data.Dataset]) -> Type[PySlowFastDataset]:
    """A :class:`PySlowFastDataset` class reading our dataset class ``source`` (what the bridge
    registers in PySlowFast's ``DATASET_REGISTRY``)."""
    return type(source.__name__, (PySlowFastDataset,), {
        "source": source, "__doc__": f"Our {source.__name__} in PySlowFast's sample format.",
        "__module__": __name__})
