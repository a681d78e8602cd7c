"""Loaders: batch layout, per-process batch size, samplers, worker RNG streams."""

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

import stica_slowfast.data  # noqa: F401  (registers the datasets)
from stica_slowfast.config import get_cfg, merge_from_list
from stica_slowfast.data import loader as loader_mod
from stica_slowfast.data.av_writer import write_video
from stica_slowfast.data.loader import construct_loader, per_process_batch_size, shuffle_dataset

NUM_VIDEOS = 6


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    levels = (8 + 8 * np.arange(25)).astype(np.uint8)  # 1 s at 25 fps, frame i has level 8 + 8 i
    frames = np.broadcast_to(levels[:, None, None, None], (25, 48, 64, 3)).copy()
    sr = 8000
    audio = (0.3 * np.sin(2 * np.pi * 300 * np.arange(sr) / sr)).astype(np.float32)
    write_video(str(d / "clip.mp4"), frames, fps=25, audio=audio, audio_rate=sr)
    rows = [f"clip.mp4 {i % 3}\n" for i in range(NUM_VIDEOS)]
    for split in ("train", "val", "test"):
        (d / f"{split}.csv").write_text("".join(rows))
    return d


def make_cfg(data_dir, **overrides):
    cfg = get_cfg()
    cfg.DATA.PATH_TO_DATA_DIR = str(data_dir)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TARGET_FPS = 3, 3, 30
    cfg.DATA.TRAIN_JITTER_SCALES = [24, 32]
    cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE = 16, 24
    cfg.DATA.TRAIN_CROP_NUM_TEMPORAL = 2
    cfg.MODEL.NUM_CLASSES = 3
    cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE = 4, 4
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.STICA.AUDIO.ENABLE, cfg.STICA.AUDIO.SAMPLE_RATE = True, 4000
    merge_from_list(cfg, [x for item in overrides.items() for x in item])
    return cfg


def test_train_batch_layout(data_dir):
    loader = construct_loader(make_cfg(data_dir), "train")
    assert isinstance(loader.sampler, RandomSampler) and loader.drop_last
    assert loader.batch_size == 4 and len(loader) == NUM_VIDEOS // 4
    assert not loader.pin_memory  # PIN_MEMORY is True by default, but NUM_GPUS is 0
    (batch,) = list(loader)
    assert len(batch["video"]) == len(batch["audio"]) == 2  # rho clips
    assert all(v.shape == (4, 3, 3, 16, 16) and v.dtype == torch.float32 for v in batch["video"])
    # 0.3 s at 4 kHz -> log spectrogram of 65 bins (n_fft 128) x 29 frames (20 ms windows, 10 ms hop)
    assert all(a.shape == (4, 1, 65, 29) and a.dtype == torch.float32 for a in batch["audio"])
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (4,)
    assert torch.equal(batch["label"], batch["index"] % 3)
    assert batch["valid"].dtype == torch.bool and bool(batch["valid"].all())
    assert int(batch["skipped"].sum()) == 0


def test_val_and_test_keep_order_and_every_video(data_dir):
    cfg = make_cfg(data_dir)
    val = construct_loader(cfg, "val")
    assert isinstance(val.sampler, SequentialSampler) and not val.drop_last
    batches = list(val)
    assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5]]
    assert len(batches[0]["video"]) == 1 and batches[0]["video"][0].shape == (4, 3, 3, 24, 24)
    test = construct_loader(cfg, "test")
    first = next(iter(test))
    assert len(first["video"]) == 2 * 3 and first["video"][5].shape == (4, 3, 3, 24, 24)
    assert first["index"].tolist() == [0, 1, 2, 3]


def test_dataset_name_is_case_insensitive_and_checked(data_dir):
    cfg = make_cfg(data_dir, **{"TEST.DATASET": "Kinetics"})
    assert type(construct_loader(cfg, "test").dataset).__name__ == "Kinetics"
    cfg.TEST.DATASET = "kinetic"
    with pytest.raises(KeyError, match="No dataset named 'kinetic'"):
        construct_loader(cfg, "test")


def test_per_process_batch_size():
    assert per_process_batch_size(64, 8) == 8
    assert per_process_batch_size(3, 1) == 3
    for global_batch, world in [(6, 4), (2, 4), (0, 1)]:
        with pytest.raises(ValueError, match="multiple of the number of processes"):
            per_process_batch_size(global_batch, world)


def test_distributed_sampler_and_epochs(data_dir, monkeypatch):
    # Pretend to be rank 1 of 2: the loader shards with a DistributedSampler.
    monkeypatch.setattr(loader_mod.du, "get_world_size", lambda: 2)
    monkeypatch.setattr(loader_mod.du, "get_rank", lambda: 1)
    cfg = make_cfg(data_dir)
    train = construct_loader(cfg, "train")
    assert isinstance(train.sampler, DistributedSampler)
    assert train.batch_size == 2 and train.sampler.shuffle and train.sampler.drop_last
    orders = []
    for epoch in range(4):
        shuffle_dataset(train, epoch)
        assert train.sampler.epoch == epoch
        orders.append(tuple(train.sampler))
    assert len(set(orders)) > 1  # the order changes with the epoch
    test = construct_loader(cfg, "test")
    assert not test.sampler.shuffle and test.batch_size == 2
    assert [i for b in test for i in b["index"].tolist()] == [1, 3, 5]
    cfg.TEST.BATCH_SIZE = 3
    with pytest.raises(ValueError):
        construct_loader(cfg, "test")


def first_frame_levels(batch) -> list:
    """Mean level of the first frame of clip 0 of each sample: tells the drawn clip start."""
    return [round(float(v[:, 0].mean()), 4) for v in batch["video"][0]]


def test_workers_draw_different_reproducible_streams(data_dir):
    # Every video is the same file, so differences come only from the random draws.
    cfg = make_cfg(data_dir, **{"DATA_LOADER.NUM_WORKERS": 2, "TRAIN.BATCH_SIZE": 1})
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        loader = construct_loader(cfg, "train")
        assert not loader.persistent_workers  # train workers restart to take each epoch's seed
        runs.append([first_frame_levels(b) for b in loader])
        del loader
    assert runs[0] == runs[1]  # same seed, same samples
    # Workers take batches in turn (0, 2, 4 from worker 0; 1, 3, 5 from worker 1): with one seed
    # for both they would draw the same sequence.
    assert runs[0][0::2] != runs[0][1::2]


def test_train_draws_depend_on_seed_and_epoch_only(data_dir):
    # What a resumed run relies on: epoch e draws the same order and clips whether or not the epochs
    # before it ran in this process.
    cfg = make_cfg(data_dir, **{"DATA_LOADER.NUM_WORKERS": 1, "TRAIN.BATCH_SIZE": 1})

    def draws(loader, epoch):
        shuffle_dataset(loader, epoch, seed=cfg.RNG_SEED)
        return [(b["index"].tolist(), first_frame_levels(b)) for b in loader]

    uninterrupted = construct_loader(cfg, "train")
    epochs = [draws(uninterrupted, epoch) for epoch in range(3)]
    torch.manual_seed(123)  # the process's own RNG state plays no part
    assert draws(construct_loader(cfg, "train"), 2) == epochs[2]
    assert epochs[1] != epochs[2]
