"""Every config's data path with the appearance augmentation on the device (STICA.AUG.DEVICE device):
the samples it makes, once the device has augmented them, are the worker path's own."""

import glob
import os

import pytest
import torch
from torch.utils.data import default_collate

from stica_slowfast.config import load_config
from stica_slowfast.data import prepare_batch
from stica_slowfast.data.datasets import SeededIndex
from stica_slowfast.data.loader import build_dataset
from stica_slowfast.synthetic import generate_dataset
from stica_slowfast.synthetic.generate import HMDB51_SPLIT_DIR

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
# Within this in [0, 1] pixel units of the worker path (the blur's kernel size and float rounding).
TOLERANCE = 2 / 255


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("every_config"))
    generate_dataset(out, num_classes=2, train_per_class=1, val_per_class=1, test_per_class=1, width=64,
                     height=48, fps=30, duration=2.5, audio_rate=16000, seed=3)
    return out


def _sample(cfg, split, where):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.STICA.AUG.DEVICE = where
    dataset = build_dataset(cfg, split, sampling=split)
    return prepare_batch(default_collate([dataset[SeededIndex(0, 11)]]), torch.device("cpu"))


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, REPO) for p in CONFIGS])
def test_config_makes_the_same_samples_with_the_device_augmenting(path, data_dir):
    cfg = load_config([path], ["STICA.SYNTHETIC.ENABLE", "False"])
    cfg.defrost()
    # The generator's UCF-101 / HMDB-51 split lists name videos relative to videos/ (the csv files to
    # the dataset's folder), and HMDB-51's split files have a folder of their own.
    dataset = cfg.TRAIN.DATASET.lower()
    cfg.DATA.PATH_PREFIX = os.path.join(data_dir, "videos") if dataset in ("ucf101", "hmdb51") else data_dir
    cfg.DATA.PATH_TO_DATA_DIR = os.path.join(data_dir, HMDB51_SPLIT_DIR) if dataset == "hmdb51" else data_dir
    for split in ("train", "test"):
        worker, device = _sample(cfg, split, "worker"), _sample(cfg, split, "device")
        crop = cfg.DATA.TRAIN_CROP_SIZE if split == "train" else cfg.DATA.TEST_CROP_SIZE
        assert len(device["video"]) == len(worker["video"]) > 0
        for a, b in zip(worker["video"], device["video"]):
            assert b.shape == (1, len(cfg.DATA.MEAN), cfg.DATA.NUM_FRAMES, crop, crop) and b.dtype == torch.float32
            std = torch.tensor(cfg.DATA.STD).view(1, -1, 1, 1, 1)
            assert float(((a - b).abs() * std).max()) <= TOLERANCE, split
