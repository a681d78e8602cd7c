"""Loaders: batch layout, per-process batch size, samplers, per-sample seeds."""

import os
import signal

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

import stica_slowfast.data  # noqa: F401  (registers the datasets)
from stica_slowfast.config import get_cfg, merge_from_list
from stica_slowfast.data import loader as loader_mod
from stica_slowfast.data.loader import SeededSampler, construct_loader, per_process_batch_size, shuffle_dataset
from stica_slowfast.synthetic import write_video
from stica_slowfast.utils.misc import derive_seeds

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
    assert isinstance(loader.sampler, SeededSampler) and isinstance(loader.sampler.sampler, RandomSampler)
    assert loader.drop_last
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
    # Pretend to be rank r of 2: the loader shards with a DistributedSampler inside the SeededSampler.
    monkeypatch.setattr(loader_mod.du, "get_world_size", lambda: 2)
    cfg = make_cfg(data_dir)
    pairs = {}
    for rank in (0, 1):
        monkeypatch.setattr(loader_mod.du, "get_rank", lambda: rank)
        train = construct_loader(cfg, "train")
        inner = train.sampler.sampler
        assert isinstance(inner, DistributedSampler)
        assert train.batch_size == 2 and inner.shuffle and inner.drop_last and len(train.sampler) == 3
        pairs[rank] = []
        for epoch in range(4):
            shuffle_dataset(train, epoch)
            assert train.sampler.epoch == inner.epoch == epoch
            pairs[rank].append(list(train.sampler))
    for epoch in range(4):
        # The ranks split the 6 videos of every epoch, and no two samples share a seed.
        indices = [i for rank in (0, 1) for i, _ in pairs[rank][epoch]]
        assert sorted(indices) == list(range(NUM_VIDEOS))
        assert len({seed for rank in (0, 1) for _, seed in pairs[rank][epoch]}) == NUM_VIDEOS
        for rank in (0, 1):
            assert [s for _, s in pairs[rank][epoch]] == list(derive_seeds(cfg.RNG_SEED, epoch, rank, 2, count=3))
    assert len({tuple(i for i, _ in p) for p in pairs[1]}) > 1  # the order changes with the epoch
    # Evaluation keeps every video (padding the last rank by repeating) in order, unseeded.
    test = construct_loader(cfg, "test")
    assert isinstance(test.sampler, DistributedSampler) and not test.sampler.shuffle
    assert test.batch_size == 2
    assert [i for b in test for i in b["index"].tolist()] == [1, 3, 5]
    cfg.TEST.BATCH_SIZE = 3
    with pytest.raises(ValueError):
        construct_loader(cfg, "test")


def test_distributed_sampler_pads_evaluation_and_trims_training(data_dir, monkeypatch):
    # 6 videos over 4 ranks: evaluation pads to 8 (2 per rank, repeating videos 0 and 1), training
    # drops to 4 (1 per rank).
    monkeypatch.setattr(loader_mod.du, "get_world_size", lambda: 4)
    monkeypatch.setattr(loader_mod.du, "get_rank", lambda: 3)
    cfg = make_cfg(data_dir, **{"TRAIN.BATCH_SIZE": 4, "TEST.BATCH_SIZE": 4})
    assert [i for b in construct_loader(cfg, "val") for i in b["index"].tolist()] == [3, 1]
    train = construct_loader(cfg, "train")
    assert len(train.sampler) == 1 and len(list(train)) == 1


def first_frame_levels(batch) -> list:
    """Mean level of the first frame of clip 0 of each sample: tells the drawn clip start."""
    return [round(float(v[:, 0].float().mean()), 4) for v in batch["video"][0]]


def epoch_batches(loader, epoch, seed=None) -> list:
    shuffle_dataset(loader, epoch, seed=seed)
    return list(loader)


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], list):  # "video", "audio": one tensor per view; "video_aug": a dict
                for x, y in zip(a[key], b[key], strict=True):
                    pairs = [(x[k], y[k]) for k in x] if isinstance(x, dict) else [(x, y)]
                    assert all(torch.equal(u, v) for u, v in pairs), key
            else:
                assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("aug", ["worker", "device"])
def test_samples_do_not_depend_on_workers_or_persistence(data_dir, aug):
    # Every video is the same file, so the samples differ only by their random draws (clip starts,
    # crops, flips, colour, audio). Batch 1, so that with 2 workers each loads every other sample.
    cfg = make_cfg(data_dir, **{"TRAIN.BATCH_SIZE": 1, "STICA.AUG.DEVICE": aug, "DATA.SSL_COLOR_JITTER": True})
    want = [epoch_batches(construct_loader(cfg, "train"), epoch) for epoch in (0, 1)]
    assert [b["index"].item() for b in want[0]] != [b["index"].item() for b in want[1]]
    levels = [first_frame_levels(b) for b in want[0]]
    assert len(set(map(tuple, levels))) > 1  # the samples of one epoch differ
    assert levels != [first_frame_levels(b) for b in want[1]]  # and so do two epochs
    for workers in (1, 2):
        cfg.DATA_LOADER.NUM_WORKERS = workers
        loader = construct_loader(cfg, "train")
        assert loader.persistent_workers
        # Two epochs from the same (persistent) workers, then epoch 1 again from fresh workers.
        torch.manual_seed(workers)  # the process's own RNG state plays no part
        got = [epoch_batches(loader, epoch) for epoch in (0, 1)]
        del loader
        assert_same_batches(got[0], want[0])
        assert_same_batches(got[1], want[1])
        assert_same_batches(epoch_batches(construct_loader(cfg, "train"), 1), want[1])


def test_a_resumed_epoch_yields_the_rest_of_the_whole_epoch(data_dir):
    cfg = make_cfg(data_dir, **{"TRAIN.BATCH_SIZE": 2, "DATA_LOADER.NUM_WORKERS": 1})
    whole = epoch_batches(construct_loader(cfg, "train"), 1)
    loader = construct_loader(cfg, "train")
    shuffle_dataset(loader, 1, start_batch=2)  # a run resumed after 2 steps of epoch 1
    assert len(loader) == len(whole)  # the epoch's length (the schedule's) is the whole epoch's
    assert_same_batches(list(loader), whole[2:])
    assert_same_batches(epoch_batches(loader, 2), epoch_batches(construct_loader(cfg, "train"), 2))


def test_workers_leave_the_stop_signals_to_the_training_process(data_dir):
    # SLURM signals every process of a job: a DataLoader worker must not die of it.
    cfg = make_cfg(data_dir, **{"TRAIN.BATCH_SIZE": 1, "DATA_LOADER.NUM_WORKERS": 1})
    loader = construct_loader(cfg, "train")
    shuffle_dataset(loader, 0)
    batches = iter(loader)
    next(batches)
    (worker,) = batches._workers
    for name in cfg.TRAIN.PREEMPT_SIGNALS:
        os.kill(worker.pid, signal.Signals[name])
    assert len(list(batches)) == len(loader) - 1
    assert worker.is_alive()
    del batches


def test_loading_leaves_the_process_rng_alone(data_dir):
    # With NUM_WORKERS 0 the samples are drawn in the trainer's own process: the model's draws must
    # not depend on them.
    loader = construct_loader(make_cfg(data_dir), "train")
    torch.manual_seed(3)
    state = torch.get_rng_state()
    epoch_batches(loader, 0)
    assert torch.equal(torch.get_rng_state(), state)


def test_train_draws_depend_on_seed_and_epoch_only(data_dir):
    # What a resumed run relies on: epoch e draws the same order and clips whether or not the epochs
    # before it ran in this process (and its workers).
    cfg = make_cfg(data_dir, **{"DATA_LOADER.NUM_WORKERS": 1, "TRAIN.BATCH_SIZE": 1})

    def draws(loader, epoch):  # as the trainer calls it
        batches = epoch_batches(loader, epoch, seed=cfg.RNG_SEED)
        return [(b["index"].tolist(), first_frame_levels(b)) for b in batches]

    uninterrupted = construct_loader(cfg, "train")
    epochs = [draws(uninterrupted, epoch) for epoch in range(3)]
    torch.manual_seed(123)
    assert draws(construct_loader(cfg, "train"), 2) == epochs[2]
    assert epochs[1] != epochs[2]
    cfg.RNG_SEED = 8
    assert draws(construct_loader(cfg, "train"), 2) != epochs[2]


def test_train_subset_keeps_full_split_indices_and_seeds(data_dir):
    cfg = make_cfg(data_dir, **{"TRAIN.BATCH_SIZE": 2})
    loader = construct_loader(cfg, "train", subset=[1, 3, 4, 5])
    assert len(loader) == 2
    batches = epoch_batches(loader, 0)
    assert sorted(i for b in batches for i in b["index"].tolist()) == [1, 3, 4, 5]
    assert_same_batches(epoch_batches(construct_loader(cfg, "train", subset=[1, 3, 4, 5]), 0), batches)
    # The kNN monitor's bank: train videos read as val, in order, unseeded.
    bank = construct_loader(cfg, "train", sampling="val", subset=[1, 3, 4])
    assert [i for b in bank for i in b["index"].tolist()] == [1, 3, 4]


class RandomNumbers(torch.utils.data.Dataset):
    """A registered dataset of another kind: int indices only."""

    def __init__(self, cfg, split, sampling=None):
        pass

    def __len__(self):
        return NUM_VIDEOS

    def __getitem__(self, index):
        return {"index": int(index), "x": torch.rand(())}


def test_other_datasets_get_int_indices_with_a_warning(data_dir, monkeypatch, caplog):
    monkeypatch.setattr(loader_mod, "get_dataset_class", lambda name: RandomNumbers)
    with caplog.at_level("WARNING", logger="stica_slowfast.data.loader"):
        loader = construct_loader(make_cfg(data_dir), "train")
    assert "RandomNumbers is not a VideoDataset" in caplog.text
    for epoch in (0, 1):
        indices = [i for b in epoch_batches(loader, epoch) for i in b["index"].tolist()]
        assert len(set(indices)) == 4 and set(indices) <= set(range(NUM_VIDEOS))

