#!/usr/bin/env python3
"""Benchmarks; each prints one JSON object. Ratios compare variants measured in the same run.

    python tools/benchmark.py decode --cfg CONFIG.yaml [--videos N] [KEY VALUE ...]
        one-pass decoding of all test views of a video vs. one decode per clip
    python tools/benchmark.py train --cfg CONFIG.yaml [--iters N] [KEY VALUE ...]
        training throughput (clips/s) and the share of time spent waiting for data
"""

import argparse
import json
import sys
import time

import torch

import stica_slowfast  # noqa: F401  (registers every component)
from stica_slowfast.config import ConfigError
from stica_slowfast.data import construct_loader
from stica_slowfast.data.datasets import VideoDataset
from stica_slowfast.data.decoder import get_clip_starts, open_video
from stica_slowfast.engine.entry import prepare_data
from stica_slowfast.engine.optim import construct_optimizer
from stica_slowfast.models import build_model
from stica_slowfast.registry import get_dataset_class
from stica_slowfast.utils.distributed import get_device
from stica_slowfast.utils.misc import move_to_device
from stica_slowfast.utils.parser import load_config_from_args, parse_args


def bench_decode(cfg, num_videos: int) -> dict:
    dataset: VideoDataset = get_dataset_class(cfg.TEST.DATASET)(cfg, "test")
    paths = [path for path, _ in dataset.items[:num_videos]]
    kwargs = dict(num_frames=dataset.num_frames, frame_step=dataset.frame_step, audio_rate=dataset.audio_rate)

    def clip_starts(vf):
        return get_clip_starts(vf.duration, dataset.clip_duration, dataset.num_clips, mode="uniform")

    start = time.perf_counter()
    for path in paths:
        with open_video(path) as vf:
            vf.decode_clips(clip_starts(vf), **kwargs)
    one_pass = time.perf_counter() - start

    start = time.perf_counter()
    for path in paths:
        with open_video(path) as vf:
            starts = clip_starts(vf)
        for clip_start in starts:
            with open_video(path) as vf:
                vf.decode_clips([clip_start], **kwargs)
    per_clip = time.perf_counter() - start
    return {
        "benchmark": "decode",
        "videos": len(paths),
        "clips_per_video": dataset.num_clips,
        "audio": dataset.audio_rate is not None,
        "one_pass_s": round(one_pass, 4),
        "per_clip_s": round(per_clip, 4),
        "speedup": round(per_clip / one_pass, 3),
    }


def bench_train(cfg, iters: int) -> dict:
    device = get_device(cfg.NUM_GPUS)
    model = build_model(cfg).to(device)
    optimizer = construct_optimizer(model, cfg)
    loader = construct_loader(cfg, "train")
    model.train()
    waited, clips, done = 0.0, 0, 0
    batches = iter(loader)
    next(batches)  # warm-up: worker start-up is not throughput
    start = time.perf_counter()
    while done < iters:
        tick = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        batch = move_to_device(batch, device)
        waited += time.perf_counter() - tick
        loss = model.forward_train(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        clips += sum(v.shape[0] for v in batch["video"])
        done += 1
    total = time.perf_counter() - start
    return {
        "benchmark": "train",
        "model": cfg.MODEL.MODEL_NAME,
        "arch": cfg.MODEL.ARCH,
        "iters": done,
        "threads": torch.get_num_threads(),
        "clips_per_s": round(clips / total, 3),
        "s_per_iter": round(total / done, 4),
        "data_wait_fraction": round(waited / total, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["decode", "train"])
    parser.add_argument("--videos", type=int, default=16, help="decode: videos to decode")
    parser.add_argument("--iters", type=int, default=20, help="train: timed iterations")
    ours, rest = parser.parse_known_args()
    try:
        cfg = prepare_data(load_config_from_args(parse_args(rest)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    result = bench_decode(cfg, ours.videos) if ours.benchmark == "decode" else bench_train(cfg, ours.iters)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
