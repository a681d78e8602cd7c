#!/usr/bin/env python3
"""Benchmarks; each prints one JSON object. Ratios compare variants measured in the same run.

    python tools/benchmark.py decode --cfg CONFIG.yaml [--videos N] [KEY VALUE ...]
        one-pass decoding of all test views of a video vs. one decode per clip
    python tools/benchmark.py loader --cfg CONFIG.yaml [--rhos 2 4] [--videos N] [--rounds N] [KEY VALUE ...]
        clips/s of one data-loader worker making train samples (rho clips, their audio, transforms)
        with one-pass decoding vs. one open + seek + decode per clip, and with the appearance
        augmentation in the worker vs. left to the device (and its cost there), for each rho; the
        time split (decode / crop+resize / augmentation) and the ratios
    python tools/benchmark.py train --cfg CONFIG.yaml [--iters N] [KEY VALUE ...]
        training throughput (clips/s) and the share of time spent waiting for data; the loader alone
        (DATA_LOADER.NUM_WORKERS workers) and the training step alone (with the device's augmentation
        under STICA.AUG.DEVICE device), and their ratio
    python tools/benchmark.py ssl_memory --cfg CONFIG.yaml [--rhos 1 2 3 4] [--iters N] [KEY VALUE ...]
        peak memory and time of one rho-clip SSL training step (MODEL.MODEL_NAME) for each rho,
        clips encoded together vs. CONTRASTIVE.SEQUENTIAL; each measurement in a fresh process
    python tools/benchmark.py crops --cfg CONFIG.yaml [--iters N] [--warmup N] [--rounds N] [KEY VALUE ...]
        STiCA training step with 2 views only, + Feature Crop, + the same crops taken in input space
        and encoded: median step time and peak memory of each (fresh processes, in turn), and the ratios
    python tools/benchmark.py memory_format --cfg CONFIG.yaml [--iters N] [--warmup N] [--rounds N] [KEY VALUE ...]
        a training step (MODEL.MODEL_NAME) with contiguous vs. channels-last convolutions
        (STICA.MEMORY_FORMAT), timed in turn in one process: median step time of each, and the ratio
"""

import argparse
import collections
import contextlib
import copy
import importlib
import json
import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import av
import numpy as np
import torch
from torch.utils.data import default_collate

from stica_slowfast.config import ConfigError
from stica_slowfast.data import augments_on_device, construct_loader, prepare_batch
from stica_slowfast.data.audio import build_audio_transform
from stica_slowfast.data.datasets import SeededIndex, VideoDataset
from stica_slowfast.data.decoding import (
    DecodedClips,
    DecodeError,
    OpenedVideo,
    VideoOpener,
    decode_per_clip,
    get_clip_starts,
    open_video,
    open_video_per_clip,
)
from stica_slowfast.data.loader import build_dataset
from stica_slowfast.engine.entry import prepare_data
from stica_slowfast.engine.optim import construct_optimizer, optimizer_step
from stica_slowfast.engine.setup import build_model_on
from stica_slowfast.engine.trainer import amp_dtype, autocast
from stica_slowfast.models import build_model, to_channels_last
from stica_slowfast.registry import get_dataset_class
from stica_slowfast.utils.distributed import get_device
from stica_slowfast.utils.misc import derive_seed
from stica_slowfast.config.args import load_config_from_args, parse_args


def bench_decode(cfg, num_videos: int) -> dict:
    dataset: VideoDataset = get_dataset_class(cfg.TEST.DATASET)(cfg, "test")
    paths = [path for path, _ in dataset.items[:num_videos]]
    kwargs = dict(num_frames=dataset.num_frames, frame_step=dataset.frame_step, audio_rate=dataset.audio_rate)

    def decode_all(per_clip: bool) -> float:
        start = time.perf_counter()
        for path in paths:
            with open_video(path) as vf:
                starts = get_clip_starts(vf.duration, dataset.clip_duration, dataset.num_clips,
                                         mode="uniform")
                if per_clip:
                    decode_per_clip(vf, starts, **kwargs)
                else:
                    vf.decode_clips(starts, **kwargs)
        return time.perf_counter() - start

    one_pass, per_clip = decode_all(False), decode_all(True)
    return {
        "benchmark": "decode",
        "videos": len(paths),
        "clips_per_video": dataset.num_clips,
        "audio": dataset.audio_rate is not None,
        "one_pass_s": round(one_pass, 4),
        "per_clip_s": round(per_clip, 4),
        "speedup": round(per_clip / one_pass, 3),
    }


class _CountedVideo:
    """An opened video as the datasets see it, adding the frames each decode takes to ``frames`` and
    its seconds to ``seconds["decode"]``."""

    def __init__(self, video: OpenedVideo, frames: List[int], seconds: Dict[str, float]):
        self._video, self._frames, self._seconds = video, frames, seconds

    def __getattr__(self, name):  # path, duration, has_audio
        return getattr(self._video, name)

    def decode_clips(self, clip_starts: Sequence[float], **kwargs) -> DecodedClips:
        start = time.perf_counter()
        clips = self._video.decode_clips(clip_starts, **kwargs)
        self._seconds["decode"] += time.perf_counter() - start
        self._frames.append(clips.frames_decoded)
        return clips


class _CountingOpener:
    """A dataset's ``opener``: opens videos with ``opener`` (one pass, or one decode per clip) and
    keeps the video frames each sample decodes in :attr:`frames`, and the seconds spent decoding
    (with the open and the seeks) in :attr:`seconds`."""

    def __init__(self, opener: VideoOpener):
        self.opener = opener
        self.frames: List[int] = []
        self.seconds: Dict[str, float] = collections.defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, path: str, *, threads: bool = False) -> Iterator[_CountedVideo]:
        start = time.perf_counter()
        with self.opener(path, threads=threads) as video:
            self.seconds["decode"] += time.perf_counter() - start
            yield _CountedVideo(video, self.frames, self.seconds)


class _Timed:
    """``fn`` adding its seconds to ``seconds[name]``."""

    def __init__(self, fn, seconds: Dict[str, float], name: str):
        self.fn, self.seconds, self.name = fn, seconds, name

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds[self.name] += time.perf_counter() - start
        return out


def _time_the_steps(dataset: VideoDataset) -> None:
    """Make ``dataset`` (opened by a :class:`_CountingOpener`) add the seconds of its crops and resizes
    and of its appearance augmentation (draw + apply) to its opener's ``seconds``."""
    seconds = dataset.opener.seconds
    for transform in {id(t): t for t in dataset.transforms}.values():
        transform.geometry = _Timed(transform.geometry, seconds, "crop_resize")
        transform.appearance.draw = _Timed(transform.appearance.draw, seconds, "augmentation")
        transform.appearance.apply = _Timed(transform.appearance.apply, seconds, "augmentation")


def _video_stats(paths: Sequence[str]) -> Dict[str, object]:
    """Frame size, frame rate, duration and mean keyframe interval of the videos (from their packets)."""
    sizes, rates, durations, intervals = set(), set(), [], []
    for path in paths:
        with av.open(path, metadata_errors="ignore") as container:
            vs = container.streams.video[0]
            sizes.add((vs.codec_context.width, vs.codec_context.height))
            rates.add(round(float(vs.average_rate or 0), 3))
            keyframes = sum(packet.is_keyframe for packet in container.demux(vs) if packet.size)
            duration = (float(vs.duration * vs.time_base) if vs.duration
                        else float(container.duration / av.time_base))
        durations.append(duration)
        intervals.append(duration / max(1, keyframes))
    return {"frame_size": sorted(sizes), "fps": sorted(rates),
            "duration_s": round(statistics.mean(durations), 3),
            "keyframe_interval_s": round(statistics.mean(intervals), 3)}


def _time_samples(dataset: VideoDataset, count: int, seed: int) -> Tuple[float, int, Dict[str, float], list]:
    """Seconds to make samples 0 .. count - 1 of ``dataset`` as a data-loader worker does (decode and
    transforms), the video frames decoded, the seconds per step (``dataset.opener`` is a
    :class:`_CountingOpener`, the transforms timed by :func:`_time_the_steps`) and the samples.
    Sample ``i`` draws its clip starts and augmentation from seed (``seed``, ``i``), so datasets that
    differ only in their opener or in where they augment make the same samples."""
    counter: _CountingOpener = dataset.opener
    counter.frames.clear()
    counter.seconds.clear()
    seeds = [derive_seed(seed, i) for i in range(count)]
    start = time.perf_counter()
    samples = [dataset[SeededIndex(i, seeds[i])] for i in range(count)]
    return time.perf_counter() - start, sum(counter.frames), dict(counter.seconds), samples


def _device_aug_seconds(samples: list, device: torch.device, repeats: int) -> float:
    """Median seconds of :func:`prepare_batch` (the device's batched appearance augmentation, with the
    copy to the device) of the device-mode ``samples`` collated as one batch, after a warm-up call."""
    batch = default_collate(samples)
    if device.type == "cuda":
        batch = {**batch, "video": [v.pin_memory() for v in batch["video"]]}
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = prepare_batch(batch, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:
            times.append(time.perf_counter() - start)
        del out
    return statistics.median(times)


class _TorchcodecVideo:
    """A video opened with torchcodec, PyTorch's own decoder (the loader benchmark's peer): the same
    clips as :class:`~stica_slowfast.data.decoding.VideoFile` makes, each target time taking the frame
    played at it (``VideoDecoder.get_frames_played_at``, ``seek_mode="approximate"``, one FFmpeg
    thread as a worker), and audio windows from its ``AudioDecoder`` (mono, resampled, zeros outside
    the stream). Times are on the video stream's clock, from its first frame, as ours."""

    def __init__(self, path: str):
        from torchcodec.decoders import VideoDecoder

        self.path = path
        self._video = VideoDecoder(path, seek_mode="approximate", num_ffmpeg_threads=1, dimension_order="NHWC")
        meta = self._video.metadata
        self._begin = float(meta.begin_stream_seconds or 0.0)
        self._end = float(meta.end_stream_seconds)
        self.duration = self._end - self._begin
        self._has_audio: Optional[bool] = None

    @property
    def has_audio(self) -> bool:
        if self._has_audio is None:
            self._has_audio = self._audio_decoder(8000) is not None
        return self._has_audio

    def _audio_decoder(self, rate: int):
        from torchcodec.decoders import AudioDecoder

        try:
            return AudioDecoder(self.path, sample_rate=rate, num_channels=1)
        except (RuntimeError, ValueError):
            return None

    def _audio_window(self, decoder, start: float, num_samples: int, rate: int) -> torch.Tensor:
        out = torch.zeros(num_samples)
        lo, hi = max(start, 0.0), min(start + num_samples / rate, self.duration)
        if decoder is None or hi <= lo:
            return out
        samples = decoder.get_samples_played_in_range(self._begin + lo, self._begin + hi).data[0]
        offset = int(round((lo - start) * rate))
        n = min(len(samples), num_samples - offset)
        out[offset:offset + n] = samples[:n]
        return out

    def decode_clips(self, clip_starts: Sequence[float], *, num_frames: int, frame_step: float,
                     audio_rate: Optional[int] = None, audio_duration: Optional[float] = None,
                     skip_gaps: bool = True) -> DecodedClips:
        starts = [max(0.0, float(s)) for s in clip_starts]
        last = self._end - 1e-6  # a target past the last frame takes the last frame, as ours
        targets = [min(self._begin + s + i * frame_step, last) for s in starts for i in range(num_frames)]
        frames = self._video.get_frames_played_at(targets)
        video = list(frames.data.split(num_frames))
        times = [[float(t) - self._begin for t in chunk] for chunk in frames.pts_seconds.split(num_frames)]
        audio = None
        if audio_rate is not None:
            clip_duration = num_frames * frame_step
            seconds = clip_duration if audio_duration is None else float(audio_duration)
            num_samples = int(round(seconds * audio_rate))
            decoder = self._audio_decoder(audio_rate)
            audio = [self._audio_window(decoder, s + (clip_duration - seconds) / 2, num_samples, audio_rate)
                     for s in starts]
        return DecodedClips(video=video, audio=audio, has_audio=self.has_audio, frame_times=times,
                            duration=self.duration, frames_decoded=0)


@contextlib.contextmanager
def open_torchcodec(path: str, *, threads: bool = False) -> Iterator[_TorchcodecVideo]:
    """A dataset's ``opener`` decoding with torchcodec (``threads`` is ignored: one thread)."""
    try:
        video = _TorchcodecVideo(path)
    except (RuntimeError, ValueError) as err:
        raise DecodeError(f"torchcodec cannot open {path}: {err}", "undecodable") from err
    yield video


def _torchcodec_missing() -> Optional[str]:
    """Why torchcodec cannot decode here (not installed, or no FFmpeg libraries it can load), or None."""
    try:
        importlib.import_module("torchcodec.decoders")  # loads the FFmpeg libraries
    except Exception as err:  # ImportError, or OSError/RuntimeError from the libraries
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


def _compare_decoders(dataset: VideoDataset, count: int, seed: int) -> dict:
    """Our clips and torchcodec's at the same starts, for ``count`` videos: how many frames are
    identical, and the largest pixel difference."""
    rng = np.random.default_rng(seed)
    equal = total = 0
    worst, shifted = 0, 0
    for path, _ in dataset.items[:count]:
        with open_video(path) as ours, open_torchcodec(path) as peer:
            starts = get_clip_starts(ours.duration, dataset.clip_duration, dataset.num_clips, mode="random", rng=rng)
            kwargs = dict(num_frames=dataset.num_frames, frame_step=dataset.frame_step)
            a, b = ours.decode_clips(starts, **kwargs), peer.decode_clips(starts, **kwargs)
        for x, y, tx, ty in zip(a.video, b.video, a.frame_times, b.frame_times):
            diff = (x.int() - y.int()).abs().amax(dim=(1, 2, 3))
            equal += int((diff == 0).sum())
            total += len(diff)
            worst = max(worst, int(diff.max()))
            shifted += sum(abs(u - v) > 1e-3 for u, v in zip(tx, ty))
    return {"frames_compared": total, "frames_identical": equal, "max_abs_diff": worst,
            "frames_at_other_times": shifted}


# Variants of the loader benchmark: (opener, where the appearance augmentation runs).
_LOADER_VARIANTS = {
    "worker_aug": (open_video, "worker"),
    "device_aug": (open_video, "device"),
    "worker_aug_per_clip": (open_video_per_clip, "worker"),
    "device_aug_per_clip": (open_video_per_clip, "device"),
    "torchcodec_device_aug": (open_torchcodec, "device"),  # where torchcodec can decode
}


def bench_loader(cfg, rhos: Sequence[int], num_videos: int, rounds: int) -> dict:
    """Clips/s of one data-loader worker making train samples, for each rho, four ways: decoding each
    sample's rho clips (and their audio) in one pass or with one open + seek + decode per clip, and
    applying the appearance augmentation in the worker (``STICA.AUG.DEVICE worker``) or leaving it to
    the device (``device``: the worker decodes, crops and draws; the device augments the batch).

    Every variant makes the same samples (clip starts, crops, augmentation draws) in turn, the order
    reversed in odd rounds, after an untimed round; a variant's clips/s is over its median round, a
    ratio is the median over rounds of the two variants' time ratio. The worker runs one torch thread,
    as a DataLoader worker; the device's batched augmentation (with its copy) is timed on the batch of
    all the samples, on the training device (``NUM_GPUS``: a GPU, or the CPU with its default threads).
    """
    device = get_device(cfg.NUM_GPUS)
    device_threads = torch.get_num_threads()
    torchcodec_missing = _torchcodec_missing()
    variants = {name: v for name, v in _LOADER_VARIANTS.items()
                if torchcodec_missing is None or v[0] is not open_torchcodec}
    results = {}
    peer: Dict[str, object] = {"decodes_here": torchcodec_missing is None}
    if torchcodec_missing is not None:
        peer["why_not"] = torchcodec_missing
    for rho in rhos:
        rho_cfg = cfg.clone()
        rho_cfg.defrost()
        rho_cfg.DATA.TRAIN_CROP_NUM_TEMPORAL = rho
        datasets = {}
        for name, (opener, where) in variants.items():
            variant_cfg = rho_cfg.clone()
            variant_cfg.STICA.AUG.DEVICE = where
            datasets[name] = get_dataset_class(rho_cfg.TRAIN.DATASET)(
                variant_cfg, "train", opener=_CountingOpener(opener))
            _time_the_steps(datasets[name])
        dataset = datasets["worker_aug"]
        count = min(num_videos, len(dataset))
        times: Dict[str, List[float]] = {name: [] for name in datasets}
        frames = {name: 0 for name in datasets}
        steps: Dict[str, Dict[str, float]] = {name: collections.defaultdict(float) for name in datasets}
        torch.set_num_threads(1)  # DataLoader workers run torch with one thread
        for round_ in range(rounds + 1):
            seed = derive_seed(cfg.RNG_SEED, rho, round_)
            for name in list(datasets)[::1 if round_ % 2 == 0 else -1]:
                seconds, decoded, split, samples = _time_samples(datasets[name], count, seed)
                if round_ > 0:  # round 0 warms the page cache, codecs and transforms up
                    times[name].append(seconds)
                    frames[name] += decoded
                    for step, value in split.items():
                        steps[name][step] += value
                if name == "device_aug":
                    device_samples = samples
        torch.set_num_threads(device_threads)
        clips = count * rho
        aug_s = _device_aug_seconds(device_samples, device, repeats=rounds)

        def variant(name: str) -> dict:
            total = sum(times[name])
            split = {f"{step}_fraction": round(value / total, 3) for step, value in sorted(steps[name].items())}
            # The rest: seeding, audio, the sample's assembly.
            split["other_fraction"] = round(1 - sum(steps[name].values()) / total, 3)
            return {"clips_per_s": round(clips / statistics.median(times[name]), 2),
                    # torchcodec does not tell how many frames it decoded.
                    "frames_decoded_per_clip": round(frames[name] / (clips * rounds), 1) if frames[name] else None,
                    **split}

        def ratio(slow: str, fast: str) -> Tuple[float, List[float]]:
            ratios = [b / a for a, b in zip(times[fast], times[slow])]
            return round(statistics.median(ratios), 3), [round(r, 3) for r in ratios]

        results[rho] = {
            **{name: variant(name) for name in datasets},
            "device_aug_ms_per_clip": round(1000 * aug_s / clips, 3),
            "device_aug_path_ratio": ratio("worker_aug", "device_aug")[0],
            "decode_once_ratio_worker_aug": ratio("worker_aug_per_clip", "worker_aug")[0],
        }
        results[rho]["ratio"], results[rho]["round_ratios"] = ratio("device_aug_per_clip", "device_aug")
        if torchcodec_missing is None:
            results[rho]["torchcodec_over_ours"] = ratio("device_aug", "torchcodec_device_aug")[0]
            results[rho]["torchcodec_frames"] = _compare_decoders(dataset, count, derive_seed(cfg.RNG_SEED, rho))
    d = cfg.DATA
    return {
        "benchmark": "loader",
        "dataset": cfg.TRAIN.DATASET,
        "videos": count,
        **_video_stats([path for path, _ in dataset.items[:count]]),
        "clip": {"frames": d.NUM_FRAMES, "frame_step_s": round(d.SAMPLING_RATE / d.TARGET_FPS, 4),
                 "crop": d.TRAIN_CROP_SIZE, "spatial_crops": d.TRAIN_CROP_NUM_SPATIAL},
        "ssl_augmentation": bool(d.SSL_COLOR_JITTER),
        "audio": dataset.audio_rate is not None,
        "audio_rate": dataset.audio_rate,
        "decode_threads": dataset.threads,
        "worker_threads": 1,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "device_threads": device_threads,
        "rounds": rounds,
        "torchcodec": peer,
        **{f"rho{rho}": {k: v for k, v in r.items() if k != "ratio"} for rho, r in results.items()},
        # One worker's clips/s with the augmentation left to the device, and done in the worker.
        **{f"device_aug_clips_per_s_rho{rho}": r["device_aug"]["clips_per_s"] for rho, r in results.items()},
        **{f"worker_aug_clips_per_s_rho{rho}": r["worker_aug"]["clips_per_s"] for rho, r in results.items()},
        # Decode-once / decode-per-clip, both leaving the augmentation to the device.
        **{f"ratio_rho{rho}": r["ratio"] for rho, r in results.items()},
    }


def _train_step(model, optimizer, batch, cfg) -> None:
    """One optimisation step of ``model.forward_train`` (as the engine, without its logging), under
    the engine's autocast when TRAIN.MIXED_PRECISION (bfloat16 only: float16 would need loss scaling)."""
    device = batch["video"][0].device
    if cfg.TRAIN.MIXED_PRECISION and amp_dtype(cfg, device) == torch.float16:
        raise ValueError("benchmarks run mixed precision in bfloat16 only: set STICA.SOLVER.AMP_DTYPE bfloat16")
    with autocast(cfg, device):
        loss = model.forward_train(batch)["loss"]
    optimizer_step(loss, model, optimizer, None, cfg)


def _timed_step(model, optimizer, batch, cfg) -> float:
    """Seconds of one :func:`_train_step`, the GPU's queued work included."""
    device = batch["video"][0].device
    start = time.perf_counter()
    _train_step(model, optimizer, batch, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _clips(batch) -> int:
    """Clips in a batch: videos x views."""
    return sum(v.shape[0] for v in batch["video"])


def bench_train(cfg, iters: int) -> dict:
    """Three measurements in one run, each of ``iters`` batches, after one batch per worker (their
    start-up is not throughput):

    * the loader alone (DATA_LOADER.NUM_WORKERS workers; the training process only takes batches);
    * training with that loader, as the engine does, and the share of the time spent waiting for data;
    * the training step alone, on batches loaded beforehand, once the workers have stopped.

    A step starts from the loader's batch as the engine does (:func:`prepare_batch`: the copy to the
    device and, with ``STICA.AUG.DEVICE`` resolving to the device, the batched appearance augmentation).
    ``loader_over_train`` = loader clips/s / step clips/s: at >= 1 the loader keeps up with the model.
    The loader reads the train videos over and over (new clips each time) in one long epoch, so that no
    epoch boundary falls inside a measurement.
    """
    device = get_device(cfg.NUM_GPUS)
    model = build_model_on(cfg, device)
    optimizer = construct_optimizer(model, cfg, model.lr_scales)
    num_videos = len(build_dataset(cfg, "train"))
    warmup = max(1, int(cfg.DATA_LOADER.NUM_WORKERS))
    samples = cfg.TRAIN.BATCH_SIZE * (warmup + 2 * iters)
    loader = construct_loader(cfg, "train", subset=[i % num_videos for i in range(samples)])
    model.train()
    batches = iter(loader)
    preloaded = [next(batches) for _ in range(warmup)]

    start, clips = time.perf_counter(), 0
    for _ in range(iters):
        batch = next(batches)
        clips += _clips(batch)
        if len(preloaded) < 4:  # kept for the step alone
            preloaded.append(batch)
    loader_clips_per_s = clips / (time.perf_counter() - start)

    def step(batch) -> None:
        _train_step(model, optimizer, prepare_batch(batch, device), cfg)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(preloaded[0])  # warm-up: first-call allocations
    waited, clips = 0.0, 0
    start = time.perf_counter()
    for _ in range(iters):
        tick = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - tick
        step(batch)
        clips += _clips(batch)
    total = time.perf_counter() - start
    del batches, loader  # stops the workers: nothing else runs while the step is timed

    start, step_clips = time.perf_counter(), 0
    for i in range(iters):
        step(preloaded[i % len(preloaded)])
        step_clips += _clips(preloaded[i % len(preloaded)])
    step_clips_per_s = step_clips / (time.perf_counter() - start)
    return {
        "benchmark": "train",
        "model": cfg.MODEL.MODEL_NAME,
        "arch": cfg.MODEL.ARCH,
        "iters": iters,
        "threads": torch.get_num_threads(),
        "workers": int(cfg.DATA_LOADER.NUM_WORKERS),
        "augmentation": "device" if augments_on_device(cfg) else "worker",
        "clips_per_s": round(clips / total, 3),
        "s_per_iter": round(total / iters, 4),
        "data_wait_fraction": round(waited / total, 4),
        "loader_clips_per_s": round(loader_clips_per_s, 3),
        "step_clips_per_s": round(step_clips_per_s, 3),
        "loader_over_train": round(loader_clips_per_s / step_clips_per_s, 3),
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
    model = build_model_on(cfg, device).train()
    optimizer = construct_optimizer(model, cfg, model.lr_scales)
    views = 2 if rho == 1 else rho
    shape = (cfg.TRAIN.BATCH_SIZE, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES,
             cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)
    batch = {"video": [torch.randn(shape, device=device) for _ in range(views)]}

    # The baseline (model, inputs) is taken before the first step: the allocator keeps freed memory,
    # so a high-water mark is only meaningful from a clean start. The first step is untimed.
    base = _memory_baseline(device)
    _train_step(model, optimizer, batch, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        _train_step(model, optimizer, batch, cfg)
    peak = _peak_above(device, base)  # synchronises with the GPU first
    seconds = (time.perf_counter() - start) / iters
    return {
        "rho": rho,
        "sequential": sequential,
        "peak_mb": peak,
        "s_per_iter": round(seconds, 4),
        "clips_per_s": round(views * cfg.TRAIN.BATCH_SIZE / seconds, 2),
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
_CROP_VARIANTS = {
    "views_only": {"STICA.FEATURE_CROP.ENABLE": False, "STICA.FEATURE_CROP.SPACE": "feature"},
    "feature_crop": {"STICA.FEATURE_CROP.ENABLE": True, "STICA.FEATURE_CROP.SPACE": "feature"},
    "input_crop": {"STICA.FEATURE_CROP.ENABLE": True, "STICA.FEATURE_CROP.SPACE": "input"},
}


def _random_train_batch(cfg, device: torch.device, views: int = 2) -> dict:
    """``views`` random video views of the train shape, and their spectrograms (the shape the config's
    audio transform gives) when STICA.AUDIO.ENABLE: step time and memory do not depend on content."""
    d, b = cfg.DATA, cfg.TRAIN.BATCH_SIZE
    shape = (b, d.INPUT_CHANNEL_NUM[0], d.NUM_FRAMES, d.TRAIN_CROP_SIZE, d.TRAIN_CROP_SIZE)
    batch = {"video": [torch.randn(shape, device=device) for _ in range(views)]}
    if cfg.STICA.AUDIO.ENABLE:
        clip_s = d.NUM_FRAMES * d.SAMPLING_RATE / d.TARGET_FPS
        audio_s = cfg.STICA.AUDIO.DURATION or clip_s
        spec = build_audio_transform(cfg, "train")(torch.zeros(int(round(audio_s * cfg.STICA.AUDIO.SAMPLE_RATE))))
        batch["audio"] = [torch.randn((b, *spec.shape), device=device) for _ in range(views)]
    return batch


def _step_stats(cfg, overrides: Dict[str, object], iters: int, warmup: int) -> dict:
    """Median step time and peak memory of a training step with the config ``overrides`` (in a fresh
    process), on a random batch of 2 views (:func:`_random_train_batch`)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    torch.manual_seed(cfg.RNG_SEED)
    device = get_device(cfg.NUM_GPUS)
    model = build_model_on(cfg, device).train()
    optimizer = construct_optimizer(model, cfg, model.lr_scales)
    batch = _random_train_batch(cfg, device)
    base = _memory_baseline(device)
    times = [_timed_step(model, optimizer, batch, cfg) for _ in range(warmup + iters)][warmup:]
    return {"median_step_s": round(statistics.median(times), 4), "peak_mb": _peak_above(device, base)}


def _variant_rounds(cfg, variants: Dict[str, Dict[str, object]], iters: int, warmup: int, rounds: int) -> dict:
    """Each variant in a fresh process, ``rounds`` times in turn (a, b, ..., a, b, ...); a variant's
    step time is the least of its rounds' medians, so a burst of load from elsewhere on the machine
    during one round does not count."""
    spawn = multiprocessing.get_context("spawn")
    runs = {name: [] for name in variants}
    for _ in range(rounds):
        for name, overrides in variants.items():
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                runs[name].append(pool.submit(_step_stats, cfg, overrides, iters, warmup).result())
    return {name: {"median_step_s": min(r["median_step_s"] for r in results),
                   "peak_mb": min(r["peak_mb"] for r in results),
                   "round_medians_s": [r["median_step_s"] for r in results]}
            for name, results in runs.items()}


def _step_settings(cfg, iters: int, rounds: int) -> dict:
    """The settings a step benchmark names beside its figures."""
    return {
        "model": cfg.MODEL.MODEL_NAME,
        "arch": cfg.MODEL.ARCH,
        "audio_arch": cfg.STICA.AUDIO.ARCH if cfg.STICA.AUDIO.ENABLE else None,
        "device": "cuda" if cfg.NUM_GPUS > 0 else "cpu",
        "threads": torch.get_num_threads(),
        "batch": cfg.TRAIN.BATCH_SIZE,
        "clip_shape": [cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE],
        "iters": iters,
        "rounds": rounds,
    }


def bench_memory_format(cfg, iters: int, warmup: int, rounds: int) -> dict:
    """A training step with the convolutions in contiguous and in channels-last layout
    (STICA.MEMORY_FORMAT): two copies of one model in this process, on one random batch, timed in
    turn for ``rounds`` rounds of ``iters`` steps (after ``warmup`` untimed steps each), so that both
    see the same load; a layout's time is the median of its steps. ``contiguous/channels_last`` > 1
    when channels-last is faster."""
    torch.manual_seed(cfg.RNG_SEED)
    device = get_device(cfg.NUM_GPUS)
    plain = build_model(cfg).to(device).train()
    fast = to_channels_last(copy.deepcopy(plain))
    runs = {name: (model, construct_optimizer(model, cfg, model.lr_scales), []) for name, model in
            (("contiguous", plain), ("channels_last", fast))}
    batch = _random_train_batch(cfg, device)
    for model, optimizer, _ in runs.values():
        for _ in range(warmup):
            _train_step(model, optimizer, batch, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    for _ in range(rounds):
        for model, optimizer, times in runs.values():
            times.extend(_timed_step(model, optimizer, batch, cfg) for _ in range(iters))
    stats = {name: {"median_step_s": round(statistics.median(times), 4)} for name, (_, _, times) in runs.items()}
    return {
        "benchmark": "memory_format",
        **_step_settings(cfg, iters, rounds),
        "mixed_precision": bool(cfg.TRAIN.MIXED_PRECISION),
        **stats,
        "contiguous/channels_last": round(
            stats["contiguous"]["median_step_s"] / max(stats["channels_last"]["median_step_s"], 1e-9), 3),
    }


def bench_crops(cfg, iters: int, warmup: int, rounds: int) -> dict:
    """STiCA's step with 2 views only, + Feature Crop, + the same crops in input space (see
    :func:`_variant_rounds`)."""
    stats = _variant_rounds(cfg, _CROP_VARIANTS, iters, warmup, rounds)
    c = cfg.STICA.FEATURE_CROP

    def ratio(a: str, b: str, key: str) -> float:
        return round(stats[a][key] / max(stats[b][key], 1e-9), 3)

    return {
        "benchmark": "crops",
        **_step_settings(cfg, iters, rounds),
        "crops_per_view": {"spatial": [c.NUM_LARGE_SPATIAL, c.NUM_SMALL_SPATIAL],
                           "temporal": [c.NUM_LARGE_TEMPORAL, c.NUM_SMALL_TEMPORAL]},
        **stats,
        "feature_crop/views_only": ratio("feature_crop", "views_only", "median_step_s"),
        "input_crop/views_only": ratio("input_crop", "views_only", "median_step_s"),
        "memory_feature_crop/views_only": ratio("feature_crop", "views_only", "peak_mb"),
        "memory_input_crop/views_only": ratio("input_crop", "views_only", "peak_mb"),
        "memory_feature_crop/input_crop": ratio("feature_crop", "input_crop", "peak_mb"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=["decode", "loader", "train", "ssl_memory", "crops", "memory_format"])
    parser.add_argument("--videos", type=int, default=16, help="decode, loader: videos to decode")
    parser.add_argument("--iters", type=int, default=20,
                        help="train, ssl_memory, crops, memory_format: timed iterations")
    parser.add_argument("--warmup", type=int, default=3, help="crops, memory_format: untimed steps first")
    parser.add_argument("--rounds", type=int, help="crops: fresh processes per variant, memory_format: rounds in turn (default 2); "
                        "loader: timed rounds over the videos (default 5)")
    parser.add_argument("--rhos", type=int, nargs="+",
                        help="ssl_memory: clip counts (default 1 2 3 4); loader: rho values (default 2 4)")
    ours, rest = parser.parse_known_args()
    try:
        cfg = prepare_data(load_config_from_args(parse_args(rest)))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if ours.benchmark == "decode":
        result = bench_decode(cfg, ours.videos)
    elif ours.benchmark == "loader":
        result = bench_loader(cfg, sorted(ours.rhos or [2, 4]), ours.videos, ours.rounds or 5)
    elif ours.benchmark == "train":
        result = bench_train(cfg, ours.iters)
    elif ours.benchmark == "crops":
        result = bench_crops(cfg, ours.iters, ours.warmup, ours.rounds or 2)
    elif ours.benchmark == "memory_format":
        result = bench_memory_format(cfg, ours.iters, ours.warmup, ours.rounds or 2)
    else:
        result = bench_ssl_memory(cfg, sorted(ours.rhos or [1, 2, 3, 4]), ours.iters)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
