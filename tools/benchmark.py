#!/usr/bin/env python3
"""Benchmarks; each prints one JSON object. Ratios compare variants measured in the same run.

    python tools/benchmark.py decode --cfg CONFIG.yaml [--videos N] [KEY VALUE ...]
        one-pass decoding of all test views of a video vs. one decode per clip
    python tools/benchmark.py train --cfg CONFIG.yaml [--iters N] [KEY VALUE ...]
        training throughput (clips/s) and the share of time spent waiting for data
    python tools/benchmark.py ssl_memory --cfg CONFIG.yaml [--rhos 1 2 3 4] [--iters N] [KEY VALUE ...]
        peak memory and time of one rho-clip SSL training step (MODEL.MODEL_NAME) for each rho,
        clips encoded together vs. CONTRASTIVE.SEQUENTIAL; each measurement in a fresh process
    python tools/benchmark.py crops --cfg CONFIG.yaml [--iters N] [--warmup N] [--rounds N] [KEY VALUE ...]
        STiCA training step with 2 views only, + Feature Crop, + the same crops taken in input space
        and encoded: median step time and peak memory of each (fresh processes, in turn), and the ratios
"""

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

import stica_slowfast  # noqa: F401  (registers every component)
from stica_slowfast.config import ConfigError
from stica_slowfast.data import construct_loader
from stica_slowfast.data.audio import build_audio_transform
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


def _train_step(model, optimizer, batch) -> None:
    """One optimisation step of ``model.forward_train`` (as the engine, without its logging)."""
    loss = model.forward_train(batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


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
        _train_step(model, optimizer, batch)
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


def _rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _memory_baseline(device: torch.device) -> int:
    """Bytes in use now; call before the first step (see :func:`_peak_above`)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return _rss_bytes()


def _peak_above(device: torch.device, base: int) -> float:
    """Peak MB above ``base``: CUDA peak allocated bytes, or the process's peak resident set size on
    CPU (a high-water mark: hence one fresh process per measurement)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return round(max(0, peak - base) / 2**20, 1)


def _ssl_step_memory(cfg, rho: int, sequential: bool, iters: int) -> dict:
    """Peak memory above the idle model of a training step with ``rho`` clips (in a fresh process).

    CUDA: peak allocated bytes. CPU: peak resident set size (the process's high-water mark, which is
    why every measurement gets its own process). Input clips are random tensors of the train shape:
    memory does not depend on their content. rho = 1 is one clip in two crops (two views).
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.CONTRASTIVE.SEQUENTIAL = sequential
    device = get_device(cfg.NUM_GPUS)
    model = build_model(cfg).to(device).train()
    optimizer = construct_optimizer(model, cfg)
    views = 2 if rho == 1 else rho
    shape = (cfg.TRAIN.BATCH_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES,
             cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)
    batch = {"video": [torch.randn(shape, device=device) for _ in range(views)]}

    # The baseline (model, inputs) is taken before the first step: the allocator keeps freed memory,
    # so a high-water mark is only meaningful from a clean start. The first step is untimed.
    base = _memory_baseline(device)
    _train_step(model, optimizer, batch)
    start = time.perf_counter()
    for _ in range(iters):
        _train_step(model, optimizer, batch)
    return {
        "rho": rho,
        "sequential": sequential,
        "peak_mb": _peak_above(device, base),
        "s_per_iter": round((time.perf_counter() - start) / iters, 4),
    }


def bench_ssl_memory(cfg, rhos, iters: int) -> dict:
    results = []
    spawn = multiprocessing.get_context("spawn")
    for sequential in (False, True):
        for rho in rhos:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                results.append(pool.submit(_ssl_step_memory, cfg, rho, sequential, iters).result())

    def growth(sequential: bool) -> float:
        peaks = {r["rho"]: r["peak_mb"] for r in results if r["sequential"] == sequential}
        return round(peaks[max(rhos)] / max(peaks[min(rhos)], 1e-9), 3)

    return {
        "benchmark": "ssl_memory",
        "model": cfg.MODEL.MODEL_NAME,
        "arch": cfg.MODEL.ARCH,
        "device": "cuda" if cfg.NUM_GPUS > 0 else "cpu",
        "clips_per_view": cfg.TRAIN.BATCH_SIZE,
        "clip_shape": [cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE],
        "iters": iters,
        "results": results,
        # peak at the largest rho / peak at the smallest: ~1 when memory does not grow with rho
        f"growth_rho{max(rhos)}_over_rho{min(rhos)}": {"together": growth(False), "sequential": growth(True)},
    }


#: The crop benchmark's variants: STICA.FEATURE_CROP.{ENABLE, SPACE}.
_CROP_VARIANTS = {"views_only": (False, "feature"), "feature_crop": (True, "feature"), "input_crop": (True, "input")}


def _crop_step_stats(cfg, variant: str, iters: int, warmup: int) -> dict:
    """Median step time and peak memory of one crop variant (in a fresh process).

    Inputs are random tensors of the train shapes (2 video views and their spectrograms, whose shape
    the config's audio transform gives): time and memory do not depend on their content.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.STICA.FEATURE_CROP.ENABLE, cfg.STICA.FEATURE_CROP.SPACE = _CROP_VARIANTS[variant]
    torch.manual_seed(cfg.RNG_SEED)
    device = get_device(cfg.NUM_GPUS)
    model = build_model(cfg).to(device).train()
    optimizer = construct_optimizer(model, cfg)
    d, views = cfg.DATA, 2
    shape = (cfg.TRAIN.BATCH_SIZE, d.INPUT_CHANNEL_NUM[0], d.NUM_FRAMES, d.TRAIN_CROP_SIZE, d.TRAIN_CROP_SIZE)
    clip_s = d.NUM_FRAMES * d.SAMPLING_RATE / d.TARGET_FPS
    audio_s = cfg.STICA.AUDIO.DURATION or clip_s
    spec = build_audio_transform(cfg, "train")(torch.zeros(int(round(audio_s * cfg.STICA.AUDIO.SAMPLE_RATE))))
    batch = {"video": [torch.randn(shape, device=device) for _ in range(views)],
             "audio": [torch.randn((cfg.TRAIN.BATCH_SIZE, *spec.shape), device=device) for _ in range(views)]}
    base = _memory_baseline(device)
    times = []
    for step in range(warmup + iters):
        start = time.perf_counter()
        _train_step(model, optimizer, batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return {"median_step_s": round(statistics.median(times), 4), "peak_mb": _peak_above(device, base)}


def bench_crops(cfg, iters: int, warmup: int, rounds: int) -> dict:
    """Each variant in a fresh process, ``rounds`` times in turn (views_only, feature_crop, input_crop,
    views_only, ...); a variant's step time is the least of its rounds' medians, so a burst of load from
    elsewhere on the machine during one round does not count."""
    spawn = multiprocessing.get_context("spawn")
    runs = {variant: [] for variant in _CROP_VARIANTS}
    for _ in range(rounds):
        for variant in _CROP_VARIANTS:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                runs[variant].append(pool.submit(_crop_step_stats, cfg, variant, iters, warmup).result())
    stats = {variant: {"median_step_s": min(r["median_step_s"] for r in results),
                       "peak_mb": min(r["peak_mb"] for r in results),
                       "round_medians_s": [r["median_step_s"] for r in results]}
             for variant, results in runs.items()}
    c = cfg.STICA.FEATURE_CROP

    def ratio(a: str, b: str, key: str) -> float:
        return round(stats[a][key] / max(stats[b][key], 1e-9), 3)

    return {
        "benchmark": "crops",
        "model": cfg.MODEL.MODEL_NAME,
        "arch": cfg.MODEL.ARCH,
        "audio_arch": cfg.STICA.AUDIO.ARCH,
        "device": "cuda" if cfg.NUM_GPUS > 0 else "cpu",
        "threads": torch.get_num_threads(),
        "batch": cfg.TRAIN.BATCH_SIZE,
        "clip_shape": [cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE],
        "crops_per_view": {"spatial": [c.NUM_LARGE_SPATIAL, c.NUM_SMALL_SPATIAL],
                           "temporal": [c.NUM_LARGE_TEMPORAL, c.NUM_SMALL_TEMPORAL]},
        "iters": iters,
        "rounds": rounds,
        **stats,
        "feature_crop/views_only": ratio("feature_crop", "views_only", "median_step_s"),
        "input_crop/views_only": ratio("input_crop", "views_only", "median_step_s"),
        "memory_feature_crop/views_only": ratio("feature_crop", "views_only", "peak_mb"),
        "memory_input_crop/views_only": ratio("input_crop", "views_only", "peak_mb"),
        "memory_feature_crop/input_crop": ratio("feature_crop", "input_crop", "peak_mb"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["decode", "train", "ssl_memory", "crops"])
    parser.add_argument("--videos", type=int, default=16, help="decode: videos to decode")
    parser.add_argument("--iters", type=int, default=20, help="train, ssl_memory, crops: timed iterations")
    parser.add_argument("--warmup", type=int, default=3, help="crops: untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="crops: fresh processes per variant")
    parser.add_argument("--rhos", type=int, nargs="+", default=[1, 2, 3, 4], help="ssl_memory: clip counts")
    ours, rest = parser.parse_known_args()
    try:
        cfg = prepare_data(load_config_from_args(parse_args(rest)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if ours.benchmark == "decode":
        result = bench_decode(cfg, ours.videos)
    elif ours.benchmark == "train":
        result = bench_train(cfg, ours.iters)
    elif ours.benchmark == "crops":
        result = bench_crops(cfg, ours.iters, ours.warmup, ours.rounds)
    else:
        result = bench_ssl_memory(cfg, sorted(ours.rhos), ours.iters)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
